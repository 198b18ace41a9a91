"""Kubernetes' supported Service scale in one cluster: 10,000 Services, 50,000 endpoints.

One ``kubelite up`` (as root: with its agent and proxy, so the datapath holds them all) is
loaded through the API the way a big cluster's control plane would see it: N selectorless
Services, each with a hand-made EndpointSlice of 5 ready endpoints (addresses in the pod
network, on a fake node whose Lease the benchmark renews as its agent would; no pod runs, no
packet is sent). It reports how long creating them took through the API, how long until the
proxy had programmed every Service into the kernel's ``service-ips`` map, and then, after the
cluster has idled, the memory (RSS and PSS) of each component at that scale, next to the
same figures for the empty cluster measured first.

Usage: ``python bench/bench_scale.py [--services 10000] [--per-service 5] [--quick] [--json out.json]``
(``--quick``: 1,000 Services.) Needs root for the proxy's figures; without root the control
plane alone is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster
from kubelite.client import ENDPOINTSLICES, LEASES, NAMESPACES, NODES, SERVICES, Client

NS = "scale"
FAKE_NODE = "scale-fake-node"


def endpoint_ip(i: int, k: int, per: int) -> str:
    # Pod-network addresses (10.244.0.0/16) of pods that would run on the fake node.
    n = i * per + k
    return f"10.244.{n // 250 % 256}.{n % 250 + 2}"


async def renew_lease(api: Client) -> None:
    """Keep the fake node alive as its agent would (else node lifecycle would act on it)."""
    while True:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": FAKE_NODE, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": FAKE_NODE, "leaseDurationSeconds": 40, "renewTime": now}}
        try:
            await api.patch(LEASES, FAKE_NODE, lease, "kube-node-lease", type="apply", field_manager="bench",
                            force=True)
        except Exception as e:  # busy populating: try again soon
            print(f"lease renewal: {e}", file=sys.stderr)
        await asyncio.sleep(10)


async def service_ips_entries(c: Cluster) -> int:
    out = await c.sh("nsenter", f"--net={c.netns}", "nft", "-j", "list", "map", "ip", "kube-proxy", "service-ips")
    return sum(len((i.get("map") or {}).get("elem") or []) for i in json.loads(out)["nftables"])


async def populate(c: Cluster, services: int, per: int, concurrency: int) -> dict[str, Any]:
    api = Client.from_kubeconfig(c.kubeconfig)
    lease = asyncio.create_task(renew_lease(api))
    try:
        await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": FAKE_NODE}})
        baseline = await service_ips_entries(c) if c.agent else 0
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s-{i}"},
                                            "spec": {"ports": [{"name": "http", "port": 80}]}}, NS)
                await api.create(ENDPOINTSLICES, {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"s-{i}-1", "labels": {"kubernetes.io/service-name": f"s-{i}"}},
                    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [endpoint_ip(i, k, per)], "conditions": {"ready": True},
                                   "nodeName": FAKE_NODE} for k in range(per)]}, NS)

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(services)))
        created = time.monotonic() - t0
        print(f"  {services} Services + {services * per} endpoints created in {created:.1f} s", flush=True)
        programmed = None
        if c.agent:
            deadline = time.monotonic() + 600
            while await service_ips_entries(c) < baseline + services:
                if time.monotonic() > deadline:
                    raise RuntimeError("the proxy did not program every Service within 600 s")
                await asyncio.sleep(0.5)
            programmed = time.monotonic() - t0
            print(f"  all programmed {programmed:.1f} s after the first create", flush=True)
        return {"create_s": round(created, 2), "creates_per_s": round(2 * services / created, 1),
                "programmed_after_s": round(programmed, 2) if programmed is not None else None,
                "lease": lease, "api": api}
    except BaseException:
        lease.cancel()
        await api.close()
        raise


def summarize(mem: dict[str, Any]) -> dict[str, Any]:
    return {
        "pss_total_mib": round(mem["pss_total_kib"] / 1024, 1),
        "rss_total_mib": round(mem["rss_total_kib"] / 1024, 1),
        "by_component": {k: {"processes": v["processes"], "pss_mib": round(v["pss_kib"] / 1024, 1),
                             "rss_mib": round(v["rss_kib"] / 1024, 1)} for k, v in mem["by_component"].items()},
    }


async def run(c: Cluster, services: int, per: int, idle: float) -> dict[str, Any]:
    await asyncio.sleep(idle)
    empty = summarize(c.memory())
    r = await populate(c, services, per, concurrency=48)
    lease, api = r.pop("lease"), r.pop("api")
    try:
        await asyncio.sleep(idle)
        loaded = summarize(c.memory())
    finally:
        lease.cancel()
        await asyncio.gather(lease, return_exceptions=True)
        await api.close()
    db = c.dir / "state.db"
    return {"services": services, "endpoints": services * per, **r,
            "store_mib": round(sum(p.stat().st_size for p in c.dir.glob("state.db*")) / 2**20, 1)
            if db.exists() else None,
            "memory_empty": empty, "memory_loaded": loaded}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=None, help="default 10,000 (1,000 with --quick)")
    ap.add_argument("--per-service", type=int, default=5, help="endpoints per Service (default 5)")
    ap.add_argument("--idle", type=float, default=None, help="seconds idle before each memory reading (default 10)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    services = args.services or (1000 if args.quick else 10000)
    idle = args.idle if args.idle is not None else (3.0 if args.quick else 10.0)
    if os.geteuid() != 0:
        print("not root: control plane only (no agent, no proxy)", file=sys.stderr)
    load_before = os.getloadavg()
    with Cluster("klsc") as c:
        out = asyncio.run(run(c, services, args.per_service, idle))
    out["loadavg_before"], out["loadavg_after"] = load_before, os.getloadavg()
    print(f"{out['services']} Services, {out['endpoints']} endpoints: created through the API in {out['create_s']} s "
          f"({out['creates_per_s']} objects/s); programmed after {out['programmed_after_s']} s; "
          f"store {out['store_mib']} MiB")
    e, m = out["memory_empty"], out["memory_loaded"]
    print(f"{'component':16} {'PSS empty':>10} {'PSS loaded':>11} {'RSS loaded':>11}  (MiB)")
    for k, v in m["by_component"].items():
        before = e["by_component"].get(k, {}).get("pss_mib", 0.0)
        print(f"{k:16} {before:10.1f} {v['pss_mib']:11.1f} {v['rss_mib']:11.1f}")
    print(f"{'total':16} {e['pss_total_mib']:10.1f} {m['pss_total_mib']:11.1f} {m['rss_total_mib']:11.1f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
