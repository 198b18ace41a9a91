"""`kubectl delete cm --all` on thousands of ConfigMaps: where the time goes.

An issue found `kubectl delete cm --all` on 6,343 ConfigMaps still running after 10 minutes
although every object was gone. kubectl deletes each object with its own REST client (no
shared rate limit), then, with ``--wait`` (the default), checks each deleted object with
``IsDeleted``: one GET per object, in sequence, through ONE dynamic client that client-go
rate-limits to 5 requests/s (burst 10). Our DELETE answers 200 with the object gone and each
GET answers 404 at once, so no watch is ever opened; the 5/s is kubectl's own pace, and
against kube-apiserver it is the same (kubernetes/kubernetes#125407). This measures, for
N ConfigMaps created through the API, the time of `kubectl delete cm --all` with and
without ``--wait=false``, and counts from kubectl's own log (-v=6) its DELETEs, its wait
GETs, the 404s, the watches it opened and the requests its rate limiter held back.

Usage: python bench/bench_kubectl_delete_all.py [--objects 2000 6000] [SRC]
(SRC: a tree's ``src`` directory, or ``-`` for the installed kubelite).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import pathlib
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

import aiohttp
import orjson
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from write_cpu import Up


def admin_tls(u: Up) -> ssl.SSLContext:
    """TLS presenting the cluster admin's client certificate from its kubeconfig."""
    kc = yaml.safe_load((u.dir / "kubeconfig").read_text())
    user = kc["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=str(u.dir / "pki" / "ca.crt"))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/c.crt", f"{tmp}/c.key"
        pathlib.Path(cert).write_bytes(base64.b64decode(user["client-certificate-data"]))
        pathlib.Path(key).write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
    return ctx


async def create(u: Up, namespace: str, n: int) -> None:
    ctx = admin_tls(u)
    base = f"https://127.0.0.1:{u.port}/api/v1"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=8)) as s:
        async with s.post(f"{base}/namespaces", data=orjson.dumps({"metadata": {"name": namespace}})) as r:
            await r.read()

        async def one(i: int) -> None:
            body = orjson.dumps({"metadata": {"name": f"cm-{i}"}, "data": {"k": "v"}})
            async with s.post(f"{base}/namespaces/{namespace}/configmaps", data=body,
                              headers={"Content-Type": "application/json"}) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"create: {r.status}")

        for start in range(0, n, 200):
            await asyncio.gather(*(one(i) for i in range(start, min(n, start + 200))))


def delete_all(u: Up, namespace: str, *extra: str) -> dict[str, float]:
    env = {**os.environ, "KUBECONFIG": str(u.dir / "kubeconfig")}
    t0 = time.monotonic()
    res = subprocess.run(["kubectl", "delete", "cm", "--all", "-n", namespace, "-v=6", *extra],
                         capture_output=True, text=True, env=env, timeout=3600)
    elapsed = time.monotonic() - t0
    log = res.stderr
    left = subprocess.run(["kubectl", "get", "cm", "-n", namespace, "--no-headers"], capture_output=True,
                          text=True, env=env, timeout=120).stdout
    return {
        "seconds": elapsed,
        "rc": float(res.returncode),
        "deletes": float(len(re.findall(r'verb="DELETE"', log))),
        "wait_gets": float(len(re.findall(r'verb="GET" url="[^"]*/configmaps/cm-', log))),
        "get_404": float(len(re.findall(r'verb="GET" url="[^"]*/configmaps/cm-[^"]*" status="404', log))),
        "watches": float(log.count("watch=true")),
        "throttled": float(log.count("client-side throttling")),
        "left": float(sum(1 for line in left.splitlines() if line.startswith("cm-"))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, nargs="+", default=[2000, 6000])
    ap.add_argument("src", nargs="?", default="-")
    args = ap.parse_args()
    u = Up(args.src)
    try:
        u.up()
        for n in args.objects:
            for mode, extra in (("--wait=false", ("--wait=false",)), ("--wait (default)", ())):
                ns = f"del-{n}-{'nowait' if extra else 'wait'}"
                t0 = time.monotonic()
                asyncio.run(create(u, ns, n))
                made = time.monotonic() - t0
                res = delete_all(u, ns, *extra)
                print(f"{n} objects (created in {made:.1f}s), kubectl delete cm --all {mode}: "
                      + ", ".join(f"{k} {v:.0f}" if k != "seconds" else f"{k} {v:.1f}" for k, v in res.items()),
                      flush=True)
    finally:
        u.down()
        shutil.rmtree(u.dir, ignore_errors=True)  # write_cpu.Up leaves its directory


if __name__ == "__main__":
    main()
