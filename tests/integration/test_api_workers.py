"""`kubelite up --api-workers 1`: a second API server process on the same port and store.

Clients cannot choose which process serves them (the kernel spreads connections), so the
checks are about the whole: every request works, nothing handed out twice, watches and
controllers work through either process, and a killed worker comes back.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kubelite.cli.supervisor import component_pids
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration


def listening_inodes(port: int) -> set[str]:
    inodes = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:  # noqa: SIM115
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def listens(pid: int, port: int) -> bool:
    """Whether ``pid`` holds a socket listening on ``port`` (its fds come and go meanwhile:
    a process that is starting opens and closes files as we look)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") in wanted:
                return True
        except FileNotFoundError:
            continue
    return False


def test_two_api_processes_serve_one_cluster(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start(extra=["--api-workers", "1"])
    [worker] = component_pids(c.kubeconfig, "apiserver")
    assert c.proc is not None
    assert listens(c.proc.pid, c.port) and listens(worker, c.port)
    status = subprocess.run([sys.executable, "-m", "kubelite", "status", "--name", c.name, "--data-dir",
                             str(c.data_dir)], capture_output=True, text=True, timeout=30)
    assert f"API server workers (pid {worker})" in status.stdout

    # Twelve kubectl processes at once, each its own connection: node ports and ClusterIPs
    # are claimed in the store, so two processes never hand out the same one.
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda i: c.kubectl("create", "service", "nodeport", f"np{i}", "--tcp=80"),
                                range(12)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    svcs = json.loads(c.kubectl("get", "services", "-o", "json", check=True).stdout)["items"]
    mine = [s for s in svcs if s["metadata"]["name"].startswith("np")]
    assert len(mine) == 12
    assert len({s["spec"]["ports"][0]["nodePort"] for s in mine}) == 12
    assert len({s["spec"]["clusterIP"] for s in mine}) == 12

    # /metrics from either process (each kubectl is a new connection, which the kernel gives to
    # one of them): the store file's gauges, relayed to the worker by the store's owner.
    for _ in range(8):
        text = c.kubectl("get", "--raw", "/metrics", check=True).stdout
        gauges = {k: float(v) for k, v in (line.split() for line in text.splitlines()
                                           if not line.startswith(("#", "apiserver_longrunning_requests{")))}
        assert set(gauges) == {'apiserver_storage_size_bytes{storage_cluster_id="etcd-0"}',
                               "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes"}
        assert gauges["etcd_mvcc_db_total_size_in_bytes"] > 0 and gauges["etcd_mvcc_db_total_size_in_use_in_bytes"] > 0

    # generateName draws differ in every process (each reseeds after the fork).
    manifest = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "g-"}}'
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: c.kubectl("create", "-f", "-", input=manifest), range(16)))
    assert all(r.returncode == 0 for r in made), [r.stderr for r in made]

    # Controllers watch and write through whichever process took their connection.
    c.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", check=True)
    deadline = time.monotonic() + 30
    while c.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.count("pod/") < 2:
        assert time.monotonic() < deadline, "the deployment's pods were not created"
        time.sleep(0.1)

    # A worker that dies is started again (exec), and the cluster goes on serving.
    os.kill(worker, signal.SIGKILL)
    while not (again := [p for p in component_pids(c.kubeconfig, "apiserver") if p != worker]):
        assert time.monotonic() < deadline + 30, "the worker was not restarted:\n" + "".join(c.output)
        time.sleep(0.05)
    while not listens(again[0], c.port):
        assert time.monotonic() < deadline + 30, "the restarted worker does not listen"
        time.sleep(0.05)
    for i in range(6):
        c.kubectl("create", "configmap", f"after-{i}", check=True)
    assert c.stop() == 0
    assert not component_pids(c.kubeconfig, "apiserver")
    assert not (c.data_dir / "store.sock").exists()
