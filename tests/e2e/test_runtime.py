"""The container runtime against the real kernel: namespaces, mounts, signals, exec, re-adoption.

Every test runs real containers (host busybox and Python) in a network namespace made for
it with ``ip netns add``; ``kill_all`` and the ``cluster_name`` fixture remove every process
and namespace, also when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from kubelite.api.timeutil import format_nano_ns
from kubelite.images import resolve
from kubelite.node import shim
from kubelite.node.runtime import ContainerSpec, ContainerStatus, ExecStartError, Runtime, kill_all
from kubelite.node.shim import CriLogWriter
from tests.conftest import require
from tests.e2e.conftest import require_root_netns

POD_HOSTS = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.9\tweb-0\n"
REAL_PYTHON = os.path.realpath(sys.executable)  # the interpreter, not a venv's link to it


@pytest.fixture
def netns(cluster_name: str) -> Iterator[str]:
    require_root_netns()
    require(shutil.which("busybox") is not None, "needs the busybox binary")
    name = f"{cluster_name}-pod"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.fixture
async def runtime(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    # The image cache (busybox's applet links) outside /tmp, as /var/cache/kubelite is: a
    # program under /tmp keeps the container on the host's /tmp (shim._needs_host_tmp).
    cache = tempfile.mkdtemp(prefix="kubelite-e2e-cache-", dir="/var/tmp")
    monkeypatch.setenv("KUBELITE_CACHE_DIR", cache)
    state = tmp_path / "state"
    try:
        yield Runtime(state)
    finally:
        kill_all(state)
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def pod_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    pod = tmp_path / "pod"
    (pod / "etc").mkdir(parents=True)
    (pod / "etc" / "hosts").write_text(POD_HOSTS)
    (pod / "etc" / "hostname").write_text("web-0\n")
    (pod / "volumes" / "data").mkdir(parents=True)
    return pod


def busybox_spec(netns: str, pod_dir: pathlib.Path, script: str, **overrides: object) -> ContainerSpec:
    image = resolve("busybox")
    spec = ContainerSpec(
        pod_uid="0f3c9a7e-1111-2222-3333-444455556666",
        name="main",
        restart_count=0,
        argv=["sh", "-c", script],
        env=dict(image.env),
        workdir="",
        netns_path=netns,
        hostname="web-0",
        mounts=[
            (str(pod_dir / "etc" / "hosts"), "/etc/hosts", False),
            (str(pod_dir / "etc" / "hostname"), "/etc/hostname", False),
        ],
        uid=None,
        gid=None,
        log_path=pod_dir / "logs" / "main" / "0.log",
        image_paths=list(image.paths),
        writable_paths=list(image.writable_paths),
    )
    for key, value in overrides.items():
        setattr(spec, key, value)
    return spec


def read_text(path: str | pathlib.Path) -> str:
    return pathlib.Path(path).read_text()


def log_lines(path: pathlib.Path, stream: str | None = "stdout") -> list[str]:
    lines: list[str] = []
    if not path.exists():
        return lines
    for record in read_text(path).splitlines():
        _stamp, rec_stream, tag, content = (
            record.split(" ", 3) if record.count(" ") >= 3 else (*record.split(" "), "")
        )
        assert tag in ("F", "P")
        if stream is None or rec_stream == stream:
            lines.append(content)
    return lines


async def wait_exited(runtime: Runtime, cid: str, seconds: float = 15) -> ContainerStatus:
    deadline = time.monotonic() + seconds
    while (status := await runtime.status(cid)).state == "running":
        assert time.monotonic() < deadline, f"{cid} still running"
        await asyncio.sleep(0.05)
    return status


async def wait_log(path: pathlib.Path, line: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while line not in log_lines(path):
        assert time.monotonic() < deadline, f"{line!r} never logged"
        await asyncio.sleep(0.05)


async def test_container_sees_its_own_hostname_and_hosts_file(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path
) -> None:
    host_hosts = read_text("/etc/hosts")
    host_hostname = os.uname().nodename
    spec = busybox_spec(netns, pod_dir, "echo hi; hostname; cat /etc/hosts; echo oops >&2")
    cid = await runtime.start(spec)
    assert cid.startswith("kubelite://")
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert status.started_at.endswith("Z") and status.finished_at
    assert (status.pod_uid, status.name) == (spec.pod_uid, "main")
    assert log_lines(spec.log_path) == ["hi", "web-0", *POD_HOSTS.splitlines()]
    assert log_lines(spec.log_path, "stderr") == ["oops"]
    # The host keeps its own files and name.
    assert read_text("/etc/hosts") == host_hosts
    assert os.uname().nodename == host_hostname


async def test_env_is_exactly_the_given_one(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    env = {"PATH": resolve("busybox").env["PATH"], "GREETING": "hello world", "EMPTY": ""}
    spec = busybox_spec(netns, pod_dir, "", argv=["env"], env=env, workdir="/tmp")
    status = await wait_exited(runtime, await runtime.start(spec))
    assert status.exit_code == 0
    assert sorted(log_lines(spec.log_path)) == sorted(f"{k}={v}" for k, v in env.items())


async def test_namespaces_and_mounts(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    (pod_dir / "ro").mkdir()
    (pod_dir / "ro" / "token").write_text("secret-token")
    target = f"/tmp/kubelite-e2e-{os.getpid()}-vol"
    script = (
        "ps -o pid,comm; "
        f"echo written > {target}/file; "
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; "
        "touch /var/run/secrets/kubernetes.io/serviceaccount/x 2>/dev/null || echo read-only; "
        "ip -o link show | cut -d: -f2"
    )
    spec = busybox_spec(netns, pod_dir, script)
    spec.mounts += [
        (str(pod_dir / "volumes" / "data"), target, False),
        (str(pod_dir / "ro"), "/var/run/secrets/kubernetes.io/serviceaccount", True),
    ]
    try:
        status = await wait_exited(runtime, await runtime.start(spec))
        lines = log_lines(spec.log_path)
        assert status.exit_code == 0, lines
        # PID namespace: the shell is PID 1 and sees only its own processes.
        assert [line.split() for line in lines[:2]] == [["PID", "COMMAND"], ["1", "sh"]]
        assert lines[2].split()[1] == "ps" and int(lines[2].split()[0]) < 10
        assert (pod_dir / "volumes" / "data" / "file").read_text() == "written\n"
        assert lines[3:5] == ["secret-token", "read-only"]
        assert [line.strip() for line in lines[5:]] == ["lo"]  # the pod's fresh netns, not the host's
        # The mounts stayed in the container. An unprivileged catalog container has a root and
        # a /tmp of its own (kubelite.node.isolation), even when the interpreter or kubelite
        # lives under the host's /tmp (bound read-only into that root), so the host does not
        # even see the mount point. (Privileged containers keep the host's /tmp in that case:
        # shim._needs_host_tmp.)
        assert not pathlib.Path(target).exists()  # noqa: ASYNC240 - a quick local check
    finally:
        shutil.rmtree(target, ignore_errors=True)


async def test_exit_code(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    status = await wait_exited(runtime, await runtime.start(busybox_spec(netns, pod_dir, "exit 3")))
    assert (status.state, status.exit_code, status.reason) == ("exited", 3, "Error")


async def test_an_exit_is_told_by_its_watch_once_the_status_is_final(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Pod workers are woken by the shim's exit (a pidfd) instead of looking every second:
    the callback comes once the exit code is written, also for a Runtime that did not start
    the container (an agent restart), and nothing is left to watch afterwards."""
    cid = await runtime.start(busybox_spec(netns, pod_dir, "sleep 3; exit 4"))
    again = Runtime(tmp_path / "state")
    told: list[ContainerStatus] = []
    woken = asyncio.Event()

    def exited() -> None:
        told.append(again._status(again.container_dir(cid)))
        woken.set()

    assert again.watch_exit(cid, lambda: None)
    assert again.watch_exit(cid, exited)  # watching again replaces the callback
    await asyncio.sleep(0.3)
    assert not woken.is_set()  # a running container tells nothing
    await asyncio.wait_for(woken.wait(), 10)
    assert [(st.state, st.exit_code) for st in told] == [("exited", 4)]
    assert not again.watch_exit(cid, exited)  # exited: nothing to watch
    await again.remove(cid)


