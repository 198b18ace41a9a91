"""EndpointSlice controller benchmark: pod readiness → slice latency, and idle CPU.

Runs a real ``kubelite up`` on loopback and loads it through the API, as a kubelet would:
one namespace, one fake Node, N Services each selecting 10 pods bound to that Node, with
pod IPs and Ready conditions written through ``pods/<name>/status``. Then, one change at
a time, it flips a random pod's Ready condition and measures the time from the status
patch being acknowledged to a watch on EndpointSlices delivering a slice with that pod's
new ``ready`` condition: the controller's share of network programming latency (the
proxy's share comes after). Finally it samples the ``kubelite controllers`` process's CPU
time over 10 s of idleness from /proc/<pid>/stat.

Usage: python bench/bench_endpointslice.py [--quick] [--services N] [--samples N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import random
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster, cpu_seconds
from kubelite.client import ENDPOINTSLICES, LEASES, NAMESPACES, NODES, PODS, SERVICES, Client

NS = "bench"
NODE = "bench-node"
PODS_PER_SERVICE = 10


def rss_of(pid: int) -> int:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def ip_of(svc: int, pod: int) -> str:
    n = svc * PODS_PER_SERVICE + pod
    return f"10.244.{n // 250}.{n % 250 + 1}"


def ready_status(ip: str, ready: bool) -> dict[str, Any]:
    return {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}],
    }}


async def populate(api: Client, services: int) -> float:
    """Services and pods through the API, 32 requests in flight; returns the seconds it took."""
    t0 = time.monotonic()
    await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    await api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    sem = asyncio.Semaphore(32)

    async def one_service(i: int) -> None:
        async with sem:
            await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                                        "spec": {"selector": {"app": f"svc-{i}"},
                                                 "ports": [{"port": 80, "targetPort": 8080}]}}, NS)

    async def one_pod(i: int, j: int) -> None:
        name = f"svc-{i}-{j}"
        async with sem:
            await api.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                    "metadata": {"name": name, "labels": {"app": f"svc-{i}"}},
                                    "spec": {"nodeName": NODE, "containers": [
                                        {"name": "c", "image": "busybox", "ports": [{"containerPort": 8080}]}]}}, NS)
        async with sem:
            await api.patch(PODS, name, ready_status(ip_of(i, j), True), NS, subresource="status")

    await asyncio.gather(*(one_service(i) for i in range(services)))
    await asyncio.gather(*(one_pod(i, j) for i in range(services) for j in range(PODS_PER_SERVICE)))
    return time.monotonic() - t0


class SliceWatch:
    """Every slice's endpoints' ready conditions, by pod, kept current from one watch."""

    def __init__(self, api: Client) -> None:
        self.api = api
        self.ready: dict[str, bool] = {}
        self.by_slice: dict[str, set[str]] = {}
        self.waiters: dict[tuple[str, bool], asyncio.Future[float]] = {}
        self.changed = asyncio.Event()

    def _apply(self, kind: str, s: dict[str, Any]) -> None:
        name = s["metadata"]["name"]
        for pod in self.by_slice.pop(name, set()):
            self.ready.pop(pod, None)
        if kind == "DELETED":
            return
        pods = set()
        now = time.monotonic()
        for ep in s.get("endpoints") or []:
            pod = (ep.get("targetRef") or {}).get("name", "")
            ready = bool((ep.get("conditions") or {}).get("ready"))
            pods.add(pod)
            self.ready[pod] = ready
            fut = self.waiters.pop((pod, ready), None)
            if fut is not None and not fut.done():
                fut.set_result(now)
        self.by_slice[name] = pods
        self.changed.set()

    async def run(self) -> None:
        body = await self.api.list_all(ENDPOINTSLICES, NS)
        for s in body["items"]:
            self._apply("ADDED", s)
        rv = body["metadata"]["resourceVersion"]
        while True:
            async for kind, s in self.api.watch(ENDPOINTSLICES, NS, resource_version=rv):
                rv = s["metadata"].get("resourceVersion", rv)
                if kind != "BOOKMARK":
                    self._apply(kind, s)

    def expect(self, pod: str, ready: bool) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.ready.get(pod) is ready:
            fut.set_result(time.monotonic())
        else:
            self.waiters[(pod, ready)] = fut
        return fut

    async def wait_all_ready(self, n: int, within: float) -> float:
        t0 = time.monotonic()
        while sum(self.ready.values()) < n:
            if time.monotonic() - t0 > within:
                raise RuntimeError(f"only {sum(self.ready.values())}/{n} endpoints ready after {within}s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 1.0)
            except TimeoutError:
                pass
        return time.monotonic() - t0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def heartbeat(api: Client) -> None:
    """Renew the fake node's Lease as its agent would; without it the node lifecycle controller
    (rightly) marks the node's pods not ready after 40 s and the benchmark measures that churn."""
    while True:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": NODE, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": now}}
        try:
            await api.patch(LEASES, NODE, lease, "kube-node-lease", type="apply", field_manager="bench", force=True)
        except Exception as e:  # the API server may be busy populating; try again soon
            print(f"lease renewal: {e}", file=sys.stderr)
        await asyncio.sleep(10)


