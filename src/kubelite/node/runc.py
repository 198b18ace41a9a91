"""Running a container of a real OCI image with an existing OCI runtime: kubelite's containerd-shim-runc-v2.

The shim (:mod:`kubelite.node.shim`) stays the container's parent and owner of its stdio,
as for catalog containers; for an OCI image it hands the container's creation to ``runc``
instead of forking it itself:

- it becomes a *child subreaper* and enters a mount namespace of its own (a slave of the
  host's, so that unmounts on the host, e.g. ``ip netns delete``, still reach it), mounts
  the container's root there (overlay: the image's unpacked root as the shared read-only
  lower layer, ``upper``/``work`` private to the container, in its directory), so the
  mount is nobody else's to see or clean up: it goes away with the shim and the container;
- ``runc run --detach`` (create and start in one runc process) with the container's stdio
  (pipes, or ``--console-socket`` for a tty, whose master end runc sends back). runc exits; the container's
  init is re-parented to the shim (the subreaper), which waits for it exactly as for a
  catalog container (``waitid(WNOWAIT)`` before reaping: the recorded pid is safe to
  signal while no exit is recorded), so exit codes, signals (``Runtime.stop`` signals
  the init pid, as ``runc kill`` does) and tty handling are the same. ``runc run`` in
  the foreground was the alternative: it keeps a ~10 MiB Go process per container alive
  and puts it between the shim and the container's signals;
- at exit it reads the memory cgroup's OOM-kill counter (reason ``OOMKilled``) and
  ``runc delete``\\ s the container, which removes its cgroups and runc's state (kept
  under the agent's state dir, ``--root``, so that a restarted agent finds it).

``exec`` is ``runc exec`` (with ``-t`` for a terminal), which takes the process's user,
environment, capabilities and working directory from the bundle's ``config.json``.

The pod's IPC and UTS namespaces are shared by its OCI containers: kept on files by the
runtime (``Runtime.pod_namespaces``) as the network namespace is, since kubelite's pods have
no pause process to hold them. (Catalog containers keep their own, as before.)

This module is imported by the shim: standard library only (plus kubelite.linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

from kubelite.linux import syscalls

CGROUP_PARENT = "/kubelite"


class OCIStartError(Exception):
    """runc could not create or start the container; the message is runc's."""


@dataclass
class Probe:
    """What the node found at start-up: the runtime to use and what its cgroups can enforce."""

    runtime: str = ""  # path of the runtime binary, "" if none
    name: str = ""  # "runc" or "crun"
    memory: bool = False
    cpu: bool = False
    swap: bool = False  # memory+swap can be limited too (cgroup v1 needs swapaccount=1)
    notes: list[str] = field(default_factory=list)


def _controller_available(name: str, v1_file: str) -> bool:
    if os.path.exists(f"/sys/fs/cgroup/{name}/{v1_file}"):
        return True
    try:  # cgroup v2 (unified): the controller is listed at the root
        return name in pathlib.Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    except OSError:
        return False


