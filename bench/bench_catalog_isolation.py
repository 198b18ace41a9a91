"""What a catalog container's own root costs at start (kubelite.node.isolation).

Starts catalog busybox containers (``true``) straight through the runtime, in one network
namespace made for the run, alternately ``privileged: true`` (the host's view and every
capability: what every catalog container was before isolation) and unprivileged (a root of
its own, containerd's capabilities, no_new_privs, seccomp), and reports the time from
``Runtime.start`` to the command's exec (the start returns once it is exec'd) for each,
p50/p90, in the same run. Alternating keeps machine noise out of the comparison.

Usage: sudo python bench/bench_catalog_isolation.py [--count 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

from kubelite.images import resolve
from kubelite.node.runtime import ContainerSpec, Runtime, kill_all


def spec(netns: str, pod: pathlib.Path, privileged: bool, i: int) -> ContainerSpec:
    image = resolve("busybox")
    return ContainerSpec(
        pod_uid="bench", name=f"c{i}", restart_count=0, argv=["true"], env=dict(image.env), workdir="",
        netns_path=netns, hostname="bench", uid=None, gid=None,
        mounts=[(str(pod / "hosts"), "/etc/hosts", False), (str(pod / "data"), "/data", False)],
        log_path=pod / "logs" / f"{i}.log", security_context={"privileged": True} if privileged else {},
        image_paths=list(image.paths), writable_paths=list(image.writable_paths),
    )


async def run(count: int, base: pathlib.Path, name: str) -> dict[str, dict[str, float]]:
    runtime = Runtime(base / "state")
    pod = base / "pod"
    (pod / "data").mkdir(parents=True)
    (pod / "hosts").write_text("127.0.0.1 localhost\n")
    times: dict[str, list[float]] = {"privileged": [], "isolated": []}
    try:
        await runtime.prepare()
        for i in range(count + 2):
            for kind in ("privileged", "isolated"):
                t0 = time.perf_counter()
                cid = await runtime.start(spec(f"/run/netns/{name}", pod, kind == "privileged", i))
                elapsed = time.perf_counter() - t0
                status = await runtime.status(cid)
                if status.reason == "StartError":
                    raise SystemExit(f"{kind}: {status.message}")
                if i >= 2:  # the first starts warm the fork server's caches
                    times[kind].append(elapsed * 1000)
                await runtime.remove(cid)
    finally:
        await runtime.close()
        kill_all(base / "state")
    return {kind: {"p50_ms": statistics.median(v), "p90_ms": statistics.quantiles(v, n=10)[-1]}
            for kind, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="kubelite-bench-iso-"))
    name = f"kl-bench-iso-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        result: dict[str, Any] = dict(asyncio.run(run(args.count, base, name)))
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    result["loadavg"] = dict(zip(("1m", "5m", "15m"), os.getloadavg(), strict=True))
    for kind in ("privileged", "isolated"):
        r = result[kind]
        print(f"{kind:>10}: start p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms")
    print(f"added by isolation (p50): {result['isolated']['p50_ms'] - result['privileged']['p50_ms']:.1f} ms; "
          f"load {os.getloadavg()}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
