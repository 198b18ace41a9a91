"""API server benchmarks: mutating-call latency and rate, watch fan-out, large lists.

Runs a real ``kubelite up`` on loopback and measures it from outside, the way users load it:
- writes: ``wrk`` (Debian) POSTs ConfigMaps with ``generateName`` over HTTPS with a
  service-account bearer token, with 1 and with 50 connections; p50/p99 and writes/s.
  (wrk is C, so the load generator takes little of the 2 cores from the server.)
  Two readings at 50 clients: *closed loop* (each client sends its next write as soon as
  the last is answered: the most the server does, and by Little's law its latency is
  50 / rate), and *paced* at 2,000 writes/s spread over the 50 clients, the way
  Kubernetes' load tests (clusterloader2) offer a fixed rate and measure the latency it
  gets: the goal's "2,000 writes/s with p99 <= 25 ms". Pacing is wrk's ``delay()`` hook
  on a wall clock read through LuaJIT's FFI, one slot per request per thread.
- watch fan-out: 100 concurrent watchers; a writer stamps each object with the time it was
  sent; p50/p99 of send -> delivered to every watcher.
- list: time to list 10,000 ConfigMaps as JSON and as a kubectl Table.

Usage: python bench/bench_api.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import shutil
import statistics
import sys
import time
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster, wrk_post, wrk_threads

# Appended for a paced run: each thread hands out send slots RATE/threads per second apart.
PACED_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } kl_timespec; int clock_gettime(int, kl_timespec *); ]]
local ts = ffi.new("kl_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = %f
local next_slot = nil
delay = function()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  local slot = next_slot
  next_slot = next_slot + interval
  local wait = slot - now
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
"""


def wrk_writes(c: Cluster, conns: int, seconds: int, rate: int = 0) -> dict[str, float]:
    """``rate`` 0: closed loop; else that many writes/s offered in all."""
    paced = PACED_SCRIPT % (wrk_threads(conns) * 1000 / rate) if rate else ""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "b-"}, "data": {"k": "x" * 100}}
    r = wrk_post(c, "/api/v1/namespaces/default/configmaps", body, conns, seconds, lua=paced)
    return {"writes_per_s": r.per_s, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors}


async def watch_fanout(c: Cluster, watchers: int, events: int) -> dict[str, float]:
    ns_url = f"{c.url}/api/v1/namespaces/default/configmaps"
    connector = aiohttp.TCPConnector(ssl=c.ssl(), limit=0)
    delays: list[float] = []
    async with aiohttp.ClientSession(connector=connector, headers=c.headers()) as s:
        async with s.get(ns_url, params={"limit": "1"}) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        ready = 0
        got = asyncio.Event()

        async def watcher() -> None:
            nonlocal ready
            async with s.get(ns_url, params={"watch": "1", "resourceVersion": rv, "labelSelector": "fanout=1"},
                             timeout=aiohttp.ClientTimeout(total=None)) as r:
                ready += 1
                seen = 0
                async for line in r.content:
                    now = time.perf_counter()
                    ev = orjson.loads(line)
                    sent = float(ev["object"]["metadata"]["annotations"]["sent"])
                    delays.append(now - sent)
                    seen += 1
                    if seen >= events:
                        return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        while ready < watchers:
            await asyncio.sleep(0.01)
        for i in range(events):
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"fan-{i}", "labels": {"fanout": "1"},
                                 "annotations": {"sent": repr(time.perf_counter())}}}
            async with s.post(ns_url, json=body) as r:
                assert r.status == 201, await r.text()
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        del got
    delays.sort()
    return {"p50_ms": delays[len(delays) // 2] * 1000, "p99_ms": delays[int(len(delays) * 0.99)] * 1000,
            "deliveries": len(delays)}


async def big_list(c: Cluster, n: int) -> dict[str, float]:
    connector = aiohttp.TCPConnector(ssl=c.ssl(), limit=50)
    url = f"{c.url}/api/v1/namespaces/kube-public/configmaps"
    async with aiohttp.ClientSession(connector=connector, headers=c.headers()) as s:
        sem = asyncio.Semaphore(50)

        async def create(i: int) -> None:
            async with sem, s.post(url, json={"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": f"l{i}", "labels": {"i": str(i % 10)}},
                                              "data": {"k": "v" * 64}}) as r:
                assert r.status == 201

        await asyncio.gather(*(create(i) for i in range(n)))
        out: dict[str, float] = {}
        for label, headers in [("json", {}), ("table", {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})]:
            times = []
            for _ in range(5):
                t = time.perf_counter()
                async with s.get(url, headers=headers) as r:
                    body = await r.read()
                times.append(time.perf_counter() - t)
            out[f"list_{label}_ms"] = statistics.median(times) * 1000
            out[f"list_{label}_mb"] = len(body) / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--api-workers", type=int, default=None,
                    help="API server workers besides up's own (default: up's default for this machine)")
    args = ap.parse_args()
    secs = 3 if args.quick else 10
    results: dict[str, Any] = {}
    up_args = () if args.api_workers is None else ("--api-workers", str(args.api_workers))
    with Cluster("klbapi", up_args=up_args) as c:
        if shutil.which("wrk"):
            wrk_writes(c, 1, 1)  # warm-up
            results["writes_1_client"] = wrk_writes(c, 1, secs)
            results["writes_50_clients"] = wrk_writes(c, 50, secs)
            results["writes_50_clients_paced_2000"] = wrk_writes(c, 50, secs, rate=2000)
        else:
            print("wrk not installed (apt-get install wrk): write benchmark skipped", file=sys.stderr)
        results["watch_fanout_100"] = asyncio.run(watch_fanout(c, 100, 20 if args.quick else 100))
        results["list_10000"] = asyncio.run(big_list(c, 2000 if args.quick else 10000))
    print(f"{'benchmark':28} result")
    for k, v in results.items():
        print(f"{k:28} " + "  ".join(f"{kk}={vv:.2f}" if isinstance(vv, float) else f"{kk}={vv}" for kk, vv in v.items()))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
