"""The benchmark suite's smoke run: ``python -m bench --quick`` works end to end and leaves nothing.

The figures of a quick run on a shared machine mean little, so nothing here judges them: the
test checks that every figure the suite promises came out as a number (a benchmark whose JSON
changed shape shows up here, not in the next full run), and that the benchmarks' clusters are
gone afterwards: no process the suite saw them start still runs, and no network namespace of
theirs is left. Benchmarks that need a load generator this machine lacks (wrk, dnsperf,
iperf3) are allowed to be skipped: scripts/test does not install them.

To stay within about two minutes on 2 cores it runs every benchmark but the four longest,
``proxy`` (~100 s alone: iperf3 rounds, growing to 1,000 Services), ``dns`` (1,000
Services, a client pod, dnsperf), whose paths tests/e2e/test_proxy.py and test_dns_pods.py
exercise, and ``space`` (~12 minutes of waiting for the store's 5-minute history window to
pass, twice; tests/unit/test_store_space.py covers its path) and ``netpol`` (~45 s: 1,000
policies and rounds of connections; tests/e2e/test_networkpolicy.py and
tests/unit/test_networkpolicy.py cover its paths); ``python -m bench --quick`` runs them too.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.e2e.conftest import netns_names, require_root_netns

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = pytest.mark.timeout(600)
LONGEST = {"proxy", "dns", "space", "netpol"}


def test_bench_quick_runs_every_benchmark_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    require_root_netns()
    from bench.__main__ import BENCHES, FIGURES  # the suite's own list of what it promises

    names = [b.name for b in BENCHES if b.name not in LONGEST]
    out = tmp_path / "quick.json"
    res = subprocess.run([sys.executable, "-m", "bench", *names, "--quick", "--json", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=560)
    assert out.exists(), f"no results written:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    report = res.stdout[-6000:]

    benches = doc["benchmarks"]
    assert sorted(benches) == sorted(names), report
    for name, b in benches.items():
        if b["status"] == "skipped":
            assert b["reason"].startswith("needs ") and "root" not in b["reason"], f"{name}: {b['reason']}"
            continue
        assert b["status"] == "ok", f"{name} failed: {b.get('reason')}\n{report}"
    figures = {f["key"]: f for f in doc["figures"]}
    for f in FIGURES:
        if not f.in_quick or f.bench not in benches or benches[f.bench]["status"] == "skipped":
            continue
        got = figures.get(f.key)
        assert got is not None and isinstance(got["value"], int | float), f"figure {f.key}: {got}\n{report}"
    assert doc["suite"]["machine"]["nproc"] == os.cpu_count()
    assert doc["suite"]["machine"]["commit"]

    # Nothing left behind: the suite's own check, then ours from outside.
    clusters = [c for b in benches.values() for r in b["runs"] for c in r["clusters"]]
    assert clusters, "the suite saw no cluster start"
    for name, b in benches.items():
        for r in b["runs"]:
            assert r["leftovers"] == [], f"{name} left {r['leftovers']}"
    left = [n for n in netns_names() if any(n.startswith(f"{c}-") for c in clusters)]
    assert left == [], f"network namespaces left behind: {left}"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    stray = [line for line in ps.splitlines() if any(f"--name {c} " in line or f"--cluster-name {c} " in line
                                                     for c in clusters)]
    assert stray == [], f"processes left behind: {stray}"
