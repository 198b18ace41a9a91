"""Cluster DNS throughput and latency: cluster names and cached outside names, with dnsperf.

Starts the DNS server (the same ``DNSServer`` the pod runs, with uvloop) as its own process
on 127.0.0.1, pinned to one CPU when possible, with a cluster of 1,000 ClusterIP Services
and 50 headless ones (10 endpoints each) in its caches, and a fake upstream resolver on
127.0.0.1 for outside names (warmed first, so those runs measure the forwarder's cache).
Then, side by side in one run, for each query mix:
- saturation: dnsperf with 100 queries outstanding (queries per second),
- a fixed 20,000 qps (the goal's rate): p50 / p99 latency from dnsperf's per-query log.
Without dnsperf (Debian package ``dnsperf``) a Python client measures the same, slower.

Usage: python bench/bench_dns.py [--seconds 10] [--rate 20000] [--python] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import dns.message
import dns.rcode
import dns.rrset

SERVICES, HEADLESS, NAMESPACES, OUTSIDE = 1000, 50, 10, 1000


# ---------------------------------------------------------------------------- the server process


async def serve(port: int, upstream: str) -> None:
    import gc

    from kubelite.dns.forward import Forwarder, parse_upstream
    from kubelite.dns.records import ClusterState, Resolver
    from kubelite.dns.server import DNSServer

    state = ClusterState()
    for n in range(NAMESPACES):
        state.set_namespace({"metadata": {"name": f"ns{n}"}})
    for i in range(SERVICES):
        state.set_service({"metadata": {"name": f"svc{i}", "namespace": f"ns{i % NAMESPACES}"}, "spec": {
            "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    for i in range(HEADLESS):
        ns = f"ns{i % NAMESPACES}"
        state.set_service({"metadata": {"name": f"hl{i}", "namespace": ns}, "spec": {
            "clusterIP": "None", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        state.set_slice({"metadata": {"name": f"hl{i}-x", "namespace": ns,
                                      "labels": {"kubernetes.io/service-name": f"hl{i}"}},
                         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                         "endpoints": [{"addresses": [f"10.244.{i}.{j}"], "conditions": {"ready": True},
                                        "hostname": f"p{j}"} for j in range(1, 11)]})
    server = DNSServer(Resolver(state), Forwarder([parse_upstream(upstream)]))
    bound = await server.start("127.0.0.1", port)
    gc.collect()
    gc.freeze()
    print(bound, flush=True)
    await asyncio.Event().wait()


def start_server(upstream: tuple[str, int]) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, __file__, "--serve", f"{upstream[0]}:{upstream[1]}"]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd]  # one core for the server; dnsperf gets the others
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


# ---------------------------------------------------------------------------- a fake upstream


class Upstream(threading.Thread):
    """Answers every A question with 192.0.2.1, TTL 3600 (only cache misses ever get here)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = self.sock.getsockname()

    def run(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 3600, "IN", "A", "192.0.2.1"))
            self.sock.sendto(r.to_wire(), peer)


# ---------------------------------------------------------------------------- query mixes


def cluster_queries() -> list[tuple[str, str]]:
    rng = random.Random(1)
    out: list[tuple[str, str]] = []
    for _ in range(10000):
        i = rng.randrange(SERVICES)
        ns = f"ns{i % NAMESPACES}"
        roll = rng.random()
        if roll < 0.7:
            out.append((f"svc{i}.{ns}.svc.cluster.local", "A"))
        elif roll < 0.8:
            out.append((f"_http._tcp.svc{i}.{ns}.svc.cluster.local", "SRV"))
        elif roll < 0.85:
            h = rng.randrange(HEADLESS)
            out.append((f"hl{h}.ns{h % NAMESPACES}.svc.cluster.local", "A"))
        elif roll < 0.9:
            out.append((f"1.{i % 250}.96.10.in-addr.arpa", "PTR"))
        else:  # the search path's misses: what ndots:5 makes every pod ask first
            out.append((f"svc{i}.{ns}.svc.cluster.local.{ns}.svc.cluster.local", "A"))
    return out


