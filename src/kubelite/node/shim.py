"""The per-container shim: kubelite's conmon / containerd-shim.

``python -m kubelite.node.shim <spec.json>`` runs one container. It detaches from the agent
(double fork, new session) so that containers outlive agent restarts, then forks the
container process, which

- becomes PID 1 of a new PID namespace (the shim unshares ``CLONE_NEWPID`` for its
  children): when it exits the kernel kills everything it left behind, signals it has no
  handler for are ignored (a plain ``sleep`` ignores SIGTERM and is SIGKILLed after the
  grace period, exactly as in a real container), and ``ps`` shows only the container;
- joins the pod's network namespace, unshares mount, UTS and IPC namespaces, makes every
  mount private, mounts its own ``/proc`` and ``/dev/shm``, bind-mounts the pod's files and
  volumes, sets the hostname, drops to the requested uid/gid, and ``execve``\\ s the command
  with exactly the environment it was given.

An unprivileged container then gets a root of its own, built from the host's program
directories (read-only), the Python installation, the image's paths and the pod's mounts,
and entered with ``pivot_root``; its process keeps containerd's default capabilities under
no_new_privs and the RuntimeDefault seccomp filter (see :mod:`kubelite.node.isolation`).
A ``privileged`` container sees the host's files plus its mounts, as every catalog
container once did: there a mount target missing on the host is created on the host's
filesystem (an empty directory or file that serves as mount point, e.g. ``/data``); the
mount itself stays private to the container.

The shim copies the container's stdout/stderr into the log file in the CRI format the
kubelet reads (``<RFC3339Nano> stdout F <line>``), and records the container's life in
``status.json`` (written atomically): pid once the command is exec'd, then exit code and
finish time. It reads the exit status with ``waitid(WNOWAIT)`` and writes it *before*
reaping, so while ``status.json`` has no exit code the pid cannot have been reused: the
agent may signal it without racing.

``python -m kubelite.node.shim --zygote`` is the fork server the agent starts once: it
reads requests from its stdin (a socket) and forks a shim per container, or an exec helper
per ``kubectl exec``, exec probe or hook, from its already-initialised interpreter (see
:func:`serve_zygote`).

``python -m kubelite.node.shim --exec <container-dir> <error-fd> <tty 0|1> -- argv...`` is
the exec helper: it enters the running container's namespaces (a fresh process is
single-threaded, which ``setns`` into a mount namespace requires), forks into its PID
namespace and execs ``argv`` with the container's environment, reporting a failure to start
on ``error-fd`` (closed on exec, so EOF means started).

Errors that prevent the command from starting are reported as containerd reports them
(exit code 128, reason ``StartError``, runc's message) so ``kubectl describe`` reads as
users know it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any, NoReturn

from kubelite.api.timeutil import format_nano_ns, now_rfc3339
from kubelite.linux import syscalls
from kubelite.node import isolation

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# containerd splits longer lines into partial ("P") records of this size.
MAX_LOG_LINE = 16 * 1024
START_ERROR_EXIT_CODE = 128  # containerd's errorStartExitCode
_CREATE_PREFIX = (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
    "runc create failed: unable to start container process: "
)
# For an OCI image runc's own message already starts with "runc create failed: ...".
OCI_CREATE_PREFIX = "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
EXEC_PREFIX = "OCI runtime exec failed: exec failed: unable to start container process: "


class StartError(Exception):
    """The container (or exec) process could not be started; the message is runc's."""


def _under_tmp(path: str) -> bool:
    real = os.path.realpath(path)
    return real == "/tmp" or real.startswith("/tmp/")


# Linux follows at most 40 symlinks in one lookup (ELOOP) and nests #! interpreters at
# most 4 deep (BINPRM_MAX_RECURSION, counting the program itself).
_MAX_SYMLINKS = 40
_MAX_INTERPRETERS = 4


def _lookup_walk(path: str) -> list[str]:
    """Every path the kernel visits looking ``path`` up: each component as reached, so every
    symlink on the way, the places they point to, and the file itself. The container sees
    ``path`` only if all of them are there; ``realpath`` alone shows the last one only."""
    visited: list[str] = []
    pending = [c for c in path.split("/") if c]
    resolved = "/"  # a prefix already free of symlinks
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        here = os.path.join(resolved, part)
        visited.append(here)
        try:
            target = os.readlink(here)
        except OSError:  # not a symlink (or not there): the lookup goes on from it
            resolved = here
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            break
        if target.startswith("/"):
            resolved = "/"
        pending[:0] = [c for c in target.split("/") if c]
    return visited