def _crun_works(crun: str) -> str:
    """'' if crun runs a trivial container here, else why not (crun 1.8 refuses hybrid cgroups)."""
    with tempfile.TemporaryDirectory(prefix="kubelite-crun-probe-") as tmp:
        config = {
            "ociVersion": "1.0.2-dev",
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "/", "readonly": True},
            "mounts": [],
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]},
        }
        pathlib.Path(tmp, "config.json").write_text(json.dumps(config))
        try:
            done = subprocess.run([crun, "--root", f"{tmp}/state", "run", "--bundle", tmp, "probe"],
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        return "" if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")


def probe(prefer_crun: bool = True) -> Probe:
    """Find the OCI runtime (crun if it works here, else runc) and what cgroups allow."""
    found = Probe()
    crun = shutil.which("crun")
    if prefer_crun and crun:
        why = _crun_works(crun)
        if not why:
            found.runtime, found.name = crun, "crun"
        else:
            found.notes.append(f"crun refuses to run containers here ({why}); using runc")
    if not found.runtime:
        runc = shutil.which("runc")
        if runc:
            found.runtime, found.name = runc, "runc"
        else:
            found.notes.append("no OCI runtime: install runc (Debian: apt-get install runc) to run OCI images")
            return found
    found.memory = _controller_available("memory", "memory.limit_in_bytes")
    found.cpu = _controller_available("cpu", "cpu.cfs_quota_us")
    found.swap = found.memory and (os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
                                   or not os.path.isdir("/sys/fs/cgroup/memory"))
    if not found.memory:
        found.notes.append("the memory cgroup controller is not available: resources.limits.memory is NOT enforced")
    if not found.cpu:
        found.notes.append("the cpu cgroup controller (CFS quota) is not available: resources.limits.cpu is NOT enforced")
    return found


# ---------------------------------------------------------------------- the shim's side


def _runc(oci: dict[str, Any], *args: str) -> list[str]:
    return [oci["runtime"], "--root", oci["root"], *args]


def _runc_error(log: pathlib.Path, fallback: str) -> str:
    """The last error runc logged (``--log-format json``), e.g. ``exec: "x": executable file not found``."""
    message = ""
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal") and entry.get("msg"):
                    message = str(entry["msg"])
    return message or fallback.strip()


def delete(oci: dict[str, Any], container_id: str) -> None:
    """``runc delete --force``: kill what is left, remove the cgroups and runc's state."""
    if not os.path.isdir(os.path.join(oci["root"], container_id)):
        return
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(_runc(oci, "delete", "--force", container_id), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def _console_socket(cdir: pathlib.Path) -> tuple[socket.socket, str]:
    # A unix socket path is at most 107 bytes; a deep data dir gets a short one under /tmp.
    path = str(cdir / "console.sock")
    if len(path) > 100:
        path = os.path.join(tempfile.gettempdir(), f"kubelite-console-{secrets.token_hex(8)}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    return listener, path


def _receive_master(listener: socket.socket) -> int:
    listener.settimeout(10)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(10)
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise OCIStartError("runc sent no terminal")
    return fds[0]


def create_and_start(oci: dict[str, Any], cdir: pathlib.Path, stdio: tuple[int, int, int], tty: bool) -> tuple[int, int | None]:
    """Create and start the container; returns (pid of its init, terminal master or None).

    Runs in the shim, which must stay single-threaded (``unshare``) and is the subreaper
    the container's init ends up under.
    """
    container_id = oci["id"]
    bundle = pathlib.Path(oci["bundle"])
    syscalls.set_child_subreaper()
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    try:
        syscalls.mount("overlay", str(bundle / "rootfs"), "overlay", 0,
                       f"lowerdir={oci['lower']},upperdir={cdir / 'upper'},workdir={cdir / 'work'}")
    except OSError as e:
        raise OCIStartError(f"error mounting the image's root filesystem: {e}") from None
    log = cdir / "runc.log"
    console: tuple[socket.socket, str] | None = _console_socket(cdir) if tty else None
    pid_file = cdir / "init.pid"
    # `run --detach` is create + start in one runc process (each costs a Go start-up and a copy
    # of the runc binary for `runc init`): the container's init is then re-parented to the shim.
    args = ["--log", str(log), "--log-format", "json", "run", "--detach", "--bundle", str(bundle),
            "--pid-file", str(pid_file)]
    if console is not None:
        args += ["--console-socket", console[1]]
    master: int | None = None
    try:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            streams = (devnull, devnull, devnull) if tty else stdio
            created = subprocess.run(_runc(oci, *args, container_id), stdin=streams[0], stdout=streams[1],
                                     stderr=subprocess.PIPE if tty else streams[2], close_fds=True)
        finally:
            os.close(devnull)
        if created.returncode != 0:
            delete(oci, container_id)
            message = _runc_error(log, (created.stderr or b"").decode(errors="replace") or f"{oci['name']} run failed")
            # containerd creates, then starts: its message names the create, which is where this failed.
            raise OCIStartError(message.replace("runc run failed: ", "runc create failed: ", 1))
        if console is not None:
            master = _receive_master(console[0])
        pid = int(pid_file.read_text().strip())
    except BaseException:
        if master is not None:
            os.close(master)
        raise
    finally:
        if console is not None:
            console[0].close()
            with contextlib.suppress(OSError):
                os.unlink(console[1])
    return pid, master


def oom_killed(container_id: str) -> bool:
    """Whether the kernel's OOM killer struck in the container's memory cgroup (v1 or v2)."""
    for path, key in ((f"/sys/fs/cgroup/memory{CGROUP_PARENT}/{container_id}/memory.oom_control", "oom_kill"),
                      (f"/sys/fs/cgroup{CGROUP_PARENT}/{container_id}/memory.events", "oom_kill")):
        with contextlib.suppress(OSError, ValueError):
            for line in pathlib.Path(path).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key and int(value) > 0:
                    return True
    return False


def exec_argv(oci: dict[str, Any], tty: bool, argv: list[str]) -> list[str]:
    return _runc(oci, "exec", *(["-t"] if tty else []), oci["id"], *argv)
