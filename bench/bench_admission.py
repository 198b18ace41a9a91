"""What Pod Security admission and the audit log cost on the write path.

Pod creates/s and their p50/p99 (``wrk`` POSTing pods with ``generateName`` over HTTPS with a
bearer token, closed loop with ``--clients`` connections), side by side in one run, in two
clusters, one started with ``--audit-log`` (every write is also an audit event, written in
the background), each with two namespaces:
- ``plain``: no Pod Security labels (the plugin only notes the default ``privileged:latest``);
- ``restricted``: labelled ``pod-security.kubernetes.io/enforce=restricted`` (every check
  runs on every pod; the pods comply, so each is stored).

Runs take turns (plain, plain audited, restricted, restricted audited; the next round
restricted first) so that the machine's drift and the store's growth spread over all four; the figures are the ratios restricted / plain
(Pod Security's cost) and audited / not (the audit log's), of the rates and of the API
server's CPU time per create (the steadier of the two on a shared machine). The
pods name a node that does not exist, so no scheduler or agent works on them (the control
plane only: no root needed).

Usage: python bench/bench_admission.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Cluster, cpu_seconds, wrk_post

POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "b-"},
    "spec": {
        "nodeName": "bench-no-such-node",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    },
}


def namespace(c: Cluster, name: str, labels: dict[str, str]) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    subprocess.run(["kubectl", "--kubeconfig", str(c.kubeconfig), "create", "-f", "-"], input=json.dumps(manifest),
                   text=True, check=True, capture_output=True)


def creates(c: Cluster, ns: str, clients: int, seconds: int) -> dict[str, float]:
    """Closed-loop pod creates: their rate, latency, and the API server's CPU time per create
    (what the machine's other load disturbs least)."""
    assert c.proc is not None  # `up` serves the API itself (no workers)
    cpu_before = cpu_seconds(c.proc.pid)
    r = wrk_post(c, f"/api/v1/namespaces/{ns}/pods", POD, clients, seconds)
    cpu = cpu_seconds(c.proc.pid) - cpu_before
    if r.errors:
        raise RuntimeError(f"{r.errors} of {r.requests} pod creates in {ns} failed")
    return {"creates_per_s": r.per_s, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "server_cpu_us_per_create": cpu / r.requests * 1e6}


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    seconds = 2 if args.quick else 5
    rounds = args.rounds or (1 if args.quick else 4)
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "restricted": [], "plain_audited": [],
                                               "restricted_audited": []}
    load: dict[str, list[float]] = {"before": list(os.getloadavg())}
    # Both clusters run through the whole measurement, and take turns: each gets the same
    # share of the machine's drift and stores as many pods.
    with Cluster("klbpsa", agent=False) as c, Cluster("klbaud", agent=False, up_args=("--audit-log",)) as a:
        for cluster in (c, a):
            namespace(cluster, "plain", {})
            namespace(cluster, "restricted", {"pod-security.kubernetes.io/enforce": "restricted"})
            creates(cluster, "plain", args.clients, 1)  # warm-up
            creates(cluster, "restricted", args.clients, 1)
        for i in range(rounds):
            # Every other round the other way round: each namespace as often first as second
            # (the store grows by every run's pods).
            for ns in ("plain", "restricted") if i % 2 == 0 else ("restricted", "plain"):
                runs[ns].append(creates(c, ns, args.clients, seconds))
                runs[f"{ns}_audited"].append(creates(a, ns, args.clients, seconds))
        audit_lines = sum(1 for _ in (a.dir / "audit.log").open("rb"))
    load["after"] = list(os.getloadavg())
    results: dict[str, Any] = {k: summarize(v) for k, v in runs.items()}
    results["ratio_restricted_over_plain"] = (results["restricted"]["creates_per_s"]
                                              / results["plain"]["creates_per_s"])
    results["ratio_audited_over_plain"] = results["plain_audited"]["creates_per_s"] / results["plain"]["creates_per_s"]
    results["ratio_restricted_audited_over_restricted"] = (results["restricted_audited"]["creates_per_s"]
                                                           / results["restricted"]["creates_per_s"])
    for name, (a, b) in {"cpu_ratio_restricted_over_plain": ("restricted", "plain"),
                         "cpu_ratio_audited_over_plain": ("plain_audited", "plain")}.items():
        results[name] = results[a]["server_cpu_us_per_create"] / results[b]["server_cpu_us_per_create"]
    results["audit_lines"] = audit_lines
    results["loadavg"] = load
    results["clients"] = args.clients
    print(f"pod creates, {args.clients} clients, closed loop, median of {rounds} x {seconds}s "
          f"(load {load['before'][0]:.2f} -> {load['after'][0]:.2f})")
    for k in runs:
        r = results[k]
        print(f"  {k:18} {r['creates_per_s']:8.0f}/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
              f"API server CPU {r['server_cpu_us_per_create']:5.0f} us/create")
    print(f"  restricted / plain = {results['ratio_restricted_over_plain']:.3f}; "
          f"audited / not: plain {results['ratio_audited_over_plain']:.3f}, restricted "
          f"{results['ratio_restricted_audited_over_restricted']:.3f} ({audit_lines} audit lines)")
    print(f"  API server CPU per create: restricted / plain = {results['cpu_ratio_restricted_over_plain']:.3f}; "
          f"audited / not = {results['cpu_ratio_audited_over_plain']:.3f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
