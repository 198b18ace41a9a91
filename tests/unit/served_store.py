"""A SQLite store served over a unix socket, and a RemoteStore on it: an API server
worker's view of `up`'s store, in one process, for the tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kubelite.store import RemoteStore, SqliteStore, StoreServer


@contextlib.asynccontextmanager
async def served_store(directory: Path, **opts: Any) -> AsyncIterator[tuple[SqliteStore, StoreServer, RemoteStore]]:
    """(owner, server, remote); ``opts`` go to the SqliteStore. Everything is closed after,
    whatever the test did to it (closing twice is harmless)."""
    owner = SqliteStore(str(directory / "state.db"), **opts)
    await owner.start()
    server = StoreServer(owner, str(directory / "store.sock"))
    remote = RemoteStore(server.path)
    try:
        await server.start()
        await remote.start()
        yield owner, server, remote
    finally:
        await remote.close()
        await server.close()
        await owner.close()
