"""The `kubernetes` Service is kept by the API server, as kube-apiserver's bootstrap controller
keeps it: deleted by mistake or with its ports edited, it is back within one reconcile
interval (10 s) at the first address of the service CIDR, with its endpoints."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

INTERVAL = 10.0


def _get(cluster: Cluster, *what: str) -> dict[str, Any] | None:
    res = cluster.kubectl("get", *what, "-n", "default", "-o", "json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def _wait(cluster: Cluster, ok: Any, *what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 2 * INTERVAL + 5
    while True:
        obj = _get(cluster, *what)
        if obj is not None and ok(obj):
            return obj
        assert time.monotonic() < deadline, f"{what} not reconciled: {obj}"
        time.sleep(0.5)


def test_deleted_kubernetes_service_comes_back(fresh_cluster: Cluster) -> None:
    fresh_cluster.start()
    before = _get(fresh_cluster, "service", "kubernetes")
    assert before is not None and before["spec"]["clusterIP"] == "10.96.0.1"
    target = before["spec"]["ports"][0]["targetPort"]
    assert target == fresh_cluster.port
    fresh_cluster.kubectl("delete", "service", "kubernetes", "-n", "default", check=True)
    fresh_cluster.kubectl("delete", "endpointslice", "kubernetes", "-n", "default", check=True)
    assert _get(fresh_cluster, "service", "kubernetes") is None
    svc = _wait(fresh_cluster, lambda o: True, "service", "kubernetes")
    assert svc["metadata"]["uid"] != before["metadata"]["uid"]
    assert svc["spec"]["clusterIP"] == "10.96.0.1" and svc["spec"]["clusterIPs"] == ["10.96.0.1"]
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target}]
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    eps = _wait(fresh_cluster, lambda o: True, "endpointslice", "kubernetes")
    assert eps["ports"] == [{"name": "https", "port": target, "protocol": "TCP"}]
    assert len(eps["endpoints"]) == 1

    # Ports edited: put back (the ClusterIP stays).
    patch = json.dumps({"spec": {"ports": [{"name": "https", "port": 8443, "protocol": "TCP", "targetPort": 1}]}})
    fresh_cluster.kubectl("patch", "service", "kubernetes", "-n", "default", "--type=merge", "-p", patch, check=True)
    svc = _wait(fresh_cluster, lambda o: o["spec"]["ports"][0]["port"] == 443, "service", "kubernetes")
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target}]
    assert svc["spec"]["clusterIP"] == "10.96.0.1"

    # Endpoints edited: put back.
    patch = json.dumps({"subsets": [{"addresses": [{"ip": "192.0.2.9"}], "ports": [{"name": "https", "port": 1}]}]})
    fresh_cluster.kubectl("patch", "endpoints", "kubernetes", "-n", "default", "--type=merge", "-p", patch, check=True)
    ep = _wait(fresh_cluster, lambda o: o["subsets"][0]["ports"][0]["port"] == target, "endpoints", "kubernetes")
    assert ep["subsets"][0]["addresses"][0]["ip"] != "192.0.2.9"
