"""The Service datapath, measured side by side: ClusterIP vs the pod IP vs a userspace proxy.

One ``kubelite up`` (with its agent and supervised proxy), real pods, real traffic, all in
the cluster's own network namespaces:

* throughput (iperf3, pod to pod) and new TCP connections per second through the
  ClusterIP, divided by the same straight to the pod IP (goals >= 0.95 and >= 0.90); the
  same through a userspace asyncio TCP proxy on the node, for contrast;
* first-packet latency (TCP connect through the ClusterIP) at each number of Services,
  with the same straight to the pod IP interleaved round by round; and, at the largest
  scale, an A/B in the kernel: the table of all Services and the table of the cluster's own
  few, swapped back and forth with the proxy paused, so both see the same machine (goal
  <= 1.1x: one verdict-map lookup whatever the number of Services);
* network programming latency, pod Ready -> first request served through its Service,
  p50/p99 at each scale (goals p99 <= 100 ms at 1,000 and <= 250 ms at 10,000);
* a full sync of the largest scale x 2 endpoints (goal <= 5 s at 10,000) and the proxy's memory.

Synthetic Services are selectorless, with hand-made EndpointSlices of two endpoints that
never receive traffic. Scales are visited in increasing order (Services are only added).
Needs root, iperf3 and nft. Usage (flags also in ``--help``):
``python bench/bench_proxy.py [--services 10,100,1000,10000] [--json out.json] [--skip-throughput]
[--skip-full-sync] [--samples N] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import ACCEPTOR, CLIENT, KubeliteProcess, poll
from kubelite.cli.supervisor import component_pids
from kubelite.client import ENDPOINTSLICES, NAMESPACES, PODS, SERVICES, ApiError, Client
from kubelite.proxy.proxier import NFTables, Proxier, service_ports
from kubelite.proxy.ruleset import full_transaction, render_service

Obj = dict[str, Any]

# The userspace proxy for contrast: what a few lines of asyncio do with every byte.
USERSPACE_PROXY = r"""
import asyncio, resource, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, pairs = sys.argv[1], [p.split(":") for p in sys.argv[2:]]
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    except OSError:
        pass
    finally:
        w.close()
def handler(target, port):
    async def handle(r, w):
        try:
            tr, tw = await asyncio.open_connection(target, port)
        except OSError:
            w.close(); return
        await asyncio.gather(pipe(r, tw), pipe(tr, w))
    return handle
async def main():
    for listen, target, port in pairs:
        await asyncio.start_server(handler(target, int(port)), host, int(listen), backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def memory_mb(pid: int) -> tuple[int, int]:
    """Resident and peak resident memory of a process."""
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss, hwm = (re.search(rf"{k}:\s+(\d+)", status) for k in ("VmRSS", "VmHWM"))
    assert rss is not None and hwm is not None
    return int(rss.group(1)) // 1024, int(hwm.group(1)) // 1024


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p))]



def proxy_process(kubeconfig: object) -> int | None:
    """The pid of the process that runs the proxy of the cluster of ``kubeconfig``."""
    return next(iter(component_pids(kubeconfig, "proxy")), None)


