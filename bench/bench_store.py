"""How fast the embedded store is, in-process: writes, lists, watch fan-out, startup.

The API server's budget (>= 2,000 writes/s at p99 <= 25 ms with 50 clients, through
HTTP/TLS/JSON) leaves the store a small share of each request, so these figures should be
well beyond it. synchronous=NORMAL and FULL run side by side so the price of power-loss
durability is visible. Run: ``python bench/bench_store.py [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from kubelite.store import SqliteStore, WatchEvent

# About the size of a small pod's JSON.
VALUE = (
    b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"},"spec":' + b'{"x":"%s"}' % (b"y" * 900) + b"}"
)


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def file_size(directory: str, name: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory) if f.startswith(name)
    )


async def open_fresh(directory: str, name: str, **opts: object) -> SqliteStore:
    store = SqliteStore(os.path.join(directory, name), **opts)  # type: ignore[arg-type]
    await store.start()
    return store


class LoopStall:
    """The longest time the event loop did not get to run a 1 ms ticker."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    def __enter__(self) -> LoopStall:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def writers(
    store: SqliteStore, clients: int, per_client: int, pause: float = 0.0
) -> tuple[float, list[float], float]:
    """Each client creates its keys then updates them; returns (writes/s, latencies, stall).

    ``pause`` between a client's writes turns the flood into a steady load.
    """
    latencies: list[float] = []

    async def client(n: int) -> None:
        keys = [f"/registry/pods/ns{n}/p{i}" for i in range(per_client // 2)]
        ops: list[Callable[[], Awaitable[object]]] = [
            *(lambda k=k: store.create(k, VALUE) for k in keys),
            *(lambda k=k: store.update(k, VALUE) for k in keys),
        ]
        for op in ops:
            t0 = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - t0)
            if pause:
                await asyncio.sleep(pause)

    with LoopStall() as stall:
        start = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, stall.worst


async def bench_writes(directory: str, rows: list[tuple[str, str]]) -> None:
    for sync in ("NORMAL", "FULL"):
        for clients, per_client in ((1, 4000), (50, 400)):
            store = await open_fresh(directory, f"w-{sync}-{clients}.db", synchronous=sync)
            rate, lat, stall = await writers(store, clients, per_client)
            await store.close()
            rows.append(
                (
                    f"writes, {clients} writer{'s' if clients > 1 else ''}, synchronous={sync}, flood",
                    f"{rate:8.0f}/s  p50 {pct(lat, 0.5) * 1e3:5.2f} ms  p99 {pct(lat, 0.99) * 1e3:5.2f} ms"
                    f"  loop stall max {stall * 1e3:4.1f} ms",
                )
            )


async def bench_steady(directory: str, rows: list[tuple[str, str]]) -> None:
    # The API server's target load: 2,000 writes/s from 50 clients (one write each 25 ms).
    store = await open_fresh(directory, "steady.db")
    rate, lat, stall = await writers(store, 50, 200, pause=0.025)
    await store.close()
    rows.append(
        (
            "writes, 50 writers, synchronous=NORMAL, steady",
            f"{rate:8.0f}/s  p50 {pct(lat, 0.5) * 1e3:5.2f} ms  p99 {pct(lat, 0.99) * 1e3:5.2f} ms"
            f"  loop stall max {stall * 1e3:4.1f} ms",
        )
    )


async def bench_list(directory: str, rows: list[tuple[str, str]]) -> None:
    store = await open_fresh(directory, "list.db")
    await asyncio.gather(
        *(store.create(f"/registry/pods/ns{i % 10}/p{i}", VALUE) for i in range(10_000)),
        *(store.create(f"/registry/services/ns/s{i}", VALUE) for i in range(2_000)),
    )
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        items, _, _ = await store.list("/registry/pods/")
        times.append(time.perf_counter() - t0)
        assert len(items) == 10_000
    t0 = time.perf_counter()
    for _ in range(100):
        await store.list("/registry/pods/", start_after="/registry/pods/ns5/", limit=500)
    paged = (time.perf_counter() - t0) / 100
    await store.close()
    rows.append(("list 10,000 of 12,000 keys", f"median {statistics.median(times) * 1e3:5.2f} ms"))
    rows.append(("list page of 500 (start_after, limit)", f"{paged * 1e3:5.3f} ms"))


async def bench_fanout(directory: str, rows: list[tuple[str, str]]) -> None:
    store = await open_fresh(directory, "watch.db")
    received: list[list[tuple[int, float]]] = [[] for _ in range(100)]
    total = 2_000

    async def watcher(sink: list[tuple[int, float]], it: AsyncIterator[WatchEvent]) -> None:
        async for ev in it:
            sink.append((ev.kv.mod_revision, time.perf_counter()))
            if len(sink) == total:
                return

    start_rev = store.revision
    tasks = [asyncio.create_task(watcher(sink, store.watch("/registry/", start_rev))) for sink in received]
    sent: dict[int, float] = {}

    async def client(n: int) -> None:
        for i in range(total // 10):
            t0 = time.perf_counter()
            kv = await store.create(f"/registry/configmaps/ns{n}/c{i}", VALUE)
            sent[kv.mod_revision] = t0
            # A steady stream rather than a flood: latency, not throughput, is measured here.
            await asyncio.sleep(0.002)

    with LoopStall() as stall:
        await asyncio.gather(*(client(n) for n in range(10)))
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await store.close()
    lat = [at - sent[rev] for sink in received for rev, at in sink]
    rows.append(
        (
            f"watch fan-out, 100 watchers x {total} events",
            f"write->delivery p50 {pct(lat, 0.5) * 1e3:5.2f} ms  p99 {pct(lat, 0.99) * 1e3:5.2f} ms"
            f"  loop stall max {stall.worst * 1e3:4.1f} ms",
        )
    )


async def bench_startup(directory: str, rows: list[tuple[str, str]]) -> None:
    store = await open_fresh(directory, "startup.db")

    async def client(n: int) -> None:
        for i in range(1_000):
            await store.create(f"/registry/pods/ns{n}/p{i}", VALUE)

    await asyncio.gather(*(client(n) for n in range(50)))
    history = store.revision - store.compacted_revision
    await store.close()
    t0 = time.perf_counter()
    store = await open_fresh(directory, "startup.db")
    elapsed = time.perf_counter() - t0
    assert await store.count("/registry/pods/") == 50_000
    await store.close()
    size = file_size(directory, "startup.db")
    rows.append(
        (
            "startup, 50,000 keys",
            f"{elapsed * 1e3:6.0f} ms  (+{history} history events, file {size / 2**20:.0f} MB)",
        )
    )


async def main(directory: str) -> None:
    rows: list[tuple[str, str]] = []
    await bench_writes(directory, rows)
    await bench_steady(directory, rows)
    await bench_list(directory, rows)
    await bench_fanout(directory, rows)
    await bench_startup(directory, rows)
    width = max(len(name) for name, _ in rows)
    print(f"kubelite store, SQLite backend, {os.cpu_count()} CPUs, values of {len(VALUE)} bytes")
    for name, figure in rows:
        print(f"  {name:<{width}}  {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", help="where to put the database files (default: a temporary directory)")
    args = parser.parse_args()
    if args.dir:
        asyncio.run(main(args.dir))
    else:
        with tempfile.TemporaryDirectory(prefix="kubelite-bench-", dir="/var/tmp") as tmp:
            asyncio.run(main(tmp))
