"""kubelite's etcd: a revisioned key-value store behind one protocol, with pluggable backends.

The API server imports only this module. ``open_store`` picks the backend from a URL the
way kube-apiserver's ``--etcd-servers`` / k3s's ``--datastore-endpoint`` do, so that
moving from the embedded SQLite file to a real etcd cluster is a flag, not a code change.
"""

from __future__ import annotations

from typing import Any

from kubelite.store._protocol import (
    CompactedError,
    ConflictError,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
    StoreError,
    StoreHealth,
    WatchBatch,
    WatchEvent,
)
from kubelite.store.remote import RemoteStore, StoreServer
from kubelite.store.sqlite import SqliteStore

__all__ = [
    "CompactedError",
    "ConflictError",
    "EventType",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "RemoteStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreServer",
    "WatchBatch",
    "WatchEvent",
    "open_store",
]


def open_store(url_or_path: str, **opts: Any) -> Store:
    """A store for ``url_or_path``; call ``await store.start()`` before using it.

    * a plain path, or ``sqlite://`` followed by a path (``sqlite:///var/lib/kubelite/state.db``
      is the absolute path ``/var/lib/kubelite/state.db``, as in kine): the embedded SQLite
      backend; ``opts`` are SqliteStore's keyword arguments.
    * ``unix://`` followed by a socket path: the store another process serves there with
      ``StoreServer`` (how API server workers share the `up` process's store).
    * ``etcd://`` / ``http://`` / ``https://`` endpoints: a real etcd v3 cluster (not
      implemented yet; it goes here, behind the same protocol).
    """
    scheme, sep, rest = url_or_path.partition("://")
    if not sep:
        return SqliteStore(url_or_path, **opts)
    if scheme == "sqlite":
        if not rest:
            raise ValueError(f"no database path in {url_or_path!r}")
        return SqliteStore(rest, **opts)
    if scheme == "unix":
        if not rest:
            raise ValueError(f"no socket path in {url_or_path!r}")
        return RemoteStore(rest, **opts)
    if scheme in ("etcd", "http", "https"):
        raise NotImplementedError(f"the etcd backend is not implemented yet: {url_or_path}")
    raise ValueError(f"unsupported store URL {url_or_path!r}: use a path, sqlite://PATH or unix://SOCKET")