class Bench(KubeliteProcess):
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick = args.quick
        self.scales: list[int] = args.services
        self.samples: int = args.samples
        self.do_throughput = not args.skip_throughput
        self.do_full_sync = not args.skip_full_sync
        super().__init__(f"klbp-{secrets.token_hex(3)}", pathlib.Path(tempfile.mkdtemp(prefix="kl-bench-proxy-")))
        self.results: dict[str, Any] = {}
        self.per_scale: list[dict[str, Any]] = []

    async def client_run(self, *args: str) -> str:
        return await self.sh("kubectl", "exec", "client", "--", "python3", "-c", CLIENT, *args)

    async def pod(self, name: str, ns: str = "default") -> Obj:
        return await self.api.get(PODS, name, ns)

    async def ready(self, name: str) -> Obj | None:
        try:
            p = await self.pod(name)
        except ApiError:
            return None
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions") or [])
        return p if ok else None

    def proxy_pid(self) -> int | None:
        """The process running the proxy: `up`'s node agent (``agent ... --with-proxy``)."""
        return proxy_process(self.kubeconfig)

    def standalone(self, pid: int) -> bool:
        """Whether ``pid`` is a `kubelite proxy` of its own (else the agent hosts the proxy)."""
        with contextlib.suppress(OSError):
            return " proxy " in (pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
        return False

    async def programmed(self) -> int:
        """How many entries the kernel's service-ips map holds (read back: benchmark only)."""
        out = await self.sh("nsenter", f"--net={self.netns}", "nft", "-j", "list", "map", "ip", "kube-proxy",
                            "service-ips")
        return sum(len((i.get("map") or {}).get("elem") or []) for i in json.loads(out)["nftables"])

    # -- the workload

    async def setup(self) -> None:
        self.api = Client.from_kubeconfig(self.kubeconfig)
        pods = [
            {"metadata": {"name": "srv", "labels": {"app": "srv"}},
             "spec": {"containers": [
                 {"name": "iperf", "image": "busybox", "command": ["/usr/bin/iperf3", "-s", "-p", "5201"]},
                 {"name": "acceptor", "image": "python", "command": ["python3", "-c", ACCEPTOR]}]}},
            {"metadata": {"name": "client"},
             "spec": {"containers": [{"name": "c", "image": "python", "command": ["sleep", "36000"]}]}},
            # Its readiness follows a file the benchmark creates and deletes on the host.
            {"metadata": {"name": "np", "labels": {"app": "np"}},
             "spec": {"volumes": [{"name": "state", "emptyDir": {}}], "containers": [{
                 "name": "web", "image": "python", "command": ["python3", "-m", "http.server", "80",
                                                                "--directory", "/state"],
                 "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}, "periodSeconds": 1,
                                    "failureThreshold": 1}}]}},
        ]
        for p in pods:
            await self.api.create(PODS, {"apiVersion": "v1", "kind": "Pod", **p}, "default")
        for name, port_list in (("srv", [{"name": "iperf", "port": 5201}, {"name": "accept", "port": 9000}]),
                                ("np", [{"port": 80}])):
            await self.api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                                             "spec": {"selector": {"app": name}, "ports": port_list}}, "default")
        await self.api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "syn"}})
        for name in ("srv", "client"):
            await poll(f"pod {name}", lambda name=name: self.ready(name))  # type: ignore[misc]
        self.srv_ip = (await self.pod("srv"))["status"]["podIP"]
        self.srv_vip = (await self.api.get(SERVICES, "srv", "default"))["spec"]["clusterIP"]
        self.np_vip = (await self.api.get(SERVICES, "np", "default"))["spec"]["clusterIP"]
        self.services = len((await self.api.list(SERVICES))["items"])

    @contextlib.asynccontextmanager
    async def userspace_proxy(self) -> AsyncIterator[str]:
        node_ip = "10.244.0.1"
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={self.netns}", sys.executable, "-c", USERSPACE_PROXY, node_ip,
            f"15201:{self.srv_ip}:5201", f"19000:{self.srv_ip}:9000", stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            if await asyncio.wait_for(proc.stdout.readline(), 10) != b"ready\n":
                raise RuntimeError("the userspace proxy did not start")
            yield node_ip
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()

    async def iperf(self, ip: str, port: int, seconds: int) -> float:
        out = await self.sh("kubectl", "exec", "client", "--", "iperf3", "-c", ip, "-p", str(port),
                            "-t", str(seconds), "-J")
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])

    async def throughput_and_rate(self) -> None:
        """Interleaved rounds (pod IP, ClusterIP, userspace, in a rotating order); each round
        gives a ratio, and the figure is the median of the rounds' ratios with their spread,
        so a burst of load from elsewhere spoils one round rather than one side."""
        secs, rounds = (2, 2) if self.quick else (3, 6)
        labels = ["pod IP", "ClusterIP", "userspace"]
        gbps: dict[str, list[float]] = {label: [] for label in labels}
        rate: dict[str, list[float]] = {label: [] for label in labels}
        cpu: dict[str, list[float]] = {label: [] for label in labels}
        async with self.userspace_proxy() as node:
            targets = {"pod IP": (self.srv_ip, 5201, 9000), "ClusterIP": (self.srv_vip, 5201, 9000),
                       "userspace": (node, 15201, 19000)}
            for r in range(rounds):
                order = labels[r % 3:] + labels[:r % 3]
                for label in order:
                    ip, iperf_port, _ = targets[label]
                    gbps[label].append(await self.iperf(ip, iperf_port, secs) / 1e9)
                for label in order:
                    ip, _, accept_port = targets[label]
                    per_s, cpu_us = (await self.client_run("rate", ip, str(accept_port), str(secs))).split()
                    rate[label].append(float(per_s))
                    cpu[label].append(float(cpu_us))
        for label in labels:
            self.results[f"throughput_gbps[{label}]"] = round(statistics.median(gbps[label]), 2)
            self.results[f"connections_per_s[{label}]"] = round(statistics.median(rate[label]))
            self.results[f"client_cpu_us_per_connection[{label}]"] = round(statistics.median(cpu[label]), 1)
        for label in ("ClusterIP", "userspace"):
            for name, values in (("throughput_ratio", gbps), ("connection_rate_ratio", rate),
                                 ("client_cpu_per_connection_ratio", cpu)):
                ratios = [a / b for a, b in zip(values[label], values["pod IP"], strict=True)]
                self.results[f"{name}[{label}/pod IP] median (min-max of {rounds} rounds)"] = (
                    f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")

    async def connect_times(self, ip: str, n: int) -> list[float]:
        """``n`` TCP connect times (seconds) from the client pod to ``ip``:9000."""
        return [float(x) for x in json.loads(await self.client_run("connect", ip, "9000", str(n)))]

    async def first_packet(self, label: str) -> dict[str, Any]:
        """Connect latency through the ClusterIP and, interleaved, straight to the pod IP.

        Medians over rounds of per-round p50/p99; the pod-IP figures say how much of a change
        between scales is the machine's load rather than the datapath.
        """
        n, rounds = (500, 4) if self.quick else (1000, 8)
        await asyncio.sleep(2)  # let the control plane settle after a burst of creates
        stats: dict[str, list[float]] = {"p50": [], "p99": [], "pod_ip_p50": [], "pod_ip_p99": [], "ratio": []}
        for i in range(rounds):
            # Alternate which goes first, so a drift within a round hits both alike.
            order = [(self.srv_vip, ""), (self.srv_ip, "pod_ip_")]
            got: dict[str, list[float]] = {}
            for ip, prefix in order if i % 2 == 0 else order[::-1]:
                got[prefix] = await self.connect_times(ip, n)
            for prefix, samples in got.items():
                stats[f"{prefix}p50"].append(statistics.median(samples) * 1e6)
                stats[f"{prefix}p99"].append(pct(samples, 0.99) * 1e6)
            stats["ratio"].append(statistics.median(got[""]) / statistics.median(got["pod_ip_"]))
        out: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in stats.items() if k != "ratio"}
        out["ratio_to_pod_ip"] = round(statistics.median(stats["ratio"]), 3)
        out["ratio_to_pod_ip_spread"] = [round(min(stats["ratio"]), 3), round(max(stats["ratio"]), 3)]
        self.results[f"first_packet_us[{label}] p50/p99 (pod IP p50/p99)"] = (
            f"{out['p50']:.0f} / {out['p99']:.0f} ({out['pod_ip_p50']:.0f} / {out['pod_ip_p99']:.0f})")
        return out

    async def first_packet_ab(self, label: str) -> dict[str, Any]:
        """First-packet latency with all Services vs the cluster's own few, swapped in the kernel.

        The proxy is paused; an in-process renderer writes the full table of all Services
        (what the proxy wrote) and the table of only the non-synthetic ones, alternately,
        measuring connect latency through the ClusterIP after each swap. Both tables see the
        same machine at nearly the same moment, which measurements minutes apart (while other
        work shares the CPUs) cannot promise. The last table written is the full one, so the
        proxy's in-memory copy still matches the kernel when it resumes.
        """
        rounds, n = (2, 500) if self.quick else (4, 1000)
        services = (await self.api.list(SERVICES))["items"]
        slices = (await self.api.list(ENDPOINTSLICES))["items"]
        by_service: dict[str, list[Obj]] = {}
        for sl in slices:
            owner = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            by_service.setdefault(f"{sl['metadata']['namespace']}/{owner}", []).append(sl)
        frags_all, frags_few = [], []
        for svc in services:
            key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
            ports = service_ports(svc, by_service.get(key, []), f"{self.name}-node")
            if ports:
                frag = render_service(ports)
                frags_all.append(frag)
                if svc["metadata"]["namespace"] != "syn":
                    frags_few.append(frag)
        cidrs = ["10.96.0.0/12"]
        texts = {"few": full_transaction(cidrs, frags_few), "all": full_transaction(cidrs, frags_all)}
        # Paused when the proxy is a process of its own; otherwise (it runs inside the node
        # agent, which must keep serving `kubectl exec`) left running: it never reads the table
        # back, so with nothing changing in the API meanwhile it does not notice the swaps.
        pid = self.proxy_pid()
        if pid is not None and not self.standalone(pid):
            pid = None
        nft = NFTables(self.netns)
        p50: dict[str, list[float]] = {"few": [], "all": []}
        p99: dict[str, list[float]] = {"few": [], "all": []}
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(rounds):
                for which in ("few", "all"):
                    await nft.run(texts[which])
                    await asyncio.sleep(0.5)
                    samples = await self.connect_times(self.srv_vip, n)
                    p50[which].append(statistics.median(samples) * 1e6)
                    p99[which].append(pct(samples, 0.99) * 1e6)
        finally:
            await nft.run(texts["all"])
            nft.close()
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        ratios = [a / f for a, f in zip(p50["all"], p50["few"], strict=True)]
        out = {
            "services_few": len(frags_few), "services_all": len(frags_all),
            "p50_few": round(statistics.median(p50["few"]), 1), "p50_all": round(statistics.median(p50["all"]), 1),
            "p99_few": round(statistics.median(p99["few"]), 1), "p99_all": round(statistics.median(p99["all"]), 1),
            "ratio_p50": round(statistics.median(ratios), 3), "ratio_p50_spread": [round(min(ratios), 3),
                                                                                  round(max(ratios), 3)],
        }
        self.results[f"first_packet_ab_us[{label}] p50 few/all, ratio (spread)"] = (
            f"{out['p50_few']:.0f} / {out['p50_all']:.0f}, {out['ratio_p50']} {out['ratio_p50_spread']}")
        return out

    async def grow_to(self, total: int) -> None:
        """Synthetic Services + EndpointSlices up to ``total`` Services, then wait until programmed."""
        started = time.perf_counter()
        todo = range(self.services, total)
        sem = asyncio.Semaphore(48)

        async def one(i: int) -> None:
            async with sem:
                await self.api.create(SERVICES, {
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"syn-{i}"},
                    "spec": {"ports": [{"name": "p", "port": 80}]}}, "syn")
                await self.api.create(ENDPOINTSLICES, {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"syn-{i}-1", "labels": {"kubernetes.io/service-name": f"syn-{i}"}},
                    "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [f"10.{250 + (i >> 15)}.{(i >> 7) & 255}.{(i & 127) * 2 + k}"],
                                   "conditions": {"ready": True}} for k in (0, 1)]}, "syn")

        await asyncio.gather(*(one(i) for i in todo))
        self.services = total
        created = time.perf_counter() - started
        await poll(f"{total} Services programmed", lambda: self._at_least(total), limit=600)
        print(f"  {total} Services: created in {created:.1f} s, programmed {time.perf_counter() - started:.1f} s "
              "after the first create", flush=True)

    async def _at_least(self, total: int) -> bool:
        await asyncio.sleep(0.5)
        return await self.programmed() >= total

    async def network_programming(self, label: str) -> dict[str, Any]:
        """Pod Ready -> first request served through its Service, ``self.samples`` times.

        A watch on the Service's EndpointSlice splits each sample in two: Ready -> the slice
        shows the endpoint ready (kubelet, EndpointSlice controller, API; not the proxy's doing)
        and slice -> served (the proxy's informer, its sync and nft, the client's next try).
        """
        n = self.samples
        state = self.dir / "agent" / "pods" / (await self.pod("np"))["metadata"]["uid"] / "volumes" / "state"
        flag = state / "ready"
        slice_ready: list[float] = []

        async def watch_slices() -> None:
            async for _, obj in self.api.watch(ENDPOINTSLICES, "default", allow_bookmarks=False,
                                               label_selector="kubernetes.io/service-name=np"):
                if any((e.get("conditions") or {}).get("ready") for e in obj.get("endpoints") or []):
                    slice_ready.append(time.time())

        watcher = asyncio.create_task(watch_slices())
        latencies, controller, proxy = [], [], []
        try:
            for _ in range(n):
                flag.unlink(missing_ok=True)
                await poll("np not ready", lambda: self._not_ready("np"))
                # The Service has no endpoint now: the client is refused until it has one.
                waiter = asyncio.create_task(self.client_run("served", self.np_vip, "80", "15"))
                await asyncio.sleep(0.4)
                touched = time.time()
                flag.touch()
                while not await self.ready("np"):
                    await asyncio.sleep(0.002)
                ready_at = time.time()
                served_at = float((await waiter).strip())
                latencies.append(served_at - ready_at)
                sliced = next((t for t in slice_ready if t > touched), None)
                if sliced is not None:
                    controller.append(sliced - ready_at)
                    proxy.append(served_at - sliced)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        ms = [x * 1000 for x in latencies]
        c_ms, p_ms = [x * 1000 for x in controller], [x * 1000 for x in proxy]
        self.results[f"network_programming_ms[{label}] p50/p99 (max)"] = (
            f"{statistics.median(ms):.0f} / {pct(ms, 0.99):.0f} ({max(ms):.0f})")
        out: dict[str, Any] = {"p50": round(statistics.median(ms), 1), "p99": round(pct(ms, 0.99), 1), "n": n,
                               "samples": [round(x, 1) for x in ms]}
        if p_ms:
            self.results[f"  of which slice -> served p50/p99; Ready -> slice p50/p99 [{label}]"] = (
                f"{statistics.median(p_ms):.0f} / {pct(p_ms, 0.99):.0f}; "
                f"{statistics.median(c_ms):.0f} / {pct(c_ms, 0.99):.0f}")
            out["slice_to_served_ms"] = {"p50": round(statistics.median(p_ms), 1), "p99": round(pct(p_ms, 0.99), 1)}
            out["ready_to_slice_ms"] = {"p50": round(statistics.median(c_ms), 1), "p99": round(pct(c_ms, 0.99), 1)}
        return out

    async def _not_ready(self, name: str) -> bool:
        return await self.ready(name) is None

    async def full_sync(self, label: str) -> None:
        """A full sync in a fresh in-process proxier (the supervised one paused meanwhile, if
        it is a process of its own; then restarted, to read its memory after a rebuild)."""
        pid = self.proxy_pid()
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
        try:
            proxier = Proxier(self.api, node_name=f"{self.name}-node", netns_path=self.netns)
            started = time.perf_counter()
            task = asyncio.create_task(proxier.run())
            await asyncio.wait_for(proxier.synced.wait(), 600)
            total = time.perf_counter() - started
            assert proxier.last_sync is not None
            self.results[f"full_sync_s[{label}] render+nft / incl. list"] = (
                f"{proxier.last_sync.seconds:.2f} / {total:.2f}")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        if pid is None:
            print("  no `kubelite proxy` process (the proxy runs inside another component): no memory figure",
                  flush=True)
            return
        # The supervised proxy restarts from scratch and rebuilds the table: its memory then.
        os.kill(pid, signal.SIGTERM)
        await poll("the proxy back", lambda: self._proxy_back(pid))
        await poll("the table rebuilt", lambda: self._at_least(self.services), limit=600)
        new = self.proxy_pid()
        assert new is not None
        rss, hwm = memory_mb(new)
        who = "proxy" if self.standalone(new) else "agent+proxy"
        self.results[f"{who}_memory_mb[{label}] rss/peak"] = f"{rss} / {hwm}"

    async def _proxy_back(self, old: int) -> bool:
        return self.proxy_pid() not in (None, old)

    async def run(self) -> None:
        self.up()
        try:
            await self.setup()
            print(f"cluster {self.name} up ({self.services} Services); pods ready", flush=True)
            if self.do_throughput:
                await self.throughput_and_rate()
            for total in self.scales:
                if total > self.services:
                    await self.grow_to(total)
                label = f"{self.services} Services"
                fp = await self.first_packet(label)
                prog = await self.network_programming(label)
                self.per_scale.append({"services": self.services, "programming_ms": prog, "first_packet_us": fp})
                print(f"  {label}: first packet p50 {fp['p50']:.0f} us (pod IP {fp['pod_ip_p50']:.0f}), "
                      f"programming p50/p99 {prog['p50']:.0f}/{prog['p99']:.0f} ms", flush=True)
            if len(self.per_scale) > 1:
                lo, hi = self.per_scale[0], self.per_scale[-1]
                raw = hi["first_packet_us"]["p50"] / lo["first_packet_us"]["p50"]
                norm = hi["first_packet_us"]["ratio_to_pod_ip"] / lo["first_packet_us"]["ratio_to_pod_ip"]
                self.results[f"first_packet_ratio[{hi['services']}/{lo['services']}] raw / vs pod IP"] = (
                    f"{raw:.3f} / {norm:.3f}")
            label = f"{self.services} Services"
            if len(self.scales) > 1 or self.services > 100:
                self.per_scale[-1]["first_packet_ab_us"] = await self.first_packet_ab(label)
            if self.do_full_sync:
                await self.full_sync(f"{label} x 2 endpoints")
        finally:
            with contextlib.suppress(Exception):
                await self.api.close()
            self.down()


