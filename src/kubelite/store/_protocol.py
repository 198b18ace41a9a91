"""What every storage backend promises the API server: etcd's data model, cut to what it uses.

The API server is written against this protocol only, so the embedded SQLite backend and a
real etcd cluster can be swapped behind it. The model is etcd v3's: one global revision
sequence (a Kubernetes ``resourceVersion`` *is* a revision), compare-and-swap on a key's
``mod_revision``, watches that resume from any revision still in history, and compaction
that makes older revisions unreachable (the API server answers those with 410 Gone).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


# Structs the garbage collector does not track (gc=False): the store holds one KeyValue per
# key and one WatchEvent per retained revision, tens of thousands of long-lived objects
# that a full collection would otherwise walk every time (pauses of 50-100 ms at 30,000
# objects, straight into the API's p99). They hold only strings, bytes, ints and each
# other, so they can never be part of a reference cycle. Construction is 20x cheaper
# than a frozen dataclass's, too, and they cross to API server workers as compact
# msgpack arrays (kubelite.store.remote).
class KeyValue(msgspec.Struct, frozen=True, gc=False, array_like=True):
    key: str
    # The object JSON as the API server stored it; it carries no resourceVersion, the
    # revisions below are the truth.
    value: bytes
    create_revision: int
    # For a DELETED event's kv this is the revision of the delete itself.
    mod_revision: int


class WatchEvent(msgspec.Struct, frozen=True, gc=False, array_like=True):
    type: EventType
    # The new value; for DELETED the last value, with mod_revision = the delete's revision.
    kv: KeyValue
    # The value before the change (None for ADDED); the API server needs it to tell a
    # label-selector watch that an object moved out of its selection.
    prev: KeyValue | None


class WatchBatch(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What one step of a watch delivers: the events one commit made under the prefix, and
    the revision the watcher has now seen everything up to (events under other prefixes
    included). An empty batch is a progress notification, as etcd's: nothing of ours
    happened up to ``revision``; it is what makes a watch bookmark's resourceVersion safe."""

    events: builtins.list[WatchEvent]
    revision: int


class StoreError(Exception):
    """Any storage failure; subclasses are the ones the API server maps to a Status."""


class KeyExistsError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap lost: the key's mod_revision is not the one the caller expected."""

    def __init__(self, key: str, current: KeyValue) -> None:
        super().__init__(f"key {key} was modified: its mod_revision is now {current.mod_revision}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    """The revision a watch asked for is older than the compacted history (410 Gone)."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"mvcc: required revision has been compacted (requested {requested}, compacted {compacted})"
        )
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True)
class StoreHealth:
    """What a store can tell of its own state: None where all is well, else the reason."""

    # The store cannot serve (closed; for a worker, its connection to the owner is lost).
    error: str | None = None
    # The last background compaction failed (history and the file grow until one succeeds).
    compaction_error: str | None = None
    # The database file as the OS sees it (bytes; None: the store has no file to tell of),
    # how much of it holds live pages, and its free pages: what compaction freed and
    # incremental vacuum has not yet given back (etcd's db_total_size_in_bytes and
    # db_total_size_in_use_in_bytes; the difference is what a defrag would win there).
    size_bytes: int | None = None
    in_use_bytes: int | None = None
    free_pages: int | None = None


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def revision(self) -> int:
        """The latest committed revision (a fresh store is at 1, like etcd)."""
        ...

    @property
    def compacted_revision(self) -> int:
        """History at and below this revision is gone: watches must start from it or later."""
        ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0
    ) -> tuple[builtins.list[KeyValue], int, bool]:
        """Keys under ``prefix`` sorted, all ``> start_after``; ``limit`` 0 means all.

        Returns (items, the revision the list reflects, whether more items remain).
        """
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KeyValue: ...

    async def update(self, key: str, value: bytes, expected_mod_revision: int = 0) -> KeyValue:
        """``expected_mod_revision`` 0 updates unconditionally."""
        ...

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        """Returns the deleted value with mod_revision = the revision of the delete."""
        ...

    def watch(self, prefix: str, from_revision: int = 0) -> AsyncIterator[WatchEvent]:
        """Events for keys under ``prefix`` with revision > ``from_revision``, in order.

        ``from_revision`` 0 means from the current revision on. The iterator raises
        CompactedError if that revision was compacted, and StoreError when the watcher
        fell so far behind that its events were compacted away ("too slow") or the
        store closed; the caller then ends the watch and the client re-watches.
        """
        ...

    def watch_batches(self, prefix: str, from_revision: int = 0) -> AsyncGenerator[WatchBatch, None]:
        """``watch``, in the batches the events were committed in, so that a watcher can send
        what one commit changed in one write. Between them come empty batches (progress, see
        WatchBatch) while commits under other prefixes go by, about once a second."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def health(self) -> StoreHealth:
        """The store's state, for the API server's health checks."""
        ...
