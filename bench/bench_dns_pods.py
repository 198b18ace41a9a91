"""Cluster DNS as pods see it: dnsperf inside a pod against the kube-dns ClusterIP of a real cluster.

``bench_dns.py`` measures the server alone on loopback; this one measures the whole path a
pod's query takes on a ``kubelite up`` cluster: pod netns → veth → bridge → the proxy's
nftables DNAT of 10.96.0.10 → the ``coredns`` pod (the server, pinned to CPU 0 when there
are several) and back. The cluster holds 1,000 ClusterIP Services and 50 headless ones with
10 named endpoints each, in 10 namespaces (the same shape and query mixes as bench_dns.py).
Outside names are answered by a fake upstream the benchmark runs on the node's address
(``coredns`` is rolled with ``--upstream`` to it: no query leaves the machine), warmed
before each run, so those runs measure the forwarder's cache. For each mix:
- saturation: dnsperf with 100 queries outstanding (queries per second),
- a fixed 20,000 qps (the goal's rate): p50 / p99 latency from dnsperf's per-query log.
dnsperf (Debian package ``dnsperf``) runs in a pod (pinned to CPU 1), writes its log inside
the pod and a small script there reduces it, so nothing streams through kubectl while it runs.

Needs root and dnsperf. Usage: python bench/bench_dns_pods.py [--seconds 10] [--rate 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any

import dns.message
import dns.rrset

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import KubeliteProcess, poll
from kubelite.client import CONFIGMAPS, ENDPOINTSLICES, NAMESPACES, PODS, SERVICES, ApiError, Client
from kubelite.linux.netns import in_netns

Obj = dict[str, Any]
SERVICES_N, HEADLESS, NAMESPACES_N, OUTSIDE = 1000, 50, 10, 1000
DNS_IP, NODE_IP = "10.96.0.10", "10.244.0.1"
MULTI_CPU = (os.cpu_count() or 1) > 1

# Inside the client pod: "RUN FILE SECONDS RATE CPU" runs dnsperf (RATE 0: saturation; with a
# rate, the per-query log), its output to a file, then prints a JSON summary; "WARM FILE" asks
# every name of FILE once, slowly enough for the fake upstream.
RUNNER = r"""
import json, subprocess, sys
mode, path = sys.argv[1], sys.argv[2]
base = ["dnsperf", "-s", "10.96.0.10", "-d", path]
if mode == "WARM":
    subprocess.run(base + ["-n", "1", "-Q", "2000"], check=True, capture_output=True)
    sys.exit()
seconds, rate, cpu = sys.argv[3], int(sys.argv[4]), sys.argv[5]
cmd = base + ["-l", seconds, "-q", "100"] + (["-Q", str(rate), "-v"] if rate else [])
if cpu != "-":
    cmd = ["taskset", "-c", cpu] + cmd
with open("/tmp/dnsperf.out", "w") as out:
    subprocess.run(cmd, stdout=out, check=True)
result, latencies = {}, []
for line in open("/tmp/dnsperf.out"):
    line = line.strip()
    if line.startswith("> "):
        latencies.append(float(line.split()[-1]))
    elif line.startswith("Queries per second:"):
        result["qps"] = float(line.split()[-1])
    elif line.startswith("Queries lost:"):
        result["lost"] = int(line.split()[2])
    elif line.startswith("Average Latency (s):"):
        result["avg_ms"] = float(line.split()[3]) * 1000
    elif line.startswith("Response codes:"):
        result["rcodes"] = line.split(":", 1)[1].strip()
