"""Chaos: components and `kubelite up` itself killed with SIGKILL while pods serve (issue 20).

A kubelet or containerd restarted after a crash leaves running containers alone; so does
kubelite. Killing `kubelite up` (and every component it runs) and starting it again on the
same data directory keeps every pod: same UID, same IP, same container, no restart, a
``restartPolicy: Never`` pod still Running. And under continuous traffic to a ClusterIP,
from the node's namespace as a node-local client sends it, killing the controllers, the
agent, the cluster DNS pod and `kubelite up` fails no request: the datapath (nftables in the
node's namespace) and the pods outlive every one of them. `kubelite down` then leaves
nothing: no namespace, no process, no mount.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.api import timeutil
from kubelite.cli.main import pid_alive
from kubelite.cli.supervisor import cluster_component_pids, component_pids
from kubelite.linux.netns import in_netns, node_netns_path
from kubelite.node.shim import process_start_time
from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
Obj = dict[str, Any]


wait_for = functools.partial(waiting.wait_for, timeout=30.0, interval=0.1)


def apply(c: Cluster, *objs: Obj) -> None:
    c.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
              check=True)


def pods(c: Cluster, namespace: str = "default") -> dict[str, Obj]:
    items = json.loads(c.kubectl("get", "pods", "-n", namespace, "-o", "json", check=True).stdout)["items"]
    return {p["metadata"]["name"]: p for p in items}


def ready(p: Obj) -> bool:
    return any(x["type"] == "Ready" and x["status"] == "True" for x in (p.get("status") or {}).get("conditions") or [])


def all_ready(c: Cluster, n: int) -> dict[str, Obj]:
    """The ``n`` pods of the default namespace, once all are Ready."""

    def check() -> dict[str, Obj] | None:
        found = pods(c)
        return found if len(found) == n and all(map(ready, found.values())) else None

    result: dict[str, Obj] = wait_for(f"{n} pods Ready", check)
    return result


def identity(p: Obj) -> tuple[str, str, list[tuple[str, str, int]]]:
    """What a pod that was kept (not restarted, not replaced) keeps: UID, IP, its containers."""
    st = p.get("status") or {}
    return (p["metadata"]["uid"], st.get("podIP", ""),
            [(s["name"], s.get("containerID", ""), s.get("restartCount", 0)) for s in st.get("containerStatuses") or []])


def stamp(text: str) -> float:
    t = timeutil.parse_time(text)
    assert t is not None, text
    return t.timestamp()


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=90)


@dataclass
class Leftovers:
    """What a cluster runs outside its store, found so that `down` can be shown to remove all of it."""

    c: Cluster
    processes: dict[int, int | None] = field(default_factory=dict)  # pid → start time: shims, containers

    uid: str = ""  # only that pod's, not the cluster's

    def note_processes(self, uid: str = "") -> None:
        self.uid = uid
        for status in self.c.data_dir.glob("agent/containers/*/status.json"):
            raw = json.loads(status.read_text())
            if uid and json.loads((status.parent / "spec.json").read_text())["pod_uid"] != uid:
                continue
            for pid, start in ((raw.get("pid"), raw.get("pid_start")), (raw.get("shim_pid"), raw.get("shim_start"))):
                if pid:
                    self.processes[pid] = start

    def found(self) -> list[str]:
        prefix = f"{self.c.name}-{self.uid.replace('-', '')[:12]}"
        left = [f"netns {ns}" for ns in netns_names() if ns.startswith(prefix)]
        left += [f"process {pid}" for pid, start in self.processes.items()
                 if start and process_start_time(pid) == start and pid_alive(pid)]  # a zombie is gone
        if self.uid:
            return left
        left += [f"component {pid}" for pid in cluster_component_pids(self.c.kubeconfig)]
        with open("/proc/self/mountinfo") as f:
            left += [f"mount {line.split()[4]}" for line in f if self.c.name in line or str(self.c.data_dir) in line]
        return left


def down(c: Cluster, leftovers: Leftovers) -> None:
    leftovers.note_processes()
    res = kubelite("down", "--name", c.name, "--data-dir", str(c.data_dir))
    assert res.returncode == 0, res.stderr
    if c.proc is not None:
        c.proc.wait(30)
        c.proc = None
    assert leftovers.found() == []


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    c = new_cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop(timeout=30)
        kubelite("down", "--name", c.name, "--data-dir", str(c.data_dir))


def sleeper(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1, **spec,
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


def deployment(name: str, replicas: int, container: Obj) -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"terminationGracePeriodSeconds": 1,
                                                               "containers": [container]}}}}


def restart_up(c: Cluster) -> str:
    """Start `up` again on the same data dir; its output."""
    c.output.clear()
    c.start(agent=True, timeout=60)
    return "".join(c.output)


def said_it_kept_the_pods(out: str) -> None:
    assert "recovered from a previous run that did not stop cleanly" in out, out
    assert "cleaned up after a previous run" not in out, out


def agent_synced(c: Cluster, probe: str) -> None:
    """The (new) agent runs its pods' syncs: a fresh pod starts, so the old ones were looked at too."""
    apply(c, sleeper(probe))
    wait_for(f"{probe} Ready", lambda: ready(pods(c).get(probe) or {}))


