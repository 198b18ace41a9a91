"""Does state.db give back the space of 20,000 ConfigMaps created and deleted? (issue 20, point 4)

Runs a real ``kubelite up --no-agent`` and loads it from outside, through the API, in two
rounds. "Before" is taken once the idle cluster's file is at its steady state: the
controllers' and the API server's own writes (leases, the kubernetes Service) fill one
history window of their own first (5 minutes and one compaction interval).

1. Creates 20,000 ConfigMaps (50 clients) and deletes them all. The deletes stay in the
   store's watch history for its window (5 minutes, also kube-apiserver's default etcd
   compaction interval), so their space can only come back at the first compaction after
   it: the file is measured one compaction interval (30 s) later, plus a margin for the
   vacuum steps. The goal: within 2x of its size before (before this fix it stayed at its
   peak: 24.7 MB 13 minutes later).
2. The same again with a probe client updating one ConfigMap 20 times a second all along
   (its writes would stay in the history and blur round 1's figure, hence two rounds): its
   latency while the store gives the space back (incremental vacuum steps on the store's one
   writer thread), against the quiet minutes before, shows whether the writer ever stalls.

Sizes are the file's (``state.db``; its WAL apart), sampled four times a second, with the
API server's ``/metrics`` gauge ``etcd_mvcc_db_total_size_in_use_in_bytes``. About 18
minutes, mostly waiting. ``--quick``: 2,000 ConfigMaps and no warm-up (a smoke run: its
ratio means little; the waits are the store's and stay).

Usage: python bench/bench_store_space.py [--configmaps N] [--quick] [--warmup S] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import re
import sys
import time
from typing import Any

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster, cpu_check

HISTORY_WINDOW_S = 300.0  # SqliteStore's defaults, which `kubelite up` uses
COMPACT_INTERVAL_S = 30.0
MARGIN_S = 15.0
NAMESPACE = "space"
PROBE_PER_S = 20


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def gauge(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m[1]) if m else None


class Run:
    def __init__(self, c: Cluster, s: aiohttp.ClientSession) -> None:
        self.c, self.s = c, s
        self.db = c.dir / "state.db"
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, int, int, float | None]] = []  # (t, file, wal, in use per /metrics)
        self.probe: list[tuple[float, float]] = []  # (t sent, latency s)
        self.probe_errors = 0
        self.stop = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def size(self) -> tuple[int, int]:
        wal = self.db.with_name("state.db-wal")
        return self.db.stat().st_size, wal.stat().st_size if wal.exists() else 0

    async def sampler(self) -> None:
        while not self.stop.is_set():
            in_use = None
            try:
                async with self.s.get(f"{self.c.url}/metrics") as r:
                    in_use = gauge(await r.text(), "etcd_mvcc_db_total_size_in_use_in_bytes")
            except aiohttp.ClientError:
                pass
            self.samples.append((self.now(), *self.size(), in_use))
            await asyncio.sleep(0.25)

    async def prober(self) -> None:
        url = f"{self.c.url}/api/v1/namespaces/{NAMESPACE}/configmaps/probe"
        headers = {"Content-Type": "application/merge-patch+json"}
        i = 0
        while not self.stop.is_set():
            i += 1
            sent = self.now()
            try:
                async with self.s.patch(url, data=json.dumps({"data": {"n": str(i)}}), headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                self.probe.append((sent, self.now() - sent))
            else:
                self.probe_errors += 1
            await asyncio.sleep(max(0.0, 1 / PROBE_PER_S - (self.now() - sent)))

    async def many(self, n: int, method: str) -> float:
        base = f"{self.c.url}/api/v1/namespaces/{NAMESPACE}/configmaps"
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with sem:
                if method == "POST":
                    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"},
                            "data": {"k": "v" * 100}}
                    async with self.s.post(base, json=body) as r:
                        assert r.status == 201, await r.text()
                else:
                    async with self.s.delete(f"{base}/cm-{i}") as r:
                        assert r.status == 200, await r.text()

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.monotonic() - started


def latency(probe: list[tuple[float, float]], lo: float, hi: float) -> dict[str, Any]:
    got = [lat * 1000 for t, lat in probe if lo <= t <= hi]
    return {"writes": len(got), "p50_ms": round(pct(got, 0.5), 2), "p99_ms": round(pct(got, 0.99), 2),
            "max_ms": round(max(got), 2) if got else None}


async def wait_until_shrunk(run: Run, t_deleted: float, floor: int, limit: float) -> None:
    """Until the file is at most ``floor`` bytes for 5 s running, or ``limit`` s after the last delete."""
    small_since: float | None = None
    while run.now() < t_deleted + limit:
        await asyncio.sleep(0.5)
        if run.size()[0] <= floor:
            small_since = small_since or run.now()
            if run.now() - small_since >= 5:
                return
        else:
            small_since = None


async def measure(c: Cluster, n: int, warmup: float) -> dict[str, Any]:
    wait = HISTORY_WINDOW_S + COMPACT_INTERVAL_S + MARGIN_S
    connector = aiohttp.TCPConnector(ssl=c.ssl(), limit=0)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {c.token}"}) as s:
        run = Run(c, s)
        async with s.post(f"{c.url}/api/v1/namespaces",
                          json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}) as r:
            assert r.status == 201, await r.text()
        async with s.post(f"{c.url}/api/v1/namespaces/{NAMESPACE}/configmaps",
                          json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}) as r:
            assert r.status == 201, await r.text()
        sampler = asyncio.create_task(run.sampler())
        # "Before" is the file of this cluster at its steady state: the controllers' and the API
        # server's own writes (leases, the kubernetes Service) fill one history window too.
        print(f"cluster up; {warmup:.0f}s until its file is at its steady state", flush=True)
        await asyncio.sleep(warmup)

        # Round 1, nothing else writing: the size before and one window + interval after.
        before, before_wal = run.size()
        t_create = run.now()
        create_s = await run.many(n, "POST")
        delete_s = await run.many(n, "DELETE")
        t_deleted = run.now()
        peak = max(size for t, size, _, _ in run.samples if t >= t_create)
        print(f"{n} ConfigMaps created in {create_s:.1f}s and deleted in {delete_s:.1f}s; state.db"
              f" {before / 1e6:.2f} MB before, {peak / 1e6:.2f} MB at its peak; waiting {wait:.0f}s"
              " (history window + one compaction interval + margin)", flush=True)
        while run.now() < t_deleted + wait:
            await asyncio.sleep(1)
        after, after_wal = run.size()
        round1 = [smp for smp in run.samples if smp[0] >= t_deleted]
        shrunk = next((t for t, size, _, _ in round1 if size <= 2 * before), None)
        last_in_use = next((u for _, _, _, u in reversed(run.samples) if u is not None), None)
        print(f"state.db {after / 1e6:.2f} MB {wait:.0f}s after the last delete; round 2 with the probe",
              flush=True)

        # Round 2, the same with a probe writing all along: its latency while the space comes back.
        prober = asyncio.create_task(run.prober())
        await asyncio.sleep(10)
        t_create2 = run.now()
        await run.many(n, "POST")
        await run.many(n, "DELETE")
        t_deleted2 = run.now()
        await wait_until_shrunk(run, t_deleted2, max(2 * before, after + after // 2), wait)
        run.stop.set()
        await asyncio.gather(sampler, prober)

    round2 = [smp for smp in run.samples if smp[0] >= t_deleted2]
    high = max(size for _, size, _, _ in round2)
    low = min(size for _, size, _, _ in round2)
    # The vacuum: from the last sample at the file's post-delete size to the first at its floor.
    start = max((t for t, size, _, _ in round2 if size >= high - (high - low) * 0.05), default=t_deleted2)
    end = min((t for t, size, _, _ in round2 if t >= start and size <= low + (high - low) * 0.05), default=start)
    return {
        "configmaps": n,
        "warmup_s": warmup,
        "create_s": round(create_s, 1), "delete_s": round(delete_s, 1),
        "size_before_bytes": before, "wal_before_bytes": before_wal,
        "size_peak_bytes": peak,
        "size_after_bytes": after, "wal_after_bytes": after_wal,
        "in_use_after_bytes": last_in_use,
        "after_s_from_last_delete": round(wait, 1),
        "ratio_after_before": round(after / before, 3),
        "within_2x_s_from_last_delete": None if shrunk is None else round(shrunk - t_deleted, 1),
        "round2_vacuum_window_s": [round(start - t_deleted2, 2), round(end - t_deleted2, 2)],
        "round2_size_bytes": [high, low],
        # The probe while the space came back (samples are 0.25 s apart: a second more each side),
        # against the quiet wait before it (the window's minutes, compactions of nothing included)
        # and against the creates themselves (50 clients writing as fast as they can).
        "probe_during_vacuum": latency(run.probe, start - 1, end + 1),
        "probe_quiet": latency(run.probe, t_deleted2 + 5, start - 1),
        "probe_during_creates": latency(run.probe, t_create2, t_deleted2),
        "probe_errors": run.probe_errors,
        "timeline": [[round(t - t_deleted, 2), size, wal, u] for t, size, wal, u in run.samples[::4]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configmaps", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true", help="2,000 ConfigMaps, no warm-up (a smoke run)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before 'before' is taken (default: one history window + one compaction interval)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n = 2000 if args.quick else args.configmaps
    warmup = args.warmup if args.warmup is not None else 5.0 if args.quick else HISTORY_WINDOW_S + COMPACT_INTERVAL_S
    results: dict[str, Any] = {"cpu_check_ms_before": cpu_check()}
    with Cluster("klbspace", agent=False) as c:
        results.update(asyncio.run(measure(c, n, warmup)))
    results["cpu_check_ms_after"] = cpu_check()
    mb = 1e6
    print(f"state.db: {results['size_before_bytes'] / mb:.2f} MB before, {results['size_peak_bytes'] / mb:.2f} MB"
          f" at the peak, {results['size_after_bytes'] / mb:.2f} MB {results['after_s_from_last_delete']:.0f}s"
          f" after the last delete: {results['ratio_after_before']:.2f}x (goal <= 2);"
          f" within 2x {results['within_2x_s_from_last_delete']}s after the last delete")
    for k in ("probe_quiet", "probe_during_vacuum", "probe_during_creates"):
        print(f"{k:22} " + "  ".join(f"{kk}={vv}" for kk, vv in results[k].items()))
    print(f"round 2 vacuum window (s after the last delete): {results['round2_vacuum_window_s']};"
          f" cpu check {results['cpu_check_ms_before']} / {results['cpu_check_ms_after']} ms")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