def _interpreter(program: str, path_env: str) -> str | None:
    """The interpreter a ``#!`` script names (``/usr/bin/env NAME`` looked up as env does)."""
    try:
        if not stat.S_ISREG(os.stat(program).st_mode):
            return None  # opening a FIFO would wait for a writer
        with open(program, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1 and not words[1].startswith("-"):
        try:
            return look_path(words[1], path_env)
        except StartError:
            return words[0]
    return words[0]


def _install_paths() -> list[str]:
    """Where the Python kubelite runs from lives: kubelite's own images (agnhost, pause, dns,
    the redis and mariadb entrypoints) run this interpreter with this package."""
    package_root = str(Path(__file__).resolve().parents[2])
    return [sys.executable, sys.prefix, sys.exec_prefix, sys.base_prefix, package_root]


def _needs_host_tmp(argv: list[str], env: dict[str, str], install: list[str] | None = None) -> bool:
    """Whether the container's program needs something under the host's /tmp (a virtualenv
    or a checkout there, an image's program directory): a private /tmp would hide it, so the
    container keeps the host's.

    What the exec needs is what the kernel looks up: the program found as the exec finds it
    (through PATH), every symlink on the way to it (a venv's ``bin/python3`` under /tmp is a
    link to an interpreter outside: resolving it first, as this once did, hid the link
    itself), and the same for a script's ``#!`` interpreters; and the Python installation
    in ``install`` (by default this one). The container's environment is not searched
    (a PYTHONPATH under /tmp names the container's own /tmp, as in an image)."""
    paths = _install_paths() if install is None else list(install)
    path_env = env.get("PATH", DEFAULT_PATH)
    program = argv[0] if argv else ""
    for _ in range(_MAX_INTERPRETERS):
        if not program:
            break
        try:
            program = look_path(program, path_env)
        except StartError:
            pass  # the start fails anyway, with runc's message; the name is still worth a look
        if not program.startswith("/"):
            break  # relative to the working directory: the container's own
        paths.append(program)
        program = _interpreter(program, path_env) or ""
    return any(p == "/tmp" or p.startswith("/tmp/") for path in paths for p in _lookup_walk(path))


def _mount_all(mounts: list[tuple[str, str, bool]], private_tmp: bool = True) -> None:
    """The pod's bind mounts, and a private tmpfs at /tmp.

    Each container has its own /tmp, as it would in its image's filesystem: what it writes
    there must not appear on the host or in other containers. Mounting that tmpfs hides
    whatever lies under the host's /tmp, which may hold bind sources (a data dir under /tmp)
    and may be where targets go (a volume at /tmp/cache). So: first the binds that target
    elsewhere; then sources needed under /tmp are bound to a staging place in the
    container's private /dev/shm; then /tmp is mounted; then the staged binds go in.
    """
    if not private_tmp:
        for source, target, read_only in mounts:
            _bind_mount(source, target, read_only)
        return
    later: list[tuple[str, str, bool]] = []
    for source, target, read_only in mounts:
        if _under_tmp(target):
            later.append((source, target, read_only))
        else:
            _bind_mount(source, target, read_only)
    staged: list[tuple[str, str, bool]] = []
    for i, (source, target, read_only) in enumerate(later):
        stage = f"/dev/shm/.kubelite-stage-{i}"
        _bind_mount(source, stage, False)
        staged.append((stage, target, read_only))
    syscalls.mount("tmpfs", "/tmp", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=1777")
    for stage, target, read_only in staged:
        _bind_mount(stage, target, read_only)


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat).

    Stored next to each pid so that a pid reused by an unrelated process after a crash or
    reboot is never mistaken for the container.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return int(data[data.rindex(b")") + 2 :].split()[19])


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically: readers see the old or the new content, never half.

    Not fsync'd: the record must outlive the agent and the shim, which the page cache does;
    a machine crash takes the containers with it (containerd keeps its task state on a
    tmpfs for the same reason), and on a busy disk an fsync would delay every start.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def look_path(name: str, path_env: str) -> str:
    """Resolve argv[0] like Go's exec.LookPath (which runc uses), with runc's error texts."""
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise StartError(f'exec: "{name}": stat {name}: {os.strerror(e.errno or 0).lower()}') from None
        if stat.S_ISDIR(st.st_mode) or not os.access(name, os.X_OK):
            raise StartError(f'exec: "{name}": permission denied')
        return name
    for directory in path_env.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    raise StartError(f'exec: "{name}": executable file not found in $PATH')


def _reset_signals() -> None:
    # Python ignores SIGPIPE/SIGXFSZ and handles SIGINT; ignored dispositions survive execve.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _exec(argv: list[str], env: dict[str, str]) -> NoReturn:
    if not argv:
        raise StartError("args must not be empty")
    exe = look_path(argv[0], env.get("PATH", DEFAULT_PATH))
    try:
        os.execve(exe, argv, env)
    except OSError as e:
        raise StartError(f"exec {exe}: {os.strerror(e.errno or 0).lower()}") from None


def _make_mount_target(target: str, is_dir: bool) -> str:
    real = os.path.realpath(target)
    if not os.path.lexists(real):
        os.makedirs(real if is_dir else os.path.dirname(real), exist_ok=True)
        if not is_dir:
            os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    return real


def _bind_mount(source: str, target: str, read_only: bool) -> None:
    try:
        is_dir = os.path.isdir(source)
        if not os.path.exists(source):
            raise FileNotFoundError(errno.ENOENT, f"stat {source}: no such file or directory")
        real = _make_mount_target(target, is_dir)
        syscalls.mount(source, real, None, syscalls.MS_BIND | syscalls.MS_REC)
        if read_only:
            syscalls.mount(None, real, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
    except OSError as e:
        reason = (
            e.strerror if e.strerror and e.strerror.startswith("stat ") else os.strerror(e.errno or 0).lower()
        )
        raise StartError(
            f'error during container init: error mounting "{source}" to rootfs at "{target}": {reason}'
        ) from None


def _can_search(st: os.stat_result, uid: int, gid: int) -> bool:
    if uid == st.st_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if gid == st.st_gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _blocked_install_dirs(uid: int, gid: int, install: list[str]) -> dict[str, set[str]]:
    """Directories on the way to this Python installation that ``uid`` cannot pass through
    (an interpreter under /root, mode 0700), each with the entries of it that lead there."""
    blocked: dict[str, set[str]] = {}
    for path in install:
        parts = Path(path).parts
        for depth in range(1, len(parts) - 1):
            ancestor = os.path.join(*parts[:depth])
            try:
                st = os.stat(ancestor)
            except OSError:
                break
            if not _can_search(st, uid, gid):
                blocked.setdefault(ancestor, set()).add(parts[depth])
                break
    return blocked


def _reach_install(mounts: list[tuple[str, str, bool]], uid: int | None, gid: int | None) -> list[tuple[str, str, bool]]:
    """Let a container that runs as another user reach the Python that runs kubelite's images.

    A catalog image is a program of this machine, and kubelite's own (agnhost, pause, the
    DNS server) are this interpreter; when it lives where the user cannot go (pyenv under
    /root), ``runAsUser`` would fail with "permission denied". In the container's own mount
    namespace each such directory is covered by an empty tmpfs (mode 0755), and only the
    entries that lead to the installation are bound back in: the user passes through, and
    sees nothing else of it (the rest of /root, with kubeconfigs, stays hidden). Mount
    sources under a covered directory are staged first, as for the private /tmp.
    """
    if not uid:
        return mounts
    blocked = _blocked_install_dirs(uid, gid if gid is not None else uid, _install_paths())
    if not blocked:
        return mounts
    out: list[tuple[str, str, bool]] = []
    for i, (source, target, read_only) in enumerate(mounts):
        if any(source == d or source.startswith(d + "/") for d in blocked):
            stage = f"/dev/shm/.kubelite-install-stage-{i}"
            _bind_mount(source, stage, False)
            source = stage
        out.append((source, target, read_only))
    for directory, entries in blocked.items():
        fds = {e: os.open(os.path.join(directory, e), os.O_PATH | os.O_CLOEXEC) for e in entries}
        syscalls.mount("tmpfs", directory, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=755")
        for entry, fd in fds.items():
            _bind_mount(f"/proc/self/fd/{fd}", os.path.join(directory, entry), True)
            os.close(fd)
    return out


def _confinement(spec: dict[str, Any]) -> isolation.Confinement:
    return isolation.confinement(spec.get("pod_security_context") or {}, spec.get("security_context") or {})


def _host_view(spec: dict[str, Any]) -> None:
    """A privileged container's filesystem: the host's, with its own /proc, /dev/shm and /tmp
    and the pod's mounts (what every catalog container saw before kubelite.node.isolation)."""
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    if os.path.isdir("/dev/shm"):
        syscalls.mount(
            "shm",
            "/dev/shm",
            "tmpfs",
            syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC,
            "mode=1777,size=65536k",
        )
    mounts = _reach_install(spec["mounts"], spec["uid"], spec["gid"])
    _mount_all(mounts, private_tmp=not _needs_host_tmp(spec["argv"], spec["env"]))


def _container_child(spec: dict[str, Any], stdio: tuple[int, int, int], tty: bool, err_w: int,
                     pty_sock: socket.socket | None = None) -> NoReturn:
    """Runs in the forked child (PID 1 of the new PID namespace); never returns.

    ``pty_sock``: the container's terminal is made in its own devpts once its root is built,
    and the master end goes to the shim through this socket (as runc's console socket).
    """
    try:
        os.setsid()
        os.umask(0o022)  # what runc gives every container, whatever the agent's umask
        for target_fd, fd in enumerate(stdio):
            os.dup2(fd, target_fd)
        if tty and pty_sock is None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        _reset_signals()
        try:
            netns = os.open(spec["netns_path"], os.O_RDONLY | os.O_CLOEXEC)
            syscalls.setns(netns, syscalls.CLONE_NEWNET)
            os.close(netns)
        except OSError as e:
            raise StartError(
                f"error during container init: joining network namespace {spec['netns_path']}: {e}"
            ) from None
        syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC)
        # Nothing mounted from here on may propagate back to the host.
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        conf = _confinement(spec)
        if conf.privileged:
            _host_view(spec)
        else:
            isolation.enter_root(spec["container_dir"], [tuple(m) for m in spec["mounts"]], spec["workdir"], conf,
                                 spec.get("image_paths") or (), spec.get("writable_paths") or ())
        if pty_sock is not None:
            master, slave = isolation.open_pty("/dev/pts")
            if spec["uid"] is not None:
                os.fchown(slave, spec["uid"], spec["gid"] if spec["gid"] is not None else -1)
            for target_fd in range(3):
                os.dup2(slave, target_fd)
            os.close(slave)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            socket.send_fds(pty_sock, [b"m"], [master])
            os.close(master)
            pty_sock.close()
        if spec["hostname"]:
            socket.sethostname(spec["hostname"])
        workdir = spec["workdir"] or "/"
        # runc creates a missing working directory rather than failing.
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
        isolation.confine(conf, spec["uid"], spec["gid"], spec.get("groups"))
        _exec(spec["argv"], spec["env"])
    except (StartError, isolation.IsolationError) as e:
        message = str(e)
    except BaseException as e:  # anything here must become a StartError, never a traceback
        message = f"error during container init: {e}"
    try:
        os.write(err_w, message.encode())
    finally:
        os._exit(START_ERROR_EXIT_CODE)


class CriLogWriter:
    """Appends a container's output to its log file in the CRI format, line by line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending[stream] + data
        stamp = format_nano_ns(time.time_ns()).encode()
        records: list[bytes] = []
        while True:
            newline = buf.find(b"\n")
            if newline == -1 or newline > MAX_LOG_LINE:
                if len(buf) < MAX_LOG_LINE:
                    break
                records.append(b"%s %s P %s\n" % (stamp, stream.encode(), buf[:MAX_LOG_LINE]))
                buf = buf[MAX_LOG_LINE:]
                continue
            line = buf[:newline].removesuffix(b"\r")
            records.append(b"%s %s F %s\n" % (stamp, stream.encode(), line))
            buf = buf[newline + 1 :]
        self._pending[stream] = buf
        if records:
            os.write(self._fd, b"".join(records))

    def has_partial(self) -> bool:
        return any(self._pending.values())

    def flush_partial(self) -> None:
        """Write what is pending of an unfinished line as a partial ("P") record now."""
        stamp = format_nano_ns(time.time_ns()).encode()
        records = [b"%s %s P %s\n" % (stamp, stream.encode(), rest) for stream, rest in self._pending.items() if rest]
        self._pending = {stream: b"" for stream in self._pending}
        if records:
            os.write(self._fd, b"".join(records))

    def close_stream(self, stream: str) -> None:
        """At EOF an unterminated last line is a partial record, as containerd writes it
        (its redirectLogs: a line without a newline "should be treated as a partial line"):
        readers then add no newline, so ``echo -n DONE`` logs (and falls back to) "DONE"."""
        rest, self._pending[stream] = self._pending[stream], b""
        if rest:
            stamp = format_nano_ns(time.time_ns()).encode()
            os.write(self._fd, b"%s %s P %s\n" % (stamp, stream.encode(), rest.removesuffix(b"\r")))


# The stdin FIFO carries frames, so that an attach can say more than bytes: ``kind`` (one
# byte), payload length (two bytes, big-endian), payload. A frame is at most PIPE_BUF bytes,
# so that writes of several attach sessions at once never interleave inside a frame.
STDIN_DATA, STDIN_EOF, STDIN_RESIZE = b"D", b"E", b"R"
STDIN_FRAME_HEADER = struct.Struct(">cH")
STDIN_FRAME_MAX = 4096 - STDIN_FRAME_HEADER.size  # payload bytes per frame
# Interactive containers: a partial line (a shell's prompt) reaches the log, and so attach,
# after this long without a newline, as a partial ("P") record.
PARTIAL_FLUSH = 0.05


def stdin_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return STDIN_FRAME_HEADER.pack(kind, len(payload)) + payload


class _StdinPump:
    """Frames from the stdin FIFO into the container's stdin (a pipe, or the terminal).

    Never blocks the shim: bytes the container does not read yet wait in ``pending`` and go
    out when ``target`` is writable. ``stdinOnce``: the first end-of-stdin (an attach session
    that closed its stdin) closes the container's stdin for good, as the kubelet does.
    """

    def __init__(self, fifo: int, target: int, tty: bool, once: bool) -> None:
        self.fifo, self.target, self.tty, self.once = fifo, target, tty, once
        self.pending = b""
        self._frames = b""
        self._eof = False  # an end-of-stdin waits for the pending bytes to go out first
        self.closed = False  # the container's stdin is closed: input is read and dropped

    def readable(self) -> None:
        try:
            data = os.read(self.fifo, 65536)
        except BlockingIOError:
            return
        self._frames += data
        header = STDIN_FRAME_HEADER.size
        while len(self._frames) >= header:
            kind, size = STDIN_FRAME_HEADER.unpack_from(self._frames)
            if len(self._frames) < header + size:
                break
            payload = self._frames[header : header + size]
            self._frames = self._frames[header + size :]
            if kind == STDIN_DATA and not self.closed and not self._eof:
                self.pending += payload
            elif kind == STDIN_EOF and self.once:
                self._eof = True
            elif kind == STDIN_RESIZE and self.tty and len(payload) == 4:
                width, height = struct.unpack(">HH", payload)
                with contextlib.suppress(OSError):
                    fcntl.ioctl(self.target, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        if self._eof and not self.pending:
            self._close()

    def writable(self) -> None:
        try:
            written = os.write(self.target, self.pending)
        except BlockingIOError:
            return
        except OSError:  # EPIPE: nobody reads the container's stdin any more; EIO: terminal gone
            self.pending = b""
            self._close()
            return
        self.pending = self.pending[written:]
        if self._eof and not self.pending:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._eof = False
        if self.tty:
            # A terminal has no half-close: end-of-file is Ctrl-D, as for `kubectl exec -it`.
            with contextlib.suppress(OSError):
                os.write(self.target, b"\x04")
        else:
            os.close(self.target)


def _copy_output(
    outputs: dict[int, str], log: CriLogWriter, stdin: _StdinPump | None, flush_partial: bool
) -> None:
    """Copy the container's output into the log until every output reaches EOF; feed its stdin."""
    sel = selectors.DefaultSelector()
    registered: dict[int, int] = {}

    def update(fd: int) -> None:
        want = selectors.EVENT_READ if fd in outputs else 0
        if stdin is not None and fd == stdin.fifo:
            want |= selectors.EVENT_READ
        if stdin is not None and fd == stdin.target and stdin.pending and not stdin.closed:
            want |= selectors.EVENT_WRITE
        have = registered.get(fd, 0)
        if want == have:
            return
        if not want:
            sel.unregister(fd)
            del registered[fd]
        elif have:
            sel.modify(fd, want)
            registered[fd] = want
        else:
            sel.register(fd, want)
            registered[fd] = want

    for fd in outputs:
        update(fd)
    if stdin is not None:
        update(stdin.fifo)
    while outputs:
        timeout = PARTIAL_FLUSH if flush_partial and log.has_partial() else None
        ready = sel.select(timeout)
        if not ready:
            log.flush_partial()
            continue
        for key, events in ready:
            fd = int(key.fd)
            if stdin is not None and fd == stdin.target and events & selectors.EVENT_WRITE:
                stdin.writable()
            if not events & selectors.EVENT_READ:
                continue
            if stdin is not None and fd == stdin.fifo:
                stdin.readable()
                continue
            if fd not in outputs:
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: the last holder of the pty's slave side is gone
                    raise
                data = b""
            if data:
                log.write(outputs[fd], data)
            else:
                log.close_stream(outputs[fd])
                del outputs[fd]
                update(fd)
                if stdin is None or fd != stdin.target:
                    os.close(fd)
        stdin_target = (stdin.target,) if stdin is not None and not stdin.closed else ()
        for fd in {*outputs, *registered, *stdin_target}:
            update(fd)
    sel.close()


def _exit_code(status: os.waitid_result) -> int:
    if status.si_code == os.CLD_EXITED:
        return status.si_status
    return 128 + status.si_status  # killed by a signal, as shells and containerd report it


def run(spec_path: Path, started_fd: int | None = None, *, detach: bool = True) -> None:
    """Run the container of ``spec_path``; ``started_fd`` is closed once its start is recorded.

    The agent waits for EOF on the other end of ``started_fd`` (a socket) instead of polling
    for ``status.json``: by then the command has been exec'd, or its StartError is written.
    ``detach``: fork once more so that the caller's child exits at once (a shim started
    directly by the agent); a shim forked by the zygote is its child already, and is
    reparented to init when the zygote goes.
    """
    spec = json.loads(spec_path.read_text())
    cdir = Path(spec["container_dir"])
    status_path = cdir / "status.json"

    # The shim lives on in its own session, so that it outlives the agent.
    if detach and os.fork():
        os._exit(0)
    os.setsid()
    os.chdir("/")  # never pin the agent's working directory (or its mount) for the container's life
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    shim_pid = os.getpid()
    (cdir / "shim.pid").write_text(str(shim_pid))

    log = CriLogWriter(Path(spec["log_path"]))
    tty = bool(spec["tty"])
    fifo_fd: int | None = None
    if spec["stdin"]:
        fifo = cdir / "stdin"
        os.mkfifo(fifo, 0o600)
        # Held read-write so that the shim never reads EOF when an attach client leaves:
        # the end of stdin is a frame (see _StdinPump), not the FIFO's EOF.
        fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    stdin: _StdinPump | None = None
    if tty:
        tty_master, slave = os.openpty()
        os.set_blocking(tty_master, False)
        stdio = (slave, slave, slave)
        outputs = {tty_master: "stdout"}
        child_side = [slave]
        if fifo_fd is not None:
            stdin = _StdinPump(fifo_fd, tty_master, True, bool(spec.get("stdin_once")))
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        child_side = [out_w, err_w, devnull]
        stdin_r = devnull
        if fifo_fd is not None:
            stdin_r, stdin_w = os.pipe()
            os.set_blocking(stdin_w, False)
            child_side.append(stdin_r)
            stdin = _StdinPump(fifo_fd, stdin_w, False, bool(spec.get("stdin_once")))
        stdio = (stdin_r, out_w, err_w)
        outputs = {out_r: "stdout", err_r: "stderr"}
    start_error = b""
    create_prefix = _CREATE_PREFIX
    if spec.get("oci"):
        # A real image: runc creates the container (see kubelite.node.runc), the shim stays its parent.
        from kubelite.node import runc

        create_prefix = OCI_CREATE_PREFIX
        pid = 0
        try:
            pid, master = runc.create_and_start(spec["oci"], cdir, stdio, tty)
        except (runc.OCIStartError, OSError) as e:
            start_error = str(e).encode()
            master = None
        for fd in child_side:
            os.close(fd)
        if tty:
            os.close(tty_master)
            outputs = {}
            if master is not None:
                os.set_blocking(master, False)
                outputs = {master: "stdout"}
                if fifo_fd is not None:
                    stdin = _StdinPump(fifo_fd, master, True, bool(spec.get("stdin_once")))
    else:
        start_r, start_w = os.pipe()
        # An unprivileged container's terminal is made in its own devpts (see _container_child).
        own_pty = socket.socketpair() if tty and not _confinement(spec).privileged else None
        syscalls.unshare(syscalls.CLONE_NEWPID)  # applies to the next child: it becomes PID 1
        pid = os.fork()
        if pid == 0:
            os.close(start_r)
            if own_pty is not None:
                own_pty[0].close()
            _container_child(spec, stdio, tty, start_w, own_pty[1] if own_pty else None)
        os.close(start_w)
        for fd in child_side:
            os.close(fd)
        if own_pty is not None:
            own_pty[1].close()
            _, fds, _, _ = socket.recv_fds(own_pty[0], 1, 1)
            own_pty[0].close()
            os.close(tty_master)  # the host's terminal only held the place
            outputs = {}
            if fds:
                tty_master = fds[0]
                os.set_blocking(tty_master, False)
                outputs = {tty_master: "stdout"}
                if fifo_fd is not None:
                    stdin = _StdinPump(fifo_fd, tty_master, True, bool(spec.get("stdin_once")))
        while chunk := os.read(start_r, 65536):
            start_error += chunk
        os.close(start_r)
    if start_error:
        if not spec.get("oci"):
            os.waitpid(pid, 0)
        for fd in outputs:
            os.close(fd)
        write_json_atomic(
            status_path,
            {
                "pid": None,
                "shim_pid": shim_pid,
                "started_at": "",
                "exit_code": START_ERROR_EXIT_CODE,
                "finished_at": now_rfc3339(),
                "reason": "StartError",
                "message": create_prefix + start_error.decode(errors="replace") + ": unknown",
            },
        )
        if started_fd is not None:
            os.close(started_fd)
        return

    status: dict[str, Any] = {
        "pid": pid,
        "pid_start": process_start_time(pid),
        "shim_pid": shim_pid,
        "shim_start": process_start_time(shim_pid),
        "started_at": now_rfc3339(),
        "exit_code": None,
        "finished_at": None,
        "reason": "",
        "message": "",
    }
    write_json_atomic(status_path, status)
    if started_fd is not None:
        os.close(started_fd)

    _copy_output(outputs, log, stdin, flush_partial=tty or stdin is not None)
    result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert result is not None
    code = _exit_code(result)
    reason = "Completed" if code == 0 else "Error"
    if spec.get("oci"):
        from kubelite.node import runc

        if runc.oom_killed(spec["oci"]["id"]):
            reason = "OOMKilled"  # as containerd reports a task its cgroup's OOM killer ended
    status.update(exit_code=code, finished_at=now_rfc3339(), reason=reason)
    write_json_atomic(status_path, status)
    os.waitpid(pid, 0)
    if spec.get("oci"):
        runc.delete(spec["oci"], spec["oci"]["id"])  # its cgroups and runc's state


def exec_in_container(container_dir: Path, err_fd: int, tty: bool, argv: list[str]) -> int:
    """The exec helper: returns the exit code of ``argv`` run inside the container."""
    os.set_inheritable(err_fd, False)
    try:
        spec = json.loads((container_dir / "spec.json").read_text())
        status = json.loads((container_dir / "status.json").read_text())
        pid = status["pid"]
        if status["exit_code"] is not None or pid is None or process_start_time(pid) != status["pid_start"]:
            raise StartError("cannot exec in a stopped container")
        if spec.get("oci"):
            return _runc_exec(spec, pid, err_fd, tty, argv)
        # Open every namespace before entering any: after the mount namespace /proc is the container's.
        order = (
            ("ipc", syscalls.CLONE_NEWIPC),
            ("uts", syscalls.CLONE_NEWUTS),
            ("net", syscalls.CLONE_NEWNET),
            ("pid", syscalls.CLONE_NEWPID),
            ("mnt", syscalls.CLONE_NEWNS),
        )
        fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag) for name, flag in order]
        for fd, flag in fds:
            syscalls.setns(fd, flag)
            os.close(fd)
        os.chdir(spec["workdir"] or "/")
    except (StartError, OSError) as e:
        os.write(err_fd, (EXEC_PREFIX + str(e) + ": unknown").encode())
        return START_ERROR_EXIT_CODE

    child = os.fork()  # the PID namespace applies to children only
    if child == 0:
        try:
            os.setsid()
            if tty:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            _reset_signals()
            isolation.confine(_confinement(spec), spec["uid"], spec["gid"], spec.get("groups"))
            # After the uid change (which clears it): die with the helper, so killing it ends the exec.
            syscalls.set_parent_death_signal(signal.SIGKILL)
            _exec(argv, spec["env"])
        except StartError as e:
            message = str(e)
        except BaseException as e:  # reported to the caller, never a traceback
            message = str(e)
        try:
            os.write(err_fd, (EXEC_PREFIX + message + ": unknown").encode())
        finally:
            os._exit(START_ERROR_EXIT_CODE)
    os.close(err_fd)
    return _wait_forwarding(child)


