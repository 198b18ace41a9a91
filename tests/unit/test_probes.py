"""Probe handlers and thresholds (kubelite.node.probes) against real local servers.

Periods, initial delays and timeouts run on a fake clock (``@pytest.mark.looptime``): the event
loop's time jumps to its next timer whenever nothing else can run, so a test of a 1 s period
takes no real second and cannot miss its moment on a busy machine. The workers read that same
clock (``clock=loop.time``). Tests that wait on a real process keep the real clock.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kubelite.node import probes


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, dict[str, int]]]:
    """An HTTP server on 127.0.0.1: /ok 200, /redirect 302, /fail 500, /slow sleeps; /health flips;
    /to?loc=... redirects (302) there, /loop redirects to itself."""
    state = {"health": 200, "hits": 0}
    seen: dict[str, str] = {}

    async def handle(request: web.Request) -> web.Response:
        state["hits"] += 1
        seen.update(request.headers)
        path = request.path
        if path == "/slow":
            await asyncio.sleep(2)
        if path == "/health":
            return web.Response(status=state["health"])
        if path == "/to":
            return web.Response(status=302, headers={"Location": request.query["loc"]},
                                text=f'<a href="{request.query["loc"]}">Found</a>.\n')
        if path == "/loop":
            return web.Response(status=301, headers={"Location": "/loop"})
        return web.Response(status={"/ok": 200, "/redirect": 302, "/fail": 500}.get(path, 200))

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state["port"] = port
    state["seen"] = seen  # type: ignore[assignment]
    try:
        yield port, state
    finally:
        await runner.cleanup()


def target(container: dict[str, object] | None = None) -> probes.Target:
    return probes.Target("127.0.0.1", container or {"name": "c"}, "cid", None)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.looptime  # /slow answers after 2 s, the probe gives up after 1 s: on the loop's fake clock
async def test_http_get_results(server: tuple[int, dict[str, int]]) -> None:
    port, _ = server
    t = target()
    assert await probes.http_get(t, {"path": "/ok", "port": port}, 1) == ("success", "")
    # A 3xx that is not followed (no Location here) succeeds with the kubelet's warning.
    assert await probes.http_get(t, {"path": "/redirect", "port": port}, 1) == (
        "warning", "Probe terminated redirects, Response body: ")
    assert await probes.http_get(t, {"path": "/fail", "port": port}, 1) == (
        "failure", "HTTP probe failed with statuscode: 500")
    result, message = await probes.http_get(t, {"path": "/slow", "port": port}, 1)
    assert result == "failure"
    assert message == (f'Get "http://127.0.0.1:{port}/slow": context deadline exceeded '
                       "(Client.Timeout exceeded while awaiting headers)")
    dead = closed_port()
    assert await probes.http_get(t, {"path": "/healthz", "port": dead}, 1) == (
        "failure", f'Get "http://127.0.0.1:{dead}/healthz": dial tcp 127.0.0.1:{dead}: connect: connection refused')


async def test_http_get_follows_redirects_on_the_probed_host_only(server: tuple[int, dict[str, int]]) -> None:
    """As the kubelet's prober (pkg/probe/http): a redirect to the same host is followed and the
    final answer decides (a healthy endpoint that redirects to a failing one fails); one to
    another host is not followed: its 3xx is a success with a warning, body included."""
    port, state = server
    t = target()
    assert await probes.http_get(t, {"path": "/to?loc=%2Ffail", "port": port}, 1) == (
        "failure", "HTTP probe failed with statuscode: 500")
    hits = state["hits"]
    assert await probes.http_get(t, {"path": "/to?loc=%2Fok", "port": port}, 1) == ("success", "")
    assert state["hits"] == hits + 2
    absolute = f"http://127.0.0.1:{port}/fail"  # an absolute URL on the same host is followed too
    assert (await probes.http_get(t, {"path": f"/to?loc={absolute}", "port": port}, 1))[0] == "failure"
    away = "http://192.0.2.1/"  # TEST-NET-1: never contacted, the redirect is not followed
    assert await probes.http_get(t, {"path": f"/to?loc={away}", "port": port}, 1) == (
        "warning", f'Probe terminated redirects, Response body: <a href="{away}">Found</a>.\n')
    assert await probes.http_get(t, {"path": "/loop", "port": port}, 1) == (
        "failure", f'Get "http://127.0.0.1:{port}/loop": stopped after 10 redirects')


def test_a_warning_counts_as_a_success() -> None:
    state = probes.ProbeState(1, 1, True)
    assert not state.observe("warning")
    assert state.result is True
    assert state.observe("failure") and state.result is False
    assert state.observe("warning") and state.result is True


async def test_http_get_named_port_and_headers(server: tuple[int, dict[str, int]]) -> None:
    port, state = server
    t = target({"name": "c", "ports": [{"name": "http", "containerPort": port}]})
    action = {"path": "ok", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}, {"name": "host", "value": "example"}]}
    assert await probes.http_get(t, action, 1) == ("success", "")
    seen = state["seen"]
    assert seen["User-Agent"] == "kube-probe/1.33"  # type: ignore[index]
    assert seen["X-Probe"] == "1"  # type: ignore[index]
    assert seen["Host"] == "example"  # type: ignore[index]
    assert await probes.http_get(t, {"port": "nope"}, 1) == ("unknown", "couldn't find port: nope in c")


async def test_tcp_socket(server: tuple[int, dict[str, int]]) -> None:
    port, _ = server
    assert await probes.tcp_socket(target(), {"port": port}, 1) == ("success", "")
    dead = closed_port()
    assert await probes.tcp_socket(target(), {"port": dead}, 1) == (
        "failure", f"dial tcp 127.0.0.1:{dead}: connect: connection refused")


async def test_exec_action() -> None:
    async def run(cid: str, argv: list[str], seconds: float) -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out

    t = probes.Target("127.0.0.1", {"name": "c"}, "cid", None, run)
    assert await probes.exec_action(t, {"command": ["true"]}, 1) == ("success", "")
    assert await probes.exec_action(t, {"command": ["sh", "-c", "echo nope; exit 2"]}, 1) == ("failure", "nope\n")
    result, message = await probes.exec_action(t, {"command": ["sleep", "5"]}, 0.2)
    assert (result, message) == ("failure", 'command "sleep 5" timed out')


@pytest.mark.parametrize(("success", "failure", "initial", "raws", "settled"), [
    (1, 3, False, ["success"], [True]),
    (1, 3, True, ["failure", "failure", "failure"], [True, True, False]),
    (1, 3, True, ["failure", "failure", "success", "failure", "failure"], [True] * 5),  # runs must be consecutive
    (2, 1, False, ["success", "success", "failure"], [False, True, False]),
    (1, 1, None, ["unknown", "success"], [None, True]),
])
def test_probe_thresholds(success: int, failure: int, initial: bool | None, raws: list[probes.Result],
                          settled: list[bool | None]) -> None:
    state = probes.ProbeState(success, failure, initial)
    seen = []
    for raw in raws:
        state.observe(raw)
        seen.append(state.result)
    assert seen == settled


@pytest.mark.looptime
async def test_worker_reports_changes_and_stops_after_liveness_failure(server: tuple[int, dict[str, int]]) -> None:
    port, state = server
    changes: list[tuple[str, bool]] = []
    failures: list[str] = []
    probe = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 1, "failureThreshold": 2}
    loop = asyncio.get_running_loop()
    worker = probes.ProbeWorker(kind="liveness", probe=probe, target=target(), started_at=loop.time(),
                                clock=loop.time, on_change=lambda k, ok: changes.append((k, ok)),
                                on_failure=lambda k, msg: failures.append(msg))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    assert changes == [] and worker.result is True  # liveness starts out healthy
    state["health"] = 503
    await asyncio.wait_for(task, 5)  # two failures in a row: reported, then the worker ends
    assert changes == [("liveness", False)]
    assert failures[-1] == "Liveness probe failed: HTTP probe failed with statuscode: 503"


@pytest.mark.looptime
async def test_worker_waits_for_initial_delay_and_gate(server: tuple[int, dict[str, int]]) -> None:
    port, state = server
    started = {"ok": False}
    changes: list[tuple[str, bool]] = []
    probe = {"httpGet": {"path": "/ok", "port": port}, "periodSeconds": 1, "initialDelaySeconds": 1}
    loop = asyncio.get_running_loop()
    worker = probes.ProbeWorker(kind="readiness", probe=probe, target=target(), started_at=loop.time(),
                                clock=loop.time, on_change=lambda k, ok: changes.append((k, ok)), on_failure=lambda k, m: None,
                                gate=lambda: started["ok"])
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        assert state["hits"] == 0 and worker.result is False  # readiness starts out not ready
        await asyncio.sleep(1.0)
        assert state["hits"] == 0  # delay over, but the container has not started (startup probe)
        started["ok"] = True
        for _ in range(30):
            if changes:
                break
            await asyncio.sleep(0.1)
        assert changes == [("readiness", True)]
    finally:
        task.cancel()


@pytest.mark.looptime
async def test_a_starting_server_is_found_ready_without_waiting_a_period() -> None:
    """The first readiness probe runs at once, usually before the server listens: during the
    container's first period it is retried soon, silently, so the pod is Ready as soon as the
    server is (not a whole period later); after the first period the cadence is the period."""
    port = closed_port()
    changes: list[tuple[str, bool]] = []
    failures: list[str] = []
    probe = {"tcpSocket": {"port": port}, "periodSeconds": 10}
    loop = asyncio.get_running_loop()
    worker = probes.ProbeWorker(kind="readiness", probe=probe, target=target(), started_at=loop.time(),
                                clock=loop.time, on_change=lambda k, ok: changes.append((k, ok)),
                                on_failure=lambda k, msg: failures.append(msg))
    task = asyncio.create_task(worker.run())
    listener = None
    try:
        await asyncio.sleep(0.3)
        assert changes == [] and worker.result is False
        listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        for _ in range(60):
            if changes:
                break
            await asyncio.sleep(0.05)
        assert changes == [("readiness", True)]  # seconds before the 10 s period
        assert failures == []  # the attempts before the server listened are not reported
    finally:
        task.cancel()
        if listener is not None:
            listener.close()


@pytest.mark.looptime
async def test_exec_readiness_probes_keep_their_period() -> None:
    """An exec probe starts a process per attempt: it is not repeated early."""
    changes: list[tuple[str, bool]] = []
    failures: list[str] = []
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 10}
    loop = asyncio.get_running_loop()
    worker = probes.ProbeWorker(kind="readiness", probe=probe, target=target(), started_at=loop.time(),
                                clock=loop.time, on_change=lambda k, ok: changes.append((k, ok)),
                                on_failure=lambda k, msg: failures.append(msg))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
    assert len(failures) == 1 and worker.result is False


@pytest.mark.looptime
async def test_a_slow_attempt_does_not_push_the_next_one_later() -> None:
    """Attempts keep the period's cadence, as the kubelet's ticker: a 1.5 s exec attempt of a
    2 s period is followed by the next at 2 s, not at 3.5 s."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    attempts: list[float] = []

    async def slow(cid: str, argv: list[str], seconds: float) -> tuple[int, bytes]:
        attempts.append(round(loop.time() - t0, 3))
        await asyncio.sleep(1.5)
        return 0, b""

    probe = {"exec": {"command": ["check"]}, "periodSeconds": 2, "timeoutSeconds": 5}
    worker = probes.ProbeWorker(kind="liveness", probe=probe, target=probes.Target("127.0.0.1", {}, "cid", None, slow),
                                started_at=t0, clock=loop.time, on_change=lambda k, ok: None,
                                on_failure=lambda k, m: None)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(7)
    task.cancel()
    assert attempts == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.looptime
