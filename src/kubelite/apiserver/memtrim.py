"""Giving memory back to the system once a burst is over.

Python hands every object larger than 512 bytes (stored values, JSON bodies, dict tables) and
OpenSSL every connection's buffers to glibc's malloc, which keeps freed memory in its heaps
for reuse instead of returning it: after 20,000 ConfigMaps came and went, or 1,000 watches
closed, the API server's RSS stayed at its peak although the objects were gone. glibc gives
free heap pages back only at ``malloc_trim``. kube-apiserver does not face this (Go's
scavenger returns idle heap to the OS in the background); this is the same for us: a task that
every ``TRIM_INTERVAL`` seconds asks malloc how much it holds free (``mallinfo2``) and, when
at least ``TRIM_THRESHOLD`` more than after the last trim, trims, in a worker thread (ctypes
releases the GIL; a trim of a few hundred MB takes milliseconds).

It also caps malloc's arenas at ``ARENA_MAX``: by default glibc gives each thread that meets
contention an arena of its own (up to 8 per core), and memory freed into one arena is not
reused by the others, so the store's writer thread, its checkpointer and the executor's
threads each kept a high-water mark of their own.

Without glibc (musl, other systems) both are no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from typing import Any

log = logging.getLogger(__name__)

TRIM_INTERVAL = 30.0
TRIM_THRESHOLD = 16 * 1024 * 1024
ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt parameter, glibc's malloc.h


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return None


_libc = _glibc()


def free_held() -> int | None:
    """Bytes malloc holds free in its heaps (None: not glibc)."""
    if _libc is None:
        return None
    info = _libc.mallinfo2()
    return int(info.fordblks)


def trim() -> None:
    """Gives malloc's free heap pages back to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)


def limit_arenas(count: int = ARENA_MAX) -> None:
    if _libc is not None:
        _libc.mallopt(_M_ARENA_MAX, count)


class Trimmer:
    """The background task that trims after frees (see the module docstring)."""

    def __init__(self, interval: float = TRIM_INTERVAL, threshold: int = TRIM_THRESHOLD) -> None:
        self.interval = interval
        self.threshold = threshold
        self.trims = 0
        self._after_last = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if _libc is not None and self._task is None:
            limit_arenas()
            self._task = asyncio.create_task(self._run(), name="malloc trimmer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def check(self) -> bool:
        """Trims if enough was freed since the last trim; whether it did. Runs off the loop."""
        held = free_held()
        if held is None or held - self._after_last < self.threshold:
            self._after_last = min(self._after_last, held or 0)  # what later allocations reused
            return False
        trim()
        self._after_last = free_held() or 0
        self.trims += 1
        log.debug("malloc_trim: %d MB free in malloc's heaps before, %d MB after",
                  held >> 20, self._after_last >> 20)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # never worth ending the server over
                log.exception("malloc trim failed")
