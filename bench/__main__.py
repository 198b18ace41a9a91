"""The benchmark suite: ``python -m bench [NAME ...] [--quick] [--json PATH] [--plot PATH] [--repeat N]``.

Runs every benchmark (or the named ones) as its own subprocess, ``python bench/bench_X.py ...
--json tmp``, and reads its JSON: a crash stays in one benchmark, and each keeps its own
clean-up. Then it prints one table of the figures that matter, each beside its goal and
Kubernetes' own anchor (shared reference, section 8: "Scale and latency anchors"), met or
missed and by how much, and writes everything as JSON with the machine, the date, the load
average before and after each benchmark and the git commit: on a shared 2-core machine a
figure means little without the load it was taken under.

``--quick`` picks small sizes (a smoke run of a couple of minutes: CI runs it); figures that
need root are skipped with the reason when not root, and fail the run when ``CI=true``.
``--plot`` draws network programming latency and first-packet latency against the number of
Services, from bench_proxy's per-scale results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from harness import cmdline, container_pids, cpu_check, session_of, start_ticks  # noqa: E402

Json = dict[str, Any]


@dataclass
class Bench:
    name: str
    script: str
    full: list[str]
    quick: list[str]
    root: bool = False
    tools: list[str] = field(default_factory=list)  # programs it cannot run without
    timeout: float = 1800  # seconds; --quick divides by 6
    what: str = ""


# The proxy's scales are visited in one cluster, in increasing order (one run gives the curve).
PROXY_SCALES_FULL = "10,100,1000,10000"
PROXY_SCALES_QUICK = "10,1000"

BENCHES = [
    Bench("startup", "bench_startup.py", [], ["--runs", "2", "--idle", "3"], root=True,
          what="cold start of a whole cluster and its idle memory"),
    Bench("api", "bench_api.py", [], ["--quick"], root=True, tools=["wrk"],
          what="API writes (wrk, 1 and 50 clients), watch fan-out, big lists"),
    # Not root: the control plane alone (its pods name no real node).
    Bench("admission", "bench_admission.py", [], ["--quick"], tools=["wrk"],
          what="pod creates/s: Pod Security enforce=restricted vs none; audit log on vs off"),
    Bench("endpointslice", "bench_endpointslice.py", [], ["--services", "10", "--samples", "20"], root=True,
          what="pod Ready flip -> EndpointSlice"),
    Bench("services", "bench_services.py", [], ["--services", "300"], root=True,
          what="ClusterIP allocation stays O(1)"),
    Bench("pods", "bench_pods.py", ["--pods", "100"], ["--pods", "10", "--serial", "2", "--rest", "5"], root=True,
          what="pod create -> Ready"),
    Bench("proxy", "bench_proxy.py", ["--services", PROXY_SCALES_FULL],
          ["--quick", "--services", PROXY_SCALES_QUICK, "--samples", "5"], root=True, tools=["nft", "iperf3"],
          what="the Service datapath: ClusterIP vs pod IP, programming latency, first packet, full sync"),
    Bench("netpol", "bench_netpol.py", [], ["--quick", "--policies", "100"], root=True, tools=["nft"],
          what="NetworkPolicy: programming latency with 1,000 policies, guarded/unguarded connection rate"),
    Bench("dns", "bench_dns_pods.py", [], ["--seconds", "1"], root=True, tools=["dnsperf"],
          what="cluster DNS from a pod (dnsperf)"),
    Bench("scale", "bench_scale.py", [], ["--quick"], root=True,
          what="10,000 Services x 5 endpoints: create time, memory per component"),
    # Not root: the control plane alone. Mostly waiting (~18 min; quick ~12): the deletes stay in the
    # store's 5-minute watch history, so their space can only come back after it.
    Bench("space", "bench_store_space.py", [], ["--quick"], timeout=7200,
          what="state.db after 20,000 ConfigMaps created and deleted (quick 2,000), writer latency meanwhile"),
]
BY_NAME = {b.name: b for b in BENCHES}


# ---------------------------------------------------------------------------- figures


def dig(d: Any, *path: Any) -> Any:
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def number(v: Any, index: int = 0) -> float | None:
    """A number, or the ``index``-th number in a text such as "18 / 74 (90)" (bench_proxy's results)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        found = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", v)
        return float(found[index]) if len(found) > index else None
    return None


def labelled(r: Json, pattern: str, index: int = 0) -> float | None:
    """The number in bench_proxy's ``results`` whose human label matches ``pattern``."""
    for k, v in (r.get("results") or {}).items():
        if re.search(pattern, k):
            return number(v, index)
    return None


def at_scale(r: Json, services: int | None, *path: str) -> float | None:
    """A per-scale figure of bench_proxy; ``services`` None: the largest scale run."""
    scales = r.get("scales") or []
    if not scales:
        return None
    s = scales[-1] if services is None else next((s for s in scales if s.get("services") == services), None)
    return number(dig(s, *path))


def first_packet_ratio(r: Json) -> float | None:
    """All Services vs the cluster's own few, swapped in the kernel side by side (A/B) when
    bench_proxy measured it, else the largest scale's p50 over the smallest's."""
    ab = dig(r, "scales", -1, "first_packet_ab_us", "ratio_p50")
    if ab is not None:
        return number(ab)
    lo, hi = at_scale(r, (r.get("scales") or [{}])[0].get("services"), "first_packet_us", "p50"), \
        at_scale(r, None, "first_packet_us", "p50")
    return hi / lo if lo and hi else None


def dns_figure(r: Json, suffix: str, key: str) -> float | None:
    for k, v in r.items():
        if k.startswith("cluster_") and k.endswith(suffix) and isinstance(v, dict):
            return number(v.get(key))
    return None


@dataclass
class Figure:
    key: str
    label: str
    bench: str
    get: Callable[[Json], float | None]
    unit: str
    goal: tuple[str, float] | None = None  # ("<=", 2.0) etc.
    anchor: str = ""
    in_quick: bool = True  # expected in a --quick run too
    digits: int = 1


def component_pss(*components: str) -> Callable[[Json], float | None]:
    """PSS at scale of one component (the sum if it goes by several names, e.g. agent and agent+proxy)."""
    def get(r: Json) -> float | None:
        found = [number(dig(r, "memory_loaded", "by_component", c, "pss_mib")) for c in components]
        values = [v for v in found if v is not None]
        return sum(values) if values else None
    return get


MB = 1e6 / 2**20  # bench_startup reports MiB; the goal and the anchors are in MB
FIGURES = [
    Figure("cold_start_s", "cold start: API + node Ready + DNS answering (median)", "startup",
           lambda r: r.get("ready_median_s"), "s", ("<", 2.0), "k3d 19.9 s, kind 33 s, minikube 50.8 s", digits=2),
    Figure("cold_start_cpu_s", "  CPU of all processes until ready", "startup",
           lambda r: r.get("cpu_at_ready_total_s"), "s", digits=2),
    Figure("idle_memory_mb", "idle memory, whole cluster (PSS)", "startup",
           lambda r: (r["idle_pss_mib"] / MB) if r.get("idle_pss_mib") else None, "MB", ("<", 150),
           "k3s server 1.6 GB, k0s controller 510 MB, MicroK8s 540 MB", digits=0),
    Figure("api_writes_50_per_s", "API writes/s, 50 clients", "api",
           lambda r: dig(r, "writes_50_clients", "writes_per_s"), "/s", (">=", 2000), digits=0),
    Figure("api_writes_50_p99_ms", "API write p99, 50 clients, closed loop", "api",
           lambda r: dig(r, "writes_50_clients", "p99_ms"), "ms", ("<=", 25), "SLO: mutating calls p99 <= 1 s"),
    Figure("api_writes_50_paced_per_s", "API writes/s, 50 clients paced at 2,000/s", "api",
           lambda r: dig(r, "writes_50_clients_paced_2000", "writes_per_s"), "/s", (">=", 1960), digits=0),
    Figure("api_writes_50_paced_p99_ms", "API write p99, 50 clients paced at 2,000/s", "api",
           lambda r: dig(r, "writes_50_clients_paced_2000", "p99_ms"), "ms", ("<=", 25),
           "SLO: mutating calls p99 <= 1 s"),
    Figure("api_writes_1_p99_ms", "API write p99, 1 client", "api",
           lambda r: dig(r, "writes_1_client", "p99_ms"), "ms", anchor="SLO: mutating calls p99 <= 1 s", digits=2),
    Figure("psa_restricted_ratio", "pod creates/s, enforce=restricted / no Pod Security labels", "admission",
           lambda r: r.get("ratio_restricted_over_plain"), "x", digits=3),
    Figure("audit_log_ratio", "pod creates/s, audit log on / off", "admission",
           lambda r: r.get("ratio_audited_over_plain"), "x", digits=3),
    Figure("watch_fanout_p99_ms", "watch fan-out p99, 100 watchers", "api",
           lambda r: dig(r, "watch_fanout_100", "p99_ms"), "ms"),
    Figure("list_json_ms", "list ConfigMaps as JSON (10,000; quick 2,000)", "api",
           lambda r: dig(r, "list_10000", "list_json_ms"), "ms", digits=0),
    Figure("ready_to_slice_p99_ms", "pod Ready flip -> EndpointSlice p99", "endpointslice",
           lambda r: r.get("ready_to_slice_p99_ms"), "ms", ("<=", 50)),
    Figure("controllers_idle_cpu_pct", "controllers idle CPU", "endpointslice",
           lambda r: r.get("controllers_idle_cpu_pct"), "%", digits=2),
    Figure("clusterip_alloc_ratio", "ClusterIP create: last 100 / first 100 (median)", "services",
           lambda r: r.get("ratio_last_vs_first"), "x", ("<=", 1.1), "O(1)", digits=3),
    Figure("pod_ready_serial_p50_ms", "pod create -> Ready, one at a time, p50", "pods",
           lambda r: r.get("serial_ready_p50_ms"), "ms", digits=0),
    Figure("pod_ready_burst_p99_ms", "pod create -> Ready, burst (100; quick 10), p99", "pods",
           lambda r: r.get("ready_p99_ms"), "ms", ("<=", 500), "SLO: pod start-up p99 <= 5 s", digits=0),
    Figure("throughput_ratio", "throughput ClusterIP / pod IP", "proxy",
           lambda r: labelled(r, r"^throughput_ratio\[ClusterIP"), "x", (">=", 0.95), digits=3),
    Figure("connection_rate_ratio", "new connections/s ClusterIP / pod IP", "proxy",
           lambda r: labelled(r, r"^connection_rate_ratio\[ClusterIP"), "x", (">=", 0.90), digits=3),
    Figure("userspace_throughput_ratio", "  contrast: userspace proxy throughput / pod IP", "proxy",
           lambda r: labelled(r, r"^throughput_ratio\[userspace"), "x", digits=3),
    Figure("userspace_connection_rate_ratio", "  contrast: userspace proxy connections/s / pod IP", "proxy",
           lambda r: labelled(r, r"^connection_rate_ratio\[userspace"), "x", digits=3),
    Figure("first_packet_ratio", "first-packet latency, many vs few Services (p50)", "proxy",
           first_packet_ratio, "x", ("<=", 1.1), "one verdict-map lookup", digits=3),
    Figure("programming_p50_ms_1000", "network programming p50, 1,000 Services", "proxy",
           lambda r: at_scale(r, 1000, "programming_ms", "p50"), "ms",
           anchor="kube-proxy nftables p50 1.5 s on 100 nodes", digits=0),
    Figure("programming_p99_ms_1000", "network programming p99, 1,000 Services", "proxy",
           lambda r: at_scale(r, 1000, "programming_ms", "p99"), "ms", ("<=", 100),
           "kube-proxy nftables p99 6.8 s on 100 nodes; perf tests 30 s", digits=0),
    Figure("programming_p50_ms_10000", "network programming p50, 10,000 Services", "proxy",
           lambda r: at_scale(r, 10000, "programming_ms", "p50"), "ms",
           anchor="kube-proxy nftables p50 1.5 s on 100 nodes", in_quick=False, digits=0),
    Figure("programming_p99_ms_10000", "network programming p99, 10,000 Services", "proxy",
           lambda r: at_scale(r, 10000, "programming_ms", "p99"), "ms", ("<=", 250),
           "kube-proxy nftables p99 6.8 s on 100 nodes; perf tests 30 s", in_quick=False, digits=0),
    Figure("full_sync_s", "full proxy sync, largest scale x 2 endpoints", "proxy",
           lambda r: labelled(r, r"^full_sync_s\["), "s", ("<=", 5.0), digits=2),
    Figure("netpol_programming_p50_ms", "NetworkPolicy change -> traffic p50, 1,000 policies (quick 100)", "netpol",
           lambda r: labelled(r, r"^programming_latency_p50_ms\[\d+ more"), "ms", digits=0),
    Figure("netpol_programming_p50_ms_few", "  ... with 2 policies", "netpol",
           lambda r: labelled(r, r"^programming_latency_p50_ms\[2 policies"), "ms", digits=0),
    Figure("netpol_connection_rate_ratio", "new connections/s policy-guarded / unguarded Service", "netpol",
           lambda r: labelled(r, r"^connection_rate_ratio\[guarded/unguarded\]"), "x", (">=", 0.95), digits=3),
    Figure("netpol_client_cpu_ratio", "  client CPU per connection, guarded / unguarded", "netpol",
           lambda r: labelled(r, r"^client_cpu_per_connection_ratio\[guarded/unguarded\]"), "x", digits=3),
    Figure("dns_qps", "cluster DNS qps from a pod, saturated", "dns",
           lambda r: dns_figure(r, "_saturation", "qps"), "qps", (">=", 20000), digits=0),
    Figure("dns_p99_ms", "cluster DNS p99 at 20,000 qps", "dns",
           lambda r: dns_figure(r, "_qps", "p99_ms"), "ms", ("<=", 5), digits=3),
    Figure("scale_create_s", "create 10,000 Services + 50,000 endpoints (quick: 1,000 + 5,000)", "scale",
           lambda r: r.get("create_s"), "s", anchor="supported: 10,000 Services, 250 endpoints each"),
    Figure("scale_programmed_s", "  ... until all programmed in nftables", "scale",
           lambda r: r.get("programmed_after_s"), "s"),
    Figure("scale_memory_mib", "memory at that scale, whole cluster (PSS)", "scale",
           lambda r: dig(r, "memory_loaded", "pss_total_mib"), "MiB", digits=0),
    Figure("scale_memory_apiserver_mib", "  apiserver (up) (PSS)", "scale", component_pss("apiserver (up)"), "MiB",
           digits=0),
    Figure("scale_memory_controllers_mib", "  controllers (PSS)", "scale", component_pss("controllers"), "MiB",
           digits=0),
    Figure("scale_memory_agent_mib", "  node agent, with the proxy when it hosts it (PSS)", "scale",
           component_pss("agent", "agent+proxy"), "MiB", digits=0),
    Figure("scale_memory_coredns_mib", "  coredns pod (PSS)", "scale", component_pss("coredns pod"), "MiB", digits=0),
    Figure("space_ratio", "state.db after 20,000 ConfigMaps created and deleted / before", "space",
           lambda r: r.get("ratio_after_before"), "x", ("<=", 2.0), "etcd: needs a defrag to shrink", digits=2),
    Figure("space_peak_mb", "  state.db at its peak", "space",
           lambda r: r["size_peak_bytes"] / 1e6 if r.get("size_peak_bytes") else None, "MB"),
    Figure("space_probe_vacuum_max_ms", "  writer latency while space is given back (max)", "space",
           lambda r: dig(r, "probe_during_vacuum", "max_ms"), "ms"),
    Figure("space_probe_quiet_max_ms", "  ... in the quiet minutes before (max)", "space",
           lambda r: dig(r, "probe_quiet", "max_ms"), "ms"),
]


def verdict(value: float, goal: tuple[str, float]) -> tuple[bool, str]:
    op, g = goal
    ratio = value / g if g else float("inf")
    met = {"<": value < g, "<=": value <= g, ">": value > g, ">=": value >= g}[op]
    if met:
        return True, f"met ({ratio:.2f}x goal)"
    if op in ("<", "<="):
        return False, f"MISSED by {ratio:.2f}x (+{(ratio - 1) * 100:.0f}%)"
    return False, f"MISSED: {ratio:.2f}x goal ({(ratio - 1) * 100:.0f}%)"


# ---------------------------------------------------------------------------- running


def machine() -> Json:
    mem = next((int(line.split()[1]) for line in pathlib.Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip()

    return {
        "nproc": os.cpu_count(), "ram_gib": round(mem / 2**20, 1), "kernel": platform.release(),
        "cpu": cpu, "python": platform.python_version(), "hostname": platform.node(),
        "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def skip_reason(b: Bench) -> str | None:
    if b.root and os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in b.tools if not shutil.which(t)]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install {' '.join(missing)})"
    return None


class Tracker(threading.Thread):
    """What one benchmark starts, seen from outside: every process of its session (it runs in a
    session of its own), the clusters they are (``kubelite up --name N --data-dir D``, an agent's
    ``--cluster-name N``) and those clusters' container shims and containers, which detach into
    sessions of their own. Afterwards, whatever of it still lives or still has a network
    namespace is a leftover: reported, then removed (``kubelite down``, SIGKILL) since it is ours."""

    def __init__(self, sid: int) -> None:
        super().__init__(daemon=True)
        self.sid = sid
        self.procs: dict[tuple[int, int], str] = {}
        self.clusters: dict[str, str | None] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.3):
            self.scan()

    def _record(self, pid: int) -> list[str] | None:
        argv: list[str]  # harness is imported by path, so mypy does not see its types
        try:
            argv, start = cmdline(pid), start_ticks(pid)
        except (OSError, IndexError, ValueError):
            return None
        if argv:
            self.procs[(pid, start)] = " ".join(argv)[:160]
        return argv

    def scan(self) -> None:
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                if session_of(pid) != self.sid:
                    continue
            except (OSError, IndexError, ValueError):
                continue
            argv = self._record(pid) or []
            for flag in ("--name", "--cluster-name"):
                if flag in argv[:-1] and ("up" in argv or flag == "--cluster-name"):
                    name = argv[argv.index(flag) + 1]
                    d = argv[argv.index("--data-dir") + 1] if "--data-dir" in argv[:-1] else None
                    if d or name not in self.clusters:
                        self.clusters[name] = d
        for d in [d for d in self.clusters.values() if d]:
            for pid in container_pids(pathlib.Path(d)):
                self._record(pid)

    def leftovers(self) -> list[str]:
        left = []
        for (pid, start), cmd in self.procs.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
                if start_ticks(pid) == start and stat[stat.rindex(")") + 2] != "Z":
                    left.append(f"process {pid}: {cmd}")
        with contextlib.suppress(FileNotFoundError):
            left += [f"netns {n}" for n in sorted(os.listdir("/run/netns"))
                     if any(n.startswith(f"{c}-") for c in self.clusters)]
        return left

    def clean(self) -> None:
        for name, d in self.clusters.items():
            argv = [sys.executable, "-m", "kubelite", "down", "--name", name, *(["--data-dir", d] if d else [])]
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=120)
        for (pid, start) in list(self.procs):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if start_ticks(pid) == start:
                    os.kill(pid, signal.SIGKILL)


