"""LimitRanges and ResourceQuotas with their admission, against a real ``kubelite up --no-agent``.

LimitRanger fills a new pod's missing requests and limits and refuses what falls outside a
LimitRange; ResourceQuota admission charges creates against ``status.used`` and refuses them
over ``status.hard``, in kube-apiserver's words; the resourcequota controller keeps the status.
No node agent runs: pods stay Pending, which is all quota needs of them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.cluster import Cluster
from tests.integration.test_lifecycle import get, new_namespace, wait_until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def pod(name: str, resources: Obj | None = None, containers: int = 1) -> Obj:
    cs = [{"name": "c" if i == 0 else f"c{i}", "image": "busybox", **({"resources": resources} if resources else {})}
          for i in range(containers)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": cs}}


def create(cluster: Cluster, obj: Obj, ns: str) -> Any:
    return cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj))


def quota_used(cluster: Cluster, name: str, ns: str) -> Obj:
    q = get(cluster, "resourcequota", name, ns) or {}
    used: Obj = q.get("status", {}).get("used") or {}
    return used


def test_limit_range_defaults_and_limits(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    try:
        lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1", "memory": "512Mi"}, "defaultRequest": {"cpu": "100m"},
             "default": {"memory": "256Mi"}, "maxLimitRequestRatio": {"memory": "4"}},
        ]}}
        create(cluster, lr, ns).check_returncode()
        stored = get(cluster, "limitrange", "lr", ns)
        assert stored is not None
        # SetDefaults_LimitRangeItem: default limit from max, default request from the default limit.
        assert stored["spec"]["limits"][0]["default"] == {"memory": "256Mi", "cpu": "1"}
        assert stored["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "256Mi"}
        assert cluster.kubectl("get", "limits", "-n", ns, check=True).stdout.split("\n")[0].split() == \
            ["NAME", "CREATED", "AT"]

        create(cluster, pod("defaulted"), ns).check_returncode()
        p = get(cluster, "pod", "defaulted", ns)
        assert p is not None
        assert p["spec"]["containers"][0]["resources"] == {
            "limits": {"memory": "256Mi", "cpu": "1"}, "requests": {"cpu": "100m", "memory": "256Mi"},
        }
        assert p["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
            "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
        )
        assert p["status"]["qosClass"] == "Burstable"  # derived from the admitted requests and limits

        res = create(cluster, pod("too-big", {"limits": {"cpu": "2"}}), ns)
        assert res.returncode != 0
        assert res.stderr.strip() == (
            'Error from server (Forbidden): error when creating "STDIN": pods "too-big" is forbidden: '
            "maximum cpu usage per Container is 1, but limit is 2"
        )
        res = create(cluster, pod("ratio", {"limits": {"memory": "512Mi"}, "requests": {"memory": "64Mi"}}), ns)
        assert 'pods "ratio" is forbidden: memory max limit to request ratio per Container is 4, ' \
            "but provided ratio is 8.000000" in res.stderr, res.stderr
        res = create(cluster, pod("two", {"limits": {"cpu": "1500m", "memory": "1Gi"}}), ns)
        assert ('pods "two" is forbidden: [maximum cpu usage per Container is 1, but limit is 1500m, '
                "maximum memory usage per Container is 512Mi, but limit is 1Gi]") in res.stderr, res.stderr
        assert get(cluster, "pod", "too-big", ns) is None
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_limit_range_validation(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    try:
        bad = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bad"}, "spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
        ]}}
        res = create(cluster, bad, ns)
        assert 'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1' in res.stderr, \
            res.stderr
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_quota_counts_and_refuses_in_kubernetes_words(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    try:
        # kubectl create quota sends protobuf (a typed create since 1.32).
        out = cluster.kubectl("create", "quota", "q", "-n", ns, "--hard=pods=2,count/configmaps=3", check=True)
        assert out.stdout.strip() == "resourcequota/q created"
        # The controller fills the status (admission ignores a quota until then).
        wait_until(lambda: quota_used(cluster, "q", ns) == {"count/configmaps": "1", "pods": "0"},
                   "the quota's status", 15)  # kube-root-ca.crt is already there
        create(cluster, pod("p1"), ns).check_returncode()
        create(cluster, pod("p2"), ns).check_returncode()
        assert quota_used(cluster, "q", ns)["pods"] == "2"  # charged at admission, not later
        res = create(cluster, pod("p3"), ns)
        assert res.returncode != 0
        assert res.stderr.strip() == (
            'Error from server (Forbidden): error when creating "STDIN": pods "p3" is forbidden: '
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        )
        listed = cluster.kubectl("get", "quota", "-n", ns, check=True).stdout.split("\n")
        assert listed[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
        assert "count/configmaps: 1/3, pods: 2/2" in listed[1]

        # A deleted pod gives its share back (the controller recounts).
        cluster.kubectl("delete", "pod", "p1", "-n", ns, "--grace-period=0", "--force", check=True)
        wait_until(lambda: quota_used(cluster, "q", ns).get("pods") == "1", "the quota given back", 15)
        create(cluster, pod("p3"), ns).check_returncode()

        for i in range(2):
            cluster.kubectl("create", "configmap", f"cm{i}", "-n", ns, check=True)
        res = cluster.kubectl("create", "configmap", "cm-too-many", "-n", ns)
        assert res.returncode != 0
        assert ('configmaps "cm-too-many" is forbidden: exceeded quota: q, requested: count/configmaps=1, '
                "used: count/configmaps=3, limited: count/configmaps=3") in res.stderr, res.stderr
        # Replenishment of a counted kind: a deleted ConfigMap frees its place.
        cluster.kubectl("delete", "configmap", "cm0", "-n", ns, check=True)
        wait_until(lambda: quota_used(cluster, "q", ns).get("count/configmaps") == "2", "the configmap given back", 15)
        cluster.kubectl("create", "configmap", "cm-now-fits", "-n", ns, check=True)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_quota_counts_itself_at_once(cluster: Cluster) -> None:
    # One quota after another, each in a new namespace: the first status the controller writes
    # must already count the quota that caused it (a later arrival triggers no recount).
    for _ in range(3):
        ns = new_namespace(cluster)
        try:
            cluster.kubectl("create", "quota", "q", "-n", ns, "--hard=resourcequotas=2,count/resourcequotas=2",
                            check=True)
            wait_until(lambda ns=ns: quota_used(cluster, "q", ns) != {}, "the quota's status", 15)  # type: ignore[misc]
            assert quota_used(cluster, "q", ns) == {"count/resourcequotas": "1", "resourcequotas": "1"}
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_quota_on_compute_resources(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    try:
        q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
             "spec": {"hard": {"requests.cpu": "1", "limits.cpu": "2", "requests.memory": "1Gi"}}}
        create(cluster, q, ns).check_returncode()
        wait_until(lambda: quota_used(cluster, "compute", ns), "the quota's status", 15)
        res = create(cluster, pod("bare"), ns)
        assert res.returncode != 0
        assert res.stderr.strip() == (
            'Error from server (Forbidden): error when creating "STDIN": pods "bare" is forbidden: '
            "failed quota: compute: must specify limits.cpu for: c; requests.cpu for: c; requests.memory for: c"
        )
        sized = {"requests": {"cpu": "400m", "memory": "256Mi"}, "limits": {"cpu": "800m"}}
        create(cluster, pod("a", sized), ns).check_returncode()
        create(cluster, pod("b", sized), ns).check_returncode()
        used = quota_used(cluster, "compute", ns)
        assert used == {"limits.cpu": "1600m", "requests.cpu": "800m", "requests.memory": "512Mi"}
        res = create(cluster, pod("c", sized), ns)
        assert ('pods "c" is forbidden: exceeded quota: compute, requested: limits.cpu=800m,requests.cpu=400m, '
                "used: limits.cpu=1600m,requests.cpu=800m, limited: limits.cpu=2,requests.cpu=1") in res.stderr, \
            res.stderr
        listed = cluster.kubectl("get", "quota", "compute", "-n", ns, "--no-headers", check=True).stdout
        assert "requests.cpu: 800m/1, requests.memory: 512Mi/1Gi" in listed
        assert "limits.cpu: 1600m/2" in listed
        # The usual pairing: a LimitRange's defaults (mutating admission) satisfy the quota's
        # "must specify" (validating admission, which runs after).
        lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"}, "spec": {"limits": [
            {"type": "Container", "default": {"cpu": "200m"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}},
        ]}}
        create(cluster, lr, ns).check_returncode()
        wait_until(lambda: create(cluster, pod("bare"), ns).returncode == 0, "the bare pod admitted", 10)
        assert quota_used(cluster, "compute", ns) == {
            "limits.cpu": "1800m", "requests.cpu": "900m", "requests.memory": "576Mi",
        }
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
