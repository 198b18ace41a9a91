"""The front door: `kubelite up`, `status`, `down`, also after a crash."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from kubelite.cli.supervisor import component_pids
from tests.integration.cluster import KUBECTL, Cluster, free_port

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
    assert "controllers (pid " in res.stdout
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


def test_up_shows_progress_and_merges_its_context_until_it_stops(fresh_cluster: Cluster, tmp_path: pathlib.Path) -> None:
    """`kubelite up` says what it does, merges a context into the user's kubeconfig so plain
    kubectl works, and takes it out again on a clean stop, on `down` after a crash, and
    restores the context that was current before."""
    c = fresh_cluster
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    user_config = home / ".kube" / "config"
    user_config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: 'https://10.0.0.1:6443'}\n"
        "contexts:\n- name: prod\n  context: {cluster: prod, user: me}\nusers:\n- name: me\n  user: {token: t}\n"
        "current-context: prod\n")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "SUDO_USER")}
    env["HOME"] = str(home)

    def plain_kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, timeout=60)

    c.start(merge=True, env={"HOME": str(home), "KUBECONFIG": ""})
    deadline = time.monotonic() + 5
    while "Ctrl-C here" not in "".join(c.output) and time.monotonic() < deadline:
        time.sleep(0.01)  # the summary follows the ready line
    out = "".join(c.output)
    assert f'kubelite: starting cluster "{c.name}"' in out
    assert f"API server serving at {c.server}" in out
    assert f'context "{c.name}" merged into {user_config} and made current' in out
    assert f'context "{c.name}" (current) in {user_config}' in out
    assert f"export KUBECONFIG={c.kubeconfig}" in out
    assert f"kubelite down --name {c.name} --data-dir {c.data_dir}" in out
    res = plain_kubectl("get", "namespace", "default", "-o", "name")
    assert res.returncode == 0 and res.stdout.strip() == "namespace/default", res.stderr
    assert plain_kubectl("config", "current-context").stdout.strip() == c.name

    assert c.stop() == 0  # a clean stop takes the context out and gives `prod` back
    cfg = yaml.safe_load(user_config.read_text())
    assert [x["name"] for x in cfg["contexts"]] == ["prod"] and cfg["current-context"] == "prod"
    assert [x["name"] for x in cfg["users"]] == ["me"]

    c.start(merge=True, env={"HOME": str(home), "KUBECONFIG": ""})  # crash: `down` cleans up
    assert plain_kubectl("config", "current-context").stdout.strip() == c.name
    c.stop(signal.SIGKILL)
    assert c.name in [x["name"] for x in yaml.safe_load(user_config.read_text())["contexts"]]
    res = subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", c.name, "--data-dir", str(c.data_dir)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(user_config.read_text())
    assert [x["name"] for x in cfg["contexts"]] == ["prod"] and cfg["current-context"] == "prod"


def test_missing_prerequisites_are_clear_errors(tmp_path: pathlib.Path) -> None:
    """Without the conntrack tool, `up` says what is missing and how to get it, before it
    starts anything. (Not root and nftables missing take the same path, in check_node_prerequisites.)"""
    common = ["up", "--name", f"kl-prereq-{os.getpid()}", "--data-dir", str(tmp_path / "d"), "--api-port",
              str(free_port()), "--no-kubeconfig-merge"]
    res = subprocess.run([sys.executable, "-m", "kubelite", *common], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": str(tmp_path)})  # a PATH where no conntrack is
    assert res.returncode == 1
    if os.geteuid() == 0:
        assert "conntrack is not installed" in res.stderr and "apt-get install conntrack" in res.stderr
    else:
        assert "kubelite up needs root" in res.stderr and "--no-agent" in res.stderr
    assert not (tmp_path / "d").exists()  # nothing was started or written


def test_a_component_that_dies_is_restarted(fresh_cluster: Cluster) -> None:
    """The controllers are forked by `up` at start; killed, they come back as a fresh process
    (exec), in a session of their own, and do their work again."""
    c = fresh_cluster
    c.start()
    [first] = component_pids(c.kubeconfig, "controllers")
    assert os.getsid(first) == first  # not in `up`'s session: a terminal's Ctrl-C is for `up`
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (pids := [p for p in component_pids(c.kubeconfig, "controllers") if p != first]):
        assert time.monotonic() < deadline, "the controllers were not restarted:\n" + "".join(c.output)
        time.sleep(0.05)
    assert os.getsid(pids[0]) == pids[0]
    c.kubectl("create", "deployment", "after-restart", "--image=busybox", check=True)
    while "after-restart-" not in c.kubectl("get", "replicasets", "-o", "name").stdout:
        assert time.monotonic() < deadline, "the restarted controllers do not work"
        time.sleep(0.1)
    assert "restarting in 0.5s" in "".join(c.output)  # the first failure restarts at once
