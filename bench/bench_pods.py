"""Node agent benchmark: pod create → Ready latency, pod start throughput, agent memory.

Runs a real ``kubelite up`` and a real agent process (``python -m kubelite.node``, as
root: it makes network namespaces), then creates N pods (busybox ``sleep``, no probes) bound
to the agent's node, as fast as the API takes them, and watches them. For each pod it
measures the time from sending its create request to the watch delivering it with
``Ready=True``: everything a pod start costs (sandbox netns + veth + IP, etc files, token,
shim and process start, status write). It reports p50/p99, the creation rate the API took,
the rate pods became Ready, the CPU the agent and the control plane spent meanwhile (with
the 1-minute load average: on a shared machine the latencies follow the load), the agent's
CPU at rest with N pods, and the agent's memory (RSS and PSS from smaps_rollup) with all N
pods running, plus the shims' total (one per container, outside the agent). Everything is
cleaned up, also on failure.

Usage: sudo python bench/bench_pods.py [--pods 100] [--json out.json]
       [--trace events.txt] (every watch event, with its delay since the pod's create)
       [--py-spy stacks.txt] [--agent-log agent.log] (where the agent spends its time)

To compare two versions side by side, run this same script against the other checkout's
sources: ``PYTHONPATH=/path/to/other/src python bench/bench_pods.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from harness import free_port, memory_kib
from kubelite.client import PODS, Client

NS = "default"


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live descendants (``kubelite up`` runs its components as children)."""
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
        todo.extend(children.get(p, []))
    return total


