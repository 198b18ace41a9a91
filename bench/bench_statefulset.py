"""StatefulSet benchmark: from ``kubectl apply`` to every pod Ready, beside a Deployment.

On one real ``kubelite up`` (as root: with the node agent, real busybox ``sleep`` pods),
three workloads of N replicas each (default 20) are applied one after the other, each timed
from the apply to the watch showing all N pods Ready, then deleted before the next:

- a Deployment (the reference: a ReplicaSet creates its pods in slow-start batches);
- a StatefulSet with ``podManagementPolicy: Parallel`` (all ordinals created at once);
- a StatefulSet with ``OrderedReady`` (the default: each pod Ready before the next exists,
  so its time is about N times one pod's start-to-Ready latency).

Reported: seconds to all Ready for each, the ratios to the Deployment, and the ordered
set's time per pod. No claims are used (the storage part of issue 17 is measured apart).

Usage: sudo python bench/bench_statefulset.py [--replicas 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from harness import Cluster
from kubelite.client import DEPLOYMENTS, PODS, STATEFULSETS, ApiError, Client, Informer, ResourceType

NS = "default"


def _template(app: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": _template(name)}}


def statefulset(name: str, replicas: int, policy: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": policy,
                     "selector": {"matchLabels": {"app": name}}, "template": _template(name)}}


async def time_to_ready(client: Client, rt: ResourceType, obj: dict[str, Any], replicas: int) -> float:
    """Seconds from the create to the watch showing ``replicas`` Ready pods of the workload."""
    app = obj["metadata"]["name"]
    ready: set[str] = set()
    done = asyncio.Event()
    informer = Informer(client, PODS, NS, label_selector=f"app={app}")

    def on_pod(kind: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = pod["metadata"]["name"]
        is_ready = kind != "DELETED" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                             for c in (pod.get("status") or {}).get("conditions") or [])
        (ready.add if is_ready else ready.discard)(name)
        if len(ready) >= replicas:
            done.set()

    informer.add_handler(on_pod)
    task = asyncio.create_task(informer.run())
    await informer.wait_synced()
    started = time.perf_counter()
    await client.create(rt, obj, NS)
    try:
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await client.delete(rt, app, NS, propagation_policy="Foreground")
    # Wait for the pods to go, so that the next workload starts on an idle node.
    for _ in range(600):
        body = await client.list(PODS, NS, label_selector=f"app={app}")
        if not body.get("items"):
            break
        await asyncio.sleep(0.2)
    return elapsed


async def run(cluster: Cluster, replicas: int) -> dict[str, Any]:
    client = Client.from_kubeconfig(cluster.kubeconfig)
    try:
        # The controller-manager syncs its caches after `up` says ready: a warm-up pod waits for that.
        await time_to_ready(client, DEPLOYMENTS, deployment("warmup", 1), 1)
        results: dict[str, Any] = {"replicas": replicas, "load_before": os.getloadavg()[0]}
        results["deployment_s"] = await time_to_ready(client, DEPLOYMENTS, deployment("bench-deploy", replicas),
                                                      replicas)
        results["statefulset_parallel_s"] = await time_to_ready(
            client, STATEFULSETS, statefulset("bench-par", replicas, "Parallel"), replicas)
        results["statefulset_ordered_s"] = await time_to_ready(
            client, STATEFULSETS, statefulset("bench-ord", replicas, "OrderedReady"), replicas)
        results["load_after"] = os.getloadavg()[0]
        for key in ("deployment_s", "statefulset_parallel_s", "statefulset_ordered_s"):
            results[key] = round(results[key], 2)
        results["parallel_vs_deployment"] = round(results["statefulset_parallel_s"] / results["deployment_s"], 2)
        results["ordered_vs_deployment"] = round(results["statefulset_ordered_s"] / results["deployment_s"], 2)
        results["ordered_s_per_pod"] = round(results["statefulset_ordered_s"] / replicas, 3)
        return results
    finally:
        try:
            await client.close()
        except ApiError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 replicas")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_statefulset needs root (real pods)", file=sys.stderr)
        return 2
    replicas = 5 if args.quick else args.replicas
    with Cluster("klsts") as cluster:
        results = asyncio.run(run(cluster, replicas))
    print(f"{replicas} replicas, apply to all Ready (load {results['load_before']:.1f} -> {results['load_after']:.1f}):")
    print(f"  Deployment              {results['deployment_s']:7.2f} s")
    print(f"  StatefulSet Parallel    {results['statefulset_parallel_s']:7.2f} s  "
          f"({results['parallel_vs_deployment']:.2f}x the Deployment)")
    print(f"  StatefulSet OrderedReady{results['statefulset_ordered_s']:7.2f} s  "
          f"({results['ordered_vs_deployment']:.2f}x; {results['ordered_s_per_pod']:.3f} s per pod)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