if latencies:
    latencies.sort()
    for p in (50, 99):
        result[f"p{p}_ms"] = latencies[min(len(latencies) - 1, len(latencies) * p // 100)] * 1000
print(json.dumps(result))
"""


class Upstream(threading.Thread):
    """Answers every A question with 192.0.2.1, TTL 3600, on the node's address inside the
    node netns (where the coredns pod reaches it); only cache misses ever get here."""

    def __init__(self, netns_path: str) -> None:
        super().__init__(daemon=True)
        with in_netns(netns_path):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((NODE_IP, 0))
        self.port: int = self.sock.getsockname()[1]
        self.queries = 0

    def run(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.queries += 1
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 3600, "IN", "A", "192.0.2.1"))
            self.sock.sendto(r.to_wire(), peer)


def cluster_queries(cluster_ips: list[str]) -> list[str]:
    """bench_dns.py's mix, with the ClusterIPs the cluster allocated."""
    rng = random.Random(1)
    out: list[str] = []
    for _ in range(10000):
        i = rng.randrange(SERVICES_N)
        ns = f"ns{i % NAMESPACES_N}"
        roll = rng.random()
        if roll < 0.7:
            out.append(f"svc{i}.{ns}.svc.cluster.local A")
        elif roll < 0.8:
            out.append(f"_http._tcp.svc{i}.{ns}.svc.cluster.local SRV")
        elif roll < 0.85:
            h = rng.randrange(HEADLESS)
            out.append(f"hl{h}.ns{h % NAMESPACES_N}.svc.cluster.local A")
        elif roll < 0.9:
            out.append(".".join(reversed(cluster_ips[i].split("."))) + ".in-addr.arpa PTR")
        else:  # the search path's misses: what ndots:5 makes every pod ask first
            out.append(f"svc{i}.{ns}.svc.cluster.local.{ns}.svc.cluster.local A")
    return out


def outside_queries() -> list[str]:
    return [f"host{i}.example.test A" for i in range(OUTSIDE)]


class Bench(KubeliteProcess):
    def __init__(self, seconds: float, rate: int) -> None:
        self.seconds, self.rate = seconds, rate
        super().__init__(f"klbd-{secrets.token_hex(3)}", pathlib.Path(tempfile.mkdtemp(prefix="kl-bench-dns-")))
        self.results: dict[str, Any] = {}
        self.dns_pod: Obj = {}

    async def dns_pods(self) -> list[Obj]:
        items: list[Obj] = (await self.api.list(PODS, "kube-system", label_selector="k8s-app=kube-dns"))["items"]
        return items

    @staticmethod
    def ready(p: Obj) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions") or [])

    # -- the cluster

    async def use_fake_upstream(self, upstream: Upstream) -> None:
        """Roll coredns to forward to the fake upstream; nothing may be left of the old pod
        (it forwarded to the host's resolvers), neither the pod nor its proxy rule."""
        old = {p["metadata"]["name"]: p["status"]["podIP"] for p in await self.dns_pods()}
        await self.sh("kubectl", "-n", "kube-system", "patch", "deployment", "coredns", "--type=json", "-p",
                      json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a}
                                  for a in ("--upstream", f"{NODE_IP}:{upstream.port}")]))

        async def new_pod() -> list[Obj]:
            return [p for p in await self.dns_pods() if p["metadata"]["name"] not in old and self.ready(p)]

        new = (await poll("the new coredns pod", new_pod))[0]
        await self.sh("kubectl", "-n", "kube-system", "delete", "pod", *old, "--grace-period=0", "--force")

        async def only_new() -> bool:
            table = await self.sh("nsenter", f"--net={self.netns}", "nft", "list", "table", "ip", "kube-proxy")
            # Plain ClusterIP ports DNAT in their service chain (no endpoint chains).
            return (f"{new['status']['podIP']}:53" in table
                    and not any(f"{ip}:" in table for ip in old.values()))

        await poll("kube-dns through the new pod only", only_new)
        self.dns_pod = new

    def pin_server(self) -> int:
        """The coredns process (found by its pod's netns) pinned to CPU 0, all its threads."""
        uid = self.dns_pod["metadata"]["uid"].replace("-", "")[:12]
        netns_ino = os.stat(f"/run/netns/{self.name}-{uid}").st_ino
        for entry in pathlib.Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if (b"kubelite.dns" in (entry / "cmdline").read_bytes()
                        and os.stat(entry / "ns" / "net").st_ino == netns_ino):
                    pid = int(entry.name)
                    if MULTI_CPU and shutil.which("taskset"):
                        subprocess.run(["taskset", "-a", "-pc", "0", str(pid)], check=True, capture_output=True)
                    return pid
        raise RuntimeError("coredns process not found")

    async def populate(self) -> list[str]:
        """Namespaces, Services and headless Services with EndpointSlices; returns the ClusterIPs."""
        for n in range(NAMESPACES_N):
            await self.api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{n}"}})
        port = [{"name": "http", "port": 80, "protocol": "TCP"}]

        async def svc(i: int) -> str:
            created = await self.api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {
                "name": f"svc{i}"}, "spec": {"ports": port}}, f"ns{i % NAMESPACES_N}")
            return str(created["spec"]["clusterIP"])

        async def headless(i: int) -> None:
            ns = f"ns{i % NAMESPACES_N}"
            await self.api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"hl{i}"},
                                             "spec": {"clusterIP": "None", "ports": port}}, ns)
            await self.api.create(ENDPOINTSLICES, {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"hl{i}-x", "labels": {"kubernetes.io/service-name": f"hl{i}"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                # Never reached: DNS only lists them (outside the pod CIDR on purpose).
                "endpoints": [{"addresses": [f"10.250.{i}.{j}"], "conditions": {"ready": True}, "hostname": f"p{j}"}
                              for j in range(1, 11)]}, ns)

        ips: list[str] = []
        for start in range(0, SERVICES_N, 50):
            ips += await asyncio.gather(*(svc(i) for i in range(start, min(start + 50, SERVICES_N))))
        await asyncio.gather(*(headless(i) for i in range(HEADLESS)))
        return ips

    async def client_pod(self, ips: list[str]) -> None:
        await self.api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "queries"},
                                           "data": {"cluster.txt": "\n".join(cluster_queries(ips)) + "\n",
                                                    "outside.txt": "\n".join(outside_queries()) + "\n"}}, "default")
        await self.api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "perf"}, "spec": {
            "volumes": [{"name": "queries", "configMap": {"name": "queries"}}],
            # busybox: its applets (nslookup) and the host's binaries (dnsperf, taskset, python3).
            "containers": [{"name": "perf", "image": "busybox", "command": ["sleep", "36000"],
                            "volumeMounts": [{"name": "queries", "mountPath": "/queries"}]}]}}, "default")

        async def ready() -> bool:
            try:
                return self.ready(await self.api.get(PODS, "perf", "default"))
            except ApiError:
                return False

        await poll("the perf pod", ready)

        async def known() -> bool:  # the last objects created are in cluster DNS's caches
            name = f"p10.hl{HEADLESS - 1}.ns{(HEADLESS - 1) % NAMESPACES_N}.svc.cluster.local"
            out = await self.sh("kubectl", "exec", "perf", "--", "sh", "-c", f"nslookup {name} {DNS_IP} || true")
            return f"10.250.{HEADLESS - 1}.10" in out

        await poll("cluster DNS to know every Service", known)

    async def run_in_pod(self, *args: str) -> str:
        return await self.sh("kubectl", "exec", "perf", "--", "python3", "-c", RUNNER, *args)

    # -- the measurement

    async def measure(self, upstream: Upstream) -> None:
        cpu = "1" if MULTI_CPU and shutil.which("taskset") else "-"
        for label, path in (("cluster", "/queries/cluster.txt"), ("outside_cached", "/queries/outside.txt")):
            for mode, rate in (("saturation", 0), (f"at_{self.rate}_qps", self.rate)):
                if label == "outside_cached":  # the forwarder keeps answers 30 s at most
                    await self.run_in_pod("WARM", path)
                misses = upstream.queries
                r = json.loads(await self.run_in_pod("RUN", path, str(self.seconds), str(rate), cpu))
                if label == "outside_cached":
                    r["upstream_queries"] = upstream.queries - misses
                self.results[f"{label}_{mode}"] = r
                p = f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms" if "p50_ms" in r else \
                    f"avg {r.get('avg_ms', float('nan')):.3f} ms"
                print(f"{label:15s} {mode:16s} {r['qps']:9.0f} qps  {p}  lost {r.get('lost', 0)}  [{r.get('rcodes')}]",
                      flush=True)

    async def run(self) -> None:
        await asyncio.to_thread(self.up)
        upstream: Upstream | None = None
        self.api = Client.from_kubeconfig(self.kubeconfig)
        try:
            upstream = Upstream(self.netns)
            upstream.start()
            await self.use_fake_upstream(upstream)
            pid = self.pin_server()
            ips = await self.populate()
            await self.client_pod(ips)
            print(f"cluster {self.name} up: {SERVICES_N} Services, {HEADLESS} headless x 10 endpoints; "
                  f"coredns pid {pid}{' on CPU 0, dnsperf on CPU 1' if MULTI_CPU else ''}", flush=True)
            await self.measure(upstream)
        finally:
            with contextlib.suppress(Exception):
                await self.api.close()
            if upstream is not None:
                upstream.sock.close()
            self.down()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("dnsperf"):
        sys.exit("bench_dns_pods needs root and dnsperf (apt-get install dnsperf)")
    bench = Bench(args.seconds, args.rate)
    load_before = os.getloadavg()[0]
    asyncio.run(bench.run())
    # A shared machine's other work lands on the server's core too: the load says how much.
    results = {"machine": os.uname().machine, "cpus": os.cpu_count(), "kernel": os.uname().release,
               "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "services": SERVICES_N, "headless": HEADLESS, **bench.results}
    for label in ("cluster", "outside_cached"):
        sat, fixed = results[f"{label}_saturation"], results[f"{label}_at_{args.rate}_qps"]
        verdict = "met" if sat["qps"] >= 20000 and fixed.get("p99_ms", float("inf")) <= 5 else "NOT met"
        print(f"goal (>= 20,000 qps, p99 <= 5 ms at {args.rate} qps) for {label}: {verdict}")
    print(f"load average (1 min) before / after: {results['load_avg_1m'][0]} / {results['load_avg_1m'][1]} "
          f"on {os.cpu_count()} CPUs")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
