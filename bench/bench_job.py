"""Job benchmark: a Job of 100 completions at parallelism 10, beside a Deployment of 100 pods.

One ``kubelite up`` (as root, with its agent: the pods really run, catalog busybox). First a
Job of N completions (busybox ``true``) with parallelism P is created and timed until its
``Complete`` condition (which the Job controller writes once every pod was counted through the
job-tracking finalizer and none is left terminating); then, in the same cluster, a Deployment
of N pods (busybox ``sleep``) is timed from its create to N available replicas. Both start N
pods; the Job runs them P at a time and must see each one finish, so the ratio says what
running work to completion costs beside just starting it. Also reported: the Job's pods per
second and the controller-manager's CPU during each phase.

Usage: sudo python bench/bench_job.py [--completions 100] [--parallelism 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster, cpu_seconds
from kubelite.client import DEPLOYMENTS, JOBS, PODS, ApiError, Client

NS = "default"


def _container(command: list[str]) -> dict[str, Any]:
    return {"name": "main", "image": "busybox", "command": command}


async def _wait(check: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} not done in {limit}s")


async def run_job(api: Client, completions: int, parallelism: int) -> float:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench-job"},
           "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": completions,
                    "template": {"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                                          "containers": [_container(["true"])]}}}}
    t0 = time.monotonic()
    await api.create(JOBS, job, NS)

    async def complete() -> bool:
        status = (await api.get(JOBS, "bench-job", NS)).get("status") or {}
        return any(c.get("type") == "Complete" and c.get("status") == "True" for c in status.get("conditions") or [])

    await _wait(complete, 900, "the Job")
    elapsed = time.monotonic() - t0
    status = (await api.get(JOBS, "bench-job", NS))["status"]
    assert status["succeeded"] == completions, status
    return elapsed


async def run_deployment(api: Client, replicas: int) -> float:
    labels = {"app": "bench-deploy"}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench-deploy"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"terminationGracePeriodSeconds": 1,
                                          "containers": [_container(["sleep", "3600"])]}}}}
    t0 = time.monotonic()
    await api.create(DEPLOYMENTS, dep, NS)

    async def available() -> bool:
        status = (await api.get(DEPLOYMENTS, "bench-deploy", NS)).get("status") or {}
        return int(status.get("availableReplicas") or 0) >= replicas

    await _wait(available, 900, "the Deployment")
    return time.monotonic() - t0


async def _gone(api: Client, label: str) -> None:
    async def none_left() -> bool:
        return not (await api.list(PODS, NS, label_selector=label)).get("items")

    await _wait(none_left, 300, f"pods {label} deleted")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with Cluster("klbjob") as c:
        api = Client.from_kubeconfig(c.kubeconfig)
        try:
            ctrl = c.controllers_pid()
            cpu0 = cpu_seconds(ctrl)
            job_s = await run_job(api, args.completions, args.parallelism)
            cpu1 = cpu_seconds(ctrl)
            await api.delete(JOBS, "bench-job", NS, propagation_policy="Background")
            await _gone(api, "batch.kubernetes.io/job-name=bench-job")
            cpu2 = cpu_seconds(ctrl)
            dep_s = await run_deployment(api, args.completions)
            cpu3 = cpu_seconds(ctrl)
            try:
                await api.delete(DEPLOYMENTS, "bench-deploy", NS)
            except ApiError:
                pass
        finally:
            await api.close()
    return {
        "completions": args.completions, "parallelism": args.parallelism,
        "job_seconds": round(job_s, 2), "job_pods_per_second": round(args.completions / job_s, 1),
        "deployment_seconds": round(dep_s, 2), "ratio_job_to_deployment": round(job_s / dep_s, 2),
        "controller_cpu_seconds_job": round(cpu1 - cpu0, 2), "controller_cpu_seconds_deployment": round(cpu3 - cpu2, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--completions", type=int, default=100)
    p.add_argument("--parallelism", type=int, default=10)
    p.add_argument("--json", type=pathlib.Path)
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    print(f"Job of {result['completions']} completions, parallelism {result['parallelism']}: "
          f"{result['job_seconds']}s to Complete ({result['job_pods_per_second']} pods/s; "
          f"controller-manager CPU {result['controller_cpu_seconds_job']}s)")
    print(f"Deployment of {result['completions']} pods: {result['deployment_seconds']}s to all available "
          f"(controller-manager CPU {result['controller_cpu_seconds_deployment']}s)")
    print(f"ratio Job/Deployment: {result['ratio_job_to_deployment']}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
