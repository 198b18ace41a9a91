"""kubectl logs / exec / attach / port-forward / cp through the real API server to a node agent.

The API server is the real one (in a thread of this process, with its TLS, authentication
and REST handlers) and kubectl is the real binary, at the newest version (websockets,
SPDY tunnelled in a websocket for port-forward) and at 1.27 (plain SPDY/3.1). The node side
is the real streaming server (kubelite.node.streaming) on a unix socket, fed by a small fake
agent whose "containers" are host processes and hand-written CRI log files: that isolates
these tests from pod sandboxes and namespaces, which the node tests cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import http.server
import json
import os
import pathlib
import pty
import select
import shutil
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from aiohttp import web

from kubelite.apiserver import proxy
from kubelite.apiserver.pki import ensure_pki
from kubelite.apiserver.server import APIServer, ServerConfig
from kubelite.cli.kubeconfig import build as kubeconfig
from kubelite.node.streaming import ContainerRef, StreamingError, make_app
from kubelite.store import open_store
from tests.conftest import require
from tests.integration.cluster import Cluster, Raw, free_port, kubectl_binary

NODE = "stream-node"
# kubectl versions: the default (1.33), 1.32, and 1.27 (the last before websockets: plain SPDY).
VERSIONS = [pytest.param(None, id="kubectl-new"), pytest.param("1.32", id="kubectl-1.32"),
            pytest.param("1.27", id="kubectl-1.27")]
SPDY_ONLY = "1.27"


# ---------------------------------------------------------------------------- the fake node


class FakeExec:
    """kubelite.node.runtime.ExecProcess's interface over a host process (pipes or a pty)."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        self.proc = proc
        self.master = master
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.WriteTransport | None = None

    @classmethod
    async def start(cls, argv: list[str], cwd: str, tty: bool, stdin: bool) -> FakeExec:
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            return cls(proc, None)
        master, slave = os.openpty()
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self = cls(proc, master)
        loop = asyncio.get_running_loop()
        self.reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.reader),  # type: ignore[arg-type]
                                     os.fdopen(os.dup(master), "rb", buffering=0))
        self.writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(os.dup(master), "wb", buffering=0))
        return self

    async def write_stdin(self, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(data)
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.writer is not None:
            self.writer.write(b"\x04")
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    async def read_stdout(self, n: int = 65536) -> bytes:
        if self.reader is not None:
            try:
                return await self.reader.read(n)
            except OSError:
                return b""
        assert self.proc.stdout is not None
        return await self.proc.stdout.read(n)

    async def read_stderr(self, n: int = 65536) -> bytes:
        if self.proc.stderr is None:
            return b""
        return await self.proc.stderr.read(n)

    def resize(self, width: int, height: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await self.proc.wait()
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


@dataclass
class FakeStatus:
    state: str


@dataclass
class FakeContainer:
    log_path: pathlib.Path
    previous_log_path: pathlib.Path | None = None
    running: bool = True


class FakeRuntime:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.containers: dict[str, FakeContainer] = {}

    async def exec(self, container_id: str, argv: list[str], *, tty: bool, stdin: bool) -> FakeExec:
        if not shutil.which(argv[0]):
            raise RuntimeError(f'exec: "{argv[0]}": executable file not found in $PATH')
        return await FakeExec.start(argv, str(self.root), tty, stdin)

    async def status(self, container_id: str) -> FakeStatus:
        return FakeStatus("running" if self.containers[container_id].running else "exited")

    async def attach_stdin(self, container_id: str) -> None:
        return None  # the fake containers have no stdin: attach reads and drops input


class FakeAgent:
    """The agent core's part of the streaming contract, over in-memory "pods"."""

    def __init__(self, root: pathlib.Path) -> None:
        self.runtime = FakeRuntime(root)
        self.pods: dict[tuple[str, str], list[str]] = {}

    def find_container(self, namespace: str, pod: str, container: str) -> ContainerRef:
        if (namespace, pod) not in self.pods:
            raise StreamingError(404, f'pod "{pod}" not found')
        if not container:
            return ContainerRef(None, None, None, "/proc/self/ns/net", "127.0.0.1")
        cid = f"{namespace}/{pod}/{container}"
        c = self.runtime.containers.get(cid)
        if c is None or container not in self.pods[namespace, pod]:
            raise StreamingError(400, f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating')
        return ContainerRef(cid if c.running else None, c.log_path, c.previous_log_path, "/proc/self/ns/net",
                            "127.0.0.1")


# ---------------------------------------------------------------------------- the harness


class Stack:
    """The API server and the fake agent's streaming server, on one event loop in a thread."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.port = free_port()
        self.sock = base / "kubelet.sock"
        self.agent = FakeAgent(base)
        self.cluster = Cluster(name="stream", data_dir=base, port=self.port)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        store = open_store(str(self.base / "state.db"))
        await store.start()
        pki = ensure_pki(self.base / "pki", cluster_name="stream", service_ip="10.96.0.1")
        server = f"https://127.0.0.1:{self.port}"
        (self.base / "kubeconfig").write_text(yaml.safe_dump(kubeconfig("stream", server, pki)))
        api = APIServer(store, pki, ServerConfig(port=self.port, cluster_name="stream"))
        agent_runner = web.AppRunner(make_app(self.agent), handle_signals=False, shutdown_timeout=1.0)
        await agent_runner.setup()
        await web.UnixSite(agent_runner, str(self.sock)).start()
        await api.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await api.stop()
            await agent_runner.cleanup()
            await store.close()

    def kubectl(self, *args: str, version: str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, version=version, **kw)

    def add_pod(self, name: str, containers: list[str], *, running: bool = True, log_lines: int = 0) -> None:
        """A Pod bound to the fake node, its status Running, and a log for each container."""
        raw = Raw(self.cluster)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {"nodeName": NODE, "containers": [{"name": c, "image": "busybox"} for c in containers]}}
        code, body = raw.json("POST", "/api/v1/namespaces/default/pods", pod)
        assert code == 201, body
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body["status"] = {
            "phase": "Running" if running else "Pending", "hostIP": "10.244.0.1", "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}], "startTime": now,
            "containerStatuses": [
                {"name": c, "image": "busybox", "imageID": "", "ready": running, "restartCount": 0,
                 "containerID": f"kubelite://{c}", "started": running,
                 "state": {"running": {"startedAt": now}} if running else {"waiting": {"reason": "ContainerCreating"}}}
                for c in containers
            ],
        }
        code, st = raw.json("PUT", f"/api/v1/namespaces/default/pods/{name}/status", body)
        assert code == 200, st
        self.agent.pods["default", name] = list(containers)
        for c in containers:
            logs = self.base / "logs" / name / c
            logs.mkdir(parents=True, exist_ok=True)
            path = logs / "0.log"
            with path.open("w") as f:
                for i in range(log_lines):
                    f.write(f"2024-01-0{1 + i % 2}T00:00:0{i % 10}.120000000Z stdout F {c} line {i}\n")
            self.agent.runtime.containers[f"default/{name}/{c}"] = FakeContainer(path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require(kubectl_binary() is not None, "kubectl is not installed")
    s = Stack(tmp_path_factory.mktemp("streaming"))
    s.start()
    raw = Raw(s.cluster)
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "annotations": {proxy.SOCKET_ANNOTATION: str(s.sock)}}}
    code, body = raw.json("POST", "/api/v1/nodes", node)
    assert code == 201, body
    try:
        yield s
    finally:
        s.stop()


def need(version: str | None) -> None:
    require(kubectl_binary(version) is not None, f"kubectl {version} is not installed")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def interactive_pod(name: str, node: str, command: list[str], restart: str = "Always", **container: Any) -> dict[str, Any]:
    """A busybox pod with stdin on ``node`` for the attach tests (``container``: stdinOnce, tty)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "automountServiceAccountToken": False, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "stdin": True, **container,
                                     "command": command}]}}