async def test_a_redirect_to_another_host_is_a_warning_not_a_failure(server: tuple[int, dict[str, int]]) -> None:
    port, _ = server
    warnings: list[str] = []
    failures: list[str] = []
    changes: list[tuple[str, bool]] = []
    probe = {"httpGet": {"path": "/to?loc=http://192.0.2.1/", "port": port}, "periodSeconds": 1, "failureThreshold": 1}
    loop = asyncio.get_running_loop()
    worker = probes.ProbeWorker(kind="liveness", probe=probe, target=target(), started_at=loop.time(),
                                clock=loop.time, on_change=lambda k, ok: changes.append((k, ok)),
                                on_failure=lambda k, m: failures.append(m), on_warning=lambda k, m: warnings.append(m))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(2.5)
    task.cancel()
    assert changes == [] and failures == [] and worker.result is True
    assert len(warnings) == 3
    assert warnings[0] == ('Liveness probe warning: Probe terminated redirects, Response body: '
                           '<a href="http://192.0.2.1/">Found</a>.\n')


@pytest.mark.looptime
async def test_a_trigger_probes_at_once_instead_of_a_period_later(server: tuple[int, dict[str, int]]) -> None:
    """The readiness probe of a container whose startup probe has just succeeded runs then,
    not up to a period later (the kubelet triggers it)."""
    port, _ = server
    started = {"ok": False}
    changes: list[tuple[str, float]] = []
    probe = {"httpGet": {"path": "/ok", "port": port}, "periodSeconds": 30}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    worker = probes.ProbeWorker(kind="readiness", probe=probe, target=target(), started_at=t0, clock=loop.time,
                                on_change=lambda k, ok: changes.append((k, round(loop.time() - t0))),
                                on_failure=lambda k, m: None, gate=lambda: started["ok"])
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(40)  # the first period passed ungated; the next attempt is due at 60 s
        started["ok"] = True
        worker.trigger()
        for _ in range(30):
            if changes:
                break
            await asyncio.sleep(0.1)
        assert changes == [("readiness", 40)]
    finally:
        task.cancel()
