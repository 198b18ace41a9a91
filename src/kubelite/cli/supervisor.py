"""Runs the cluster's other components as child processes and restarts them if they die.

Each component is its own process (as in Kubernetes), so a crash in one leaves the others
serving; ``kubelite up`` supervises them, restarting with back-off, and stops them in
order on shutdown (SIGTERM, then SIGKILL after a grace period).

The first start of each component is a fork of ``up`` made before ``up`` has an event loop
or threads (see ``kubelite.cli.main.fork_components``): it shares ``up``'s imports instead
of loading them again. A restart is a fresh ``python -m kubelite ...``: forking a process
that runs an event loop and threads is not safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pathlib
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """Called first thing in a component process: the kernel sends SIGTERM when `kubelite up`
    dies, even by SIGKILL, so no component outlives the cluster it belonged to."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


log = logging.getLogger(__name__)


def command_line(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "kubelite", *args]


# The kubeconfigs a cluster's components run with, all in its data dir beside the admin's
# ``kubeconfig``: a component is recognised by the directory of its ``--kubeconfig``.
COMPONENT_KUBECONFIGS = frozenset({"kubeconfig", "controller-manager.conf", "scheduler.conf", "kubelet.conf",
                                   "kube-proxy.conf"})


def _command(words: list[str], kubeconfig: object) -> str | None:
    """The component command of a ``kubelite [-v...] COMMAND --kubeconfig FILE ...`` command line
    whose FILE is one of the cluster's kubeconfigs (the cluster of ``kubeconfig``); else None."""
    cluster_dir = os.path.dirname(str(kubeconfig))
    for i, word in enumerate(words[:-2]):
        if words[i + 1] == "--kubeconfig":
            path = words[i + 2]
            if os.path.dirname(path) == cluster_dir and os.path.basename(path) in COMPONENT_KUBECONFIGS:
                return word
    return None


def _cmdline_words(entry: pathlib.Path) -> list[str]:
    # NUL-separated when exec'd, one title string when forked (setproctitle): split both.
    raw = (entry / "cmdline").read_bytes().decode(errors="replace")
    return " ".join(a for a in raw.split("\0") if a).split()


def component_pids(kubeconfig: object, component: str) -> list[int]:
    """The processes running ``component`` ("controllers", "agent", "proxy", "apiserver") for the
    cluster of ``kubeconfig``; the proxy is also found in an agent started ``--with-proxy`` (as
    `up` does)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = _cmdline_words(entry)
        except OSError:
            continue
        if "kubelite" not in " ".join(words):
            continue
        command = _command(words, kubeconfig)
        if command == component or (component == "proxy" and command == "agent" and "--with-proxy" in words):
            pids.append(int(entry.name))
    return pids


def cluster_component_pids(kubeconfig: object) -> list[int]:
    """Every component process of the cluster of ``kubeconfig`` (API server workers,
    controllers, the agent), whatever it runs and with whatever options, forked or exec'd:
    each is ``python -m kubelite [-v...] COMMAND --kubeconfig FILE ...`` with FILE one of the
    cluster's kubeconfigs."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            words = _cmdline_words(entry)
        except OSError:
            continue
        if "-m kubelite " in " ".join(words) + " " and _command(words, kubeconfig) is not None:
            pids.append(int(entry.name))
    return pids


def stop_components(kubeconfig: object, grace: float = 10.0) -> list[int]:
    """Stop what is left of a cluster's components once its `up` is gone (SIGTERM, SIGKILL after
    ``grace``), and return once they have exited; returns their pids.

    When `up` dies they get SIGTERM from the kernel (see :func:`die_with_parent`) and are
    usually gone already, or going: a new `up` must not start its own agent while the old
    one still runs (two kubelets on one node), nor `down` remove namespaces it may still use.
    Each is held by a pidfd from the moment it is found, so a reused pid is never signalled.
    """
    fds: dict[int, int] = {}
    for pid in cluster_component_pids(kubeconfig):
        with contextlib.suppress(OSError):
            fds[pid] = os.pidfd_open(pid)
    try:
        for sig, limit in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(fd, sig)
            pending = set(fds.values())
            deadline = time.monotonic() + limit
            while pending and (left := deadline - time.monotonic()) > 0:
                exited, _, _ = select.select(list(pending), [], [], left)  # a pidfd reads when its process is gone
                pending -= set(exited)
            if not pending:
                break
    finally:
        for fd in fds.values():
            os.close(fd)
    return list(fds)


async def wait_pid(pid: int) -> int:
    """Wait for our child ``pid`` to exit, without a thread (a pidfd becomes readable then);
    its exit code, negative for a signal as in subprocess."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(pid)
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    _, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (it has exited: the pidfd said so)
    return os.waitstatus_to_exitcode(status)


class Child:
    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.pid: int | None = None
        self._forked: int | None = None  # a first instance forked before supervision began
        self._exited: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def fork(self, entry: Callable[[list[str]], int]) -> None:
        """Start the first instance as a fork running ``entry(args)`` (call before any event
        loop or thread exists in this process)."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            code = 1
            try:
                os.setsid()  # see _run(): a terminal's Ctrl-C is for `up`, which stops us in order
                os.environ["KUBELITE_PARENT_PID"] = str(parent)
                with contextlib.suppress(ImportError):
                    import setproctitle

                    # `ps` and the benchmarks tell components apart by their command line.
                    setproctitle.setproctitle(" ".join(command_line(self.args)))
                code = entry(self.args)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self._forked = self.pid = pid

    def start(self) -> None:
        self._exited = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.name}")

    async def _run(self) -> None:
        assert self._exited is not None
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            self._exited.clear()
            try:
                if self._forked is not None:
                    self.pid, self._forked = self._forked, None
                    code = await wait_pid(self.pid)
                else:
                    proc = await asyncio.create_subprocess_exec(
                        *command_line(self.args), stdin=asyncio.subprocess.DEVNULL,
                        env={**os.environ, "KUBELITE_PARENT_PID": str(os.getpid())},
                        # A session of its own: a terminal's Ctrl-C (sent to the whole
                        # foreground group) reaches only `up`, which stops the components in
                        # order instead of each one quitting and being restarted meanwhile.
                        start_new_session=True,
                    )
                    self.pid = proc.pid
                    code = await proc.wait()
            except OSError as e:  # could not start it (out of processes, say): try again
                log.error("cannot start %s: %s", self.name, e)
                code = 1
            self.pid = None
            self._exited.set()
            if self._stopping:
                return
            log.warning("%s exited with %s; restarting in %.1fs", self.name, code, backoff)
            await asyncio.sleep(backoff)
            # Back off only while it keeps failing: a clean exit (stopped by a signal from
            # outside, say) or a failure after a good run is no crash loop.
            crashing = code != 0 and time.monotonic() - started < 60
            backoff = min(backoff * 2, 10.0) if crashing else 0.5

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        pid = self.pid
        if pid is not None and self._exited is not None and not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._exited.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await self._exited.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kill_now(self) -> None:
        """Last resort when `up` fails before or outside supervision: no instance left behind."""
        pid = self._forked
        if pid is not None:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            self._forked = None