def outside_queries() -> list[tuple[str, str]]:
    return [(f"host{i}.example.test", "A") for i in range(OUTSIDE)]


# ---------------------------------------------------------------------------- measuring


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def run_dnsperf(port: int, queries: list[tuple[str, str]], seconds: float, rate: int | None) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.writelines(f"{n} {t}\n" for n, t in queries)
    try:
        cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", f.name, "-l", str(seconds), "-q", "100"]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            cmd = ["taskset", "-c", "1", *cmd]  # off the server's core
        if rate:
            cmd += ["-Q", str(rate), "-v"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    result: dict[str, float] = {}
    latencies = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("> "):
            latencies.append(float(line.split()[-1]))
        elif line.startswith("Queries per second:"):
            result["qps"] = float(line.split()[-1])
        elif line.startswith("Queries lost:"):
            result["lost"] = float(line.split()[2])
        elif line.startswith("Average Latency (s):"):
            result["avg_ms"] = float(line.split()[3]) * 1000
    if latencies:
        result["p50_ms"] = percentile(latencies, 0.5) * 1000
        result["p99_ms"] = percentile(latencies, 0.99) * 1000
    return result


async def run_python(port: int, queries: list[tuple[str, str]], seconds: float, rate: int | None) -> dict[str, float]:
    """The fallback client: ``outstanding`` queries in flight (or a fixed rate), latency per query."""
    loop = asyncio.get_running_loop()
    wires = [dns.message.make_query(n, t).to_wire() for n, t in queries]
    sent: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    window = asyncio.Semaphore(100)

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            t = sent.pop(int.from_bytes(data[:2], "big"), None)
            if t is not None:
                latencies.append(time.perf_counter() - t)
                window.release()

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    start = time.perf_counter()
    i = 0
    while (now := time.perf_counter()) - start < seconds:
        if rate and i > rate * (now - start):
            await asyncio.sleep(0.0005)
            continue
        await window.acquire()
        qid = i & 0xFFFF
        wire = qid.to_bytes(2, "big") + wires[i % len(wires)][2:]
        sent[qid] = time.perf_counter()
        transport.sendto(wire)
        i += 1
    await asyncio.sleep(0.2)
    done.set()
    transport.close()
    elapsed = time.perf_counter() - start
    return {"qps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "avg_ms": statistics.fmean(latencies) * 1000,
            "lost": float(len(sent))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--python", action="store_true", help="use the Python client even if dnsperf is there")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.serve:
        import uvloop
        uvloop.run(serve(0, args.serve))
        return 0

    upstream = Upstream()
    upstream.start()
    proc, port = start_server(upstream.addr)
    tool = "dnsperf" if shutil.which("dnsperf") and not args.python else "python"
    results: dict[str, Any] = {"tool": tool, "machine": os.uname().machine, "cpus": os.cpu_count(),
                               "services": SERVICES, "headless": HEADLESS}
    try:
        # Warm the forwarder's cache: the outside runs measure cached answers, as the goal says.
        asyncio.run(run_python(port, outside_queries(), 1.0, 2000))
        for label, queries in (("cluster", cluster_queries()), ("outside_cached", outside_queries())):
            for mode, rate in (("saturation", None), (f"at_{args.rate}_qps", args.rate)):
                if tool == "dnsperf":
                    r = run_dnsperf(port, queries, args.seconds, rate)
                else:
                    r = asyncio.run(run_python(port, queries, args.seconds, rate))
                results[f"{label}_{mode}"] = r
                p = f"p50 {r.get('p50_ms', float('nan')):.3f} ms, p99 {r.get('p99_ms', float('nan')):.3f} ms" \
                    if "p50_ms" in r else f"avg {r.get('avg_ms', float('nan')):.3f} ms"
                print(f"{label:15s} {mode:16s} {r['qps']:9.0f} qps  {p}  lost {int(r.get('lost', 0))}", flush=True)
    finally:
        proc.terminate()
        proc.wait()
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