async def test_exit_watches_leave_the_agent_half_its_descriptors(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pidfd per running container: past half the soft RLIMIT_NOFILE the worker polls
    instead, so that a node with many containers never runs the agent out of descriptors."""
    from kubelite.node import runtime as runtime_module

    cid = await runtime.start(busybox_spec(netns, pod_dir, "sleep 30"))
    try:
        monkeypatch.setattr(runtime_module, "_max_exit_watches", lambda: 0)
        assert not runtime.watch_exit(cid, lambda: None)
        monkeypatch.setattr(runtime_module, "_max_exit_watches", lambda: 1)
        assert runtime.watch_exit(cid, lambda: None)
    finally:
        await runtime.remove(cid)


async def test_missing_binary_is_a_start_error(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    spec = busybox_spec(netns, pod_dir, "", argv=["no-such-command", "x"])
    status = await runtime.status(await runtime.start(spec))
    assert (status.state, status.exit_code, status.reason, status.started_at) == (
        "exited",
        128,
        "StartError",
        "",
    )
    assert status.message == (
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
        'failed: unable to start container process: exec: "no-such-command": executable file not found in '
        "$PATH: unknown"
    )


async def test_stop_with_grace_runs_the_term_trap(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path
) -> None:
    script = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
    spec = busybox_spec(netns, pod_dir, script)
    cid = await runtime.start(spec)
    await wait_log(spec.log_path, "ready")
    started = time.monotonic()
    await runtime.stop(cid, 10)
    assert time.monotonic() - started < 5
    status = await runtime.status(cid)
    assert (status.state, status.exit_code) == ("exited", 0)
    assert log_lines(spec.log_path)[-1] == "got TERM"


async def test_stop_kills_after_the_grace_period(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    # As PID 1 without a handler, sleep ignores SIGTERM, as in a real container.
    spec = busybox_spec(netns, pod_dir, "", argv=["sleep", "1000"])
    cid = await runtime.start(spec)
    started = time.monotonic()
    await runtime.stop(cid, 1)
    assert time.monotonic() - started >= 1
    status = await runtime.status(cid)
    assert (status.state, status.exit_code, status.reason) == ("exited", 137, "Error")


async def test_exec(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    spec = busybox_spec(
        netns, pod_dir, "echo ready; exec sleep 1000", env={**resolve("busybox").env, "WHO": "pod"}
    )
    cid = await runtime.start(spec)
    await wait_log(spec.log_path, "ready")

    proc = await runtime.exec(
        cid, ["sh", "-c", "hostname; echo $WHO; cat /etc/hosts >&2; exit 4"], tty=False, stdin=False
    )
    out, err = await read_all(proc.read_stdout), await read_all(proc.read_stderr)
    assert (out, err, await proc.wait()) == (b"web-0\npod\n", POD_HOSTS.encode(), 4)

    proc = await runtime.exec(cid, ["cat"], tty=False, stdin=True)
    await proc.write_stdin(b"through stdin\n")
    await proc.close_stdin()
    assert (await read_all(proc.read_stdout), await proc.wait()) == (b"through stdin\n", 0)

    proc = await runtime.exec(cid, ["sh", "-c", "tty; read x; stty size"], tty=True, stdin=True)
    proc.resize(100, 30)
    await proc.write_stdin(b"go\n")
    out = await read_all(proc.read_stdout)
    proc.close()
    assert await proc.wait() == 0
    lines = out.decode().split("\r\n")
    # The terminal echoes "go" whenever it arrives; the size printed is the one set.
    assert lines.pop(lines.index("go")) == "go"
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:] == ["30 100", ""]

    with pytest.raises(ExecStartError) as err_info:
        await runtime.exec(cid, ["nope"], tty=False, stdin=False)
    assert str(err_info.value) == (
        'OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": '
        "executable file not found in $PATH: unknown"
    )
    await runtime.stop(cid, 0)
    with pytest.raises(ExecStartError, match="cannot exec in a stopped container"):
        await runtime.exec(cid, ["true"], tty=False, stdin=False)


async def read_all(read: object) -> bytes:
    data = b""
    while chunk := await read():  # type: ignore[operator]
        data += chunk
    return data


async def test_containers_survive_an_agent_restart(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = busybox_spec(netns, pod_dir, "echo up; sleep 1; exit 5")
    cid = await runtime.start(spec)
    # A new Runtime, as after an agent restart, with nothing but the state dir.
    again = Runtime(tmp_path / "state")
    found = again.list()
    assert list(found) == [cid]
    assert (found[cid].state, found[cid].pod_uid, found[cid].name, found[cid].restart_count) == (
        "running", spec.pod_uid, "main", 0,
    )  # fmt: skip
    status = await wait_exited(again, cid)
    assert status.exit_code == 5
    await again.remove(cid)
    assert again.list() == {}
    assert spec.log_path.exists()  # logs outlive the container record, as in the kubelet


async def test_python_container_pid_1_runs_agnhost_pause(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path
) -> None:
    image = resolve("registry.k8s.io/e2e-test-images/agnhost:2.53")
    spec = busybox_spec(netns, pod_dir, "", argv=[*image.entrypoint, "pause"], env=dict(image.env))
    cid = await runtime.start(spec)
    await wait_log(spec.log_path, "Paused")
    await runtime.stop(cid, 10)
    assert (await runtime.status(cid)).exit_code == 2


async def test_program_linked_from_tmp_to_outside_runs(runtime: Runtime, netns: str, pod_dir: pathlib.Path) -> None:
    # Issue 14: kubelite in a venv under /tmp never got DNS. The DNS pod runs
    # /tmp/venv/bin/python3, a link to an interpreter outside /tmp; the container was given a
    # private /tmp because the link's target is outside, and the program was gone
    # ("stat /tmp/venv/bin/python3: no such file or directory").
    require(not REAL_PYTHON.startswith("/tmp/"), "this Python itself lives under /tmp")
    venv = pathlib.Path(tempfile.mkdtemp(prefix="kubelite-e2e-venv-", dir="/tmp"))
    try:
        python3 = venv / "bin" / "python3"
        python3.parent.mkdir()
        python3.symlink_to(REAL_PYTHON)
        # The image names its program's directory (as a catalog entry's program is part of its
        # image): the container's own root shows it, and the link's target with the host's /usr.
        spec = busybox_spec(netns, pod_dir, "", argv=[str(python3), "-c", "print('hello from the venv')"],
                            env={"PATH": shim.DEFAULT_PATH}, image_paths=[str(python3.parent)])
        status = await wait_exited(runtime, await runtime.start(spec))
        assert (status.exit_code, status.message) == (0, "")
        assert log_lines(spec.log_path) == ["hello from the venv"]
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def test_cri_log_format(tmp_path: pathlib.Path) -> None:
    log = CriLogWriter(tmp_path / "c.log")
    log.write("stdout", b"one\r\ntw")
    log.write("stdout", b"o\n" + b"x" * 20000)
    log.write("stderr", b"err")
    log.close_stream("stdout")
    log.close_stream("stderr")
    records = [line.split(" ", 3) for line in (tmp_path / "c.log").read_text().splitlines()]
    assert [r[1:] for r in records] == [
        ["stdout", "F", "one"],
        ["stdout", "F", "two"],
        ["stdout", "P", "x" * 16384],
        ["stdout", "P", "x" * (20000 - 16384)],  # unterminated at EOF: partial, as containerd
        ["stderr", "P", "err"],
    ]
    assert all(r[0].endswith("Z") and r[0][:4].isdigit() for r in records)


def test_rfc3339_nano_trims_zeros() -> None:
    assert format_nano_ns(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert format_nano_ns(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_shim_runs_without_the_agent_package_state() -> None:
    # The shim is started as `python -m kubelite.node.shim`: it must import on its own.
    proc = subprocess.run([sys.executable, "-m", "kubelite.node.shim"], capture_output=True, text=True)
    assert proc.returncode != 0 and "usage: python -m kubelite.node.shim <spec.json>" in proc.stderr


async def test_terminals_are_made_in_the_containers_own_devpts(
    runtime: Runtime, netns: str, pod_dir: pathlib.Path
) -> None:
    # An unprivileged catalog container has a devpts of its own (kubelite.node.isolation):
    # its terminal and an exec's are made there, and the host's terminals are not to be seen.
    spec = busybox_spec(netns, pod_dir, "tty; ls /dev/pts | tr '\\n' ' '; echo; sleep 60", tty=True)
    cid = await runtime.start(spec)
    await wait_log(spec.log_path, "/dev/pts/0")
    deadline = time.monotonic() + 10  # the listing is the line after (written a moment later)
    while len(log_lines(spec.log_path)) < 2:
        assert time.monotonic() < deadline, f"no listing of /dev/pts: {log_lines(spec.log_path)}"
        await asyncio.sleep(0.05)
    assert log_lines(spec.log_path)[1].split() == ["0", "ptmx"]
    proc = await runtime.exec(cid, ["sh", "-c", "tty; ls /dev/pts | tr '\\n' ' '"], tty=True, stdin=False)
    out = (await read_all(proc.read_stdout)).decode().replace("\r", "").splitlines()
    proc.close()
    assert await proc.wait() == 0
    assert out[0] == "/dev/pts/1" and out[1].split() == ["0", "1", "ptmx"]
    privileged = busybox_spec(netns, pod_dir, "tty", tty=True, name="priv", security_context={"privileged": True},
                              log_path=pod_dir / "logs" / "priv" / "0.log")
    await wait_exited(runtime, await runtime.start(privileged))
    host_tty = log_lines(privileged.log_path)[0]
    assert host_tty.startswith("/dev/pts/")  # the host's devpts, as before isolation
    await runtime.stop(cid, 0)
