"""Discovery against dispatch, PodDisruptionBudgets, the eviction subresource and ``kubectl drain``.

Everything runs against a real ``kubelite up --no-agent`` with the real kubectl. No node agent
runs, so tests play the kubelet's part (a Node object made Ready through ``nodes/status``, pod
phases set through ``pods/status``) and the disruption controller's (a budget's status set
through ``poddisruptionbudgets/status``), as Kubernetes' own eviction tests do.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.cluster import Cluster, Raw
from tests.integration.test_lifecycle import apply, get, new_namespace, pod, ready_node, uid, wait_until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
NOT_ROUTED = "the server could not find the requested resource"
# A selector no object carries: deletecollection requests of the walk must delete nothing.
NOTHING = "labelSelector=" + urllib.parse.quote("kubelite.test/eviction-walk=never")


@pytest.fixture
def nodes(cluster: Cluster) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        cluster.kubectl("delete", "node", name, "--wait=false")


# ---------------------------------------------------------------------- discovery walks dispatch


def _resource_lists(raw: Raw) -> list[tuple[str, Obj]]:
    out = []
    status, core = raw.request("GET", "/api/v1")
    assert status == 200
    out.append(("/api/v1", core))
    status, groups = raw.request("GET", "/apis")
    assert status == 200
    for g in groups["groups"]:
        for v in g["versions"]:
            status, doc = raw.request("GET", f"/apis/{v['groupVersion']}")
            assert status == 200, v
            out.append((f"/apis/{v['groupVersion']}", doc))
    return out


def _request_for(prefix: str, resource: Obj, verb: str) -> tuple[str, str, bytes | None]:
    """One request of ``verb`` on ``resource`` (a name or name/sub), aimed at nothing that exists."""
    plural, _, sub = resource["name"].partition("/")
    ns = "/namespaces/eviction-walk-none" if resource["namespaced"] else ""
    collection = f"{prefix}{ns}/{plural}"
    item = f"{collection}/walk-missing" + (f"/{sub}" if sub else "")
    body = json.dumps({"metadata": {"name": "walk-missing"}}).encode()
    if sub == "eviction":
        body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                           "metadata": {"name": "walk-missing"}}).encode()
    return {
        "list": ("GET", collection, None),
        "watch": ("GET", collection + "?watch=1&timeoutSeconds=1", None),
        "create": ("POST", (item if sub else collection) + "?dryRun=All", body),
        "deletecollection": ("DELETE", f"{collection}?dryRun=All&{NOTHING}", None),
        "get": ("GET", item, None),
        "update": ("PUT", item + "?dryRun=All", body),
        "patch": ("PATCH", item + "?dryRun=All", b"{}"),
        "delete": ("DELETE", item + "?dryRun=All", None),
    }[verb]


def test_every_advertised_resource_and_verb_is_routed(cluster: Cluster) -> None:
    """What discovery lists, the API server dispatches: no 405, no unrouted 404."""
    raw = Raw(cluster)
    checked = 0
    for prefix, doc in _resource_lists(raw):
        for resource in doc["resources"]:
            for verb in resource["verbs"]:
                method, path, body = _request_for(prefix, resource, verb)
                ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
                status, answer = raw.request(method, path, body, ctype)
                assert status != 405, (method, path, answer)
                assert not (status == 404 and answer.get("message") == NOT_ROUTED), (method, path, answer)
                checked += 1
    assert checked > 100


def test_aggregated_discovery_lists_what_the_legacy_documents_list(cluster: Cluster) -> None:
    raw = Raw(cluster)
    legacy = {(prefix, r["name"], tuple(r["verbs"])) for prefix, doc in _resource_lists(raw)
              for r in doc["resources"]}
    def core(g: str, v: str) -> str:
        return f"/api/{v}"

    def grouped(g: str, v: str) -> str:
        return f"/apis/{g}/{v}"

    aggregated = set()
    for root, prefix_of in (("/api", core), ("/apis", grouped)):
        r = raw.http.request("GET", raw.base + root, headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
        for item in json.loads(r.data)["items"]:
            group = item["metadata"].get("name", "")
            for version in item["versions"]:
                for res in version["resources"]:
                    prefix = prefix_of(group, version["version"])
                    aggregated.add((prefix, res["resource"], tuple(res["verbs"])))
                    for sub in res.get("subresources") or []:
                        aggregated.add((prefix, f"{res['resource']}/{sub['subresource']}", tuple(sub["verbs"])))
    assert aggregated == legacy
    names = {name for _, name, _ in legacy}
    assert "pods/eviction" in names and "pods/ephemeralcontainers" not in names
    assert "poddisruptionbudgets/status" in names


# ---------------------------------------------------------------------- PodDisruptionBudgets


def pdb(name: str, labels: Obj, **spec: Any) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, **spec}}


def wait_budget(cluster: Cluster, ns: str, name: str, timeout: float = 20.0, **expected: Any) -> Obj:
    """The budget once the disruption controller's status has the expected values."""
    deadline = time.monotonic() + timeout
    while True:
        current = get(cluster, "pdb", name, ns)
        status = (current or {}).get("status") or {}
        if current is not None and all(status.get(k) == v for k, v in expected.items()):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"budget {ns}/{name}: status {status} never had {expected}")
        time.sleep(0.1)


