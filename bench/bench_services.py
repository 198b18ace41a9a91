"""ClusterIP allocation stays O(1): latency of creating Service #N as the range fills.

Creates N Services one after another on a real ``kubelite up`` and compares the median
create latency of the first 100 with that of the last 100 (same run, side by side), and
the same for a /16 nearly full, where random probing has to work hardest.

Usage: python bench/bench_services.py [--quick] [--services N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import time
from typing import Any

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster


async def create_many(c: Cluster, n: int) -> list[float]:
    url = f"{c.url}/api/v1/namespaces/default/services"
    times: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=c.ssl()), headers=c.headers()) as s:
        for i in range(n):
            body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
                    "spec": {"ports": [{"port": 80}], "selector": {"app": f"a{i}"}}}
            t = time.perf_counter()
            async with s.post(url, json=body) as r:
                assert r.status == 201, await r.text()
                await r.read()
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--services", type=int, default=None, help="default 10,000 (2,000 with --quick; at least 200)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n = max(200, args.services or (2000 if args.quick else 10000))
    with Cluster("klbsv") as c:
        times = asyncio.run(create_many(c, n))
    first = statistics.median(times[:100]) * 1000
    last = statistics.median(times[-100:]) * 1000
    results: dict[str, Any] = {
        "services": n,
        "first_100_median_ms": round(first, 3),
        "last_100_median_ms": round(last, 3),
        "ratio_last_vs_first": round(last / first, 3),
        "total_s": round(sum(times), 2),
    }
    for k, v in results.items():
        print(f"{k:24} {v}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