def scales(text: str) -> list[int]:
    return [int(x) for x in text.replace(",", " ").split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples; default scales 10,1000,3000 (a few minutes)")
    ap.add_argument("--services", action="append", type=scales, default=None,
                    help="numbers of Services to measure at, comma-separated or repeated "
                         "(default 10,1000,10000)")
    ap.add_argument("--samples", type=int, default=None,
                    help="network programming samples per scale (default 40, quick 10)")
    ap.add_argument("--skip-throughput", action="store_true", help="no throughput / connection-rate ratios")
    ap.add_argument("--skip-full-sync", action="store_true", help="no full sync and memory at the largest scale")
    ap.add_argument("--json", default=None, help="also write the results here (per scale under 'scales')")
    args = ap.parse_args()
    args.services = sorted({n for group in args.services for n in group}) if args.services else (
        [10, 1000, 3000] if args.quick else [10, 1000, 10000])
    if args.samples is None:
        args.samples = 10 if args.quick else 40
    if os.geteuid() != 0 or not shutil.which("iperf3") or not shutil.which("nft"):
        sys.exit("bench_proxy needs root, iperf3 and nft")
    bench = Bench(args)
    started = time.perf_counter()
    load_start = os.getloadavg()
    try:
        asyncio.run(bench.run())
    finally:
        # Whatever was measured before a failure is still worth having.
        load_end = os.getloadavg()
        print(f"\nkubelite proxy benchmark ({'quick' if args.quick else 'full'}, "
              f"{time.perf_counter() - started:.0f} s, {os.cpu_count()} CPUs, {os.uname().release}, "
              f"load {load_start[0]:.1f} -> {load_end[0]:.1f})")
        for k, v in bench.results.items():
            print(f"  {k:64} {v}")
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps({
                "scales": bench.per_scale,
                "results": bench.results,
                "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                            "loadavg_start": [round(x, 2) for x in load_start],
                            "loadavg_end": [round(x, 2) for x in load_end]},
            }, indent=2) + "\n")


if __name__ == "__main__":
    main()
