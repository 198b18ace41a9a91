"""Per-object write turns: concurrent read-modify-writes of one object in this process queue up.

kube-apiserver's ``GuaranteedUpdate`` reads the object, applies the change and swaps it in
on etcd's revision; a lost swap is retried at once against the newer object. Without
more, N clients writing one object (a shared ConfigMap, a Lease, a busy status) all read
the same revision and all do the whole decode, patch, validation and managed-fields work,
and only one of them wins per commit: the others redo it, so the work per accepted write
grows with the number of writers (20 merge-patching clients got a fraction of one client's
rate). Queueing the writers of one key makes each attempt read the revision the previous
writer committed, so its swap succeeds the first time. The compare-and-swap stays the
authority: writers in other processes (API server workers) still race and retry.

A turn is held by a task; the same task asking again for the key it holds (an update
whose admission writes the same object) goes on without waiting instead of deadlocking.
Locks exist only while someone holds or waits for them, so a million objects written once
leave no million locks behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator

# The keys whose turn the current task holds (a task's context is its own copy).
_held: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("write_turns_held", default=frozenset())


class WriteTurns:
    """One FIFO lock per key, alive while in use."""

    def __init__(self) -> None:
        # key -> (lock, how many tasks hold or wait for it)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """Keys with a writer holding or waiting for their turn (0 when idle: nothing leaks)."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        held = _held.get()
        if key in held:
            yield
            return
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                token = _held.set(held | {key})
                try:
                    yield
                finally:
                    _held.reset(token)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
