"""StatefulSets and DaemonSets with real pods on a real ``kubelite up`` (busybox containers).

- A StatefulSet of 3 behind a headless Service: ``web-0..2`` start in order, each Ready
  before the next is created; each resolves as ``web-N.web.default.svc.cluster.local`` to its
  own IP from another pod (CoreDNS, from the EndpointSlice hostnames); the pod's /etc/hosts
  carries its FQDN; scaling down removes ``web-2`` first; ``kubectl rollout restart``
  replaces the pods from the highest ordinal down.
- A DaemonSet runs exactly one pod on the node and recreates it when it is deleted;
  ``kubectl drain --ignore-daemonsets`` leaves it alone, while a PodDisruptionBudget of
  ``minAvailable: 2`` over 2 pods makes the drain wait and report the budget.
- A claim written by ``web-0`` is there again after ``kubectl delete pod web-0``: this needs a
  default StorageClass with a provisioner (another part of issue 17) and is skipped until the
  cluster has one (the integrator enables it by merging that part).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.e2e.test_images_services import wait_for
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]
ZONE = "cluster.local"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    c = new_cluster(tmp_path_factory.mktemp("sts"))
    try:
        c.start(agent=True, timeout=60)
        c.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
             "spec": {"terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}))
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def _json(cluster: Cluster, *args: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl("get", *args, "-o", "json", check=True).stdout)
    return out


def _sleeper(labels: dict[str, str]) -> Obj:
    return {"metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


class PodWatch:
    """``kubectl get pods --watch`` in the background: the order in which pods appear, become
    ready and start terminating, as a watch delivers them."""

    def __init__(self, cluster: Cluster, selector: str) -> None:
        self.seen: list[tuple[str, str]] = []
        self._state: dict[str, tuple[bool, bool]] = {}
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        self.proc = subprocess.Popen(
            [str(kubectl_binary()), "get", "pods", "-l", selector, "--watch", "--output-watch-events", "-o",
             "json"], stdout=subprocess.PIPE, text=True, env=env)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(2)  # the watch is established (kubectl prints nothing while there are no pods)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # one compact JSON event per line
            if line.strip():
                event = json.loads(line)
                self._on(event.get("type", ""), event.get("object") or {})

    def _on(self, kind: str, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        before = self._state.get(name)
        if before is None and kind in ("ADDED", "MODIFIED"):
            self.seen.append(("created", name))
        if kind == "DELETED":
            self._state.pop(name, None)
            return
        if ready and not (before or (False, False))[0]:
            self.seen.append(("ready", name))
        if deleting and not (before or (False, False))[1]:
            self.seen.append(("deleting", name))
        self._state[name] = (ready, deleting)

    def names(self, what: str) -> list[str]:
        return [n for w, n in self.seen if w == what]

    def index(self, what: str, name: str) -> int:
        return self.seen.index((what, name))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _nslookup(cluster: Cluster, name: str) -> list[str]:
    out = cluster.kubectl("exec", "client", "--", "nslookup", name).stdout
    found, addresses = False, []
    for line in out.splitlines():
        if line.startswith("Name:"):
            found = True
        elif line.startswith("Address:") and found:
            addresses.append(line.split(None, 1)[1].strip())
    return addresses


def _ready_count(cluster: Cluster, name: str) -> int:
    status = _json(cluster, "sts", name).get("status") or {}
    return int(status.get("readyReplicas") or 0)


def test_statefulset_in_order_stable_names_scale_down_and_restart(cluster: Cluster) -> None:
    watch = PodWatch(cluster, "app=web")
    try:
        cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80, "name": "web"}]}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
             "spec": {"serviceName": "web", "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                      "template": _sleeper({"app": "web"})}},
        ]))
        res = cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s")
        assert res.returncode == 0, res.stderr
        assert "statefulset rolling update complete 3 pods at revision web-" in res.stdout or \
            "partitioned roll out complete: 3 new pods have been updated" in res.stdout
        wait_for("3 ready", lambda: _ready_count(cluster, "web") == 3, timeout=30)

        # In order, each Ready before the next one exists.
        assert watch.names("created") == ["web-0", "web-1", "web-2"]
        assert watch.index("ready", "web-0") < watch.index("created", "web-1")
        assert watch.index("ready", "web-1") < watch.index("created", "web-2")

        # Stable names: each pod's FQDN resolves, from another pod, to that pod's own IP.
        cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s", check=True)
        for i in range(3):
            p = _json(cluster, "pod", f"web-{i}")
            fqdn = f"web-{i}.web.default.svc.{ZONE}"
            ip: str = p["status"]["podIP"]

            def resolves(fqdn: str = fqdn, ip: str = ip) -> bool:
                return _nslookup(cluster, fqdn) == [ip]

            wait_for(f"{fqdn} to resolve", resolves, timeout=30)
            hosts = cluster.kubectl("exec", f"web-{i}", "--", "cat", "/etc/hosts", check=True).stdout
            assert f"{ip}\t{fqdn}\tweb-{i}" in hosts.splitlines(), hosts
            assert cluster.kubectl("exec", f"web-{i}", "--", "hostname", check=True).stdout.strip() == f"web-{i}"

        # Scaling down removes the highest ordinal first.
        cluster.kubectl("scale", "sts", "web", "--replicas=2", check=True)
        wait_for("web-2 gone", lambda: [p["metadata"]["name"] for p in _json(cluster, "pods", "-l", "app=web")["items"]]
                 == ["web-0", "web-1"], timeout=60)
        assert watch.names("deleting") == ["web-2"]

        # rollout restart replaces the pods from the highest ordinal down.
        mark = len(watch.seen)
        cluster.kubectl("rollout", "restart", "sts/web", check=True)
        res = cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s")
        assert res.returncode == 0, res.stderr
        later = watch.seen[mark:]
        assert [n for w, n in later if w == "deleting"] == ["web-1", "web-0"]
        assert later.index(("ready", "web-1")) < later.index(("deleting", "web-0"))
        history = cluster.kubectl("rollout", "history", "sts/web", check=True).stdout
        assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["1", "2"]
    finally:
        watch.stop()
        cluster.kubectl("delete", "sts/web", "svc/web", "--wait=false")


def test_daemonset_one_pod_recreated_and_drain_with_a_budget(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
         "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _sleeper({"app": "agent"})}},
    ]))
    node = _json(cluster, "nodes")["items"][0]["metadata"]["name"]

    def running(app: str) -> list[Obj]:
        return [p for p in _json(cluster, "pods", "-l", f"app={app}")["items"]
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]

    wait_for("the daemon pod", lambda: len(running("agent")) == 1, timeout=90)
    first = running("agent")[0]
    assert first["spec"]["nodeName"] == node
    res = cluster.kubectl("rollout", "status", "ds/agent", "--timeout=60s")
    assert 'daemon set "agent" successfully rolled out' in res.stdout, res.stderr
    cluster.kubectl("delete", "pod", first["metadata"]["name"], check=True)
    wait_for("a new daemon pod", lambda: [p["metadata"]["name"] for p in running("agent")]
             not in ([], [first["metadata"]["name"]]), timeout=90)
    time.sleep(1)
    assert len(_json(cluster, "pods", "-l", "app=agent")["items"]) == 1

    # drain: the DaemonSet's pod is ignored; the budget (2 of 2) blocks the rest, and kubectl says so.
    labels = {"app": "guarded"}
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "guarded"},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": _sleeper(labels)}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded"},
         "spec": {"minAvailable": 2, "selector": {"matchLabels": labels}}},
    ]))
    wait_for("2 guarded pods", lambda: len(running("guarded")) == 2, timeout=90)
    wait_for("the budget's status", lambda: (_json(cluster, "pdb", "guarded").get("status") or {})
             .get("currentHealthy") == 2, timeout=30)
    try:
        res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--pod-selector=app in (guarded,agent)",
                              "--timeout=8s", timeout=60)
        assert res.returncode != 0
        assert f"node/{node} cordoned" in res.stdout
        assert "Warning: ignoring DaemonSet-managed Pods: default/agent-" in res.stderr
        assert "Cannot evict pod as it would violate the pod's disruption budget." in res.stderr
        assert "will retry after 5s" in res.stderr
        assert _json(cluster, "node", node)["spec"].get("unschedulable") is True
        assert len(running("guarded")) == 2 and len(running("agent")) == 1
    finally:
        cluster.kubectl("uncordon", node, check=True)
        cluster.kubectl("delete", "deployment/guarded", "pdb/guarded", "ds/agent", "--wait=false")


def test_claim_outlives_its_pod(cluster: Cluster) -> None:
    classes = _json(cluster, "storageclasses").get("items") or []
    default = [c for c in classes if (c["metadata"].get("annotations") or {})
               .get("storageclass.kubernetes.io/is-default-class") == "true"]
    # Needs the storage part of issue 17 (a default StorageClass and its provisioner): skipped
    # here until it is merged, and a failure on CI once it is expected everywhere.
    require(bool(default), "no default StorageClass with a provisioner yet (issue 17's storage part)")
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
         "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                  "template": {"metadata": {"labels": {"app": "db"}},
                               "spec": {"terminationGracePeriodSeconds": 1,
                                        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                  "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                            "spec": {"accessModes": ["ReadWriteOnce"],
                                                     "resources": {"requests": {"storage": "10Mi"}}}}]}}))
    try:
        res = cluster.kubectl("rollout", "status", "sts/db", "--timeout=120s")
        assert res.returncode == 0, res.stderr
        uid = _json(cluster, "pod", "db-0")["metadata"]["uid"]
        cluster.kubectl("exec", "db-0", "--", "sh", "-c", "echo kept > /data/file", check=True)
        cluster.kubectl("delete", "pod", "db-0", check=True)
        wait_for("db-0 back", lambda: (_json(cluster, "pods", "-l", "app=db")["items"] or [{}])[0]
                 .get("metadata", {}).get("uid") not in (None, uid), timeout=60)
        cluster.kubectl("wait", "--for=condition=Ready", "pod/db-0", "--timeout=120s", check=True)
        assert cluster.kubectl("exec", "db-0", "--", "cat", "/data/file", check=True).stdout == "kept\n"
        claims = [c["metadata"]["name"] for c in _json(cluster, "pvc")["items"]]
        assert claims == ["data-db-0"]
    finally:
        cluster.kubectl("delete", "sts/db", "--wait=false")
