"""Runs the cluster's other components as child processes and restarts them if they die.

Each component is its own process (as in Kubernetes), so a crash in one leaves the others
serving; ``kubelite up`` supervises them, restarting with back-off, and stops them in
order on shutdown (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """Called first thing in a component process: the kernel sends SIGTERM when `kubelite up`
    dies, even by SIGKILL, so no component outlives the cluster it belonged to."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

log = logging.getLogger(__name__)


class Child:
    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.name}")

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kubelite", *self.args, stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "KUBELITE_PARENT_PID": str(os.getpid())},
            )
            code = await self.proc.wait()
            if self._stopping:
                return
            log.warning("%s exited with %s; restarting in %.1fs", self.name, code, backoff)
            await asyncio.sleep(backoff)
            backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 10.0)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