def shim_pids(state_dir: pathlib.Path) -> list[int]:
    pids = []
    for f in state_dir.glob("containers/*/shim.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(f.read_text())
            if os.path.exists(f"/proc/{pid}"):
                pids.append(pid)
    return pids


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(kubeconfig: pathlib.Path, node: str, count: int, serial: int,
                  trace: list[tuple[float, str, str]] | None = None, paced: int = 0,
                  rate: float = 10.0) -> dict[str, Any]:
    client = Client.from_kubeconfig(kubeconfig, max_connections=64)
    sent: dict[str, float] = {}
    ready: dict[str, float] = {}
    waiting: set[str] = set()
    gone: set[str] = set()
    done_event = asyncio.Event()

    async def watch() -> None:
        async for kind, pod in client.watch(PODS, NS, label_selector="bench=pods"):
            name = pod["metadata"]["name"]
            conds = (pod.get("status") or {}).get("conditions") or []
            if trace is not None and name in sent:
                state = ",".join(c["type"] + "=" + c["status"] for c in conds)
                trace.append((time.perf_counter() - sent[name], name, f"{kind} {state}"))
            if kind == "DELETED":
                gone.add(name)
            if kind != "DELETED" and name in waiting and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in conds):
                ready[name] = time.perf_counter()
                waiting.discard(name)
                if not waiting:
                    done_event.set()

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)

    async def create(name: str) -> None:
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "pods"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
        }
        sent[name] = time.perf_counter()
        await client.create(PODS, body, NS)

    async def run(names: list[str]) -> tuple[float, float]:
        waiting.update(names)
        done_event.clear()
        start = time.perf_counter()
        await asyncio.gather(*(create(n) for n in names))
        created = time.perf_counter()
        await asyncio.wait_for(done_event.wait(), 180)
        return created - start, time.perf_counter() - start

    # One at a time first: the latency of a pod start on an otherwise idle node.
    serial_names = [f"serial-{i:04d}" for i in range(serial)]
    for name in serial_names:
        await run([name])
    for name in serial_names:
        await client.delete(PODS, name, NS)
    # The burst starts on a node with nothing else to do: not while it tears those down.
    async with asyncio.timeout(60):
        while not gone.issuperset(serial_names):
            await asyncio.sleep(0.05)
    bulk = [f"bench-{i:04d}" for i in range(count)]
    create_time, total = await run(bulk)
    # Then pods created at a steady rate on the node that runs the burst's pods: how the
    # Kubernetes density test measures pod startup latency against its SLO (latency pods
    # created at a fixed rate in a cluster already full of pods), as opposed to a burst.
    paced_names = [f"paced-{i:04d}" for i in range(paced)]
    if paced:
        waiting.update(paced_names)
        done_event.clear()
        start = time.perf_counter()
        creates = []
        for i, name in enumerate(paced_names):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            creates.append(asyncio.create_task(create(name)))
        await asyncio.gather(*creates)
        await asyncio.wait_for(done_event.wait(), 180)
    watcher.cancel()
    await client.close()
    serial_lat = [ready[n] - sent[n] for n in serial_names]
    latencies = [ready[n] - sent[n] for n in bulk]
    return {
        "serial_pods": serial,
        "serial_ready_p50_ms": round(statistics.median(serial_lat) * 1000, 1) if serial else None,
        "pods": count,
        "ready_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "ready_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "ready_max_ms": round(max(latencies) * 1000, 1),
        "created_per_s": round(count / create_time, 1),
        "ready_per_s": round(count / total, 1),
        **({
            "paced_pods": paced, "paced_rate_per_s": rate,
            "paced_ready_p50_ms": round(statistics.median(pl := [ready[n] - sent[n] for n in paced_names]) * 1000, 1),
            "paced_ready_p99_ms": round(percentile(pl, 99) * 1000, 1),
        } if paced else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--serial", type=int, default=10, help="pods started one at a time first (idle latency)")
    parser.add_argument("--paced", type=int, default=100,
                        help="then pods created at --rate beside the burst's (the density test's latency pods)")
    parser.add_argument("--rate", type=float, default=10.0, help="creation rate of the paced pods (pods/s)")
    parser.add_argument("--rest", type=float, default=20.0, help="seconds the agent's CPU at rest is read over")
    parser.add_argument("--json", default=None)
    parser.add_argument("--agent-log", default=None, help="write the agent's debug log here")
    parser.add_argument("--trace", default=None, help="write every watch event seen, with its delay since create")
    parser.add_argument("--py-spy", default=None, help="record the agent with py-spy as collapsed stacks of on-CPU samples during the run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_pods needs root (network namespaces)")
    from kubelite.node.network import cleanup_cluster
    from kubelite.node.runtime import kill_all

    base = pathlib.Path(tempfile.mkdtemp(prefix="kl-bench-pods-"))
    port = free_port()
    name = f"klbp-{port}"
    agent_cluster = f"{name}-a"
    node = f"{agent_cluster}-node"
    state_dir = base / "agent-bench"
    up = agent = None
    try:
        # The control plane only: this benchmark runs its own agent, to measure that process alone.
        up = subprocess.Popen([sys.executable, "-m", "kubelite", "up", "--name", name, "--data-dir", str(base),
                               "--api-port", str(port), "--no-agent"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert up.stdout is not None
        for line in up.stdout:
            if "is ready" in line:
                break
        else:
            sys.exit("kubelite up failed")
        # Keep reading its output, or it blocks on a full pipe and cannot stop.
        threading.Thread(target=lambda: [None for _ in up.stdout], daemon=True).start()  # type: ignore[union-attr]
        log = open(args.agent_log, "wb") if args.agent_log else subprocess.DEVNULL  # noqa: SIM115
        agent = subprocess.Popen(
            [sys.executable, "-m", "kubelite.node", *(["-vv"] if args.agent_log else []),
             "--kubeconfig", str(base / "kubeconfig"),
             "--cluster-name", agent_cluster, "--node-name", node, "--state-dir", str(state_dir)],
            stdout=log, stderr=log,
        )
        kubectl = shutil.which("kubectl") or "kubectl"
        env = {**os.environ, "KUBECONFIG": str(base / "kubeconfig")}
        deadline = time.monotonic() + 30
        while subprocess.run([kubectl, "wait", "--for=condition=Ready", f"node/{node}", "--timeout=1s"],
                             env=env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                sys.exit("the agent's node did not become Ready")
        idle_rss, idle_pss = memory_kib(agent.pid)
        cpu_before = cpu_seconds(agent.pid)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(["py-spy", "record", "-f", "raw", "-r", "200", "-p", str(agent.pid),
                                    "-o", args.py_spy], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        trace: list[tuple[float, str, str]] | None = [] if args.trace else None
        api_cpu_before = tree_cpu_seconds(up.pid)
        try:
            result = asyncio.run(measure(base / "kubeconfig", node, args.pods, args.serial, trace, args.paced,
                                         args.rate))
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
        if args.trace and trace is not None:
            pathlib.Path(args.trace).write_text("".join(f"{t:8.3f} {n} {what}\n" for t, n, what in trace))
        result["control_plane_cpu_s"] = round(tree_cpu_seconds(up.pid) - api_cpu_before, 2)
        result["load_avg_1m"] = os.getloadavg()[0]
        result["agent_cpu_s"] = round(cpu_seconds(agent.pid) - cpu_before, 2)
        result["cpus"] = os.cpu_count()
        time.sleep(2)
        # What N running pods cost the agent at rest (status polls, probes, heartbeats).
        # 20 s: two of the pod workers' periodic resyncs (RESYNC) at least, whose phases differ.
        cpu_rest = cpu_seconds(agent.pid)
        time.sleep(args.rest)
        result["agent_cpu_pct_at_rest"] = round((cpu_seconds(agent.pid) - cpu_rest) / args.rest * 100, 2)
        rss, pss = memory_kib(agent.pid)
        shims = [memory_kib(pid) for pid in shim_pids(state_dir)]
        result.update({
            "agent_idle_rss_mib": round(idle_rss / 1024, 1), "agent_idle_pss_mib": round(idle_pss / 1024, 1),
            "agent_rss_mib": round(rss / 1024, 1), "agent_pss_mib": round(pss / 1024, 1),
            "shims": len(shims), "shims_pss_mib_total": round(sum(p for _, p in shims) / 1024, 1),
            "shim_pss_mib_each": round(statistics.mean(p for _, p in shims) / 1024, 2) if shims else 0,
        })
        print(json.dumps(result, indent=2))
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    finally:
        for proc in (agent, up):
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc is agent:
                kill_all(state_dir)
        cleanup_cluster(agent_cluster)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