# ---------------------------------------------------------------------------- logs


@pytest.mark.parametrize("version", VERSIONS)
def test_logs_options(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("logs")
    stack.add_pod(name, ["app"], log_lines=6)
    res = stack.kubectl("logs", name, version=version, check=True)
    assert res.stdout == "".join(f"app line {i}\n" for i in range(6))
    res = stack.kubectl("logs", name, "--tail=2", version=version, check=True)
    assert res.stdout == "app line 4\napp line 5\n"
    res = stack.kubectl("logs", name, "--tail=1", "--timestamps", version=version, check=True)
    assert res.stdout == "2024-01-02T00:00:05.12Z app line 5\n"
    res = stack.kubectl("logs", name, "--limit-bytes=12", version=version, check=True)
    assert res.stdout == "app line 0\na"
    # The log's entries are from 2024: none is younger than an hour.
    assert stack.kubectl("logs", name, "--since=1h", version=version, check=True).stdout == ""


@pytest.mark.parametrize("version", VERSIONS)
def test_logs_container_and_previous(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("two")
    stack.add_pod(name, ["app", "side"], log_lines=1)
    assert stack.kubectl("logs", name, "-c", "side", version=version, check=True).stdout == "side line 0\n"
    res = stack.kubectl("logs", name, "-c", "nope", version=version)
    assert res.returncode == 1
    assert f"container nope is not valid for pod {name}" in res.stderr
    res = stack.kubectl("logs", name, "-c", "app", "--previous", version=version)
    assert res.returncode == 1
    assert f'previous terminated container "app" in pod "{name}" not found' in res.stderr
    previous = stack.base / "logs" / name / "app" / "prev.log"
    previous.write_text("2024-01-01T00:00:00Z stderr F before the restart\n")
    stack.agent.runtime.containers[f"default/{name}/app"].previous_log_path = previous
    res = stack.kubectl("logs", name, "-c", "app", "--previous", version=version, check=True)
    assert res.stdout == "before the restart\n"


def test_logs_errors(stack: Stack) -> None:
    res = stack.kubectl("logs", "nosuchpod")
    assert res.returncode == 1
    assert 'pods "nosuchpod" not found' in res.stderr
    name = unique("waiting")
    stack.add_pod(name, ["app"])
    del stack.agent.pods["default", name]  # bound to the node, unknown to its agent yet
    res = stack.kubectl("logs", name)
    assert res.returncode == 1
    assert f'Error from server (NotFound): pod "{name}" not found' in res.stderr or f'pod "{name}" not found' in res.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_logs_follow(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("follow")
    stack.add_pod(name, ["app"], log_lines=1)
    binary = kubectl_binary(version)
    assert binary
    proc = subprocess.Popen([binary, "logs", "-f", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"app line 0\n"
        container = stack.agent.runtime.containers[f"default/{name}/app"]
        with container.log_path.open("a") as f:
            f.write("2024-01-03T00:00:00Z stdout P partial \n2024-01-03T00:00:00Z stdout F then whole\n")
        assert proc.stdout.readline() == b"partial then whole\n"
        container.running = False  # the container stops: -f ends
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- exec


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_output_and_exit_code(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("exec")
    stack.add_pod(name, ["app"])
    res = stack.kubectl("exec", name, "--", "sh", "-c", "echo out; echo err >&2", version=version, check=True)
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"
    res = stack.kubectl("exec", "-v=4", name, "--", "true", version=version, check=True)
    # kubectl falls back to SPDY silently: make sure the websocket was what worked.
    assert ("The subprotocol is v5.channel.k8s.io" in res.stderr) == (version != SPDY_ONLY), res.stderr
    res = stack.kubectl("exec", name, "--", "sh", "-c", "exit 3", version=version)
    assert res.returncode == 3, res.stderr
    assert "command terminated with exit code 3" in res.stderr
    res = stack.kubectl("exec", "-i", name, "--", "sh", "-c", "tr a-z A-Z; echo done", input="hello\n",
                        version=version, check=True)
    assert res.stdout == "HELLO\ndone\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_errors(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("exec-err")
    stack.add_pod(name, ["app"])
    res = stack.kubectl("exec", name, "-c", "nope", "--", "true", version=version)
    assert res.returncode == 1
    assert f"container nope is not valid for pod {name}" in res.stderr
    res = stack.kubectl("exec", name, "--", "no-such-command", version=version)
    assert res.returncode == 1
    assert 'exec: "no-such-command": executable file not found in $PATH' in res.stderr
    stack.agent.runtime.containers[f"default/{name}/app"].running = False
    res = stack.kubectl("exec", name, "--", "true", version=version)
    assert res.returncode == 1
    assert 'container not found ("app")' in res.stderr
    res = stack.kubectl("exec", "nosuchpod", "--", "true", version=version)
    assert res.returncode == 1
    assert 'pods "nosuchpod" not found' in res.stderr


def _run_in_pty(argv: list[str], env: dict[str, str], script: list[tuple[bytes, bytes]], timeout: float = 20) -> bytes:
    """Run ``argv`` on a terminal; for each (wait_for, then_type) pair, wait for the text and type."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    # kubectl sends its terminal's size to the container's terminal (the resize channel).
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    try:
        for wait_for, send in script:
            while wait_for not in out:
                assert time.monotonic() < deadline, out
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    try:
                        out += os.read(fd, 4096)
                    except OSError:
                        break
            os.write(fd, send)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, out
        return out
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_interactive_tty(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("tty")
    stack.add_pod(name, ["app"])
    binary = kubectl_binary(version)
    assert binary
    env = {**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig), "TERM": "xterm"}
    out = _run_in_pty(
        [binary, "exec", "-it", name, "--", "busybox", "sh"], env,
        [(b"# ", b"tty; stty size; echo $((6*7))\r"), (b"42", b"exit\r")],
    )
    assert b"/dev/pts/" in out
    assert b"33 101" in out
    assert b"42" in out


@pytest.mark.parametrize("version", VERSIONS)
def test_attach_follows_output(stack: Stack, version: str | None) -> None:
    need(version)
    name = unique("attach")
    stack.add_pod(name, ["app"], log_lines=1)
    binary = kubectl_binary(version)
    assert binary
    proc = subprocess.Popen([binary, "attach", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)})
    container = stack.agent.runtime.containers[f"default/{name}/app"]
    try:
        time.sleep(1.5)  # attached: what was written before is not replayed
        with container.log_path.open("a") as f:
            f.write("2024-01-03T00:00:00Z stdout F new output\n2024-01-03T00:00:00Z stderr F new error\n")
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"new output\n"
        container.running = False
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert b"new error" in err
        assert b"line 0" not in out
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- cp


@pytest.mark.parametrize("version", VERSIONS)
def test_cp_both_ways(stack: Stack, version: str | None, tmp_path: pathlib.Path) -> None:
    need(version)
    name = unique("cp")
    stack.add_pod(name, ["app"])
    payload = os.urandom(300_000).hex()  # 600 kB: many frames/messages each way
    local = tmp_path / "up.txt"
    local.write_text(payload)
    remote_dir = stack.base / unique("remote")
    remote_dir.mkdir()
    # The fake runs the pod's commands on the host, so the pod's /x is the host's /x.
    stack.kubectl("cp", str(local), f"{name}:{remote_dir}/in.txt", version=version, check=True)
    assert (remote_dir / "in.txt").read_text() == payload
    back = tmp_path / "down.txt"
    stack.kubectl("cp", f"{name}:{remote_dir}/in.txt", str(back), version=version, check=True)
    assert back.read_text() == payload


# ---------------------------------------------------------------------------- port-forward


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from the pod: {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pod_http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def _http_get(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


@pytest.mark.parametrize("version", VERSIONS)
def test_port_forward(stack: Stack, version: str | None, pod_http_port: int) -> None:
    need(version)
    name = unique("pf")
    stack.add_pod(name, ["app"])
    binary = kubectl_binary(version)
    assert binary
    local = free_port()
    dead = free_port()  # nothing listens there in the "pod"
    proc = subprocess.Popen(
        [binary, "port-forward", "-v=4", f"pod/{name}", f"{local}:{pod_http_port}", f"{free_port()}:{dead}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f"Forwarding from 127.0.0.1:{local} -> {pod_http_port}" in line, line
        for i in range(3):  # several connections over one session
            reply = _http_get(local, f"/try{i}")
            assert reply.startswith("HTTP/1.0 200"), reply
            assert reply.endswith(f"hello from the pod: /try{i}")
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        # SPDY tunnelled in a websocket since 1.31, not the silent fallback to plain SPDY.
        assert ("negotiated protocol: portforward.k8s.io" in err.decode()) == (version != SPDY_ONLY), err
    finally:
        proc.kill()
        proc.wait(10)


def test_port_forward_refused(stack: Stack) -> None:
    name = unique("pf-refused")
    stack.add_pod(name, ["app"])
    binary = kubectl_binary()
    assert binary
    local, dead = free_port(), free_port()
    proc = subprocess.Popen([binary, "port-forward", f"pod/{name}", f"{local}:{dead}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)})
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
            s.settimeout(10)
            assert s.recv(100) == b""  # the connection is closed, nothing forwarded
        _, err = proc.communicate(timeout=15)
        assert f"error forwarding port {dead}" in err.decode()
        assert "connection refused" in err.decode()
    finally:
        proc.kill()
        proc.wait()


def test_exec_needs_an_upgrade(stack: Stack) -> None:
    name = unique("plain")
    stack.add_pod(name, ["app"])
    raw = Raw(stack.cluster)
    code, body = raw.request("POST", f"/api/v1/namespaces/default/pods/{name}/exec?command=true&stdout=true")
    assert (code, body["reason"], body["message"]) == (400, "BadRequest", "Upgrade request required")
    code, body = raw.request("POST", f"/api/v1/namespaces/default/pods/{name}/exec?command=true")
    assert (code, body["message"]) == (400, "you must specify at least 1 of stdin, stdout, stderr")


if __name__ == "__main__":  # pragma: no cover - handy for poking at the stack by hand
    sys.exit(pytest.main([__file__, "-q"]))


# ---------------------------------------------------------------------------- with the real agent


AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"


@dataclass
class RealNode:
    stack: Stack
    name: str
    proc: subprocess.Popen[bytes]

    def wait_running(self, pod: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.stack.kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}")
            if res.stdout == "Running":
                return
            assert self.proc.poll() is None, "the agent exited"
            time.sleep(0.2)
        raise AssertionError(f"pod {pod} not Running: {self.stack.kubectl('get', 'pod', pod, '-o', 'yaml').stdout}")


@pytest.fixture(scope="module")
def real_node(stack: Stack) -> Iterator[RealNode]:
    """The real agent (its own process, netns prefix and node) registered with the stack's API server."""
    from tests.e2e.conftest import netns_names, require_root_netns

    require_root_netns()
    require(shutil.which("busybox") is not None, "busybox is not installed")
    from kubelite.node.network import cleanup_cluster
    from kubelite.node.runtime import kill_all

    cluster = f"klst-{uuid.uuid4().hex[:6]}"
    state = stack.base / "real-agent"
    state.mkdir()
    log = open(stack.base / "real-agent.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelite.node", "-v", "--kubeconfig", str(stack.cluster.kubeconfig),
         "--cluster-name", cluster, "--node-name", f"{cluster}-node", "--state-dir", str(state)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    node = RealNode(stack, f"{cluster}-node", proc)
    try:
        web = {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}
        shell = {"name": "shell", "image": "busybox",
                 "command": ["sh", "-c", "echo started; while true; do sleep 1; done"]}
        for name, c in (("real-web", web), ("real-shell", shell)):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                   # No controllers run here (no default ServiceAccount): no token to mount.
                   "spec": {"nodeName": node.name, "containers": [c], "terminationGracePeriodSeconds": 1,
                            "automountServiceAccountToken": False}}
            stack.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod), check=True)
        node.wait_running("real-web")
        node.wait_running("real-shell")
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        kill_all(state)
        cleanup_cluster(cluster)
        assert not [ns for ns in netns_names() if ns.startswith(cluster)]


@pytest.mark.parametrize("version", VERSIONS)
def test_real_agent_logs_and_exec(real_node: RealNode, version: str | None) -> None:
    need(version)
    k = real_node.stack.kubectl
    assert k("logs", "real-shell", version=version, check=True).stdout == "started\n"
    assert k("logs", "real-shell", "--timestamps", version=version, check=True).stdout.endswith("Z started\n")
    res = k("exec", "real-shell", "--", "sh", "-c", "hostname; echo oops >&2; exit 7", version=version)
    assert (res.returncode, res.stdout, res.stderr.splitlines()[0]) == (7, "real-shell\n", "oops"), res.stderr
    res = k("exec", "-i", "real-shell", "--", "sh", "-c", "wc -c", input="12345", version=version, check=True)
    assert res.stdout.strip() == "5"


@pytest.mark.parametrize("version", VERSIONS)
def test_real_agent_cp_and_port_forward(real_node: RealNode, version: str | None, tmp_path: pathlib.Path) -> None:
    need(version)
    k = real_node.stack.kubectl
    local = tmp_path / "f.bin"
    payload = os.urandom(200_000)
    local.write_bytes(payload)
    k("cp", str(local), "real-shell:/tmp/f.bin", version=version, check=True)
    k("cp", "real-shell:/tmp/f.bin", str(tmp_path / "back.bin"), version=version, check=True)
    assert (tmp_path / "back.bin").read_bytes() == payload
    binary = kubectl_binary(version)
    assert binary
    port = free_port()
    proc = subprocess.Popen([binary, "port-forward", "pod/real-web", f"{port}:8080"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "KUBECONFIG": str(real_node.stack.cluster.kubeconfig)})
    try:
        assert proc.stdout is not None
        assert b"Forwarding from" in proc.stdout.readline()
        reply = _http_get(port, "/hostname")
        assert reply.split("\r\n")[0].endswith(" 200 OK") and reply.endswith("\r\n\r\nreal-web"), reply
    finally:
        proc.terminate()
        proc.wait(10)


def _overrides(node: RealNode, **spec: Any) -> str:
    # No scheduler and no default ServiceAccount here: bind to the real node, mount no token.
    return json.dumps({"apiVersion": "v1", "spec": {"nodeName": node.name, "automountServiceAccountToken": False,
                                                    "terminationGracePeriodSeconds": 1, **spec}})


@pytest.mark.parametrize("version", VERSIONS)
def test_real_agent_run_with_stdin(real_node: RealNode, version: str | None) -> None:
    """`kubectl run -i --rm`: stdin reaches the container, its end (stdinOnce) ends `cat`, the pod goes."""
    need(version)
    name = unique("run-i")
    res = real_node.stack.kubectl(
        "run", name, "-i", "--rm", "--restart=Never", "--image=busybox", f"--overrides={_overrides(real_node)}",
        "--", "sh", "-c", "cat; echo done", input="hello\nworld\n", version=version, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "hello\nworld\ndone\n" in res.stdout, (res.stdout, res.stderr)
    assert f'pod "{name}" deleted' in res.stdout + res.stderr
    gone = real_node.stack.kubectl("get", "pod", name)
    assert "NotFound" in gone.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_real_agent_attach_stdin_stays_open(real_node: RealNode, version: str | None) -> None:
    """Without stdinOnce, an attach session's end leaves the container's stdin open for the next."""
    need(version)
    name = unique("attach-i")
    pod = interactive_pod(name, real_node.name, ["sh", "-c", "while read line; do echo got $line; done; echo eof"])
    k = real_node.stack.kubectl
    k("apply", "-f", "-", input=yaml.safe_dump(pod), check=True)
    try:
        real_node.wait_running(name)
        binary = kubectl_binary(version)
        assert binary
        env = {**os.environ, "KUBECONFIG": str(real_node.stack.cluster.kubeconfig)}
        for word in ("one", "two"):
            proc = subprocess.Popen([binary, "attach", "-i", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env)
            try:
                assert proc.stdin is not None and proc.stdout is not None
                time.sleep(1.0)  # attached (what is written before attaching is not replayed)
                proc.stdin.write(f"{word}\n".encode())
                proc.stdin.flush()
                deadline = time.monotonic() + 20
                line = b""
                while time.monotonic() < deadline and not line.startswith(b"got"):
                    ready, _, _ = select.select([proc.stdout], [], [], 1)
                    if ready:
                        line = proc.stdout.readline()
                assert line == f"got {word}\n".encode()
            finally:
                proc.kill()
                proc.wait()
        assert k("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout == "Running"
        assert "eof" not in k("logs", name).stdout
    finally:
        k("delete", "pod", name, "--wait=false")


@pytest.mark.parametrize("version", VERSIONS)
def test_real_agent_attach_tty(real_node: RealNode, version: str | None) -> None:
    """`kubectl attach -it` to a shell on a terminal: its prompt (a partial line), typed input, resize."""
    need(version)
    name = unique("attach-t")
    pod = interactive_pod(name, real_node.name, ["sh"], tty=True)
    k = real_node.stack.kubectl
    k("apply", "-f", "-", input=yaml.safe_dump(pod), check=True)
    try:
        real_node.wait_running(name)
        binary = kubectl_binary(version)
        assert binary
        env = {**os.environ, "KUBECONFIG": str(real_node.stack.cluster.kubeconfig), "TERM": "xterm"}
        # kubectl attach shows no prompt until something is typed ("If you don't see a command
        # prompt, try pressing enter."): press enter, then the shell's prompt must come alone.
        out = _run_in_pty(
            [binary, "attach", "-it", name], env,
            [(b"pressing enter", b"\r"), (b"# ", b"stty size; echo $((6*7))\r"), (b"42", b"exit\r")],
            timeout=30,
        )
        assert b"33 101" in out
        assert b"42" in out
    finally:
        k("delete", "pod", name, "--wait=false")


@pytest.mark.parametrize("version", VERSIONS)
def test_real_agent_stdin_once_ends_when_the_client_goes(real_node: RealNode, version: str | None) -> None:
    """stdinOnce: a session that ends without closing its stdin (kubectl killed) still ends the container's."""
    need(version)
    name = unique("once")
    pod = interactive_pod(name, real_node.name, ["sh", "-c", "cat; echo stdin-closed"], restart="Never",
                          stdinOnce=True)
    k = real_node.stack.kubectl
    k("apply", "-f", "-", input=yaml.safe_dump(pod), check=True)
    try:
        real_node.wait_running(name)
        binary = kubectl_binary(version)
        assert binary
        proc = subprocess.Popen([binary, "attach", "-i", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env={**os.environ, "KUBECONFIG": str(real_node.stack.cluster.kubeconfig)})
        try:
            assert proc.stdin is not None and proc.stdout is not None
            time.sleep(1.0)
            proc.stdin.write(b"typed\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"typed\n"
        finally:
            proc.kill()  # no end-of-stdin is sent: the connection just goes
            proc.wait()
        deadline = time.monotonic() + 20
        while k("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout != "Succeeded":
            assert time.monotonic() < deadline, k("get", "pod", name, "-o", "yaml").stdout
            time.sleep(0.2)
        assert k("logs", name).stdout == "typed\nstdin-closed\n"
    finally:
        k("delete", "pod", name, "--wait=false")
