"""kubelite's container runtime: the part of containerd + runc that the kubelet talks to over CRI.

A container is a host process in the pod's network namespace with its own mount, UTS, IPC
and PID namespaces (see :mod:`kubelite.node.shim`). Each one is run by a detached shim,
forked by a long-lived fork server (the "zygote", started once per agent) so that a
container start, and an exec, costs a fork instead of a new interpreter. The agent keeps no state in
memory that matters: everything lives under
``<state_dir>/containers/<id>/`` (``spec.json``, ``status.json``, ``shim.pid``,
``shim.log``, and the ``stdin`` FIFO of containers with ``stdin: true``), and a new
:class:`Runtime` after an agent restart finds every container, running or exited, with
:meth:`Runtime.list`.

A container of a real OCI image (``ContainerSpec.oci``) gets a runtime-spec bundle in its
directory (``bundle/config.json``, built by :mod:`kubelite.node.ocispec`) and its own overlay
``upper``/``work``; its shim has runc create it (:mod:`kubelite.node.runc`) and otherwise
treats it as any container (stdio, logs, status, exits), so everything above works alike.

The trade-off for catalog images: there is no image filesystem, so the "image" is the host's
program directories, read-only in a root of the container's own, plus the pod's mounts (see
:mod:`kubelite.images` and :mod:`kubelite.node.isolation`); and the runtime polls the status file
for exits instead of being notified (a start is notified: the shim closes a socket once the
command runs), which costs a few milliseconds of latency on stop and no long-lived sockets.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import json
import logging
import os
import pathlib
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from kubelite.api.timeutil import now_rfc3339
from kubelite.images.oci import OCIImage
from kubelite.linux import syscalls
from kubelite.node import isolation, ocispec, runc
from kubelite.node.shim import (
    EXEC_REQUEST,
    STDIN_DATA,
    STDIN_EOF,
    STDIN_FRAME_MAX,
    STDIN_RESIZE,
    process_start_time,
    stdin_frame,
    write_json_atomic,
)

log = logging.getLogger(__name__)

ID_PREFIX = "kubelite://"
UNKNOWN_EXIT_CODE = 255  # containerd's exit status for a task whose shim died
_START_TIMEOUT = 30.0
_POLL = 0.02

# The shim runs isolated (-I) and without site (-S): it needs only the standard library and
# kubelite, and skipping site-packages' .pth files cuts its start from ~140 ms to ~40 ms of
# CPU per container.
_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
SHIM_COMMAND = [
    sys.executable, "-I", "-S", "-c",
    f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from kubelite.node.shim import main; sys.exit(main(sys.argv[1:]))",
]



@dataclass
class ContainerSpec:
    """Everything about one container run, already resolved by the agent."""

    pod_uid: str
    name: str
    restart_count: int
    argv: list[str]  # final command + args after Kubernetes' entrypoint/cmd rules
    env: dict[str, str]  # exactly the container's environment: nothing is inherited
    workdir: str
    netns_path: str
    hostname: str
    mounts: list[tuple[str, str, bool]]  # (host source, container target, read_only), mounted in order
    uid: int | None
    gid: int | None
    log_path: pathlib.Path
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False  # the first attach session that ends its stdin closes the container's
    oci: OCIImage | None = None  # a real image: run with runc from its unpacked root (kubelite.node.runc)
    # For OCI images only (catalog containers use uid/gid above): the pod's and the
    # container's securityContext, and the container's resources, mapped by kubelite.node.ocispec.
    pod_security_context: dict[str, Any] = field(default_factory=dict)
    security_context: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    # Supplementary groups (the pod's fsGroup and supplementalGroups, as the kubelet adds them).
    groups: list[int] = field(default_factory=list)
    # Catalog images (kubelite.node.isolation): host paths the image's program needs, shown
    # read-only in the container's root, and directories it writes (private, empty at start).
    image_paths: list[str] = field(default_factory=list)
    writable_paths: list[str] = field(default_factory=list)
    # Catalog images: programs at fixed paths of the real image (agnhost's /agnhost) and the
    # argv that runs each here; ``kubectl exec``, exec probes and hooks name them too.
    image_binaries: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ContainerStatus:
    state: Literal["running", "exited"]
    pid: int | None
    exit_code: int | None
    started_at: str  # RFC 3339, "" if the process never started (StartError)
    finished_at: str | None
    reason: str  # "" while running; "Completed", "Error", "StartError" or "Unknown" once exited
    message: str = ""  # for StartError: containerd's message, for the container's terminated state
    pod_uid: str = ""
    name: str = ""
    restart_count: int = 0
    log_path: str = ""


class ContainerNotFound(Exception):
    pass


class ExecStartError(Exception):
    """The exec'd command could not be started (e.g. not found); the message is containerd's."""


class ExecProcess:
    """A process started by :meth:`Runtime.exec` inside a running container's namespaces.

    Without tty: ``read_stdout()`` and ``read_stderr()`` return chunks of output, ``b""`` at
    EOF; ``write_stdin()`` feeds stdin (only if exec'd with ``stdin=True``) and
    ``close_stdin()`` sends EOF. With tty: the command's stdin, stdout and stderr are one
    pseudo-terminal, so all output comes from ``read_stdout()`` (``read_stderr()`` returns
    ``b""`` at once), ``close_stdin()`` types Ctrl-D, and ``resize()`` sets the window size
    (the command gets SIGWINCH). ``wait()`` returns the exit code (128+N if killed by signal
    N); ``kill()`` SIGKILLs the command (processes it started in the background may stay,
    as with ``kubectl exec``). Call ``close()`` when done to release the terminal.
    """

    def __init__(self, proc: _ExecHelper, tty_master: int | None) -> None:
        self._proc = proc
        self._master = tty_master
        self.tty = tty_master is not None
        self._tty_eof = False

    async def _attach_tty(self) -> None:
        # The terminal's master is read and written directly (non-blocking, woken by the
        # loop's reader/writer callbacks), not through connect_read_pipe: under uvloop, as
        # the agent runs, a pty read pipe delivered nothing at all (`kubectl exec -it` showed
        # no output, for every container).
        assert self._master is not None
        os.set_blocking(self._master, False)

    async def _wait_fd(self, writable: bool) -> None:
        assert self._master is not None
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        fd = self._master
        (loop.add_writer if writable else loop.add_reader)(fd, wake)
        try:
            await ready
        finally:
            (loop.remove_writer if writable else loop.remove_reader)(fd)

    async def _write_tty(self, data: bytes) -> None:
        while data and self._master is not None:
            try:
                data = data[os.write(self._master, data):]
            except BlockingIOError:
                await self._wait_fd(writable=True)

    async def write_stdin(self, data: bytes) -> None:
        if self.tty:
            await self._write_tty(data)
            return
        if self._proc.stdin is None:
            raise RuntimeError("exec was started without stdin")
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.tty:
            await self._write_tty(b"\x04")
        elif self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()

    async def read_stdout(self, n: int = 65536) -> bytes:
        if self.tty:
            while self._master is not None and not self._tty_eof:
                try:
                    return os.read(self._master, n)
                except BlockingIOError:
                    await self._wait_fd(writable=False)
                except OSError:  # EIO: the command and everything holding the terminal are gone
                    self._tty_eof = True
            return b""
        assert self._proc.stdout is not None
        return await self._proc.stdout.read(n)

    async def read_stderr(self, n: int = 65536) -> bytes:
        if self._proc.stderr is None:
            return b""
        return await self._proc.stderr.read(n)

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await self._proc.wait()
        return code if code >= 0 else 128 - code

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def kill(self) -> None:
        # The helper's child (the command) has PR_SET_PDEATHSIG=SIGKILL: it dies with the helper.
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()

    def close(self) -> None:
        """Release the terminal; call once done reading."""
        if self._master is not None:
            with contextlib.suppress(RuntimeError, OSError, ValueError):  # a read cancelled mid-wait
                loop = asyncio.get_running_loop()
                loop.remove_reader(self._master)
                loop.remove_writer(self._master)
            os.close(self._master)
            self._master = None


class _Zygote:
    """The agent's handle on the shims' fork server (``shim --zygote``, see :func:`shim.serve_zygote`).

    Started on first use and restarted if it died; it exits by itself when the agent closes
    its socket or exits. Requests are single datagrams (the spec path, plus the shim's
    start-notification descriptor) so no framing and no reply are needed.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = asyncio.Lock()

    def _alive(self) -> bool:
        return self._proc is not None and self._sock is not None and self._proc.poll() is None

    async def ensure(self) -> socket.socket:
        async with self._lock:
            if not self._alive():
                self._stop()
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    # Started from the event loop's thread on purpose: its parent-death signal
                    # follows the thread that forked it, and worker threads come and go.
                    self._proc = subprocess.Popen(  # noqa: ASYNC220 - once per agent, a few ms
                        [*SHIM_COMMAND, "--zygote"], stdin=theirs.fileno(), stdout=subprocess.DEVNULL,
                        stderr=None, start_new_session=True, close_fds=True,
                    )
                finally:
                    theirs.close()
                ours.setblocking(False)
                self._sock = ours
            assert self._sock is not None
            return self._sock

    async def request(self, message: bytes, *fds: int) -> None:
        for attempt in range(2):
            sock = await self.ensure()
            try:
                while True:
                    try:
                        socket.send_fds(sock, [message], list(fds))
                        return
                    except BlockingIOError:  # a burst filled the socket: wait until it drains
                        writable = asyncio.get_running_loop().create_future()
                        asyncio.get_running_loop().add_writer(sock, writable.set_result, None)
                        try:
                            await writable
                        finally:
                            asyncio.get_running_loop().remove_writer(sock)
            except (BrokenPipeError, ConnectionResetError):
                if attempt:
                    raise
                async with self._lock:
                    self._stop()  # it died: start a new one and send again

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1)  # it exits at EOF of its socket, at once
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    async def close(self) -> None:
        async with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            proc, self._proc = self._proc, None
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


