"""The API server's memory through a burst of objects and of watches, and whether it comes back.

An issue saw the API server's RSS stay at its peak after the objects that raised it were
deleted and after the watches that raised it closed (188 -> 203 MB after 20,000 ConfigMaps
came and went; 334 MB with 1,000 watches open). This starts one `kubelite up --no-agent` per
source tree side by side and reads RSS and PSS (/proc/PID/smaps_rollup) of the API server
process (``up`` serves the API itself) at each step:

  baseline; after N ConfigMaps were created (20 clients); after they were deleted and the
  store's watch history let go of them (a compaction); with W watches open (each reads its
  initial event, so it is really serving); after the clients closed them.

It also reads the watches being served from /metrics (``apiserver_longrunning_requests``,
verb WATCH) when the tree serves it (-1: it does not), so a watch that outlives its client
shows.

Usage: python bench/bench_apiserver_memory.py [--objects 20000] [--watches 1000] SRC [SRC ...]
where each SRC is a tree's ``src`` directory, or ``-`` for the installed kubelite.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shutil
import ssl
import sys
import time

import aiohttp
import orjson

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import memory_kib
from write_cpu import Up

STEPS = ("baseline", "created", "deleted", "compacted", "watching", "closed")


class Client:
    def __init__(self, u: Up) -> None:
        self.u = u
        self.ctx = ssl.create_default_context(cafile=str(u.dir / "pki" / "ca.crt"))
        self.base = f"https://127.0.0.1:{u.port}"
        self.auth = {"Authorization": f"Bearer {u.token}"}
        # Trees before the gauge serve no line for it at all; later ones none while no watch is open.
        self.has_gauge = u.src == "-" or (pathlib.Path(u.src) / "kubelite/apiserver/watchstreams.py").exists()

    def session(self, limit: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ctx, limit=limit),
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=None))

    async def watchers(self) -> int:
        async with self.session(1) as s, s.get(f"{self.base}/metrics", headers=self.auth) as r:
            text = (await r.read()).decode()
        if not self.has_gauge:
            return -1
        lines = [line for line in text.splitlines() if line.startswith("apiserver_longrunning_requests{")]
        return sum(int(float(line.split()[-1])) for line in lines if 'verb="WATCH"' in line)

    async def churn(self, n: int, clients: int = 20) -> tuple[float, float]:
        url = f"{self.base}/api/v1/namespaces/default/configmaps"
        headers = {**self.auth, "Content-Type": "application/json"}
        async with self.session(clients) as s:
            async def create(k: int) -> None:
                for i in range(k, n, clients):
                    body = orjson.dumps({"metadata": {"name": f"mem-{i}"}, "data": {"k": "v" * 200}})
                    async with s.post(url, data=body, headers=headers) as r:
                        await r.read()
                        if r.status != 201:
                            raise RuntimeError(f"create: {r.status}")

            async def delete(k: int) -> None:
                for i in range(k, n, clients):
                    async with s.delete(f"{url}/mem-{i}", headers=self.auth) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"delete: {r.status}")

            t0 = time.monotonic()
            await asyncio.gather(*(create(k) for k in range(clients)))
            t1 = time.monotonic()
            created.set()
            await proceed.wait()
            await asyncio.gather(*(delete(k) for k in range(clients)))
            return t1 - t0, time.monotonic() - t1

    async def watch_many(self, w: int, opened: asyncio.Event, close: asyncio.Event) -> None:
        ns_url = f"{self.base}/api/v1/namespaces/default/configmaps"
        async with self.session(w + 1) as s:
            async with s.post(ns_url, data=orjson.dumps({"metadata": {"name": "watched"}}),
                              headers={**self.auth, "Content-Type": "application/json"}) as r:
                await r.read()
            responses: list[aiohttp.ClientResponse] = []

            async def one() -> None:
                r = await s.get(f"{ns_url}?watch=1&fieldSelector=metadata.name%3Dwatched", headers=self.auth)
                await r.content.readline()  # the initial ADDED: the watch is being served
                responses.append(r)

            await asyncio.gather(*(one() for _ in range(w)))
            opened.set()
            await close.wait()
            for r in responses:
                r.close()


created = asyncio.Event()
proceed = asyncio.Event()


async def measure_tree(u: Up, objects: int, watches: int, settle: float, window_wait: float) -> dict[str, tuple[int, int, int]]:
    global created, proceed
    created, proceed = asyncio.Event(), asyncio.Event()
    c = Client(u)
    assert u.proc is not None
    pid = u.proc.pid
    out: dict[str, tuple[int, int, int]] = {}

    async def snap(step: str) -> None:
        await asyncio.sleep(settle)
        rss, pss = memory_kib(pid)
        out[step] = (rss, pss, await c.watchers())
        print(f"  {u.src} {step}: RSS {rss / 1024:.1f} MB, PSS {pss / 1024:.1f} MB, watches served {out[step][2]}",
              flush=True)

    await snap("baseline")
    churn = asyncio.create_task(c.churn(objects))
    await created.wait()
    await snap("created")
    proceed.set()
    await churn
    await snap("deleted")
    if window_wait:
        # The store keeps deleted objects' events for its history window (300 s) and compacts
        # every 30 s: past both, what stays is what the server holds beyond its history.
        await asyncio.sleep(window_wait)
        await snap("compacted")
    opened, close = asyncio.Event(), asyncio.Event()
    watching = asyncio.create_task(c.watch_many(watches, opened, close))
    await opened.wait()
    await snap("watching")
    close.set()
    await watching
    await snap("closed")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--watches", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each reading")
    ap.add_argument("--window-wait", type=float, default=0.0,
                    help="seconds to wait after the deletes for the store's history window (330 covers it)")
    ap.add_argument("src", nargs="+")
    args = ap.parse_args()
    ups = [Up(src) for src in args.src]
    results: dict[str, dict[str, tuple[int, int, int]]] = {}
    try:
        for u in ups:
            u.up()
        for u in ups:
            results[u.src] = asyncio.run(measure_tree(u, args.objects, args.watches, args.settle, args.window_wait))
    finally:
        for u in ups:
            u.down()
            shutil.rmtree(u.dir, ignore_errors=True)  # write_cpu.Up leaves its directory
    print("step       " + "".join(f"{src[-24:]:>34}" for src in results))
    for step in STEPS:
        if any(step not in r for r in results.values()):
            continue
        print(f"{step:10} " + "".join(
            f"{r[step][0] / 1024:>12.1f} MB RSS {r[step][1] / 1024:>7.1f} PSS w={r[step][2]:<4}" for r in results.values()))


if __name__ == "__main__":
    main()