def test_pods_outlive_a_crash_of_up_and_are_adopted_by_the_next_run(cluster: Cluster) -> None:
    """Issue 20, point 5: kill -9 of `up` (and of its components), then `up` again: no pod is
    killed, restarted or given a new IP; `down` after another crash still removes everything."""
    c = cluster
    c.start(agent=True, timeout=60)
    apply(c, deployment("web", 1, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]}),
          sleeper("once", restartPolicy="Never"), sleeper("orphan"))
    before = all_ready(c, 3)
    # Really orphaned: a pod whose API object goes while no agent looks (its agent frozen).
    [agent] = component_pids(c.kubeconfig, "agent")
    orphan = Leftovers(c)
    orphan.note_processes(before.pop("orphan")["metadata"]["uid"])
    os.kill(agent, signal.SIGSTOP)
    c.kubectl("delete", "pod", "orphan", "--grace-period=0", "--force", check=True)
    # A crash: `up` and every component die at once, none of them stopping cleanly.
    assert c.proc is not None
    victims = [c.proc.pid, *cluster_component_pids(c.kubeconfig)]
    assert len(victims) >= 3  # up, controllers, agent
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    c.proc.wait(10)
    c.proc = None
    assert len(orphan.found()) == 3, orphan.found()  # its namespace, its container and shim
    out = restart_up(c)
    agent_synced(c, "after")
    wait_for("the orphan removed by the new agent", lambda: orphan.found() == [], timeout=10)
    after = pods(c)
    assert {name: identity(p) for name, p in after.items() if name in before} == \
        {name: identity(p) for name, p in before.items()}
    assert set(after) == {*before, "after"}  # the Deployment's pod was not replaced
    for name in before:
        assert after[name]["status"]["phase"] == "Running" and ready(after[name]), after[name]["status"]
    assert all(s["restartCount"] == 0 and "running" in s["state"] for s in after["once"]["status"]["containerStatuses"])
    said_it_kept_the_pods(out)
    # Issue 20, point 6: a container whose shim dies with it (killed from outside) is stamped
    # finished when the agent sees it gone, not at its start, and its restart aged from then.
    web = next(n for n in after if n.startswith("web-"))
    cid = after[web]["status"]["containerStatuses"][0]["containerID"].removeprefix("kubelite://")
    raw = json.loads((c.data_dir / "agent" / "containers" / cid / "status.json").read_text())
    time.sleep(max(0.0, stamp(raw["started_at"]) + 3 - time.time()))  # it has run 3 s at least
    for pid in (raw["shim_pid"], raw["pid"]):
        os.kill(pid, signal.SIGKILL)
    restarted = wait_for("web restarted", lambda: (p := pods(c)[web])["status"]["containerStatuses"][0]
                         .get("restartCount") == 1 and p, timeout=15)
    last = restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (255, "Unknown"), last
    assert stamp(last["finishedAt"]) - stamp(last["startedAt"]) >= 3, last
    restarts = c.kubectl("get", "pod", web, "--no-headers", check=True).stdout.split()[3:6]
    assert restarts[0] == "1" and restarts[1].startswith("(") and restarts[2] == "ago)", restarts
    assert int(restarts[1].strip("(s")) < 10, restarts  # "1 (2s ago)", not aged from the first start
    # A cluster that crashes and is not started again: `down` removes all of it.
    assert c.proc is not None
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    c.proc = None
    down(c, Leftovers(c))


