"""What only the served store does: losing the owner, dropping closed watches, backpressure,
and surviving garbage. (The protocol itself runs on RemoteStore in test_store.py.)"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.store import RemoteStore, SqliteStore, StoreError, StoreServer, open_store
from tests.unit.served_store import served_store


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, StoreServer, RemoteStore]]:
    async with served_store(tmp_path, history_max_events=200, compact_interval=0.05) as stores:
        yield stores


async def test_socket_is_private_and_open_store_speaks_unix(served: tuple[SqliteStore, StoreServer, RemoteStore]) -> None:
    _, server, _ = served
    assert os.stat(server.path).st_mode & 0o777 == 0o600
    other = open_store(f"unix://{server.path}")
    assert isinstance(other, RemoteStore)
    await other.start()
    await other.create("/a", b"1")
    assert (await other.get("/a")) is not None
    await other.close()


async def test_losing_the_owner_fails_every_call_and_sets_lost(
    served: tuple[SqliteStore, StoreServer, RemoteStore],
) -> None:
    _, server, remote = served
    await remote.create("/a", b"1")
    # The owner goes away (its process died): the connection breaks.
    assert remote._conn is not None and remote._conn.transport is not None
    for conn in list(server._tasks):
        conn.cancel()
    await server.close()
    remote._conn.transport.abort()  # what the kernel does to the peer of a dead process
    await asyncio.wait_for(remote.lost.wait(), 5)
    with pytest.raises(StoreError, match="lost"):
        await remote.get("/a")


async def test_a_watch_the_worker_closes_leaves_no_watcher_on_the_owner(
    served: tuple[SqliteStore, StoreServer, RemoteStore],
) -> None:
    owner, _, remote = served
    await remote.create("/w/a", b"1")
    it = remote.watch_batches("/w/", 1)
    assert [ev.kv.key for ev in (await anext(it)).events] == ["/w/a"]
    assert owner._watchers
    await it.aclose()
    for _ in range(500):  # the owner learns of it when the connection closes
        if not owner._watchers:
            break
        await asyncio.sleep(0.01)
    assert not owner._watchers


async def test_a_watch_that_is_not_read_falls_behind_instead_of_filling_memory(
    served: tuple[SqliteStore, StoreServer, RemoteStore],
) -> None:
    owner, _, remote = served
    it = remote.watch_batches("/big/", 0)
    first = asyncio.ensure_future(anext(it))
    await remote.create("/big/0", b"x")
    assert [ev.kv.key for ev in (await asyncio.wait_for(first, 5)).events] == ["/big/0"]
    # Nobody reads while 2,000 events of 64 KiB are written: far more than any buffer on
    # the way holds. The owner stops sending, compacts past the watcher, and ends it.
    value = b"v" * 65536
    for i in range(1, 2001):
        await remote.create(f"/big/{i}", value)
    with pytest.raises(StoreError, match="too slow"):
        async with asyncio.timeout(10):
            async for _ in it:
                pass
    assert owner.compacted_revision > 1000
    assert await remote.count("/big/") == 2001  # writers were never held up


async def test_garbage_on_the_socket_closes_that_connection_only(
    served: tuple[SqliteStore, StoreServer, RemoteStore],
) -> None:
    _, server, remote = served
    loop = asyncio.get_running_loop()
    for junk in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff" + b"x" * 64):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.setblocking(False)
            await loop.sock_connect(s, server.path)
            await loop.sock_sendall(s, junk)
            assert await asyncio.wait_for(loop.sock_recv(s, 100), 5) == b""  # closed on us
    await remote.create("/still", b"serving")
    assert (await remote.get("/still")) is not None


def test_under_uvloop(tmp_path: Path) -> None:
    """The components run on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with served_store(tmp_path) as (_, _, remote):
            it = remote.watch("/u/")
            kv = await remote.create("/u/a", b"1")
            assert (await anext(it)).kv == kv == await remote.get("/u/a")
            await it.aclose()  # type: ignore[attr-defined]

    uvloop.run(scenario())


async def test_health_relays_the_owners_compaction_and_a_lost_connection(
    served: tuple[SqliteStore, StoreServer, RemoteStore],
) -> None:
    owner, server, remote = served
    # All is well, and the file's figures are the owner's own.
    assert await remote.health() == await owner.health()
    assert (await owner.health()).size_bytes

    def broken(revision: int) -> None:
        raise OSError("disk I/O error")

    owner._compact_disk = broken  # type: ignore[method-assign]
    for _ in range(300):
        if owner.last_compaction_error:
            break
        await asyncio.sleep(0.01)
    health = await remote.health()
    assert (health.error, health.compaction_error) == (None, "OSError: disk I/O error")
    assert health.size_bytes == (await owner.health()).size_bytes
    assert remote._conn is not None and remote._conn.transport is not None
    for conn in list(server._tasks):
        conn.cancel()
    await server.close()
    remote._conn.transport.abort()
    await asyncio.wait_for(remote.lost.wait(), 5)
    health = await remote.health()
    assert health.error is not None and health.error.startswith("connection to the store lost")
