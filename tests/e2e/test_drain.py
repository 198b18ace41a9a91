"""``kubectl drain`` on a real cluster: eviction through the API, PodDisruptionBudgets enforced.

kubectl drain finds the eviction subresource through discovery and POSTs a policy/v1
Eviction for every pod on the node; the API server asks the pod's PodDisruptionBudget (whose
status the disruption controller keeps) before it deletes. On one node, evicted Deployment
pods come back Pending (the node is cordoned) and run again after ``kubectl uncordon``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.e2e.test_images_services import wait_for
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    c = new_cluster(tmp_path_factory.mktemp("drain"))
    try:
        c.start(agent=True, timeout=60)
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def _json(cluster: Cluster, *args: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl(*args, "-o", "json", check=True).stdout)
    return out


def _deployment(name: str, replicas: int) -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sleep", "3600"]}]}}}}


def _pods(cluster: Cluster, app: str) -> list[Obj]:
    items: list[Obj] = _json(cluster, "get", "pods", "-l", f"app={app}")["items"]
    return items


def _running(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def _node(cluster: Cluster) -> str:
    name: str = _json(cluster, "get", "nodes")["items"][0]["metadata"]["name"]
    return name


def test_a_budget_blocks_the_eviction_it_cannot_afford(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        _deployment("guarded", 2),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded"},
         "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}},
    ]))
    wait_for("2 guarded pods running", lambda: len(_running(_pods(cluster, "guarded"))) == 2, timeout=90)
    wait_for("the budget's status", lambda: _json(cluster, "get", "pdb", "guarded").get("status", {})
             .get("currentHealthy") == 2, timeout=30)
    pdb = _json(cluster, "get", "pdb", "guarded")
    assert pdb["status"]["disruptionsAllowed"] == 0
    assert pdb["status"]["observedGeneration"] == pdb["metadata"]["generation"]
    pod = _pods(cluster, "guarded")[0]["metadata"]["name"]

    # The eviction itself, as kubectl drain sends it.
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}}
    res = cluster.kubectl("create", "--raw", f"/api/v1/namespaces/default/pods/{pod}/eviction", "-f", "-",
                          input=json.dumps(eviction))
    assert res.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in res.stderr

    node = _node(cluster)
    res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--pod-selector=app=guarded",
                          "--timeout=6s")
    assert res.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in res.stderr
    assert len(_running(_pods(cluster, "guarded"))) == 2
    cluster.kubectl("uncordon", node, check=True)
    cluster.kubectl("delete", "deployment/guarded", "pdb/guarded", check=True)


def test_drain_evicts_and_uncordon_brings_the_pods_back(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        _deployment("web", 2),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
         "spec": {"maxUnavailable": 2, "selector": {"matchLabels": {"app": "web"}}}},
    ]))
    wait_for("2 web pods running", lambda: len(_running(_pods(cluster, "web"))) == 2, timeout=90)
    wait_for("the budget allows 2", lambda: _json(cluster, "get", "pdb", "web").get("status", {})
             .get("disruptionsAllowed") == 2, timeout=30)
    before = {p["metadata"]["name"] for p in _pods(cluster, "web")}
    node = _node(cluster)

    res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--timeout=90s")  # as the issue words it
    assert res.returncode == 0, res.stderr
    for name in sorted(before):
        assert f"pod/{name} evicted" in res.stdout
    assert f"node/{node} drained" in res.stdout
    assert _json(cluster, "get", "node", node)["spec"].get("unschedulable") is True
    # The Deployment made new pods at once; the cordoned node takes none of them.
    pods = _pods(cluster, "web")
    assert not before & {p["metadata"]["name"] for p in pods}
    assert _running(pods) == []

    cluster.kubectl("uncordon", node, check=True)
    wait_for("web pods running again", lambda: len(_running(_pods(cluster, "web"))) == 2, timeout=90)
    cluster.kubectl("delete", "deployment/web", "pdb/web", check=True)