def test_policy_v1_lists_poddisruptionbudgets(cluster: Cluster) -> None:
    res = cluster.kubectl("get", "--raw", "/apis/policy/v1", check=True)
    doc = json.loads(res.stdout)
    by_name = {r["name"]: r for r in doc["resources"]}
    assert set(by_name) == {"poddisruptionbudgets", "poddisruptionbudgets/status"}
    assert by_name["poddisruptionbudgets"]["shortNames"] == ["pdb"]
    assert by_name["poddisruptionbudgets/status"]["verbs"] == ["get", "patch", "update"]
    res = cluster.kubectl("api-resources", "--api-group=policy", check=True)
    assert "poddisruptionbudgets" in res.stdout and "PodDisruptionBudget" in res.stdout


def test_pdb_defaults_validation_and_columns(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    created = apply(cluster, pdb("web", {"app": "web"}, minAvailable=1), ns)
    assert created["metadata"]["generation"] == 1
    assert created["status"] == {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                                 "expectedPods": 0}
    apply(cluster, pdb("half", {"app": "db"}, maxUnavailable="50%"), ns)
    out = cluster.kubectl("get", "pdb", "-n", ns, check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    rows = {line.split()[0]: line.split()[1:4] for line in out[1:]}
    assert rows == {"web": ["1", "N/A", "0"], "half": ["N/A", "50%", "0"]}

    both = pdb("both", {"app": "x"}, minAvailable=1, maxUnavailable=1)
    res = cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(both))
    assert res.returncode != 0
    assert 'spec.minAvailable: Invalid value: 1: minAvailable and maxUnavailable cannot be both set' in res.stderr
    too_much = pdb("much", {"app": "x"}, minAvailable="150%")
    res = cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(too_much))
    assert res.returncode != 0 and "must not be greater than 100%" in res.stderr

    # kubectl's typed create (protobuf since 1.32) gives the same object.
    cluster.kubectl("create", "pdb", "typed", "-n", ns, "--selector=app=typed", "--max-unavailable=25%", check=True)
    typed = get(cluster, "pdb", "typed", ns)
    assert typed is not None
    assert typed["spec"] == {"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "typed"}}}

    # The status subresource leaves the spec alone; a spec change moves the generation, which the
    # disruption controller then observes.
    res = cluster.kubectl("patch", "pdb", "web", "-n", ns, "--subresource=status", "--type=merge", "-o", "json",
                          "-p", json.dumps({"status": {"disruptionsAllowed": 3, "spec": {"minAvailable": 9}}}),
                          check=True)
    written = json.loads(res.stdout)
    assert written["status"]["disruptionsAllowed"] == 3
    assert written["spec"]["minAvailable"] == 1 and written["metadata"]["generation"] == 1
    cluster.kubectl("patch", "pdb", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":2}}', check=True)
    body = get(cluster, "pdb", "web", ns)
    assert body is not None and body["metadata"]["generation"] == 2
    wait_budget(cluster, ns, "web", observedGeneration=2, disruptionsAllowed=0)


# ---------------------------------------------------------------------- eviction


def running_pod(cluster: Cluster, ns: str, name: str, node: str, labels: Obj, ready: bool = True) -> None:
    p = pod(name, nodeName=node)
    p["metadata"]["labels"] = labels
    apply(cluster, p, ns)
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    cluster.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}), check=True)


def evict(raw: Raw, ns: str, name: str, **body: Any) -> tuple[int, Obj]:
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}, **body}
    return raw.json("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", eviction)


def test_eviction_without_a_budget_deletes_the_pod(cluster: Cluster, nodes: list[str]) -> None:
    ns, node = new_namespace(cluster), f"evict-{uid()}"
    nodes.append(node)
    ready_node(cluster, node)
    running_pod(cluster, ns, "p", node, {"app": "solo"})
    raw = Raw(cluster)
    status, body = raw.json("POST", f"/api/v1/namespaces/{ns}/pods/p/eviction",
                            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}})
    assert status == 400 and body["message"] == "name in URL does not match name in Eviction object"
    status, body = raw.json("POST", f"/api/v1/namespaces/{ns}/pods/p/eviction",
                            {"apiVersion": "apps/v1", "kind": "Eviction", "metadata": {"name": "p"}})
    assert status == 400
    # dryRun: nothing happens.
    status, body = evict(raw, ns, "p", deleteOptions={"dryRun": ["All"]})
    assert status == 201, body
    assert get(cluster, "pod", "p", ns)["metadata"].get("deletionTimestamp") is None  # type: ignore[index]
    # deleteOptions are honoured: a grace period of 0 deletes the pod at once.
    status, body = evict(raw, ns, "p", deleteOptions={"gracePeriodSeconds": 0})
    assert (status, body) == (201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "code": 201})
    assert get(cluster, "pod", "p", ns) is None
    status, body = evict(raw, ns, "p")
    assert status == 404 and body["reason"] == "NotFound"