@dataclass
class Traffic:
    """HTTP requests to ``ip:port`` from inside the node's network namespace, ``rate`` a second,
    each on a new connection, until stopped; every failure is kept."""

    netns: str
    ip: str
    port: int
    rate: float = 20.0
    sent: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def one(self, t0: float) -> None:
        try:
            with in_netns(self.netns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                sock.settimeout(5)
                sock.connect((self.ip, self.port))
                sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
                raise RuntimeError(f"bad answer {head[:80]!r}")
            name = body.decode().strip()
            self.answers[name] = self.answers.get(name, 0) + 1
        except Exception as e:
            self.failures.append((round(time.monotonic() - t0, 2), repr(e)))

    def run(self) -> None:
        t0 = time.monotonic()
        workers: list[threading.Thread] = []
        while not self._stop.is_set():
            th = threading.Thread(target=self.one, args=(t0,))
            th.start()
            workers.append(th)
            self.sent += 1
            self._stop.wait(max(0.0, t0 + self.sent / self.rate - time.monotonic()))
        for th in workers:
            th.join()

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)


def test_no_request_to_a_cluster_ip_fails_while_components_and_up_are_killed(cluster: Cluster) -> None:
    """Issue 20's chaos test: SIGKILL the controllers, the agent, the DNS pod and `kubelite up`
    (then start it again on the same data dir) under continuous Service traffic."""
    c = cluster
    c.start(agent=True, timeout=60)
    started = time.monotonic()
    server = {"name": "web", "image": AGNHOST, "args": ["serve-hostname", "--port=9376"]}
    apply(c, deployment("echo", 2, server),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
           "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 9376}]}})
    before = all_ready(c, 2)
    ip = c.kubectl("get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}", check=True).stdout
    wait_for("the Service answering", lambda: len(json.loads(c.kubectl(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=echo", "-o", "json").stdout)["items"]))

    def killed_and_back(component: str) -> None:
        [pid] = component_pids(c.kubeconfig, component)
        os.kill(pid, signal.SIGKILL)
        wait_for(f"{component} restarted", lambda: [p for p in component_pids(c.kubeconfig, component) if p != pid])

    def dns_pod() -> Obj:
        return next(iter(pods(c, "kube-system").values()))

    with Traffic(node_netns_path(c.name), ip, 80) as traffic:
        time.sleep(1)
        killed_and_back("controllers")
        time.sleep(1)
        killed_and_back("agent")
        agent_synced(c, "probe-1")
        # The DNS pod's process: the kubelet restarts the container, in the same pod.
        dns = dns_pod()
        [dns_pid] = [json.loads(p.read_text())["pid"] for p in c.data_dir.glob("agent/containers/*/status.json")
                     if json.loads(p.read_text())["exit_code"] is None
                     and json.loads((p.parent / "spec.json").read_text())["pod_uid"] == dns["metadata"]["uid"]]
        os.kill(dns_pid, signal.SIGKILL)
        wait_for("the DNS container restarted and Ready", lambda: ready(p := dns_pod())
                 and p["status"]["containerStatuses"][0]["restartCount"] == 1, timeout=20)
        # `up` itself: its components are told to stop by the kernel; the pods stay.
        assert c.proc is not None
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
        c.proc = None
        time.sleep(1)
        out = restart_up(c)
        agent_synced(c, "probe-2")
        time.sleep(1)
    assert traffic.sent >= 100 and traffic.failures == [], (traffic.sent, traffic.failures[:10])
    assert set(traffic.answers) == set(before), traffic.answers  # every request reached one of the two pods
    after = pods(c)
    assert {n: identity(p) for n, p in after.items() if n in before} == {n: identity(p) for n, p in before.items()}
    assert identity(dns_pod())[:2] == identity(dns)[:2]  # same pod, same IP
    said_it_kept_the_pods(out)
    down(c, Leftovers(c))
    assert time.monotonic() - started < 90
