"""How long a pod waits for its network: add_pod / remove_pod latency, against exec'ing ``ip``.

A pod's sandbox is on the critical path of every pod start, and the goal is add_pod in
about 30 ms. The baseline does the same work the way a CNI plugin driven by shell commands
would (one ``ip`` process per step), so the ratio shows what talking netlink in-process
buys. Needs root; everything lives in namespaces of a throw-away cluster name and is
removed at the end, also on failure. Run: ``python bench/bench_network.py [--pods N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid

from kubelite.linux.netns import BRIDGE
from kubelite.node.network import NodeNetwork, cleanup_cluster


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def line(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"{name:<34} p50 {statistics.median(ms):6.1f} ms   p95 {pct(ms, 0.95):6.1f} ms   "
        f"max {max(ms):6.1f} ms   (n={len(ms)})"
    )


def ip_commands_add(node: str, name: str, veth: str, address: str, gateway: str) -> None:
    for argv in (
        ["ip", "netns", "add", name],
        ["ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name],
        ["ip", "-n", node, "link", "set", veth, "master", BRIDGE, "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
        ["ip", "-n", name, "addr", "add", address, "dev", "eth0"],
        ["ip", "-n", name, "link", "set", "eth0", "up"],
        ["ip", "-n", name, "route", "add", "default", "via", gateway],
    ):
        subprocess.run(argv, check=True)


def ip_commands_remove(node: str, name: str, veth: str) -> None:
    subprocess.run(["ip", "-n", node, "link", "del", veth], check=True)
    subprocess.run(["ip", "netns", "delete", name], check=True)


async def run(pods: int) -> None:
    cluster = f"klbench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as state:
        net = NodeNetwork(cluster, "10.244.0.0/16", pathlib.Path(state))
        try:
            started = time.perf_counter()
            await net.setup()
            print(f"{'setup (node netns + bridge)':<34} {(time.perf_counter() - started) * 1000:6.1f} ms")

            uids = [str(uuid.uuid4()) for _ in range(pods)]
            adds, readds, removes = [], [], []
            for uid in uids:
                started = time.perf_counter()
                await net.add_pod(uid)
                adds.append(time.perf_counter() - started)
            for uid in uids:
                started = time.perf_counter()
                await net.add_pod(uid)
                readds.append(time.perf_counter() - started)
            for uid in uids:
                started = time.perf_counter()
                await net.remove_pod(uid)
                removes.append(time.perf_counter() - started)

            # A Deployment scaled up then down: every pod at once.
            started = time.perf_counter()
            await asyncio.gather(*(net.add_pod(uid) for uid in uids))
            burst_add = time.perf_counter() - started
            started = time.perf_counter()
            await asyncio.gather(*(net.remove_pod(uid) for uid in uids))
            burst_remove = time.perf_counter() - started

            shell_adds, shell_removes = [], []
            for i in range(pods):
                name, veth = f"{cluster}-{i:012x}", f"kvbench{i:05d}"
                address = f"10.244.{200 + i // 250}.{1 + i % 250}/16"
                started = time.perf_counter()
                await asyncio.to_thread(ip_commands_add, net.netns, name, veth, address, net.gateway)
                shell_adds.append(time.perf_counter() - started)
                started = time.perf_counter()
                await asyncio.to_thread(ip_commands_remove, net.netns, name, veth)
                shell_removes.append(time.perf_counter() - started)

            print(line("add_pod", adds))
            print(line("add_pod again (idempotent check)", readds))
            print(line("remove_pod", removes))
            print(f"{f'{pods} add_pod at once':<34} {burst_add * 1000:6.1f} ms in all")
            print(f"{f'{pods} remove_pod at once':<34} {burst_remove * 1000:6.1f} ms in all")
            print(line("same add with `ip` commands", shell_adds))
            print(line("same remove with `ip` commands", shell_removes))
            print(
                f"ratio `ip` / in-process (p50): add {statistics.median(shell_adds) / statistics.median(adds):.1f}x, "
                f"remove {statistics.median(shell_removes) / statistics.median(removes):.1f}x"
            )
        finally:
            await net.teardown()
            cleanup_cluster(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs")
    asyncio.run(run(args.pods))


if __name__ == "__main__":
    main()