def test_eviction_honours_the_budget(cluster: Cluster, nodes: list[str]) -> None:
    ns, node = new_namespace(cluster), f"evict-{uid()}"
    nodes.append(node)
    ready_node(cluster, node)
    for name in ("a", "b"):
        running_pod(cluster, ns, name, node, {"app": "web"})
    apply(cluster, pdb("web-pdb", {"app": "web"}, minAvailable=1), ns)
    raw = Raw(cluster)

    # The disruption controller counts two healthy pods of which one must stay: one disruption.
    # (Before it has observed the budget, evictions get "still being processed": see
    # tests/unit/test_eviction_checks.py.)
    wait_budget(cluster, ns, "web-pdb", disruptionsAllowed=1, currentHealthy=2, desiredHealthy=1, expectedPods=2)
    status, body = evict(raw, ns, "a")
    assert status == 201, body
    after = get(cluster, "pdb", "web-pdb", ns)
    assert after is not None
    assert after["status"]["disruptionsAllowed"] == 0
    # disruptedPods held "a" until the controller saw it terminating (tests/unit/test_eviction_checks.py).
    assert {"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods"}.items() <= \
        after["status"]["conditions"][0].items()
    assert get(cluster, "pod", "a", ns)["metadata"].get("deletionTimestamp")  # type: ignore[index]
    # No kubelet runs on this node, so "a" stays terminating: not healthy, and no longer disrupted.
    wait_budget(cluster, ns, "web-pdb", disruptionsAllowed=0, currentHealthy=1, desiredHealthy=1)
    status, body = evict(raw, ns, "b")
    assert status == 429
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"] == {"causes": [{"reason": "DisruptionBudget", "message":
                               "The disruption budget web-pdb needs 1 healthy pods and has 1 currently"}]}
    assert get(cluster, "pod", "b", ns)["metadata"].get("deletionTimestamp") is None  # type: ignore[index]
    # The budget is spent: kubectl drain says why while it retries.
    res = cluster.kubectl("drain", node, "--force", "--pod-selector=app=web", "--timeout=2s")
    assert res.returncode != 0
    assert (f'error when evicting pods/"b" -n "{ns}" (will retry after 5s): Cannot evict pod as it would '
            "violate the pod's disruption budget.") in res.stderr + res.stdout

    # A pod that is not running is evicted without consulting budgets.
    pending = pod("pending")
    pending["metadata"]["labels"] = {"app": "web"}
    apply(cluster, pending, ns)
    status, body = evict(raw, ns, "pending", deleteOptions={"gracePeriodSeconds": 0})
    assert status == 201 and get(cluster, "pod", "pending", ns) is None

    # Two budgets over one pod: refused as Kubernetes refuses it.
    apply(cluster, pdb("web-pdb-2", {"app": "web"}, maxUnavailable=1), ns)
    status, body = evict(raw, ns, "b")
    assert status == 500
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 500,
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction "
                               "subresource does not support."}


def test_kubectl_drain_evicts_and_uncordon_brings_deployment_pods_back(cluster: Cluster, nodes: list[str]) -> None:
    ns, node = new_namespace(cluster), f"drain-{uid()}"
    nodes.append(node)
    ready_node(cluster, node, labels={"drain-test": node})
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeSelector": {"drain-test": node},
                                       "containers": [{"name": "c", "image": "busybox"}]}}},
    }
    apply(cluster, deploy, ns)

    def bound() -> list[Obj] | None:
        items = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json", check=True).stdout)["items"]
        ok = [p for p in items if p["spec"].get("nodeName") == node and not p["metadata"].get("deletionTimestamp")]
        return ok if len(ok) == 2 else None

    before = {p["metadata"]["name"] for p in wait_until(bound, "the deployment's pods on the node", 20)}
    # No kubelet runs here to finish a graceful deletion: a grace period of 0 deletes at once.
    res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--grace-period=0", "--timeout=30s")
    assert res.returncode == 0, res.stderr + res.stdout
    for name in before:
        assert f"pod/{name} evicted" in res.stdout
    assert get(cluster, "node", node)["spec"].get("unschedulable") is True  # type: ignore[index]
    for name in before:
        assert get(cluster, "pod", name, ns) is None
    cluster.kubectl("uncordon", node, check=True)
    after = {p["metadata"]["name"] for p in wait_until(bound, "the replacement pods on the node", 20)}
    assert not after & before