async def run(c: Cluster, services: int, samples: int) -> dict[str, Any]:
    api = Client.from_kubeconfig(c.kubeconfig)
    watch = SliceWatch(api)
    watch_task = asyncio.create_task(watch.run())
    heartbeat_task = asyncio.create_task(heartbeat(api))
    try:
        populate_s = await populate(api, services)
        converge_s = await watch.wait_all_ready(services * PODS_PER_SERVICE, within=600)
        await asyncio.sleep(2)  # let the queues drain before measuring single changes

        rng = random.Random(1)
        state: dict[str, bool] = {}
        latencies: list[float] = []
        from_send: list[float] = []
        for _ in range(samples):
            i, j = rng.randrange(services), rng.randrange(PODS_PER_SERVICE)
            pod = f"svc-{i}-{j}"
            ready = not state.get(pod, True)
            state[pod] = ready
            fut = watch.expect(pod, ready)
            t_send = time.monotonic()
            await api.patch(PODS, pod, ready_status(ip_of(i, j), ready), NS, subresource="status")
            t_ack = time.monotonic()
            t_seen = await asyncio.wait_for(fut, 30)
            latencies.append(max(0.0, t_seen - t_ack) * 1000)
            from_send.append((t_seen - t_send) * 1000)
            await asyncio.sleep(0.01)

        await asyncio.sleep(3)
        pid = c.controllers_pid()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(10)
        idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
        rss_kb = rss_of(pid)
    finally:
        watch_task.cancel()
        heartbeat_task.cancel()
        await asyncio.gather(watch_task, return_exceptions=True)
        await api.close()
    return {
        "services": services, "pods": services * PODS_PER_SERVICE, "samples": samples,
        "populate_s": populate_s, "converge_after_populate_s": converge_s,
        "ready_to_slice_p50_ms": statistics.median(latencies), "ready_to_slice_p99_ms": pct(latencies, 99),
        "ready_to_slice_max_ms": max(latencies),
        "send_to_slice_p50_ms": statistics.median(from_send), "send_to_slice_p99_ms": pct(from_send, 99),
        "controllers_idle_cpu_pct": idle_cpu, "controllers_rss_mb": rss_kb / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100 Services, 100 samples: under a minute")
    ap.add_argument("--services", type=int, default=None)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    services = args.services or (100 if args.quick else 1000)
    samples = args.samples or (100 if args.quick else 300)
    with Cluster("klbes") as c:
        r = asyncio.run(run(c, services, samples))
    rows = [
        ("store", f"{r['services']} Services x {PODS_PER_SERVICE} pods = {r['pods']} pods"),
        ("populate through the API", f"{r['populate_s']:.1f} s"),
        ("slices complete after populate", f"{r['converge_after_populate_s']:.2f} s"),
        (f"Ready flip → slice (ack→watch), {r['samples']} samples",
         f"p50 {r['ready_to_slice_p50_ms']:.1f} ms  p99 {r['ready_to_slice_p99_ms']:.1f} ms  "
         f"max {r['ready_to_slice_max_ms']:.1f} ms  (goal p99 ≤ 50 ms)"),
        ("Ready flip → slice (send→watch)",
         f"p50 {r['send_to_slice_p50_ms']:.1f} ms  p99 {r['send_to_slice_p99_ms']:.1f} ms"),
        ("controllers process CPU at idle (10 s)", f"{r['controllers_idle_cpu_pct']:.2f} %"),
        ("controllers process RSS", f"{r['controllers_rss_mb']:.0f} MB"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
