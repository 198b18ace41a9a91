"""Many clients merge-patching one object: the throughput and tail latency of contended writes.

A controller fleet often writes one object at once (a leader-election Lease, a shared
ConfigMap, a Deployment's status). kube-apiserver applies a patch that names no
resourceVersion with ``GuaranteedUpdate``: read, apply, compare-and-swap, and on a lost swap
retry at once against the new state, so contention costs re-reads, never sleeps nor 409s.
This starts one `kubelite up --no-agent` per source tree side by side, creates one ConfigMap,
and lets N clients (HTTPS, one connection each, service-account token) send merge patches of
it for a fixed time, each patch setting the client's own key. It prints patches/s, p50 and
p99 latency, the count of non-200 answers, and checks that the last patch of every client
is in the object (no lost write). Rounds rotate the trees' order; the median is printed.

Usage: python bench/bench_patch_contention.py [--clients 20] [--seconds 5] [--rounds 3] SRC [SRC ...]
where each SRC is a tree's ``src`` directory, or ``-`` for the installed kubelite.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shutil
import ssl
import statistics
import sys
import time

import aiohttp
import orjson

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from write_cpu import Up


async def contend(u: Up, clients: int, seconds: float, rnd: int) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=str(u.dir / "pki" / "ca.crt"))
    base = f"https://127.0.0.1:{u.port}/api/v1/namespaces/default/configmaps"
    name = f"contended-{rnd}"
    auth = {"Authorization": f"Bearer {u.token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=clients + 1)) as s:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}
        async with s.post(base, data=orjson.dumps(body), headers={**auth, "Content-Type": "application/json"}) as r:
            await r.read()
            if r.status != 201:
                raise RuntimeError(f"create: {r.status}")
        latencies: list[float] = []
        failures = 0
        last: dict[str, str] = {}
        stop = time.monotonic() + seconds
        headers = {**auth, "Content-Type": "application/merge-patch+json"}

        async def client(k: int) -> None:
            nonlocal failures
            i = 0
            while time.monotonic() < stop:
                patch = orjson.dumps({"data": {f"c{k}": str(i)}})
                t0 = time.monotonic()
                async with s.patch(f"{base}/{name}", data=patch, headers=headers) as r:
                    await r.read()
                    latencies.append(time.monotonic() - t0)
                    if r.status == 200:
                        last[f"c{k}"] = str(i)
                    else:
                        failures += 1
                i += 1

        t0 = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.monotonic() - t0
        async with s.get(f"{base}/{name}", headers=auth) as r:
            data = (orjson.loads(await r.read())).get("data") or {}
        lost = sum(1 for k, v in last.items() if data.get(k) != v)
    latencies.sort()
    ok = len(latencies) - failures
    return {
        "patches_per_s": ok / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3 if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3 if latencies else 0.0,
        "failed": float(failures),
        "lost": float(lost),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("src", nargs="+")
    args = ap.parse_args()
    ups = [Up(src) for src in args.src]
    try:
        for u in ups:
            u.up()
        results: dict[str, list[dict[str, float]]] = {u.src: [] for u in ups}
        for r in range(args.rounds):
            for u in ups[r % len(ups):] + ups[:r % len(ups)]:
                res = asyncio.run(contend(u, args.clients, args.seconds, r))
                results[u.src].append(res)
                print(f"round {r} {u.src}: " + ", ".join(f"{k} {v:.1f}" for k, v in res.items()), flush=True)
        medians = {src: {k: statistics.median(d[k] for d in rs) for k in rs[0]} for src, rs in results.items()}
        for src, m in medians.items():
            print(f"median {src}: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
        if len(ups) > 1:
            first, *rest = medians.values()
            for src, m in zip(args.src[1:], rest, strict=True):
                ratio = m["patches_per_s"] / first["patches_per_s"] if first["patches_per_s"] else float("inf")
                print(f"throughput {src} / {args.src[0]}: {ratio:.1f}x")
    finally:
        for u in ups:
            u.down()
            shutil.rmtree(u.dir, ignore_errors=True)  # write_cpu.Up leaves its directory


if __name__ == "__main__":
    main()