def _runc_exec(spec: dict[str, Any], pid: int, err_fd: int, tty: bool, argv: list[str]) -> int:
    """``runc exec`` in a container of an OCI image (user, env, caps, cwd from its config.json).

    runc reports a command it cannot find only once it has run (exit code 255, on the
    command's stderr); kubectl expects containerd's start error instead, so the command is
    first looked up as runc will: inside the container's mount namespace, in its PATH.
    """
    from kubelite.node import runc

    if not argv:
        raise StartError("args must not be empty")
    env = spec["env"]
    look_r, look_w = os.pipe()
    checker = os.fork()
    if checker == 0:
        code = 0
        try:
            os.close(look_r)
            mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            syscalls.setns(mnt, syscalls.CLONE_NEWNS)
            os.chdir(spec["workdir"] or "/")
            look_path(argv[0], env.get("PATH", DEFAULT_PATH))
        except StartError as e:
            os.write(look_w, str(e).encode())
            code = 1
        except BaseException:
            code = 0  # cannot tell: let runc try and say
        finally:
            os._exit(code)
    os.close(look_w)
    missing = _read_all(look_r)
    os.waitpid(checker, 0)
    if missing:
        os.write(err_fd, (EXEC_PREFIX + missing.decode(errors="replace") + ": unknown").encode())
        return START_ERROR_EXIT_CODE
    command = runc.exec_argv(spec["oci"], tty, argv)
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if tty:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            _reset_signals()
            syscalls.set_parent_death_signal(signal.SIGKILL)
            os.execv(command[0], command)
        finally:
            os._exit(START_ERROR_EXIT_CODE)
    os.close(err_fd)
    return _wait_forwarding(child)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def _wait_forwarding(child: int) -> int:
    """``child``'s exit code (128 + the signal that killed it, as a shell reports it), passing on
    the signals meant for this helper, so that stopping the exec stops the command."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    _, wait_status = os.waitpid(child, 0)
    return (
        os.waitstatus_to_exitcode(wait_status)
        if os.WIFEXITED(wait_status)
        else 128 + os.WTERMSIG(wait_status)
    )


EXEC_REQUEST = b"exec\0"  # then JSON {"container_dir", "tty", "argv"}; fds: stdin, stdout, stderr, error, status


def _fork_exec_helper(message: bytes, fds: list[int]) -> None:
    """The exec helper (:func:`exec_in_container`), forked instead of started as an interpreter.

    Its stdio are the first three descriptors; it reports start errors on the fourth, and on
    the fifth (a socket) first its pid, so that the agent can kill it, then its exit code.
    """
    pid = os.fork()
    if pid == 0:
        code = START_ERROR_EXIT_CODE
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            request = json.loads(message[len(EXEC_REQUEST) :])
            stdio, err_fd, status_fd = fds[:3], fds[3], fds[4]
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            for fd in stdio:
                if fd > 2:
                    os.close(fd)
            os.write(status_fd, b"%d\n" % os.getpid())
            code = exec_in_container(Path(request["container_dir"]), err_fd, bool(request["tty"]), request["argv"])
            os.write(status_fd, b"%d\n" % code)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)


def serve_zygote(requests: socket.socket) -> int:
    """The fork server: one shim per request, forked from this already-initialised interpreter.

    Starting a shim as a new interpreter costs ~40 ms of CPU and ~6 MiB of private memory;
    forking this process, which has imported the shim's code once, costs about a millisecond
    and shares the interpreter's pages copy-on-write with every shim. Each request is one
    datagram on ``requests`` (a SOCK_SEQPACKET socket from the agent): the spec path, with
    one file descriptor attached whose closing tells the agent the start is recorded (see
    :func:`run`). The zygote stays single-threaded (``fork`` and ``setns`` need that) and
    exits when the agent closes its end.
    """
    # The request socket comes as stdin: move it off fd 0, so that in a forked shim the
    # descriptors 0-2 are what they claim to be whatever is opened or closed later.
    requests = socket.socket(fileno=os.dup(requests.detach()))
    # What a shim of an OCI image's container runs (subprocess, tempfile...), imported once
    # here and shared copy-on-write by every shim instead of imported by each.
    from kubelite.node import runc  # noqa: F401
    isolation.warm()  # /etc's secrets, the capability set and the seccomp program, once for every shim
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)

    def reap(_signum: int, _frame: object) -> None:
        # The shims are the zygote's children while it lives: reap each as it exits.
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass

    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(requests, 65536, 8)
        except InterruptedError:
            continue
        except (ConnectionResetError, OSError) as e:
            if isinstance(e, ConnectionResetError) or e.errno in (errno.ECONNRESET, errno.EPIPE):
                return 0
            raise
        if not message:
            return 0
        for fd in fds:
            os.set_inheritable(fd, False)  # never into the container
        if message.startswith(EXEC_REQUEST):
            _fork_exec_helper(message, fds)
            continue
        spec_path = Path(os.fsdecode(message))
        started_fd = fds[0] if fds else None
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                # The shim waits for its container itself (waitid): no reaping handler here.
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                requests.close()
                log = os.open(spec_path.parent / "shim.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
                os.close(devnull)
                run(spec_path, started_fd, detach=False)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        if started_fd is not None:
            os.close(started_fd)


def main(argv: list[str]) -> int:
    if argv == ["--zygote"]:
        # The agent's end of the request socket is our stdin; die with the agent if EOF is missed.
        syscalls.set_parent_death_signal(signal.SIGKILL)
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        return serve_zygote(socket.socket(fileno=0))
    if argv and argv[0] == "--exec":
        container_dir, err_fd, tty, sep, *command = argv[1:]
        if sep != "--":
            raise SystemExit("usage: shim --exec <container-dir> <error-fd> <tty 0|1> -- argv...")
        return exec_in_container(Path(container_dir), int(err_fd), tty == "1", command)
    if len(argv) != 1:
        raise SystemExit("usage: python -m kubelite.node.shim <spec.json>")
    run(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
