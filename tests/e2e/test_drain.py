"""``kubectl drain`` on a real node: the eviction subresource, the node agent stopping the
evicted pods, and the Deployment's pods coming back once the node is uncordoned.

One ``kubelite up`` with its node agent (real network namespaces, run as root). Nothing is
faked: the pods are evicted through ``pods/<name>/eviction``, terminated by the agent within
their grace period, replaced by the ReplicaSet controller, held Pending while the node is
cordoned, and scheduled again and started after ``kubectl uncordon``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    c = new_cluster(tmp_path_factory.mktemp("drain"))
    try:
        c.start(agent=True, timeout=90)
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def running_web_pods(cluster: Cluster) -> dict[str, str] | None:
    """name -> node of the Deployment's pods, once both run and none is terminating."""
    out = cluster.kubectl("get", "pods", "-l", "app=drain-web", "-o", "json", check=True).stdout
    pods = json.loads(out)["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if len(pods) != 2 or len(live) != 2 or any((p.get("status") or {}).get("phase") != "Running" for p in live):
        return None
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in live}


def test_drain_evicts_and_uncordon_brings_the_pods_back(cluster: Cluster) -> None:
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "drain-web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "drain-web"}},
                 "template": {"metadata": {"labels": {"app": "drain-web"}},
                              "spec": {"terminationGracePeriodSeconds": 2,
                                       "containers": [{"name": "c", "image": "busybox",
                                                       "command": ["sleep", "3600"]}]}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deploy), check=True)
    before = wait_for("the deployment's pods running", lambda: running_web_pods(cluster))
    node = next(iter(before.values()))

    res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--timeout=60s", timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    for name in before:
        assert f"pod/{name} evicted" in res.stdout
    assert f"node/{node} drained" in res.stdout
    # drain returns once the evicted pods are gone; the replacements wait for a schedulable node.
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=drain-web", "-o", "json", check=True).stdout)
    assert not {p["metadata"]["name"] for p in pods["items"]} & set(before)
    assert all(not p["spec"].get("nodeName") for p in pods["items"])

    cluster.kubectl("uncordon", node, check=True)
    after = wait_for("the replacement pods running", lambda: running_web_pods(cluster))
    assert set(after.values()) == {node} and not set(after) & set(before)