class ContainerStdin:
    """One attach session's writer to a container's stdin FIFO (see :class:`shim._StdinPump`).

    Each frame is written whole or not at all (at most PIPE_BUF bytes, O_NONBLOCK), waiting
    for room when the container reads slowly, so sessions writing at once never mix frames.
    """

    def __init__(self, fd: int, framed: bool) -> None:
        self._fd: int | None = fd
        self._framed = framed

    async def _write(self, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        while self._fd is not None:
            try:
                os.write(self._fd, frame)
                return
            except BlockingIOError:
                room: asyncio.Future[None] = loop.create_future()

                def wake(room: asyncio.Future[None] = room) -> None:
                    if not room.done():
                        room.set_result(None)

                loop.add_writer(self._fd, wake)
                try:
                    await room
                finally:
                    if self._fd is not None:
                        loop.remove_writer(self._fd)

    async def write(self, data: bytes) -> None:
        if not self._framed:
            await self._write(data)
            return
        for i in range(0, len(data), STDIN_FRAME_MAX):
            await self._write(stdin_frame(STDIN_DATA, data[i : i + STDIN_FRAME_MAX]))

    async def close_stdin(self) -> None:
        """This session's stdin has ended: the container's ends too if it has ``stdinOnce``."""
        if self._framed:
            await self._write(stdin_frame(STDIN_EOF))

    async def resize(self, width: int, height: int) -> None:
        if self._framed:
            await self._write(stdin_frame(STDIN_RESIZE, struct.pack(">HH", width & 0xFFFF, height & 0xFFFF)))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _hex(container_id: str) -> str:
    return container_id.removeprefix(ID_PREFIX)


def _alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and process_start_time(pid) == start


def _max_exit_watches() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 100_000 if soft == resource.RLIM_INFINITY else soft // 2


def _read_json(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


class Runtime:
    def __init__(self, state_dir: pathlib.Path) -> None:
        self.containers_dir = pathlib.Path(state_dir) / "containers"
        self.runc_root = pathlib.Path(state_dir) / "runc"  # runc's --root: its state outlives the agent
        self._zygote = _Zygote()
        self._idents: dict[str, dict[str, Any]] = {}
        self._oci: runc.Probe | None = None
        self.pod_ns_dir = pathlib.Path(state_dir) / "podns"  # <pod uid>/{ipc,uts}: see pod_namespaces
        self._pod_ns_lock = asyncio.Lock()
        self._exit_watches: dict[str, tuple[int, Callable[[], None]]] = {}  # container id -> (pidfd, callback)

    def oci_runtime(self) -> runc.Probe:
        """The OCI runtime for real images and what the host's cgroups enforce (probed once)."""
        if self._oci is None:
            self._oci = runc.probe()
            if self._oci.runtime:
                log.info("OCI images run with %s (%s)", self._oci.name, self._oci.runtime)
            for note in self._oci.notes:
                log.warning("%s", note)
        return self._oci

    async def pod_namespaces(self, pod_uid: str) -> dict[str, str]:
        """The pod's IPC and UTS namespaces, shared by its OCI containers: ``{"ipc": path, "uts": path}``.

        As ``ip netns add`` keeps a network namespace, they are bind-mounted onto files
        (``unshare --ipc=FILE --uts=FILE``), made at the pod's first container and kept
        until :meth:`remove_pod`: a restarted container joins the same ones, and so does
        every container after an agent restart. Without util-linux's ``unshare`` each
        container gets its own (``{}``).
        """
        pod_dir = self.pod_ns_dir / pod_uid
        paths = {"ipc": str(pod_dir / "ipc"), "uts": str(pod_dir / "uts")}
        async with self._pod_ns_lock:
            if all(_is_mount(p) for p in paths.values()):
                return paths
            tool = shutil.which("unshare")
            if tool is None:
                return {}
            await asyncio.to_thread(_make_pod_namespaces, tool, pod_dir, paths)
        return paths

    async def remove_pod(self, pod_uid: str) -> None:
        """Release the pod's IPC and UTS namespaces (after its containers are removed)."""
        await asyncio.to_thread(_remove_pod_namespaces, self.pod_ns_dir / pod_uid)

    def pods_with_namespaces(self) -> builtins.set[str]:
        return {d.name for d in self.pod_ns_dir.iterdir()} if self.pod_ns_dir.is_dir() else set()

    async def prepare(self) -> None:
        """Start the shims' fork server now rather than at the first container start, and
        say once which OCI runtime runs real images and which limits this host cannot enforce."""
        await self._zygote.ensure()
        await asyncio.to_thread(self.oci_runtime)

    def container_dir(self, container_id: str) -> pathlib.Path:
        return self.containers_dir / _hex(container_id)

    async def start(self, spec: ContainerSpec) -> str:
        """Start a container; returns once its command is exec'd or has failed to start.

        A command that cannot be started does not raise: its status is exited with reason
        ``StartError`` and exit code 128, which the kubelet reports like containerd does.
        """
        hexid = secrets.token_hex(32)
        cdir = self.containers_dir / hexid
        data = asdict(spec)
        data["log_path"] = str(spec.log_path)
        data["container_dir"] = str(cdir)
        data["stdin_framed"] = True  # the stdin FIFO speaks shim.stdin_frame (older shims: raw bytes)
        spec_path = cdir / "spec.json"
        if spec.oci is not None:
            found = self.oci_runtime()
            if not found.runtime:
                raise RuntimeError("; ".join(found.notes))
            data["oci"] = {"id": hexid, "runtime": found.runtime, "name": found.name, "root": str(self.runc_root),
                           "bundle": str(cdir / "bundle"), "lower": str(spec.oci.rootfs), "image": spec.oci.name}
            config = ocispec.config_for(spec, hexid, found, await self.pod_namespaces(spec.pod_uid))
            await asyncio.to_thread(ocispec.write, cdir, json.dumps(data), config)
        else:
            # The rule the shim confines the process by, checked here so that what it refuses
            # (a Localhost seccomp profile) is the pod's CreateContainerError, as for an image.
            ocispec.process_security(spec.pod_security_context, spec.security_context)
            await asyncio.to_thread(_write_container_dir, cdir, json.dumps(data))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with theirs:
                await self._zygote.request(str(spec_path).encode(), theirs.fileno())
            ours.setblocking(False)
            # The shim closes its end once status.json is written; EOF also if it died first.
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(_START_TIMEOUT):
                    await asyncio.get_running_loop().sock_recv(ours, 1)
        finally:
            ours.close()
        if not (cdir / "status.json").exists():
            log = (cdir / "shim.log").read_text(errors="replace").strip()
            raise RuntimeError(f"container shim failed for {spec.name}: {log or 'no status after start'}")
        return ID_PREFIX + hexid

    async def close(self) -> None:
        """Stop the fork server (running containers and their shims are not affected)."""
        for container_id in list(self._exit_watches):
            self._unwatch(container_id)
        await self._zygote.close()

    def watch_exit(self, container_id: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once the container's shim has exited, when its status is final
        (the shim writes the exit before it exits): a pidfd on the shim, read by the event
        loop, so the pod worker learns of an exit at once rather than at its next periodic
        look, and an idle node does not look every second. Watching again replaces the
        callback. False when there is nothing to watch (exited, or the shim is gone): the
        caller keeps looking periodically."""
        if container_id in self._exit_watches:
            self._exit_watches[container_id] = (self._exit_watches[container_id][0], callback)
            return True
        if len(self._exit_watches) >= _max_exit_watches():
            return False  # one descriptor each: leave the agent half of what it may open
        raw = _read_json(self.container_dir(container_id) / "status.json")
        if raw is None or raw.get("exit_code") is not None or not raw.get("shim_pid"):
            return False
        pid = int(raw["shim_pid"])
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        if process_start_time(pid) != raw.get("shim_start"):  # gone, and its pid reused
            os.close(fd)
            return False
        loop = asyncio.get_running_loop()

        def exited() -> None:
            entry = self._exit_watches.get(container_id)
            self._unwatch(container_id)
            if entry is not None:
                entry[1]()

        loop.add_reader(fd, exited)
        self._exit_watches[container_id] = (fd, callback)
        return True

    def _unwatch(self, container_id: str) -> None:
        entry = self._exit_watches.pop(container_id, None)
        if entry is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(entry[0])
            os.close(entry[0])

    def _ident(self, cdir: pathlib.Path) -> dict[str, Any]:
        # A container's spec never changes: read it once, not at every status poll.
        ident = self._idents.get(cdir.name)
        if ident is None:
            spec = _read_json(cdir / "spec.json") or {}
            ident = {
                "pod_uid": spec.get("pod_uid", ""),
                "name": spec.get("name", ""),
                "restart_count": spec.get("restart_count", 0),
                "log_path": spec.get("log_path", ""),
            }
            if spec:
                self._idents[cdir.name] = ident
        return ident

    def _status(self, cdir: pathlib.Path) -> ContainerStatus:
        raw = _read_json(cdir / "status.json")
        if raw is None:
            self._idents.pop(cdir.name, None)
            raise ContainerNotFound(cdir.name)
        ident = self._ident(cdir)
        if raw["exit_code"] is None:
            if _alive(raw["shim_pid"], raw["shim_start"]) or _alive(raw["pid"], raw["pid_start"]):
                return ContainerStatus("running", raw["pid"], None, raw["started_at"], None, "", "", **ident)
            raw = _record_unknown_exit(cdir, raw)
        return ContainerStatus(
            "exited", raw["pid"], raw["exit_code"], raw["started_at"], raw["finished_at"],
            raw["reason"], raw.get("message", ""), **ident,
        )  # fmt: skip

    async def status(self, container_id: str) -> ContainerStatus:
        return self._status(self.container_dir(container_id))

    def _signal(self, cdir: pathlib.Path, signum: int) -> bool:
        """Signal the container if it still runs. Safe against pid reuse: see the shim's docstring."""
        raw = _read_json(cdir / "status.json")
        if raw is None or raw["exit_code"] is not None or raw["pid"] is None:
            return False
        if process_start_time(raw["pid"]) != raw["pid_start"]:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(raw["pid"], signum)
        return True

    async def _wait_exited(self, cdir: pathlib.Path, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._status(cdir).state == "running":
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL)
        return True

    async def stop(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM, then SIGKILL once ``grace_seconds`` have passed; returns once it has exited."""
        cdir = self.container_dir(container_id)
        if grace_seconds > 0 and self._signal(cdir, signal.SIGTERM):
            if await self._wait_exited(cdir, grace_seconds):
                return
        self._signal(cdir, signal.SIGKILL)
        await self._wait_exited(cdir, 10)

    async def remove(self, container_id: str) -> None:
        """Forget a container, killing it first if it still runs (its log file is kept)."""
        self._unwatch(container_id)
        cdir = self.container_dir(container_id)
        if not cdir.exists():
            return
        if self._status(cdir).state == "running":
            await self.stop(container_id, 0)
        oci = (_read_json(cdir / "spec.json") or {}).get("oci")
        if oci:  # normally deleted by its shim at exit; not if the shim was killed
            await asyncio.to_thread(runc.delete, oci, oci["id"])
        shutil.rmtree(cdir, ignore_errors=True)
        self._idents.pop(cdir.name, None)

    def list(self) -> builtins.dict[str, ContainerStatus]:
        found: dict[str, ContainerStatus] = {}
        if not self.containers_dir.is_dir():
            return found
        for cdir in sorted(self.containers_dir.iterdir()):
            with contextlib.suppress(ContainerNotFound):
                found[ID_PREFIX + cdir.name] = self._status(cdir)
        return found

    def stdin_path(self, container_id: str) -> pathlib.Path | None:
        """The FIFO feeding the stdin of a container started with ``stdin=True`` (for attach)."""
        fifo = self.container_dir(container_id) / "stdin"
        return fifo if fifo.exists() else None

    async def attach_stdin(self, container_id: str) -> ContainerStdin | None:
        """A writer to the stdin of a running container started with ``stdin=True``, else None."""
        cdir = self.container_dir(container_id)
        fifo = self.stdin_path(container_id)
        if fifo is None:
            return None
        try:
            # Non-blocking: a FIFO without a reader (the shim is gone) fails with ENXIO at once.
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        framed = bool((_read_json(cdir / "spec.json") or {}).get("stdin_framed"))
        return ContainerStdin(fd, framed)

    async def exec(
        self, container_id: str, argv: builtins.list[str], *, tty: bool, stdin: bool
    ) -> ExecProcess:
        """Run ``argv`` in a running container's namespaces with its environment and user.

        Raises :class:`ExecStartError` if the command cannot be started (not found, container
        not running), after which there is no process.
        """
        cdir = self.container_dir(container_id)
        if not (cdir / "status.json").exists():
            raise ContainerNotFound(container_id)
        binaries = (_read_json(cdir / "spec.json") or {}).get("image_binaries") or {}
        if argv and argv[0] in binaries:
            argv = [*binaries[argv[0]], *argv[1:]]
        loop = asyncio.get_running_loop()
        # (our end, the helper's end) of each of its stdio; the helper's ends go to the zygote.
        ours: list[int] = []
        theirs: list[int] = []
        master: int | None = None
        status_ours, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err_r, err_w = os.pipe()
        try:
            if tty:
                master, slave = _exec_pty(cdir)
                theirs += [slave, slave, slave]
            else:
                if stdin:
                    stdin_r, stdin_w = os.pipe()
                    ours.append(stdin_w)
                    theirs.append(stdin_r)
                else:
                    theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                for _ in range(2):
                    out_r, out_w = os.pipe()
                    ours.append(out_r)
                    theirs.append(out_w)
            request = EXEC_REQUEST + json.dumps({"container_dir": str(cdir), "tty": tty, "argv": argv}).encode()
            await self._zygote.request(request, *theirs, err_w, status_theirs.fileno())
        except BaseException:
            for fd in {*ours, err_r, *((master,) if master is not None else ())}:
                os.close(fd)
            status_ours.close()
            raise
        finally:
            for fd in {*theirs, err_w}:
                os.close(fd)
            status_theirs.close()
        status_ours.setblocking(False)
        helper = _ExecHelper(status_ours)
        try:
            await helper.started()
            error = await asyncio.to_thread(_read_to_eof, err_r)
        except BaseException:
            helper.kill()
            for fd in ours:
                os.close(fd)
            if master is not None:
                os.close(master)
            raise
        if error:
            await helper.wait()
            for fd in ours:
                os.close(fd)
            if master is not None:
                os.close(master)
            raise ExecStartError(error.decode(errors="replace"))
        if not tty:
            await helper.connect(loop, stdin=ours[0] if stdin else None, stdout=ours[-2], stderr=ours[-1])
        process = ExecProcess(helper, master)
        if tty:
            await process._attach_tty()
        return process


class _ExecHelper:
    """The exec helper forked by the zygote, as much of an ``asyncio.subprocess.Process`` as
    :class:`ExecProcess` uses: its pipes as streams, ``wait()``, ``returncode``, ``kill()``.

    Not the agent's child, so its end is learnt from its status socket (its pid first, its
    exit code last; EOF without a code means it was killed) and it is signalled by pidfd,
    which cannot hit a reused pid.
    """

    def __init__(self, status: socket.socket) -> None:
        self._status = status
        self._buffer = b""
        self._pidfd: int | None = None
        self._done: asyncio.Future[int] | None = None
        self.returncode: int | None = None
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None

    async def _line(self) -> bytes | None:
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            chunk = await loop.sock_recv(self._status, 64)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    async def started(self) -> None:
        line = await self._line()
        if line is None:
            raise ExecStartError("the exec helper exited before it started")
        with contextlib.suppress(OSError):  # already gone: nothing left to kill
            self._pidfd = os.pidfd_open(int(line))

    async def connect(self, loop: asyncio.AbstractEventLoop, *, stdin: int | None, stdout: int, stderr: int) -> None:
        if stdin is not None:
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), os.fdopen(stdin, "wb", buffering=0))
            self.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        self.stdout = await self._reader(loop, stdout)
        self.stderr = await self._reader(loop, stderr)

    @staticmethod
    async def _reader(loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
        return reader

    async def _wait(self) -> int:
        line = await self._line()
        code = int(line) if line else 128 + signal.SIGKILL
        self.returncode = code
        self._status.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return code

    async def wait(self) -> int:
        if self._done is None:
            self._done = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._done)

    def kill(self) -> None:
        if self._pidfd is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


def _record_unknown_exit(cdir: pathlib.Path, raw: dict[str, Any]) -> dict[str, Any]:
    """Shim and container both gone without a recorded exit (killed from outside, a reboot):
    record the exit as containerd does for a task whose shim died, stamped when first noticed.

    The moment of death is unknown, but it is no earlier than the last time the container was
    seen running; the start time, which this once reported, made a container that had run
    for an hour look as if it had died at once (and `kubectl get pods` count its restart from
    then). Written to status.json, so that the stamp stays put on every later look.
    """
    # Read again now that both are known gone: a shim that recorded the exit and ended
    # between the caller's read and its checks keeps its own record.
    again = _read_json(cdir / "status.json") or raw
    if again["exit_code"] is not None:
        return again
    again.update(exit_code=UNKNOWN_EXIT_CODE, finished_at=now_rfc3339(), reason="Unknown",
                 message="the container's shim exited without recording the container's exit")
    with contextlib.suppress(OSError):
        write_json_atomic(cdir / "status.json", again)
    return again


def _is_mount(path: str) -> bool:
    # A namespace file bind-mounted onto path: nsfs, not the empty file under it.
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def _make_pod_namespaces(tool: str, pod_dir: pathlib.Path, paths: dict[str, str]) -> None:
    _remove_pod_namespaces(pod_dir)  # half-made before (a crash): start again
    pod_dir.mkdir(parents=True, mode=0o700)
    for path in paths.values():
        pathlib.Path(path).touch(mode=0o600)
    subprocess.run([tool, f"--ipc={paths['ipc']}", f"--uts={paths['uts']}", "true"], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _remove_pod_namespaces(pod_dir: pathlib.Path) -> None:
    for name in ("ipc", "uts"):
        path = str(pod_dir / name)
        while _is_mount(path):
            try:
                syscalls.umount(path, syscalls.MNT_DETACH)
            except OSError:
                break
    shutil.rmtree(pod_dir, ignore_errors=True)


def _write_container_dir(cdir: pathlib.Path, spec: str) -> None:
    cdir.mkdir(parents=True, mode=0o700)
    (cdir / "spec.json").write_text(spec)
    (cdir / "shim.log").touch(mode=0o600)


def _exec_pty(cdir: pathlib.Path) -> tuple[int, int]:
    """The terminal of ``kubectl exec -t``: made in the container's own devpts when it has one
    (kubelite.node.isolation), where `tty` in the container finds it; else on the host's."""
    if (_read_json(cdir / "spec.json") or {}).get("oci"):
        return os.openpty()  # runc exec -t makes the container's terminal itself
    pid = (_read_json(cdir / "status.json") or {}).get("pid")
    pts = isolation.container_pts(pid) if isinstance(pid, int) else None
    return isolation.open_pty(pts) if pts is not None else os.openpty()


def _read_to_eof(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return data


def kill_all(state_dir: pathlib.Path) -> None:
    """SIGKILL every container and shim recorded under ``state_dir`` (for ``kubelite down``);
    release the pods' IPC and UTS namespaces."""
    pod_ns = pathlib.Path(state_dir) / "podns"
    if pod_ns.is_dir():
        for pod_dir in pod_ns.iterdir():
            _remove_pod_namespaces(pod_dir)
    containers = pathlib.Path(state_dir) / "containers"
    if not containers.is_dir():
        return
    for cdir in containers.iterdir():
        raw = _read_json(cdir / "status.json") or {}
        if raw.get("exit_code") is None and _alive(raw.get("pid"), raw.get("pid_start")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(raw["pid"], signal.SIGKILL)  # PID 1 of its namespace: takes its descendants along
        oci = (_read_json(cdir / "spec.json") or {}).get("oci")
        if oci:
            runc.delete(oci, oci["id"])  # the cgroups and runc's state of an OCI image's container
        try:
            shim_pid = int((cdir / "shim.pid").read_text())
            cmdline = pathlib.Path(f"/proc/{shim_pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"kubelite.node.shim" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim_pid, signal.SIGKILL)
