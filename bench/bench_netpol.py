"""NetworkPolicy enforcement, measured side by side: programming latency and the cost per connection.

One ``kubelite up`` (the agent runs the proxy and the NetworkPolicy enforcement), real pods
and real traffic in the cluster's own namespaces:

* **programming latency** of a policy change: a client pod tries to connect to a pod that
  a default-deny policy isolates, again and again (5 ms per try); the benchmark creates the
  NetworkPolicy that lets it in and takes the time from just before the API write to the
  client's first connection. Measured with no other policy present, then with 1,000 policies
  (each with peers, ports and a named port) in another namespace, so the two are side by side
  in one run. Between samples the policy is deleted and its chain seen gone from the kernel.
* **connection rate** through a policy-guarded Service (its pod isolated, the client allowed
  by a podSelector peer and a port) divided by the same through an unguarded Service, in
  interleaved rounds (goal >= 0.95): new TCP connections each, so every one is judged by the
  policy chains (established packets are accepted at the first rule). The client's CPU time
  per connection is compared too (less noisy on a shared machine), and both again once the
  1,000 policies are present (dispatch is one map lookup whatever their number), and once
  more with the guard policy deleted: the control, the same pods with nothing guarded.

Needs root and nft. Usage: ``python bench/bench_netpol.py [--policies 1000] [--samples 20]
[--json out.json] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import ACCEPTOR, CLIENT, Cluster, poll
from kubelite.client import NAMESPACES, NETWORKPOLICIES, PODS, SERVICES, ApiError, Client
from kubelite.linux.nftables import NFTables, NFTError
from kubelite.networkpolicy.ruleset import TABLE, policy_chain

Obj = dict[str, Any]
# Fourteen pods to start, policies to reach the kernel: longer waits than the harness's default.
wait = functools.partial(poll, limit=180)


def pod(name: str, labels: Obj, image: str, command: list[str], ns: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "c", "image": image, "command": command,
                "ports": [{"name": "accept", "containerPort": 9000}]}]}}


def netpol(name: str, ns: str, spec: Obj) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def synthetic(i: int) -> Obj:
    """One of the 1,000: selects pods that exist (the syn pods), with peers, ports and a named port."""
    return netpol(f"syn-{i}", "syn", {
        "podSelector": {"matchLabels": {"app": f"syn-{i % 10}"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": f"r{i % 7}"}}},
                              {"namespaceSelector": {"matchLabels": {"team": f"t{i % 5}"}}},
                              {"ipBlock": {"cidr": f"172.{16 + i % 16}.0.0/16", "except": [f"172.{16 + i % 16}.1.0/24"]}}],
                     "ports": [{"port": 8000 + i % 100, "endPort": 8100 + i % 100}, {"port": "accept"}]}],
        "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}]})


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, Any] = {}

    async def sh(self, *argv: str) -> str:
        return await self.cluster.sh(*argv)

    async def client_run(self, *args: str) -> str:
        return await self.sh("kubectl", "exec", "client", "--", "python3", "-c", CLIENT, *args)

    async def ready(self, name: str, ns: str = "default") -> Obj | None:
        try:
            p = await self.api.get(PODS, name, ns)
        except ApiError:
            return None
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions") or [])
        return p if ok else None

    async def in_kernel(self, chain: str) -> bool:
        try:
            await self.nft.run(f"list chain {TABLE} {chain}")
        except NFTError:
            return False
        return True

    async def setup(self) -> None:
        self.api = Client.from_kubeconfig(self.cluster.kubeconfig)
        self.nft = NFTables(self.cluster.netns)
        await self.api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "syn", "labels": {"team": "t1"}}})
        pods = [pod("open", {"app": "open"}, "python", ["python3", "-c", ACCEPTOR]),
                pod("guarded", {"app": "guarded"}, "python", ["python3", "-c", ACCEPTOR]),
                pod("lat", {"app": "lat"}, "python", ["python3", "-c", ACCEPTOR]),
                pod("client", {"app": "client"}, "python", ["sleep", "36000"]),
                *(pod(f"syn-{i}", {"app": f"syn-{i}", "role": f"r{i}"}, "busybox", ["sleep", "36000"], "syn")
                  for i in range(10))]
        for p in pods:
            await self.api.create(PODS, p, p["metadata"]["namespace"])
        for name in ("open", "guarded"):
            await self.api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                                             "spec": {"selector": {"app": name}, "ports": [{"port": 9000}]}}, "default")
        for p in pods:
            name, ns = p["metadata"]["name"], p["metadata"]["namespace"]
            await wait(name, functools.partial(self.ready, name, ns))
        self.lat_ip = (await self.api.get(PODS, "lat", "default"))["status"]["podIP"]
        self.vip = {name: (await self.api.get(SERVICES, name, "default"))["spec"]["clusterIP"]
                    for name in ("open", "guarded")}
        for p in (netpol("guard", "default", {"podSelector": {"matchLabels": {"app": "guarded"}}, "ingress": [{
                      "from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 9000}]}]}),
                  netpol("deny-lat", "default", {"podSelector": {"matchLabels": {"app": "lat"}},
                                                 "policyTypes": ["Ingress"]})):
            await self.api.create(NETWORKPOLICIES, p, "default")
        await wait("the policies in the kernel", lambda: self.in_kernel(policy_chain("default/guard", "ingress")))

    # -- programming latency

    async def latency_sample(self, i: int) -> float:
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "exec", "client", "--", "python3", "-c", CLIENT, "reach", self.lat_ip, "9000", "20",
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)})
        assert proc.stdout is not None
        try:
            if await asyncio.wait_for(proc.stdout.readline(), 30) != b"ready\n":
                raise RuntimeError("the client did not start")
            await asyncio.sleep(0.2)  # it has tried (and failed) a few times: the pod is isolated
            name = f"allow-{i}"
            started = time.time()
            await self.api.create(NETWORKPOLICIES, netpol(name, "default", {
                "podSelector": {"matchLabels": {"app": "lat"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                             "ports": [{"port": "accept"}]}]}), "default")
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        finally:
            await proc.wait()
        if line == "timeout":
            raise RuntimeError("the client never got through")
        latency = float(line) - started
        await self.api.delete(NETWORKPOLICIES, name, "default")
        chain = policy_chain(f"default/{name}", "ingress")
        await wait("the policy gone", lambda: self._gone(chain))
        return latency

    async def _gone(self, chain: str) -> bool:
        return not await self.in_kernel(chain)

    async def latencies(self, label: str) -> None:
        samples = [await self.latency_sample(i) for i in range(self.args.samples)]
        samples.sort()
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        self.results[f"programming_latency_ms[{label}] p50/p99/max"] = (
            f"{statistics.median(samples) * 1000:.1f} / {p99 * 1000:.1f} / {samples[-1] * 1000:.1f}")
        self.results[f"programming_latency_p50_ms[{label}]"] = round(statistics.median(samples) * 1000, 1)

    async def add_policies(self, n: int) -> None:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await self.api.create(NETWORKPOLICIES, synthetic(i), "syn")

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        last = policy_chain(f"syn/syn-{n - 1}", "ingress")
        await wait(f"{n} policies in the kernel", lambda: self.in_kernel(last), limit=600)
        self.results[f"create_{n}_policies_until_programmed_s"] = round(time.monotonic() - started, 1)
        out = await self.sh("nsenter", f"--net={self.cluster.netns}", "nft", "list", "table", *TABLE.split())
        self.results[f"table_lines_with_{n}_policies"] = out.count("\n")

    # -- connection rate

    async def rates(self, label: str = "") -> None:
        # Short windows, many rounds, alternating which goes first: load from elsewhere on a
        # shared machine then spoils single rounds (the median of the ratios drops them)
        # rather than one side. One discarded round first warms both paths up.
        secs, rounds = (1, 4) if self.args.quick else (2, 12)
        got: dict[str, list[float]] = {"open": [], "guarded": []}
        cpu: dict[str, list[float]] = {"open": [], "guarded": []}
        for name in ("open", "guarded"):
            await self.client_run("rate", self.vip[name], "9000", "1")
        for r in range(rounds):
            for name in (["open", "guarded"] if r % 2 == 0 else ["guarded", "open"]):
                out = await self.client_run("rate", self.vip[name], "9000", str(secs))
                per_s, cpu_us = out.split()
                got[name].append(float(per_s))
                cpu[name].append(float(cpu_us))
        for name in got:
            self.results[f"connections_per_s[{name} Service{label}]"] = round(statistics.median(got[name]))
            self.results[f"client_cpu_us_per_connection[{name} Service{label}]"] = round(statistics.median(cpu[name]), 1)
        for what, values in (("connection_rate_ratio", got), ("client_cpu_per_connection_ratio", cpu)):
            ratios = [g / o for g, o in zip(values["guarded"], values["open"], strict=True)]
            self.results[f"{what}[guarded/unguarded{label}] median (min-max of {rounds} rounds)"] = (
                f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")

    async def run(self) -> None:
        with Cluster("klnp") as self.cluster:
            try:
                await self.setup()
                await self.rates()
                await self.latencies("2 policies")
                await self.add_policies(self.args.policies)
                await self.latencies(f"{self.args.policies} more policies")
                await self.rates(f", {self.args.policies} more policies")
                # The control: the same two pods with the guard policy gone. What differs between
                # the two pods themselves (where the scheduler runs them) shows here, not the policy.
                await self.api.delete(NETWORKPOLICIES, "guard", "default")
                await wait("the guard policy gone", lambda: self._gone(policy_chain("default/guard", "ingress")))
                await self.rates(", control: guard policy deleted")
                self.results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            except BaseException:
                print(self.cluster.log.read_text(errors="replace")[-6000:], file=sys.stderr)  # the cluster's side
                raise
            finally:
                self.nft.close()
                await self.api.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--json", default="")
    ap.add_argument("--quick", action="store_true", help="fewer samples and rounds (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.samples = min(args.samples, 5)
    b = Bench(args)
    b.results["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    asyncio.run(b.run())
    for k, v in b.results.items():
        print(f"{k}: {v}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"results": b.results}, indent=2))


if __name__ == "__main__":
    main()
