"""Cold start and idle memory of a whole cluster, the two figures users compare local clusters by.

Cold start: the time from exec'ing ``kubelite up`` (a fresh data directory: new store, new PKI)
to its ready line, which it prints only once the API serves, the node is Ready and cluster DNS
answers at its ClusterIP: what k3d, kind and minikube are timed on ("a running app answering
DNS"). Measured from outside, repeated (median and spread), with each process's CPU time at
the ready line: on 2 cores the sum bounds how fast five interpreters can start.

Idle memory: after the cluster has idled, PSS (``/proc/PID/smaps_rollup``) summed over every
process of the cluster: ``kubelite up`` (the API server), its components, the container shims
(detached from the agent, found through the runtime's records) and the coredns pod. PSS, not
RSS: the shims are forked from one zygote and share most pages, which RSS would count again
for each of them. PSS also shares a library's pages with every *other* process mapping it
(other clusters' interpreters too), so a busy machine reads lower: take the figure on a quiet one.

Needs root (the agent's network namespaces). Usage:
``python bench/bench_startup.py [--runs 5] [--idle 10] [--quick] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster, cpu_seconds


def one_start(measure_memory_after: float | None) -> dict[str, Any]:
    with Cluster("kls") as c:
        cpu: dict[str, float] = {}
        for p in c.processes():
            try:
                cpu[p.component] = cpu.get(p.component, 0.0) + cpu_seconds(p.pid)
            except OSError:
                continue
        m = re.search(r"ready in ([\d.]+)s", c.ready_line)
        run: dict[str, Any] = {
            "ready_s": round(c.ready_after, 3),
            "reported_s": float(m[1]) if m else None,
            "cpu_at_ready_s": {k: round(v, 2) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
        }
        if measure_memory_after is not None:
            time.sleep(measure_memory_after)
            run["memory"] = c.memory()
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=None, help="cold starts (default 5; 2 with --quick)")
    ap.add_argument("--idle", type=float, default=None, help="seconds idle before measuring memory (default 10)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_startup needs root (the node agent's network namespaces)")
    runs = args.runs or (2 if args.quick else 5)
    idle = args.idle if args.idle is not None else (5.0 if args.quick else 10.0)
    load_before = os.getloadavg()
    results = []
    for i in range(runs):
        # Memory once, in the last run: idling in every run would only add minutes.
        r = one_start(idle if i == runs - 1 else None)
        print(f"  start {i + 1}/{runs}: ready after {r['ready_s']:.2f} s (reported {r['reported_s']} s); "
              f"CPU at ready: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_at_ready_s"].items()), flush=True)
        results.append(r)
    ready = [r["ready_s"] for r in results]
    cpu_total = [sum(r["cpu_at_ready_s"].values()) for r in results]
    mem = results[-1]["memory"]
    out: dict[str, Any] = {
        "runs": runs,
        "ready_s": ready,
        "ready_median_s": round(statistics.median(ready), 3),
        "ready_min_s": min(ready),
        "ready_max_s": max(ready),
        "reported_s": [r["reported_s"] for r in results],
        "cpu_at_ready_total_s": round(statistics.median(cpu_total), 2),
        "cpu_at_ready_s": [r["cpu_at_ready_s"] for r in results],
        "idle_s": idle,
        "idle_pss_mib": round(mem["pss_total_kib"] / 1024, 1),
        "idle_rss_mib": round(mem["rss_total_kib"] / 1024, 1),
        "idle_processes": mem["processes"],
        "idle_by_component": {k: {"processes": v["processes"], "pss_mib": round(v["pss_kib"] / 1024, 1),
                                  "rss_mib": round(v["rss_kib"] / 1024, 1)}
                              for k, v in mem["by_component"].items()},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(f"cold start (exec → ready line), {runs} runs: median {out['ready_median_s']:.2f} s "
          f"[{out['ready_min_s']:.2f}-{out['ready_max_s']:.2f}]  (goal < 2 s; k3d 19.9 s, kind 33 s, minikube 50.8 s)")
    print(f"CPU used by the cluster until ready: {out['cpu_at_ready_total_s']:.2f} s (median)")
    print(f"idle memory after {idle:.0f} s, PSS over {out['idle_processes']} processes: {out['idle_pss_mib']:.0f} MiB "
          f"(RSS {out['idle_rss_mib']:.0f} MiB)  (goal < 150 MB; k3s 1.6 GB, k0s 510 MB)")
    for k, v in out["idle_by_component"].items():
        print(f"  {k:16} {v['processes']:3} proc  PSS {v['pss_mib']:6.1f} MiB  RSS {v['rss_mib']:6.1f} MiB")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
