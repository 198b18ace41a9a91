"""OCI image pods beside catalog pods: create → Ready latency and per-container memory (issue 16).

Runs one real ``kubelite up`` (as root) whose agent knows one OCI image already unpacked
(a busybox-static root, built offline like the e2e tests' and given to the agent through
its image catalog: an entry with ``rootfs``) and the catalog's own ``busybox``. For each
kind, in the same run and on the same node, it measures pod create → Ready (the watch
delivering ``Ready=True``) for pods started one at a time, then for pods created at a steady
rate (10/s by default, the Kubernetes density test's latency pods), and reports p50/p99
side by side with the ratio. With the paced pods running it measures the memory each
container costs outside the container's own process: the PSS of its shim (runc has exited
by then: the OCI container's only helper is the shim, as for catalog containers), and
notes the runc processes still alive (expected: none).

Usage: sudo python bench/bench_oci_start.py [--serial 10] [--paced 100] [--rate 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from harness import Cluster, memory_kib
from kubelite.client import PODS, Client

NS = "default"
OCI_IMAGE = "localhost/bench/busybox-oci:1"
SETTLE = 20.0  # seconds of quiet after a kind's pods are torn down, for the kernel's namespace cleanup


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build_rootfs(dest: pathlib.Path) -> pathlib.Path:
    """busybox-static's binary and a symlink per applet: ``apt-get download`` + ``dpkg-deb -x``, not installed."""
    cache = dest.parent / "deb"
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "busybox-static"], cwd=cache, check=True, capture_output=True)
    deb = next(cache.glob("busybox-static_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "x")], check=True)
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(cache / "x" / "bin" / "busybox", dest / "bin" / "busybox")
    applets = subprocess.run([str(dest / "bin" / "busybox"), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if not (dest / "bin" / applet).exists():
            (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def live_shims(state_dir: pathlib.Path, oci: bool) -> list[int]:
    """The pids of the running shims of containers "c" of one kind."""
    shims = []
    for spec_file in state_dir.glob("containers/*/spec.json"):
        with contextlib.suppress(OSError, ValueError):
            spec = json.loads(spec_file.read_text())
            if spec.get("name") == "c" and (spec_file.parent / "shim.pid").exists():
                pid = int((spec_file.parent / "shim.pid").read_text())
                if os.path.exists(f"/proc/{pid}") and bool(spec.get("oci")) == oci:
                    shims.append(pid)
    return shims


def count_netns(cluster: str) -> int:
    """The cluster's named network namespaces (the node's, and one per pod sandbox)."""
    return len(list(pathlib.Path("/run/netns").glob(f"{cluster}-*")))


def shim_memory(state_dir: pathlib.Path, oci: bool) -> tuple[list[int], int]:
    """PSS (KiB) of the running shims of containers "c" of one kind, and how many runc processes live."""
    pss = [memory_kib(pid)[1] for pid in live_shims(state_dir, oci)]
    runc_alive = 0
    for comm in pathlib.Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            runc_alive += comm.read_text(errors="replace").strip() in ("runc", "runc:[2:INIT]")
    return pss, runc_alive


async def measure(kubeconfig: pathlib.Path, node: str, image: str, prefix: str, serial: int, paced: int,
                  rate: float, state_dir: pathlib.Path) -> dict[str, Any]:
    client = Client.from_kubeconfig(kubeconfig, max_connections=64)
    sent: dict[str, float] = {}
    ready: dict[str, float] = {}
    waiting: set[str] = set()
    gone: set[str] = set()
    done = asyncio.Event()

    async def watch() -> None:
        async for kind, pod in client.watch(PODS, NS, label_selector=f"bench={prefix}"):
            name = pod["metadata"].get("name", "")
            if kind == "DELETED":
                gone.add(name)
                continue
            conds = (pod.get("status") or {}).get("conditions") or []
            if name in waiting and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                ready[name] = time.perf_counter()
                waiting.discard(name)
                if not waiting:
                    done.set()

    cluster_prefix = node.removesuffix("-node")
    netns_before = await asyncio.to_thread(count_netns, cluster_prefix)
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)

    async def create(name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": prefix}},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}}
        sent[name] = time.perf_counter()
        await client.create(PODS, body, NS)

    serial_names = [f"{prefix}-serial-{i:03d}" for i in range(serial)]
    for name in serial_names:
        waiting.add(name)
        done.clear()
        await create(name)
        await asyncio.wait_for(done.wait(), 60)
    paced_names = [f"{prefix}-paced-{i:03d}" for i in range(paced)]
    waiting.update(paced_names)
    done.clear()
    start = time.perf_counter()
    creates = []
    for i, name in enumerate(paced_names):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        creates.append(asyncio.create_task(create(name)))
    await asyncio.gather(*creates)
    await asyncio.wait_for(done.wait(), 180)
    await asyncio.sleep(2)  # the shims settle (start-up buffers freed) before memory is read
    pss, runc_alive = await asyncio.to_thread(shim_memory, state_dir, prefix == "oci")
    for name in serial_names + paced_names:
        await client.delete(PODS, name, NS)
    async with asyncio.timeout(120):
        while not gone.issuperset(serial_names + paced_names):
            await asyncio.sleep(0.1)
    deleted_at = time.perf_counter()
    # The node finishes tearing the pods down (shims stopped, network namespaces removed)
    # after the API has forgotten them, and the kernel then destroys those namespaces in
    # the background (its cleanup_net work, under the rtnl lock a new pod's veth needs).
    # Measured: right after the namespaces' files were gone the first pod waited ~0.45 s in
    # its network set-up; 5 s later, runs of consecutive pods still waited 0.2-1.5 s (3 of 5
    # runs); after 20 s of quiet, none did. The next kind starts on a quiet node.
    async with asyncio.timeout(120):
        while (await asyncio.to_thread(live_shims, state_dir, prefix == "oci")
               or await asyncio.to_thread(count_netns, cluster_prefix) > netns_before):
            await asyncio.sleep(0.1)
    teardown_s = time.perf_counter() - deleted_at
    await asyncio.sleep(SETTLE)
    watcher.cancel()
    await client.close()
    serial_lat = [ready[n] - sent[n] for n in serial_names]
    paced_lat = [ready[n] - sent[n] for n in paced_names]
    return {
        "image": image,
        "serial_p50_ms": round(statistics.median(serial_lat) * 1000, 1),
        "serial_p99_ms": round(percentile(serial_lat, 99) * 1000, 1),
        "serial_ms": [round(v * 1000, 1) for v in serial_lat],
        "paced_p50_ms": round(statistics.median(paced_lat) * 1000, 1),
        "paced_p99_ms": round(percentile(paced_lat, 99) * 1000, 1),
        "paced_slowest_ms": [round(v * 1000, 1) for v in sorted(paced_lat)[-5:]],
        # Which of the paced pods they were (their order of creation, at 1/rate apart).
        "paced_slowest_at": sorted(range(len(paced_lat)), key=lambda i: paced_lat[i])[-5:],
        "shims_measured": len(pss),
        "shim_pss_kib_mean": round(statistics.mean(pss)) if pss else None,
        "runc_processes_alive": runc_alive,
        "teardown_after_delete_s": round(teardown_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serial", type=int, default=10)
    parser.add_argument("--paced", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", choices=("catalog", "oci"), default=None)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("runc"):
        sys.exit("bench_oci_start needs root and runc")
    base = pathlib.Path(tempfile.mkdtemp(prefix="kl-bench-oci-"))
    try:
        root = build_rootfs(base / "rootfs")
        catalog = base / "catalog.yaml"
        catalog.write_text(json.dumps({OCI_IMAGE: {"rootfs": str(root), "env": {"PATH": "/bin"}, "cmd": ["sh"]}}))
        os.environ["KUBELITE_IMAGE_CATALOG"] = str(catalog)
        with Cluster("kloci") as cluster:
            node = f"{cluster.name}-node"
            state_dir = cluster.dir / "agent"
            results = {}
            for prefix, image in (("catalog", "busybox"), ("oci", OCI_IMAGE)):
                if args.only and prefix != args.only:
                    continue
                results[prefix] = asyncio.run(measure(cluster.kubeconfig, node, image, prefix, args.serial,
                                                      args.paced, args.rate, state_dir))
        out: dict[str, Any] = {**results, "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
        c, o = results.get("catalog", {}), results.get("oci", {})
        out["ratio_oci_over_catalog"] = {k: round(o[k] / c[k], 2) for k in
                                         ("serial_p50_ms", "serial_p99_ms", "paced_p50_ms", "paced_p99_ms",
                                          "shim_pss_kib_mean") if c.get(k) and o.get(k)}
        print(json.dumps(out, indent=2))
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