def run_one(b: Bench, quick: bool, logdir: pathlib.Path, attempt: int) -> Json:
    """One benchmark as a subprocess in its own process group; its JSON, or why there is none."""
    with tempfile.NamedTemporaryFile(prefix=f"bench-{b.name}-", suffix=".json", delete=False) as f:
        out = pathlib.Path(f.name)
    log = logdir / f"{b.name}{'' if attempt == 0 else f'.{attempt + 1}'}.log"
    argv = [sys.executable, str(HERE / b.script), *(b.quick if quick else b.full), "--json", str(out)]
    timeout = b.timeout / 6 if quick else b.timeout
    entry: Json = {"argv": argv[1:], "log": str(log), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                   "cpu_check_ms_before": cpu_check()}
    started = time.monotonic()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        tracker = Tracker(proc.pid)
        tracker.start()
        try:
            code = proc.wait(timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
            # SIGINT first: the benchmark's finally blocks stop its cluster and remove its namespaces.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if isinstance(e, KeyboardInterrupt):
                tracker.clean()
                raise
            code = None
        finally:
            tracker.done.set()
            tracker.join()
    entry["seconds"] = round(time.monotonic() - started, 1)
    entry["clusters"] = tracker.clusters
    entry["processes_seen"] = len(tracker.procs)
    time.sleep(0.5)  # processes SIGKILLed by the benchmark's own clean-up may take a moment to be reaped
    entry["leftovers"] = tracker.leftovers()
    if entry["leftovers"]:
        tracker.clean()
        entry["left_after_clean"] = tracker.leftovers()
    entry["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    entry["cpu_check_ms_after"] = cpu_check()
    try:
        entry["result"] = json.loads(out.read_text()) if out.stat().st_size else None
    except (OSError, ValueError):
        entry["result"] = None
    out.unlink(missing_ok=True)
    if code is None:
        entry["status"], entry["reason"] = "failed", f"timed out after {timeout:.0f} s"
    elif code != 0 or entry["result"] is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        entry["status"], entry["reason"] = "failed", f"exit code {code}: " + " | ".join(tail)[-300:]
    elif entry["leftovers"]:
        entry["status"], entry["reason"] = "failed", f"left behind: {'; '.join(entry['leftovers'])[:300]}"
    else:
        entry["status"] = "ok"
    return entry


def figures_of(results: dict[str, Json], quick: bool) -> list[Json]:
    rows = []
    for f in FIGURES:
        bench = results.get(f.bench)
        row: Json = {"key": f.key, "label": f.label.strip(), "bench": f.bench, "unit": f.unit,
                     "goal": f"{f.goal[0]} {f.goal[1]:g} {f.unit}" if f.goal else None,
                     "goal_op": f.goal[0] if f.goal else None, "goal_value": f.goal[1] if f.goal else None,
                     "anchor": f.anchor or None,
                     "value": None, "status": "n/a"}
        if bench is None:
            continue
        runs = [r["result"] for r in bench["runs"] if r.get("status") == "ok"]
        values = []
        for r in runs:
            with contextlib.suppress(Exception):  # a benchmark's JSON changed shape: n/a, not a crash
                v = f.get(r)
                if v is not None:
                    values.append(float(v))
        if values:
            row["value"] = round(statistics.median(values), f.digits + 1)
            if len(values) > 1:
                row["spread"] = [round(min(values), f.digits + 1), round(max(values), f.digits + 1)]
            if f.goal:
                met, text = verdict(row["value"], f.goal)
                row["status"], row["verdict"] = ("met" if met else "missed"), text
            else:
                row["status"] = "measured"
        elif bench["status"] == "skipped":
            row["status"], row["verdict"] = "skipped", bench.get("reason")
        elif quick and not f.in_quick:
            row["status"], row["verdict"] = "not in --quick", None
        else:
            row["status"], row["verdict"] = "missing", bench.get("reason") or "not in the benchmark's JSON"
        rows.append(row)
    return rows


def print_table(rows: list[Json]) -> None:
    def fmt(row: Json) -> str:
        v = row["value"]
        if v is None:
            return "n/a"
        digits = next(f.digits for f in FIGURES if f.key == row["key"])
        text = f"{v:,.{digits}f} {row['unit']}"
        if "spread" in row:
            text += f" [{row['spread'][0]:,.{digits}f}-{row['spread'][1]:,.{digits}f}]"
        return text

    table = [(next(f.label for f in FIGURES if f.key == r["key"]), fmt(r), r["goal"] or "",
              r.get("verdict") or r["status"], r["anchor"] or "") for r in rows]
    head = ("figure", "value", "goal", "met?", "anchor (Kubernetes / other local clusters)")
    widths = [max(len(str(x[i])) for x in [*table, head]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(head, [*widths, 0], strict=True)).rstrip())
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, [*widths, 0], strict=True)).rstrip())


