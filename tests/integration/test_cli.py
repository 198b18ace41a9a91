"""The front door: `kubelite up`, `status`, `down`, also after a crash."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=60)


def test_status_down_and_crash_recovery(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    common = ["--name", c.name, "--data-dir", str(c.data_dir)]
    res = kubelite("status", *common)
    assert res.returncode == 3 and "is not running" in res.stdout
    c.start()
    res = kubelite("status", *common)
    assert res.returncode == 0
    assert f"API {c.server}" in res.stdout and str(c.kubeconfig) in res.stdout
    # A second `up` on the same data dir refuses clearly.
    res = kubelite("up", *common, "--api-port", str(c.port + 1))
    assert res.returncode == 1 and "is already running" in res.stderr
    # Crash: status says so, down cleans up, up works again with the data intact.
    c.kubectl("create", "configmap", "survivor", "--from-literal=a=1", check=True)
    c.stop(signal.SIGKILL)
    res = kubelite("status", *common)
    assert res.returncode == 3 and "crashed" in res.stdout
    res = kubelite("down", *common)
    assert res.returncode == 0 and "cleaned up" in res.stdout
    assert kubelite("status", *common).stdout.strip().endswith("is not running")
    c.start()
    assert c.kubectl("get", "configmap", "survivor", check=True).returncode == 0
    # down stops a running cluster.
    res = kubelite("down", *common)
    assert res.returncode == 0 and "stopped" in res.stdout
    assert c.proc is not None and c.proc.wait(10) == 0
    c.proc = None


def test_port_in_use_is_a_clear_error(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    with socket.socket() as s:
        s.bind(("127.0.0.1", c.port))
        s.listen()
        res = kubelite("up", "--name", c.name, "--data-dir", str(c.data_dir), "--api-port", str(c.port))
    assert res.returncode == 1
    assert f"port {c.port} on 127.0.0.1 is already in use" in res.stderr
