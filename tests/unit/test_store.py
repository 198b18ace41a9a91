"""The store protocol, on the SQLite store and on it served over a socket (RemoteStore):
CRUD, CAS, paging, watch, compaction; and the SQLite store's own persistence and crashes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest

from kubelite.store import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    SqliteStore,
    Store,
    StoreError,
    WatchEvent,
    open_store,
)
from tests.unit.served_store import served_store


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.db"))
    await s.start()
    yield s
    await s.close()


@pytest.fixture(params=["sqlite", "remote"])
async def store(request: pytest.FixtureRequest, sqlite_store: SqliteStore, tmp_path: Path) -> AsyncIterator[Store]:
    # The remote case serves a store of its own: the SQLite one above then idles.
    """Every protocol test runs on the SQLite store itself and on it served to a RemoteStore."""
    if request.param == "sqlite":
        yield sqlite_store
        return
    (tmp_path / "served").mkdir()
    async with served_store(tmp_path / "served") as (_, _, remote):
        yield remote


async def reopen(path: Path, **opts: object) -> SqliteStore:
    s = SqliteStore(str(path), **opts)  # type: ignore[arg-type]
    await s.start()
    return s


async def take(it: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    async with asyncio.timeout(5):
        return [await anext(it) for _ in range(n)]


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Polls a condition that background work (compaction, a watcher) will make true."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def test_crud(store: Store) -> None:
    assert store.revision == 1
    assert await store.get("/registry/pods/default/a") is None

    created = await store.create("/registry/pods/default/a", b'{"v":1}')
    assert created == KeyValue("/registry/pods/default/a", b'{"v":1}', 2, 2)
    assert store.revision == 2
    assert await store.get("/registry/pods/default/a") == created
    with pytest.raises(KeyExistsError) as exists:
        await store.create("/registry/pods/default/a", b"{}")
    assert exists.value.key == "/registry/pods/default/a"

    updated = await store.update("/registry/pods/default/a", b'{"v":2}')
    assert updated == KeyValue("/registry/pods/default/a", b'{"v":2}', 2, 3)
    assert await store.get("/registry/pods/default/a") == updated

    deleted = await store.delete("/registry/pods/default/a")
    # The deleted value, stamped with the revision of the delete.
    assert deleted == KeyValue("/registry/pods/default/a", b'{"v":2}', 2, 4)
    assert await store.get("/registry/pods/default/a") is None
    assert store.revision == 4

    with pytest.raises(KeyNotFoundError):
        await store.update("/registry/pods/default/a", b"{}")
    with pytest.raises(KeyNotFoundError):
        await store.delete("/registry/pods/default/a")
    # A failed write consumes no revision.
    assert store.revision == 4
    recreated = await store.create("/registry/pods/default/a", b'{"v":3}')
    assert recreated.create_revision == recreated.mod_revision == 5


async def test_compare_and_swap(store: Store) -> None:
    kv = await store.create("/k", b"1")
    newer = await store.update("/k", b"2", expected_mod_revision=kv.mod_revision)

    with pytest.raises(ConflictError) as conflict:
        await store.update("/k", b"3", expected_mod_revision=kv.mod_revision)
    assert conflict.value.key == "/k"
    assert conflict.value.current == newer
    with pytest.raises(ConflictError):
        await store.delete("/k", expected_mod_revision=kv.mod_revision)
    assert await store.get("/k") == newer

    # Two racing CAS updates from the same revision: exactly one wins.
    results = await asyncio.gather(
        store.update("/k", b"a", newer.mod_revision),
        store.update("/k", b"b", newer.mod_revision),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "KeyValue"]
    winner = next(r for r in results if isinstance(r, KeyValue))
    assert await store.get("/k") == winner

    deleted = await store.delete("/k", expected_mod_revision=winner.mod_revision)
    assert deleted.value == winner.value
    assert await store.get("/k") is None


async def test_refusals_wait_for_the_write_that_caused_them(store: Store) -> None:
    kv = await store.create("/k", b"0")
    winner = asyncio.ensure_future(store.update("/k", b"1", kv.mod_revision))
    await asyncio.sleep(0)  # the winner is accepted, its commit still running
    with pytest.raises(ConflictError) as conflict:
        await store.update("/k", b"2", kv.mod_revision)
    # A client re-reading after its 409 sees what beat it, so its retry can succeed.
    assert await store.get("/k") == conflict.value.current == await winner

    deleting = asyncio.ensure_future(store.delete("/k"))
    await asyncio.sleep(0)
    with pytest.raises(KeyNotFoundError):
        await store.update("/k", b"3")
    assert await store.get("/k") is None
    await deleting

    creating = asyncio.ensure_future(store.create("/k", b"4"))
    await asyncio.sleep(0)
    with pytest.raises(KeyExistsError):
        await store.create("/k", b"5")
    assert await store.get("/k") == await creating


async def test_list_paging_and_count(store: Store) -> None:
    names = [f"/registry/pods/ns{n}/p{i:02d}" for n in range(2) for i in range(10)]
    for name in reversed(names):
        await store.create(name, name.encode())
    # Neighbours that share a string prefix but not the key prefix.
    await store.create("/registry/podsx/ns0/q", b"")
    await store.create("/registry/pod", b"")
    await store.create("/registry/pods", b"")

    items, rev, more = await store.list("/registry/pods/")
    assert [kv.key for kv in items] == names
    assert all(kv.value == kv.key.encode() for kv in items)
    assert rev == store.revision
    assert more is False
    assert await store.count("/registry/pods/") == 20
    assert await store.count("/registry/pods/ns1/") == 10
    assert await store.count("/registry/") == 23
    assert await store.count("") == 23
    assert await store.count("/nothing/") == 0

    pages: list[list[str]] = []
    start_after = ""
    while True:
        page, _, more = await store.list("/registry/pods/", start_after=start_after, limit=7)
        pages.append([kv.key for kv in page])
        if not more:
            break
        start_after = page[-1].key
    assert pages == [names[0:7], names[7:14], names[14:20]]

    exact, _, more = await store.list("/registry/pods/", limit=20)
    assert len(exact) == 20 and more is False
    tail, _, _ = await store.list("/registry/pods/ns1/", start_after="/registry/pods/ns1/p07")
    assert [kv.key for kv in tail] == names[18:]
    # start_after before the prefix does not widen the range.
    head, _, _ = await store.list("/registry/pods/ns1/", start_after="/a", limit=1)
    assert [kv.key for kv in head] == [names[10]]

    await store.delete(names[3])
    items, _, _ = await store.list("/registry/pods/ns0/")
    assert [kv.key for kv in items] == names[:3] + names[4:10]


async def test_health_tells_the_file_size_and_free_pages(store: Store) -> None:
    await store.create("/registry/configmaps/default/a", b"v" * 4000)
    health = await store.health()
    assert health.error is None
    assert health.size_bytes is not None and health.size_bytes > 0
    assert health.in_use_bytes is not None and health.in_use_bytes > 4000
    assert health.free_pages is not None and health.free_pages >= 0


async def test_revisions_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = await reopen(path)
    for i in range(5):
        await s.create(f"/k{i}", b"x")
    await s.update("/k0", b"y")
    await s.delete("/k1")
    await s.delete("/k4")
    last = s.revision
    await s.compact(last)
    await s.close()

    s = await reopen(path)
    try:
        # The revision counter survives even though the deletes' history is compacted away.
        assert s.revision == last
        assert s.compacted_revision == last
        assert [kv.key for kv in (await s.list("/"))[0]] == ["/k0", "/k2", "/k3"]
        assert await s.get("/k0") == KeyValue("/k0", b"y", 2, 7)
        kv = await s.create("/k4", b"again")
        assert kv.mod_revision == last + 1
    finally:
        await s.close()


async def test_watch_history_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = await reopen(path)
    a = await s.create("/a", b"1")
    a2 = await s.update("/a", b"2")
    gone = await s.delete("/a")
    await s.close()

    s = await reopen(path)
    try:
        events = await take(s.watch("/", 1), 3)
        assert events == [
            WatchEvent("ADDED", a, None),
            WatchEvent("MODIFIED", a2, a),
            WatchEvent("DELETED", gone, a2),
        ]
    finally:
        await s.close()


async def test_watch_replays_then_goes_live_without_gaps(store: Store) -> None:
    writes: list[tuple[str, KeyValue]] = []
    for i in range(30):
        kv = await store.create(f"/registry/c/{i}", b"0")
        writes.append(("ADDED", kv))
    start = writes[9][1].mod_revision
    watcher = store.watch("/registry/", start)

    seen: list[WatchEvent] = []

    async def consume() -> None:
        async for ev in watcher:
            seen.append(ev)

    async def write(n: int) -> None:
        rnd = random.Random(n)
        for i in range(60):
            key = f"/registry/c/{rnd.randrange(40)}"
            current = await store.get(key)
            try:
                if current is None:
                    writes.append(("ADDED", await store.create(key, b"%d-%d" % (n, i))))
                elif rnd.random() < 0.3:
                    writes.append(("DELETED", await store.delete(key, current.mod_revision)))
                else:
                    writes.append(
                        ("MODIFIED", await store.update(key, b"%d-%d" % (n, i), current.mod_revision))
                    )
            except (KeyExistsError, KeyNotFoundError, ConflictError):
                pass
            # Writes outside the watched prefix must not show up.
            await store.create(f"/other/{n}/{i}", b"")

    consumer = asyncio.create_task(consume())
    await asyncio.gather(*(write(n) for n in range(10)))
    last = max(kv.mod_revision for _, kv in writes)
    await wait_until(lambda: bool(seen) and seen[-1].kv.mod_revision >= last)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer

    expected = sorted(
        ((t, kv) for t, kv in writes if kv.mod_revision > start), key=lambda w: w[1].mod_revision
    )
    assert [(ev.type, ev.kv) for ev in seen] == expected
    revisions = [ev.kv.mod_revision for ev in seen]
    assert revisions == sorted(set(revisions))


async def test_watch_prefix_prev_and_live_from_now(store: Store) -> None:
    await store.create("/registry/pods/x", b"old")
    live = store.watch("/registry/pods/")  # from now on: the create above is not replayed
    services = store.watch("/registry/services/")

    pod = await store.create("/registry/pods/y", b"1")
    svc = await store.create("/registry/services/s", b"s")
    pod2 = await store.update("/registry/pods/y", b"2")
    gone = await store.delete("/registry/pods/y")

    assert await take(live, 3) == [
        WatchEvent("ADDED", pod, None),
        WatchEvent("MODIFIED", pod2, pod),
        WatchEvent("DELETED", gone, pod2),
    ]
    assert gone.mod_revision == pod2.mod_revision + 1
    assert await take(services, 1) == [WatchEvent("ADDED", svc, None)]


async def test_compaction_expires_old_revisions(store: Store) -> None:
    kvs = [await store.create(f"/k{i}", b"x") for i in range(10)]
    await store.compact(kvs[4].mod_revision)
    assert store.compacted_revision == kvs[4].mod_revision

    with pytest.raises(CompactedError) as compacted:
        await anext(store.watch("/", kvs[3].mod_revision))
    assert compacted.value.requested == kvs[3].mod_revision
    assert compacted.value.compacted == kvs[4].mod_revision

    # The compacted revision itself is still a valid starting point.
    events = await take(store.watch("/", kvs[4].mod_revision), 5)
    assert [ev.kv for ev in events] == kvs[5:]

    with pytest.raises(StoreError, match="future revision"):
        await store.compact(store.revision + 1)
    # Current state is untouched by compaction.
    assert await store.count("/") == 10


async def test_background_compaction_bounds_memory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = await reopen(path, history_max_events=500, compact_interval=60)
    try:
        value = b"x" * 2000

        async def hammer(n: int) -> None:
            for _ in range(400):
                await s.update("/registry/leases/hot", value)

        await s.create("/registry/leases/hot", value)
        await asyncio.gather(*(hammer(n) for n in range(50)))
        assert s.revision == 20_002
        # Each overwrite logs ~4 kB, 80 MB in all without compaction.
        await wait_until(lambda: s.revision - s.compacted_revision <= 600)
        assert s.revision - s.compacted_revision <= 600
        assert s.last_compaction is not None
        assert s.last_compaction_error is None
        assert disk_usage(path) < 16 * 2**20
    finally:
        await s.close()
    assert disk_usage(path) < 6 * 2**20


async def test_compaction_by_age_runs_in_background(tmp_path: Path) -> None:
    s = await reopen(tmp_path / "state.db", history_window=0.2, compact_interval=0.05)
    try:
        first = await s.create("/a", b"1")
        await s.update("/a", b"2")
        await wait_until(lambda: s.compacted_revision == s.revision)
        assert s.compacted_revision == s.revision
        assert s.last_compaction is not None
        with pytest.raises(CompactedError):
            await anext(s.watch("/", first.mod_revision))
    finally:
        await s.close()


async def test_slow_watcher_is_ended_without_blocking_writers(tmp_path: Path) -> None:
    s = await reopen(tmp_path / "state.db", history_max_events=100, compact_interval=60)
    try:
        slow = s.watch("/")
        fast = s.watch("/")
        await s.create("/first", b"")
        assert (await take(slow, 1))[0].kv.key == "/first"

        async def write(n: int) -> None:
            for i in range(100):
                await s.create(f"/k/{n}/{i}", b"v")

        received = 0

        async def follow() -> None:
            nonlocal received
            async for _ in fast:
                received += 1
                if received == 2001:
                    return

        follower = asyncio.create_task(follow())
        # The slow watcher reads nothing while 2,000 writes go by: they must not wait for it.
        await asyncio.wait_for(asyncio.gather(*(write(n) for n in range(20))), 10)
        await asyncio.wait_for(follower, 5)
        await wait_until(lambda: s.compacted_revision > 2)
        assert s.revision - s.compacted_revision <= 200

        with pytest.raises(StoreError, match="too slow"):
            await take(slow, 2001)
    finally:
        await s.close()


async def test_close_ends_watchers(tmp_path: Path) -> None:
    s = await reopen(tmp_path / "state.db")
    it = s.watch("/")
    pending = asyncio.ensure_future(anext(it))
    await wait_until(lambda: bool(s._watchers))  # the watcher is waiting when the store closes
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await pending
    with pytest.raises(StoreError, match="closed"):
        await s.get("/a")


async def test_failed_commit_makes_store_unusable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = await reopen(path)
    kept = await s.create("/kept", b"small")
    watcher = s.watch("/")
    assert s._db is not None
    # A real SQLITE_FULL: the file may not grow any further.
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")

    with pytest.raises(StoreError, match="full"):
        await s.create("/big", b"x" * 1_000_000)
    with pytest.raises(StoreError, match="unusable"):
        await s.get("/kept")
    with pytest.raises(StoreError, match="unusable"):
        await s.create("/other", b"")
    with pytest.raises(StoreError, match="unusable"):
        await take(watcher, 2)
    await s.close()

    s = await reopen(path)
    try:
        assert await s.get("/kept") == kept
        assert await s.get("/big") is None
        assert s.revision == kept.mod_revision
    finally:
        await s.close()


async def test_second_opener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = await reopen(path)
    try:
        other = SqliteStore(str(path), busy_timeout=0.1)
        with pytest.raises(StoreError, match="in use"):
            await other.start()
        await other.close()
    finally:
        await s.close()
    # Once the first one closed, the file opens again.
    s = await reopen(path)
    await s.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("store_crash_child.py")), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: dict[str, int] = {}
    deadline = time.monotonic() + 15
    try:
        while len(acked) < 5000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            key, rev = line.split()
            acked[key] = int(rev)
        os.kill(child.pid, signal.SIGKILL)
        # Lines already in the pipe were acknowledged before the kill, too.
        for line in child.stdout:
            key, rev = line.split()
            acked[key] = int(rev)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 5000

    async def check() -> None:
        s = await reopen(path)
        try:
            items, _, _ = await s.list("/registry/crash/")
            stored = {kv.key: kv.mod_revision for kv in items}
            missing = {k: r for k, r in acked.items() if stored.get(k) != r}
            assert not missing, f"{len(missing)} acknowledged writes lost"
            assert s.revision >= max(acked.values())
            kv = await s.create("/after-crash", b"")
            assert kv.mod_revision == s.revision > max(stored.values())
        finally:
            await s.close()

    asyncio.run(check())


async def test_open_store_urls(tmp_path: Path) -> None:
    s = open_store(f"sqlite://{tmp_path}/a.db", history_max_events=10)
    assert isinstance(s, SqliteStore) and s.path == f"{tmp_path}/a.db"
    await s.start()
    await s.create("/x", b"")
    await s.close()
    assert (tmp_path / "a.db").exists()
    plain = open_store(str(tmp_path / "b.db"))
    assert isinstance(plain, SqliteStore) and plain.path == str(tmp_path / "b.db")
    with pytest.raises(NotImplementedError, match="etcd"):
        open_store("https://127.0.0.1:2379")
    with pytest.raises(ValueError):
        open_store("mysql://db")


async def test_large_mixed_batches_commit_and_reload(tmp_path: Path) -> None:
    """Hundreds of writes in one commit (multi-row statements in power-of-two chunks), with
    the same key created, updated and deleted inside the batch, land as they were acknowledged."""
    path = tmp_path / "state.db"
    s = await reopen(path)
    expected: dict[str, bytes] = {}
    for rnd in range(3):
        writes = []
        for i in range(300 + rnd):  # 300 = 128 + 128 + 32 + 8 + 4
            writes.append(s.create(f"/r/{rnd}/{i}", b"%d" % i))
            expected[f"/r/{rnd}/{i}"] = b"%d" % i
        await asyncio.gather(*writes)
        kv = await s.update(f"/r/{rnd}/0", b"u")
        expected[f"/r/{rnd}/0"] = b"u"
        ops = [s.update(f"/r/{rnd}/{i}", b"v%d" % i) for i in range(1, 200)]
        ops += [s.delete(f"/r/{rnd}/{i}") for i in range(200, 300)]
        await asyncio.gather(*ops)
        for i in range(1, 200):
            expected[f"/r/{rnd}/{i}"] = b"v%d" % i
        for i in range(200, 300):
            del expected[f"/r/{rnd}/{i}"]
        assert kv.value == b"u"
    batches = s.watch_batches("/r/", 1)
    first = await anext(batches)
    assert first.events and all(isinstance(ev, WatchEvent) for ev in first.events)
    assert first.revision == first.events[-1].kv.mod_revision
    await batches.aclose()
    rev = s.revision
    await s.close()
    s = await reopen(path)
    try:
        assert s.revision == rev
        kvs, _, _ = await s.list("/r/")
        assert {kv.key: kv.value for kv in kvs} == expected
        replayed = [ev async for ev in _until(s.watch("/r/", 1), rev)]
        assert len(replayed) == rev - 1
    finally:
        await s.close()


async def _until(it: AsyncIterator[WatchEvent], rev: int) -> AsyncIterator[WatchEvent]:
    async with asyncio.timeout(5):
        async for ev in it:
            yield ev
            if ev.kv.mod_revision >= rev:
                return


async def test_a_closed_watch_leaves_no_watcher_behind(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    await store.create("/w/a", b"1")
    for it in (store.watch("/w/", 1), store.watch_batches("/w/", 1)):
        assert await anext(it)
        assert store._watchers
        # The protocol promises watch() only an AsyncIterator; SQLite's is an async generator.
        await cast("AsyncGenerator[object, None]", it).aclose()
        assert not store._watchers


async def test_progress_batches_tell_an_idle_watcher_how_far_it_has_seen(tmp_path: Path) -> None:
    """What a bookmark's resourceVersion is made from: a watcher whose prefix sees nothing
    still learns that nothing of its own happened up to the store's revision, and never of
    a revision whose events it has not been given yet."""
    s = SqliteStore(str(tmp_path / "state.db"), progress_interval=0.05)
    await s.start()
    try:
        start = s.revision
        mine = s.watch_batches("/mine/", start)
        await s.create("/other/1", b"x")
        first = await asyncio.wait_for(anext(mine), 5)
        if first.events:  # not expected: nothing was written under /mine/
            raise AssertionError(first)
        assert start < first.revision <= s.revision
        kv = await s.create("/mine/a", b"1")
        for i in range(20):
            await s.create(f"/other/{i + 2}", b"x")
        seen = []
        async with asyncio.timeout(5):
            async for batch in mine:
                seen.append(batch)
                if batch.revision >= s.revision:
                    break
        # Progress never passes an event of ours before delivering it.
        delivered_at = next(i for i, b in enumerate(seen) if b.events)
        assert seen[delivered_at].events[0].kv == kv
        assert all(b.revision < kv.mod_revision for b in seen[:delivered_at])
        revisions = [b.revision for b in seen]
        assert revisions == sorted(revisions)
        await mine.aclose()
    finally:
        await s.close()


async def test_a_commit_wakes_only_the_watchers_of_its_keys(tmp_path: Path) -> None:
    """Every write used to wake every watcher of the server (its internal caches and each watch
    stream), whatever the prefix: a wake-up per watcher per write, a measurable share of each
    write's CPU. A watcher waiting out its progress interval now sleeps through other prefixes'
    commits; its own keys still wake it at once, and its progress still reaches the newest
    revision when the interval is up."""
    s = SqliteStore(str(tmp_path / "state.db"), progress_interval=0.3)
    await s.start()
    try:
        mine = s.watch_batches("/mine/", s.revision)
        pending = asyncio.ensure_future(anext(mine))
        await s.create("/other/0", b"x")  # moves the watcher into its progress wait

        def dozing() -> bool:
            return any(w.dozing for w in s._watchers.values())

        await wait_until(dozing)
        for i in range(5):
            await s.create(f"/other/{i + 1}", b"x")
        wake = next(iter(s._watchers))
        assert not wake.is_set()  # slept through them
        progress = await asyncio.wait_for(pending, 5)
        assert progress.events == []
        assert progress.revision == s.revision  # caught up on all of them when the interval was up

        pending = asyncio.ensure_future(anext(mine))
        await s.create("/other/6", b"x")
        await wait_until(dozing)
        t0 = time.monotonic()
        kv = await s.create("/mine/a", b"1")
        batch = await asyncio.wait_for(pending, 5)
        assert batch.events[0].kv == kv
        assert time.monotonic() - t0 < 0.25  # woken by its own key, not by the timer
        await mine.aclose()
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("prefix", "woken"),
    [("/mine/", True), ("/mine/a", True), ("/mi", True), ("/mine/ab", False), ("/mine/b", False),
     ("/minx/", False), ("/mine/a/", False)],
)
async def test_a_dozing_watcher_is_woken_by_any_key_under_its_prefix(tmp_path: Path, prefix: str,
                                                                      woken: bool) -> None:
    """The commit decides from the set of '/'-ended prefixes of its keys which dozing watchers
    to wake; a prefix of another shape (ending mid-segment, or a whole key) must still be
    matched exactly as ``str.startswith`` would."""
    s = SqliteStore(str(tmp_path / "state.db"), progress_interval=30)
    await s.start()
    try:
        watcher = s.watch_batches(prefix, s.revision)
        pending = asyncio.ensure_future(anext(watcher))
        await s.create("/zzz/0", b"x")  # nobody's key: moves the watcher into its progress wait
        await wait_until(lambda: all(w.dozing for w in s._watchers.values()))
        wake = next(iter(s._watchers))
        await s.create("/mine/a", b"1")
        assert wake.is_set() is woken
        if woken:
            batch = await asyncio.wait_for(pending, 5)
            assert [ev.kv.key for ev in batch.events] == ["/mine/a"]
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await watcher.aclose()
    finally:
        await s.close()


async def test_a_cached_kinds_generation_moves_with_its_objects_not_with_progress(tmp_path: Path) -> None:
    """Readers rebuild what they derive from a CachedKind (the RBAC policy, remembered verdicts
    and token verdicts) when its generation moves. Progress batches, which every cache gets
    about once a second while other kinds are written, used to move it too: the policy was
    rebuilt and every remembered verdict dropped several times a second under load."""
    from kubelite.api.registry import lookup
    from kubelite.apiserver.registry import CachedKind

    s = SqliteStore(str(tmp_path / "state.db"), progress_interval=0.05)
    await s.start()
    rt = lookup("", "v1", "namespaces")
    assert rt is not None
    cache = CachedKind(s, rt)
    await cache.start()
    try:
        before = cache.generation
        for i in range(10):  # another kind's writes: the cache gets progress only
            await s.create(f"/registry/configmaps/default/c{i}", b"{}")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert cache.generation == before
        await s.create(rt.key(None, "n1"), b'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n1"}}')
        await wait_until(lambda: cache.generation != before)
        assert rt.key(None, "n1") in cache.objects
    finally:
        await cache.stop()
        await s.close()