SCALE_LINE = re.compile(r"^\s*(\d+) Services: first packet p50 ([\d.]+) us \(pod IP ([\d.]+)\), "
                        r"programming p50/p99 ([\d.]+)/([\d.]+) ms")


def scales_from_log(log: pathlib.Path) -> list[Json]:
    out = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if m := SCALE_LINE.match(line):
                out.append({"services": int(m[1]), "programming_ms": {"p50": float(m[4]), "p99": float(m[5])},
                            "first_packet_us": {"p50": float(m[2]), "pod_ip_p50": float(m[3])}})
    return out


def plot(results: dict[str, Json], path: pathlib.Path, title: str) -> bool:
    """Network programming and first-packet latency against the number of Services (bench_proxy)."""
    proxy = results.get("proxy")
    runs = [r["result"] for r in (proxy or {}).get("runs", []) if r.get("status") == "ok"]
    scales = [s for s in (runs[-1].get("scales") or []) if s.get("services")] if runs else []
    if not scales and proxy and proxy.get("runs"):
        # bench_proxy writes its JSON only at the end: after a late failure, its progress lines
        # still hold each scale's p50s (minutes of work), so plot those, and say so.
        scales = scales_from_log(pathlib.Path(proxy["runs"][-1]["log"]))
        if scales:
            proxy["plot_from_log"] = scales
            title += " (from bench_proxy's progress lines: it failed later)"
    if not scales:
        print(f"no plot: bench_proxy gave no per-scale results ({'not run' if not proxy else proxy['status']})")
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install '.[bench]')")
        return False
    n = [s["services"] for s in scales]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    def series(*path: str) -> list[float] | None:
        ys = [dig(s, *path) for s in scales]
        return None if any(y is None for y in ys) else ys

    for key, style in (("p50", "o-"), ("p99", "s--")):
        if (ys := series("programming_ms", key)) is not None:
            ax1.plot(n, ys, style, color="tab:blue", label=key)
        if (ys := series("first_packet_us", key)) is not None:
            ax2.plot(n, ys, style, color="tab:blue", label=f"through the ClusterIP, {key}")
        if (ys := series("first_packet_us", f"pod_ip_{key}")) is not None:
            ax2.plot(n, ys, style, color="tab:grey", alpha=0.6, label=f"straight to the pod IP, {key}")
    ax1.plot([1000, 10000], [100, 250], "rv", ms=7, ls="none", label="goal for p99")
    ax1.set(title="network programming: pod Ready -> served via its Service", ylabel="ms")
    ax2.set(title="first-packet latency: TCP connect from a pod", ylabel="µs")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("Services in the cluster")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all): {', '.join(BY_NAME)}")
    ap.add_argument("--quick", action="store_true", help="small sizes: the whole run in a couple of minutes")
    ap.add_argument("--json", default=None, help="results file (default bench/results/<timestamp>.json)")
    ap.add_argument("--plot", default=None, help="write the Services plot here (PNG; default beside the JSON)")
    ap.add_argument("--repeat", type=int, default=1, help="run each benchmark N times: figures are medians")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and figures, run nothing")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    if args.list:
        for b in BENCHES:
            print(f"{b.name:14} bench/{b.script:24} {b.what}")
            for f in FIGURES:
                if f.bench == b.name:
                    print(f"{'':16}{f.key}")
        return 0
    selected = [BY_NAME[n] for n in args.names] if args.names else BENCHES
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = pathlib.Path(args.json) if args.json else HERE / "results" / f"{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    logdir = json_path.with_suffix(".logs")
    logdir.mkdir(parents=True, exist_ok=True)
    ci = os.environ.get("CI") == "true"
    suite: Json = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": args.quick,
                   "repeat": args.repeat, "benchmarks_run": [b.name for b in selected], "machine": machine(),
                   "loadavg_before": [round(x, 2) for x in os.getloadavg()], "logs": str(logdir),
                   "cpu_check_ms_before": cpu_check()}
    m = suite["machine"]
    print(f"kubelite benchmarks{' (quick)' if args.quick else ''}: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB, "
          f"Linux {m['kernel']}, Python {m['python']}, commit {m['commit'][:10]}{'+dirty' if m['dirty'] else ''}, "
          f"load {suite['loadavg_before']}, CPU check {suite['cpu_check_ms_before']} ms "
          "(2M-step Python loop; ~60 when the host is quiet)", flush=True)
    results: dict[str, Json] = {}
    failed = False
    for b in selected:
        reason = skip_reason(b)
        if reason:
            print(f"== {b.name}: SKIPPED: {reason}", flush=True)
            results[b.name] = {"status": "skipped", "reason": reason, "runs": []}
            # CI is meant to run as root: a root-only figure skipped there hides a broken setup.
            # A missing load generator (wrk, dnsperf, iperf3) is not installed by scripts/test.
            failed |= ci and b.root and os.geteuid() != 0
            continue
        runs = []
        for i in range(args.repeat):
            print(f"== {b.name}{f' ({i + 1}/{args.repeat})' if args.repeat > 1 else ''}: {b.what} ...", end=" ",
                  flush=True)
            r = run_one(b, args.quick, logdir, i)
            print(f"{r['status']} in {r['seconds']:.0f} s (load {r['loadavg_before'][0]} -> {r['loadavg_after'][0]}, "
                  f"CPU check {r['cpu_check_ms_before']} -> {r['cpu_check_ms_after']} ms)"
                  + (f": {r['reason']}" if r["status"] != "ok" else ""), flush=True)
            runs.append(r)
        ok = [r for r in runs if r["status"] == "ok"]
        results[b.name] = {"status": "ok" if ok else "failed", "runs": runs,
                           "reason": None if ok else runs[-1].get("reason")}
        failed |= not ok
    suite["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    suite["cpu_check_ms_after"] = cpu_check()
    rows = figures_of(results, args.quick)
    plot_path = pathlib.Path(args.plot) if args.plot else json_path.with_suffix(".png")
    title = (f"kubelite {m['commit'][:10]}, {suite['date'][:10]}, {m['nproc']} CPUs, Linux {m['kernel']}, "
             f"load {suite['loadavg_before'][0]}-{suite['loadavg_after'][0]}")
    drew = plot(results, plot_path, title) if "proxy" in results else False
    doc = {"suite": suite, "figures": rows, "benchmarks": results, "plot": str(plot_path) if drew else None}
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print()
    print_table(rows)
    print(f"\nload average before/after: {suite['loadavg_before']} / {suite['loadavg_after']} on {m['nproc']} CPUs; "
          f"CPU check {suite['cpu_check_ms_before']} / {suite['cpu_check_ms_after']} ms")
    print(f"results: {json_path}{f'; plot: {plot_path}' if drew else ''}; logs: {logdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
