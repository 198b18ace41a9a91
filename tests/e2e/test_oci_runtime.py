"""Containers of a real image root run by runc: the image's filesystem, config, exec, security, limits.

Each test runs real containers through :class:`Runtime` (shim + runc) in a network
namespace made for it; the image root is busybox-static's (see ``tests/e2e/ociroot.py``).
Needs root, ``ip netns`` and runc: skipped without them, failed on CI.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from kubelite.images.oci import OCIImage
from kubelite.node.runtime import ContainerSpec, ContainerStatus, ExecStartError, Runtime, kill_all
from tests.conftest import require
from tests.e2e import ociroot
from tests.e2e.conftest import require_root_netns

POD_HOSTS = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.9\tweb-0\n"


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    require(os.geteuid() == 0, "needs root to run runc")
    require(shutil.which("runc") is not None, "needs runc (Debian: apt-get install runc)")
    base = tmp_path_factory.mktemp("ociroot")
    return ociroot.build_rootfs(ociroot.busybox_deb(base / "cache"), base / "rootfs")


@pytest.fixture
def image(image_root: pathlib.Path) -> OCIImage:
    return OCIImage(name="docker.io/library/bbtest:1", digest="sha256:" + "0" * 64, rootfs=image_root,
                    entrypoint=[], cmd=["sh"], env={"PATH": "/bin", "GREETING": "from-image"}, workdir="/app")


@pytest.fixture
def netns(cluster_name: str) -> Iterator[str]:
    require_root_netns()
    name = f"{cluster_name}-pod"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.fixture
async def runtime(tmp_path: pathlib.Path) -> AsyncIterator[Runtime]:
    state = tmp_path / "state"
    rt = Runtime(state)
    try:
        yield rt
    finally:
        await rt.close()
        kill_all(state)


@pytest.fixture
def pod_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    pod = tmp_path / "pod"
    (pod / "etc").mkdir(parents=True)
    (pod / "etc" / "hosts").write_text(POD_HOSTS)
    (pod / "etc" / "hostname").write_text("web-0\n")
    (pod / "volumes" / "data").mkdir(parents=True)
    (pod / "volumes" / "data" / "v.txt").write_text("from a volume\n")
    return pod


def oci_spec(image: OCIImage, netns: str, pod_dir: pathlib.Path, argv: list[str], **overrides: object) -> ContainerSpec:
    spec = ContainerSpec(
        pod_uid="0f3c9a7e-1111-2222-3333-444455556666", name="main", restart_count=0, argv=argv,
        env={"HOSTNAME": "web-0", **image.env}, workdir=image.workdir, netns_path=netns, hostname="web-0",
        mounts=[(str(pod_dir / "etc" / "hosts"), "/etc/hosts", False),
                (str(pod_dir / "etc" / "hostname"), "/etc/hostname", False),
                (str(pod_dir / "volumes" / "data"), "/data", True)],
        uid=None, gid=None, log_path=pod_dir / "logs" / "main" / "0.log", oci=image,
    )  # fmt: skip
    for key, value in overrides.items():
        setattr(spec, key, value)
    return spec


def log_lines(path: pathlib.Path, stream: str | None = "stdout") -> list[str]:
    lines: list[str] = []
    if not path.exists():
        return lines
    for record in path.read_text().splitlines():
        parts = record.split(" ", 3)
        if stream is None or parts[1] == stream:
            lines.append(parts[3] if len(parts) > 3 else "")
    return lines


async def wait_exited(runtime: Runtime, cid: str, seconds: float = 20) -> ContainerStatus:
    deadline = time.monotonic() + seconds
    while (status := await runtime.status(cid)).state == "running":
        assert time.monotonic() < deadline, f"{cid} still running"
        await asyncio.sleep(0.05)
    return status


async def wait_log(path: pathlib.Path, line: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while line not in log_lines(path):
        assert time.monotonic() < deadline, f"{line!r} never logged: {log_lines(path, None)}"
        await asyncio.sleep(0.05)


async def run_exec(runtime: Runtime, cid: str, argv: list[str]) -> tuple[int, str, str]:
    proc = await runtime.exec(cid, argv, tty=False, stdin=False)
    out, err = b"", b""
    while chunk := await proc.read_stdout():
        out += chunk
    while chunk := await proc.read_stderr():
        err += chunk
    code = await proc.wait()
    proc.close()
    return code, out.decode(), err.decode()


async def test_the_container_sees_the_image_root_not_the_host(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    script = (f"cat {ociroot.BAKED}; pwd; echo $GREETING; hostname; cat /data/v.txt; "
              f"test -e /etc/os-release && echo HOST-OS; test -e {tmp_path} && echo HOST-DATA; "
              "ls -A /root | wc -l; id -u; echo $HOME; echo oops >&2")
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", script])
    cid = await runtime.start(spec)
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (0, "Completed"), log_lines(spec.log_path, None)
    assert log_lines(spec.log_path) == [ociroot.BAKED_TEXT, "/app", "from-image", "web-0", "from a volume",
                                        "0", "0", "/root"]
    assert log_lines(spec.log_path, "stderr") == ["oops"]
    # The container's writes went to its own upper layer, never into the shared image root.
    cid2 = await runtime.start(oci_spec(image, netns, pod_dir, ["sh", "-c", "echo x > /written; rm /bin/ls"]))
    assert (await wait_exited(runtime, cid2)).exit_code == 0
    assert not (image.rootfs / "written").exists() and (image.rootfs / "bin" / "ls").is_symlink()
    await runtime.remove(cid2)
    assert not runtime.container_dir(cid2).exists()
    assert not (runtime.runc_root / runtime.container_dir(cid2).name).exists()


async def test_a_missing_command_is_a_start_error_with_runcs_message(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path
) -> None:
    cid = await runtime.start(oci_spec(image, netns, pod_dir, ["nosuch", "x"]))
    status = await runtime.status(cid)
    assert (status.state, status.exit_code, status.reason) == ("exited", 128, "StartError")
    assert status.message.startswith("failed to create containerd task: failed to create shim task: "
                                     "OCI runtime create failed: runc create failed: unable to start container process: ")
    assert 'exec: "nosuch": executable file not found in $PATH' in status.message
    assert status.message.endswith(": unknown")


async def test_exec_logs_and_graceful_stop(runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path) -> None:
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "trap 'echo bye; exit 3' TERM; echo ready; "
                                            "while true; do sleep 0.1; done"])
    cid = await runtime.start(spec)
    await wait_log(spec.log_path, "ready")
    code, out, _ = await run_exec(runtime, cid, ["sh", "-c", "cat /baked/hello.txt; pwd; echo $GREETING; ps | wc -l"])
    assert code == 0 and out.splitlines()[:3] == [ociroot.BAKED_TEXT, "/app", "from-image"]
    code, out, _ = await run_exec(runtime, cid, ["sh", "-c", "exit 7"])
    assert code == 7
    with pytest.raises(ExecStartError, match=r'OCI runtime exec failed: exec failed: unable to start container '
                                             r'process: exec: "nosuch": executable file not found in \$PATH: unknown'):
        await runtime.exec(cid, ["nosuch"], tty=False, stdin=False)
    # exec -t: a terminal, its size, and the command's output through it.
    proc = await runtime.exec(cid, ["sh", "-c", "sleep 0.3; stty size; tty"], tty=True, stdin=True)
    proc.resize(100, 40)
    out_b = b""
    while chunk := await proc.read_stdout():
        out_b += chunk
    assert await proc.wait() == 0
    proc.close()
    assert b"40 100" in out_b and b"/dev/pts/" in out_b
    await runtime.stop(cid, 10)
    status = await runtime.status(cid)
    assert (status.exit_code, status.reason) == (3, "Error")
    assert "bye" in log_lines(spec.log_path)


async def test_a_container_ignoring_sigterm_is_killed_after_the_grace_period(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path
) -> None:
    cid = await runtime.start(oci_spec(image, netns, pod_dir, ["sleep", "1000"]))
    started = time.monotonic()
    await runtime.stop(cid, 1)
    assert 0.9 < time.monotonic() - started < 8
    assert (await runtime.status(cid)).exit_code == 137


async def test_security_context_is_observable_inside(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path
) -> None:
    script = ("id; grep CapEff /proc/self/status; touch /x 2>/dev/null && echo WROTE-ROOT; "
              "touch /tmp/t 2>/dev/null && echo WROTE-TMP; echo $HOME; head -c 1 /proc/timer_list | wc -c; "
              "grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status")
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", script],
                    pod_security_context={"runAsUser": 1000, "supplementalGroups": [3000], "fsGroup": 4000},
                    security_context={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                      "seccompProfile": {"type": "RuntimeDefault"}})
    cid = await runtime.start(spec)
    status = await wait_exited(runtime, cid)
    lines = log_lines(spec.log_path)
    assert status.exit_code == 0, log_lines(spec.log_path, None)
    assert lines[0] == "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra),3000,4000"
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
    assert "WROTE-ROOT" not in lines and "WROTE-TMP" not in lines  # /tmp is the image's, read-only too
    assert lines[2:] == ["/home/app", "0", "NoNewPrivs:\t1", "Seccomp:\t2"]  # /proc/timer_list masked

    # Root with every capability dropped but one: the kernel's view says exactly that.
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "grep CapEff /proc/self/status; chown 1000 /tmp && echo CHOWNED"],
                    log_path=pod_dir / "logs" / "main" / "1.log",
                    security_context={"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})
    cid = await runtime.start(spec)
    await wait_exited(runtime, cid)
    lines = log_lines(spec.log_path)
    assert lines[0].split() == ["CapEff:", f"{1 << 10:016x}"]
    assert "CHOWNED" not in lines

    # privileged: every capability, the host's devices, /proc unmasked.
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "grep CapEff /proc/self/status; test -e /dev/kmsg && echo KMSG; "
                                            "head -c 1 /proc/timer_list | wc -c"],
                    log_path=pod_dir / "logs" / "main" / "2.log", security_context={"privileged": True})
    cid = await runtime.start(spec)
    status = await wait_exited(runtime, cid)
    assert status.exit_code == 0, status.message
    lines = log_lines(spec.log_path)
    assert lines[1:] == ["KMSG", "1"] and int(lines[0].split()[1], 16) >= (1 << 38) - 1, lines


async def test_a_memory_limit_oom_kills_with_reason_oomkilled(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path
) -> None:
    require(runtime.oci_runtime().memory, "the memory cgroup controller is not available")
    # tail keeps the last line in memory, and /dev/zero has no newline: it allocates until killed.
    spec = oci_spec(image, netns, pod_dir, ["tail", "/dev/zero"], resources={"limits": {"memory": "32Mi", "cpu": "500m"}})
    cid = await runtime.start(spec)
    status = await wait_exited(runtime, cid, 60)
    assert (status.exit_code, status.reason) == (137, "OOMKilled")
    # Within the limit: no OOM, and the reason stays the usual one.
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "head -c 1000000 /dev/zero | tail > /dev/null"],
                    log_path=pod_dir / "logs" / "main" / "1.log", resources={"limits": {"memory": "32Mi"}})
    cid = await runtime.start(spec)
    status = await wait_exited(runtime, cid, 60)
    assert (status.exit_code, status.reason) == (0, "Completed")


async def test_a_new_runtime_adopts_running_containers(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "echo up; exec sleep 1000"])
    cid = await runtime.start(spec)
    await wait_log(spec.log_path, "up")
    await runtime.close()  # the agent goes away; the shim and the container stay
    again = Runtime(tmp_path / "state")
    try:
        found = again.list()
        assert found[cid].state == "running"
        code, out, _ = await run_exec(again, cid, ["cat", ociroot.BAKED])
        assert (code, out.strip()) == (0, ociroot.BAKED_TEXT)
        await again.stop(cid, 1)
        assert (await again.status(cid)).exit_code == 137
    finally:
        await again.close()


async def test_containers_of_a_pod_share_its_ipc_and_uts_namespaces(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path
) -> None:
    script = "for n in ipc uts; do readlink /proc/self/ns/$n; done; hostname"
    specs = [oci_spec(image, netns, pod_dir, ["sh", "-c", script], name=f"c{i}",
                      log_path=pod_dir / "logs" / f"c{i}" / "0.log") for i in range(2)]
    other = oci_spec(image, netns, pod_dir, ["sh", "-c", script], pod_uid="another-pod",
                     log_path=pod_dir / "logs" / "other" / "0.log")
    for spec in [*specs, other]:
        assert (await wait_exited(runtime, await runtime.start(spec))).exit_code == 0
    first, second, third = (log_lines(s.log_path) for s in [*specs, other])
    assert first == second and first[2] == "web-0"  # IPC and UTS shared, with the pod's hostname
    assert third[0] != first[0] and third[1] != first[1]
    host_ipc = os.readlink("/proc/self/ns/ipc")
    assert first[0] != host_ipc
    ns_dir = runtime.pod_ns_dir / specs[0].pod_uid
    assert os.stat(ns_dir / "ipc").st_dev != os.stat(ns_dir).st_dev  # kept on a file while the pod lives
    await runtime.remove_pod(specs[0].pod_uid)
    assert not ns_dir.exists()
    assert runtime.pods_with_namespaces() == {"another-pod"}


async def test_stdin_and_a_terminal_reach_the_container(
    runtime: Runtime, image: OCIImage, netns: str, pod_dir: pathlib.Path
) -> None:
    """attach: the shim feeds the container's stdin (a pipe, or runc's terminal) from the FIFO."""
    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "read line; echo got-$line"], stdin=True, stdin_once=True)
    cid = await runtime.start(spec)
    writer = await runtime.attach_stdin(cid)
    assert writer is not None
    await writer.write(b"hello\n")
    await writer.close_stdin()
    writer.close()
    assert (await wait_exited(runtime, cid)).exit_code == 0
    assert log_lines(spec.log_path) == ["got-hello"]

    spec = oci_spec(image, netns, pod_dir, ["sh", "-c", "tty; read line; echo got-$line; stty size"], stdin=True,
                    tty=True, log_path=pod_dir / "logs" / "main" / "1.log")
    cid = await runtime.start(spec)
    writer = await runtime.attach_stdin(cid)
    assert writer is not None
    await writer.resize(120, 50)
    await writer.write(b"typed\r")
    writer.close()
    assert (await wait_exited(runtime, cid)).exit_code == 0
    lines = [line.strip() for line in log_lines(spec.log_path)]
    # The terminal echoes "typed" whenever it arrives: only what the command printed is checked.
    assert any(line.startswith("/dev/pts/") for line in lines) and "got-typed" in lines and "50 120" in lines, lines


def test_exec_with_a_terminal_under_uvloop(image: OCIImage, netns: str, pod_dir: pathlib.Path,
                                           tmp_path: pathlib.Path) -> None:
    """The agent runs on uvloop: a terminal's output must come through there too (it came
    through asyncio's loop but not uvloop's when read with connect_read_pipe)."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> bytes:
        state = tmp_path / "uv-state"
        rt = Runtime(state)
        try:
            cid = await rt.start(oci_spec(image, netns, pod_dir, ["sleep", "100"]))
            proc = await rt.exec(cid, ["sh", "-c", "sleep 0.3; tty; echo hi-$((6*7))"], tty=True, stdin=True)
            out = b""
            while chunk := await proc.read_stdout():
                out += chunk
            assert await proc.wait() == 0
            proc.close()
            return out
        finally:
            await rt.close()
            kill_all(state)

    out = uvloop.run(scenario())
    assert b"/dev/pts/" in out and b"hi-42" in out, out
