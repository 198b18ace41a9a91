"""Lifecycle hooks (kubelite.node.lifecycle) and how a pod worker kills a container around them.

The handlers run against a real local HTTP server and a fake exec; the kill's grace-period
accounting runs on the event loop's fake clock (``looptime``): a preStop hook that sleeps
3 s of a 10 s grace period leaves 7 s to SIGTERM, one that outlasts the grace period is
abandoned when it ends and the container still gets the kubelet's minimum of 2 s.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest
from aiohttp import web

from kubelite.node import lifecycle, probes
from kubelite.node.podworker import ContainerState, PodHost, PodWorker
from kubelite.node.runtime import ContainerStatus
from tests.unit.test_podworker import FakeHost, FakeRuntime, Obj, make_pod

POD = "web-0_shop(u-1)"


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[web.Request]]]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(status=int(request.query.get("status", "200")), text="body")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target() -> probes.Target:
    return probes.Target("127.0.0.1", {"name": "c"}, "cid", None)


async def test_an_http_hook_succeeds_on_any_answer(server: tuple[int, list[web.Request]]) -> None:
    """Unlike a probe, a hook does not judge the status: a 500 is a delivered hook."""
    port, seen = server
    for status in ("200", "302", "500"):
        action = {"path": f"/echo?msg=prestop&status={status}", "port": port}
        assert await lifecycle.run_http(target(), action, "c", POD, 1) is None
    assert [r.query["status"] for r in seen] == ["200", "302", "500"]
    assert seen[0].path_qs == "/echo?msg=prestop&status=200"
    assert seen[0].headers["User-Agent"] == "kube-lifecycle/1.33"


async def test_an_http_hook_fails_when_nothing_answers() -> None:
    dead = closed_port()
    assert await lifecycle.run_http(target(), {"path": "/x", "port": dead, "host": "127.0.0.1"}, "c", POD, 1) == (
        f'HTTP lifecycle hook (/x) for Container "c" in Pod "{POD}" failed - error: '
        f'Get "http://127.0.0.1:{dead}/x": dial tcp 127.0.0.1:{dead}: connect: connection refused')
    assert await lifecycle.run_http(target(), {"path": "/x", "port": "web"}, "c", POD, 1) == (
        f'HTTP lifecycle hook (/x) for Container "c" in Pod "{POD}" failed - error: couldn\'t find port: web in c')


async def test_exec_hooks_and_their_failure_texts() -> None:
    calls: list[tuple[str, list[str], float | None]] = []

    async def exec_fn(cid: str, argv: list[str], seconds: float | None) -> tuple[int, bytes, bytes]:
        calls.append((cid, argv, seconds))
        if argv[0] == "missing":
            raise lifecycle.ExecError('exec: "missing": executable file not found in $PATH')
        return (0, b"fine\n", b"") if argv[0] == "true" else (3, b"out\n", b"err\n")

    t = target()
    assert await lifecycle.run(t, exec_fn, {"exec": {"command": ["true"]}}, "c", POD, 1) is None
    assert calls == [("cid", ["true"], None)]  # no timeout of its own: the caller bounds a hook
    assert await lifecycle.run(t, exec_fn, {"exec": {"command": ["sh", "-c", "exit 3"]}}, "c", POD, 1) == (
        f'Exec lifecycle hook ([sh -c exit 3]) for Container "c" in Pod "{POD}" failed - error: '
        "command 'sh -c exit 3' exited with 3: err\n, message: \"out\\nerr\\n\"")
    assert await lifecycle.run(t, exec_fn, {"exec": {"command": ["missing"]}}, "c", POD, 1) == (
        f'Exec lifecycle hook ([missing]) for Container "c" in Pod "{POD}" failed - error: '
        'exec: "missing": executable file not found in $PATH, message: ""')


# ---------------------------------------------------------------------------------- the kill


class RecordingRuntime(FakeRuntime):
    def __init__(self) -> None:
        super().__init__()
        self.stops: list[tuple[str, int, float]] = []  # (container, grace, loop time)

    async def stop(self, cid: str, grace: int) -> None:
        self.stops.append((cid, grace, asyncio.get_running_loop().time()))
        await super().stop(cid, grace)


async def running_worker(tmp_path: pathlib.Path, pre_stop: Obj | None) -> tuple[PodWorker, FakeHost, Obj]:
    host = FakeHost(tmp_path)
    host.runtime = RecordingRuntime()
    pod = make_pod()
    c: Obj = pod["spec"]["containers"][0]
    if pre_stop is not None:
        c["lifecycle"] = {"preStop": pre_stop}
    worker = PodWorker(cast(PodHost, host), pod)
    worker.net = await host.network.add_pod("u-1")
    host.runtime.statuses["cid-1"] = ContainerStatus("running", 42, None, "2026-01-01T00:00:00Z", None, "")
    worker.containers["c"] = ContainerState("c", False, current="cid-1", status=host.runtime.statuses["cid-1"])
    return worker, host, c


def stops(host: FakeHost) -> list[tuple[str, int, float]]:
    return cast(RecordingRuntime, host.runtime).stops


@pytest.mark.looptime
async def test_the_pre_stop_hook_runs_first_and_its_time_comes_off_the_grace_period(tmp_path: pathlib.Path) -> None:
    worker, host, c = await running_worker(tmp_path, {"sleep": {"seconds": 3}})
    t0 = asyncio.get_running_loop().time()
    await worker.kill_container(c, worker.containers["c"], "Stopping container c", 10)
    [(cid, grace, at)] = stops(host)
    assert (cid, grace, round(at - t0, 3)) == ("cid-1", 7, 3.0)
    assert host.events == [("Normal", "Killing", "Stopping container c")]  # before the hook, as the kubelet


@pytest.mark.looptime
async def test_a_pre_stop_hook_outlasting_the_grace_period_is_abandoned(tmp_path: pathlib.Path) -> None:
    worker, host, c = await running_worker(tmp_path, {"sleep": {"seconds": 60}})
    t0 = asyncio.get_running_loop().time()
    await worker.kill_container(c, worker.containers["c"], "Stopping container c", 5)
    [(_, grace, at)] = stops(host)
    assert (grace, round(at - t0, 3)) == (2, 5.0)  # SIGTERM when the grace period ends, then the minimum


@pytest.mark.looptime
async def test_a_failed_pre_stop_hook_is_an_event_without_its_output(tmp_path: pathlib.Path) -> None:
    worker, host, c = await running_worker(tmp_path, {"httpGet": {"host": "127.0.0.1", "port": closed_port(),
                                                                  "path": "/secret?token=x"}})
    worker.net = None  # the hook goes from this namespace (no pod network in a unit test)
    worker._target = lambda c, cs: target()  # type: ignore[method-assign]
    await worker.kill_container(c, worker.containers["c"], "Stopping container c", 30)
    assert host.events == [("Normal", "Killing", "Stopping container c"),
                           ("Warning", "FailedPreStopHook", "PreStopHook failed")]
    [(_, grace, _)] = stops(host)
    assert grace == 30


@pytest.mark.looptime
async def test_sigterm_waits_for_the_drain_and_no_hook_means_the_whole_grace(tmp_path: pathlib.Path) -> None:
    worker, host, c = await running_worker(tmp_path, None)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await worker.kill_container(c, worker.containers["c"], "Stopping container c", 30, sigterm_at=t0 + 1.5)
    [(_, grace, at)] = stops(host)
    assert (grace, round(at - t0, 3)) == (29, 1.5)  # the drain's time counts against the grace period


@pytest.mark.looptime
async def test_a_post_start_hook_is_abandoned_when_the_pod_is_deleted(tmp_path: pathlib.Path) -> None:
    worker, _, _ = await running_worker(tmp_path, None)
    hook = asyncio.ensure_future(asyncio.sleep(3600))
    waiting = asyncio.ensure_future(worker._unless_deleted(hook))
    await asyncio.sleep(5)
    assert not waiting.done()
    pod = make_pod()
    worker.update({**pod, "metadata": {**pod["metadata"], "name": "web-0", "labels": {"a": "b"}}})
    await asyncio.sleep(1)
    assert not waiting.done()  # an update that is not a deletion changes nothing
    worker.update({**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}})
    assert await asyncio.wait_for(waiting, 1) is False
    assert hook.cancelled()
