"""Object lifecycles across controllers: garbage collection, namespace deletion, scheduling,
and what every namespace is given (its ``default`` ServiceAccount and the root CA).

Everything goes through the real kubectl against a real ``kubelite up``. No node agent runs
here, so tests play the kubelet's part where Kubernetes' own controller tests do: they create
Node objects, set their Ready condition through ``nodes/status``, and force-delete pods that
a kubelet would have stopped.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.integration.cluster import Cluster, kubectl_binary

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def uid() -> str:
    return uuid.uuid4().hex[:6]


def wait_until(fn: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def apply(cluster: Cluster, obj: Obj, ns: str | None = None) -> Obj:
    args = ["apply", "-o", "json", "-f", "-"] + (["-n", ns] if ns else [])
    out: Obj = json.loads(cluster.kubectl(*args, input=json.dumps(obj), check=True).stdout)
    return out


def get(cluster: Cluster, kind: str, name: str, ns: str | None = None) -> Obj | None:
    res = cluster.kubectl("get", kind, name, "-o", "json", *(["-n", ns] if ns else []))
    if res.returncode != 0:
        assert "NotFound" in res.stderr, res.stderr
        return None
    out: Obj = json.loads(res.stdout)
    return out


def names(cluster: Cluster, kind: str, ns: str) -> set[str]:
    out = cluster.kubectl("get", kind, "-n", ns, "-o", "jsonpath={.items[*].metadata.name}", check=True).stdout
    return set(out.split())


def new_namespace(cluster: Cluster) -> str:
    ns = f"lc-{uid()}"
    cluster.kubectl("create", "namespace", ns, check=True)
    return ns


def configmap(name: str, *owners: Obj, finalizers: list[str] | None = None, block: bool = False) -> Obj:
    meta: Obj = {"name": name}
    if owners:
        meta["ownerReferences"] = [
            {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], **({"blockOwnerDeletion": True} if block else {})}
            for o in owners
        ]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def ready_node(cluster: Cluster, name: str, labels: Obj | None = None, taints: list[Obj] | None = None) -> None:
    node: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}
    if taints:
        node["spec"] = {"taints": taints}
    apply(cluster, node)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # What a kubelet reports: the scheduler fits requests against allocatable (and a node
    # without "pods" in it takes none, as in kube-scheduler).
    resources = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "kubelet is posting ready status",
                                         "lastHeartbeatTime": now, "lastTransitionTime": now}],
                         "capacity": resources, "allocatable": resources}}
    cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status),
                    check=True)


@pytest.fixture
def nodes(cluster: Cluster) -> Iterator[list[str]]:
    """Names of nodes a test creates; they are removed afterwards so other tests never see them."""
    created: list[str] = []
    yield created
    for name in created:
        cluster.kubectl("delete", "node", name, "--wait=false")


def pod(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


# ---------------------------------------------------------------------- garbage collector


def test_background_deletion_removes_dependents(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    owner = apply(cluster, configmap("owner"), ns)
    other = apply(cluster, configmap("other-owner"), ns)
    apply(cluster, configmap("only-child", owner), ns)
    apply(cluster, configmap("grandchild", apply(cluster, configmap("child", owner), ns)), ns)
    apply(cluster, configmap("shared", owner, other), ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, check=True)

    wait_until(lambda: not {"only-child", "child", "grandchild"} & names(cluster, "configmaps", ns),
               "dependents of a deleted owner to be collected")
    # A dependent with another live owner stays, without the reference to the one gone.
    shared = get(cluster, "configmap", "shared", ns)
    assert shared is not None
    wait_until(lambda: [r["name"] for r in (get(cluster, "configmap", "shared", ns) or {})["metadata"]
                        .get("ownerReferences", [])] == ["other-owner"], "the dangling reference to be removed")


def test_owner_with_same_name_but_other_uid_is_gone(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    owner = apply(cluster, configmap("owner"), ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, check=True)
    apply(cluster, configmap("owner"), ns)  # a namesake: another uid
    apply(cluster, configmap("orphan", owner), ns)
    wait_until(lambda: "orphan" not in names(cluster, "configmaps", ns), "a dependent of a stale uid to go")
    assert "owner" in names(cluster, "configmaps", ns)


def test_foreground_deletion_waits_for_blocking_dependents(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    owner = apply(cluster, configmap("owner"), ns)
    apply(cluster, configmap("held", owner, finalizers=["example.com/hold"], block=True), ns)
    apply(cluster, configmap("free", owner, block=True), ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--wait=false", check=True)

    held = wait_until(lambda: (get(cluster, "configmap", "held", ns) or {}).get("metadata", {}).get("deletionTimestamp")
                      and get(cluster, "configmap", "held", ns), "the dependent to be deleted")
    assert held["metadata"]["finalizers"] == ["example.com/hold"]
    wait_until(lambda: "free" not in names(cluster, "configmaps", ns), "the unheld dependent to go")
    still = get(cluster, "configmap", "owner", ns)
    assert still is not None, "the owner must wait for its blocking dependents"
    assert still["metadata"]["deletionTimestamp"] and still["metadata"]["finalizers"] == ["foregroundDeletion"]

    cluster.kubectl("patch", "configmap", "held", "-n", ns, "--type=merge", "-p",
                    '{"metadata":{"finalizers":null}}', check=True)
    wait_until(lambda: not {"owner", "held"} & names(cluster, "configmaps", ns), "the owner to go after its dependents")


def test_foreground_deletion_cascades_in_the_foreground(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    owner = apply(cluster, configmap("owner"), ns)
    child = apply(cluster, configmap("child", owner, block=True), ns)
    apply(cluster, configmap("grandchild", child, finalizers=["example.com/hold"], block=True), ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--wait=false", check=True)

    # A dependent with dependents of its own is itself deleted in the foreground, so the hold on
    # the grandchild keeps the whole chain.
    child_now = wait_until(lambda: (c := get(cluster, "configmap", "child", ns)) and c["metadata"].get(
        "deletionTimestamp") and c, "the child to be deleted in the foreground")
    assert child_now["metadata"]["finalizers"] == ["foregroundDeletion"]
    wait_until(lambda: (get(cluster, "configmap", "grandchild", ns) or {}).get("metadata", {}).get(
        "deletionTimestamp"), "the grandchild to be deleted")
    assert {"owner", "child", "grandchild"} <= names(cluster, "configmaps", ns)

    cluster.kubectl("patch", "configmap", "grandchild", "-n", ns, "--type=merge", "-p",
                    '{"metadata":{"finalizers":null}}', check=True)
    wait_until(lambda: not {"owner", "child", "grandchild"} & names(cluster, "configmaps", ns),
               "the chain to go, leaves first")


def test_orphan_deletion_keeps_dependents_without_reference(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    owner = apply(cluster, configmap("owner"), ns)
    other = apply(cluster, configmap("other"), ns)
    apply(cluster, configmap("a", owner), ns)
    apply(cluster, configmap("b", owner, other), ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=orphan", check=True)
    assert "owner" not in names(cluster, "configmaps", ns)
    a, b = get(cluster, "configmap", "a", ns), get(cluster, "configmap", "b", ns)
    assert a is not None and b is not None
    assert "ownerReferences" not in a["metadata"]
    assert [r["uid"] for r in b["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]


def test_deleting_a_deployment_removes_its_replicasets_and_pods(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    labels = {"app": "web"}
    # The pods select a node that does not exist: unbound pods are deleted at once (no kubelet to wait for).
    template = {"metadata": {"labels": labels},
                "spec": {"nodeSelector": {"lifecycle-test": "nowhere"},
                         "containers": [{"name": "c", "image": "busybox"}]}}
    deploy = apply(cluster, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                             "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template}}, ns)
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": deploy["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    rs = apply(cluster, {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "metadata": {"name": "web-manual", "ownerReferences": [ref],
                                      "labels": {**labels, "pod-template-hash": "manual"}},
                         "spec": {"replicas": 1,
                                  "selector": {"matchLabels": {**labels, "pod-template-hash": "manual"}},
                                  "template": {**template, "metadata": {"labels": {**labels,
                                                                                   "pod-template-hash": "manual"}}}}},
               ns)
    rs_ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-manual", "uid": rs["metadata"]["uid"],
              "controller": True, "blockOwnerDeletion": True}
    # Its one pod, matching its selector (a pod that does not match would be released, not collected).
    apply(cluster, {**pod("web-manual-pod", nodeSelector={"lifecycle-test": "nowhere"}),
                    "metadata": {"name": "web-manual-pod", "ownerReferences": [rs_ref],
                                 "labels": {**labels, "pod-template-hash": "manual"}}}, ns)

    cluster.kubectl("delete", "deployment", "web", "-n", ns, check=True)
    wait_until(lambda: not names(cluster, "replicasets", ns) and not names(cluster, "pods", ns),
               "the deployment's replicasets and pods to be collected")


def test_deleting_a_service_removes_its_endpointslices(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    svc = apply(cluster, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                          "spec": {"ports": [{"port": 5432}]}}, ns)  # no selector: slices are ours to make
    ref = {"apiVersion": "v1", "kind": "Service", "name": "db", "uid": svc["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    apply(cluster, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "db-1", "ownerReferences": [ref],
                                 "labels": {"kubernetes.io/service-name": "db"}},
                    "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"]}],
                    "ports": [{"port": 5432, "protocol": "TCP"}]}, ns)
    cluster.kubectl("delete", "service", "db", "-n", ns, check=True)
    wait_until(lambda: not names(cluster, "endpointslices", ns), "the service's endpointslices to be collected")


# ---------------------------------------------------------------------- namespace lifecycle


def test_deleting_a_namespace_deletes_its_content_pods_first(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    apply(cluster, configmap("settings"), ns)
    apply(cluster, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}, ns)
    apply(cluster, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                    "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}, ns)
    apply(cluster, pod("unbound", nodeSelector={"lifecycle-test": "nowhere"}), ns)
    apply(cluster, pod("running", nodeName=f"node-{uid()}"), ns)  # bound: it waits for its kubelet

    binary = kubectl_binary()
    assert binary is not None
    proc = subprocess.Popen([binary, "delete", "namespace", ns], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
    try:
        running = wait_until(lambda: (get(cluster, "pod", "running", ns) or {}).get("metadata", {})
                             .get("deletionTimestamp"), "the bound pod to be terminating")
        assert running
        wait_until(lambda: "unbound" not in names(cluster, "pods", ns), "the unbound pod to go at once")
        ns_obj = wait_until(lambda: _condition(get(cluster, "namespace", ns), "NamespaceContentRemaining"),
                            "the content-remaining condition")
        assert ns_obj["status"] == "True" and ns_obj["reason"] == "SomeResourcesRemain"
        assert ns_obj["message"] == "Some resources are remaining: pods. has 1 resource instances"
        # Ordered deletion: nothing else goes while pods remain.
        assert "settings" in names(cluster, "configmaps", ns)
        assert proc.poll() is None, "kubectl delete namespace returned before the namespace was gone"

        # The kubelet's part: the pod's processes are gone, it deletes the pod for good.
        cluster.kubectl("delete", "pod", "running", "-n", ns, "--grace-period=0", "--force", check=True)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == f'namespace "{ns}" deleted'
    assert get(cluster, "namespace", ns) is None


def _condition(obj: Obj | None, ctype: str) -> Obj | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return dict(c)
    return None


def test_namespace_deletion_completes_despite_its_default_content(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    # What the serviceaccount controller puts in every namespace must not hold deletion up.
    wait_until(lambda: get(cluster, "serviceaccount", "default", ns), "the default serviceaccount")
    wait_until(lambda: get(cluster, "configmap", "kube-root-ca.crt", ns), "the root CA configmap")
    res = cluster.kubectl("delete", "namespace", ns, timeout=20)
    assert res.returncode == 0, res.stderr
    assert get(cluster, "namespace", ns) is None
    res = cluster.kubectl("create", "namespace", ns)  # the name is free again
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------- scheduler


def test_scheduler_binds_to_a_ready_matching_node(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    for i in range(2):
        nodes.append(f"{zone}-n{i}")
        ready_node(cluster, nodes[-1], labels={"lifecycle-zone": zone})
    for i in range(4):
        apply(cluster, pod(f"p{i}", nodeSelector={"lifecycle-zone": zone}), ns)

    def placements() -> dict[str, str] | None:
        items = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json", check=True).stdout)["items"]
        got = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in items}
        return got if all(got.values()) else None

    placed = wait_until(placements, "the pods to be bound")
    # The fewest-pods rule spreads them evenly.
    assert sorted(placed.values()) == sorted([nodes[0], nodes[1]] * 2)
    p0 = get(cluster, "pod", "p0", ns)
    assert p0 is not None
    assert {"type": "PodScheduled", "status": "True"}.items() <= next(
        c for c in p0["status"]["conditions"] if c["type"] == "PodScheduled").items()
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=p0", "-o", "json",
                             check=True).stdout
    assert any(e["reason"] == "Scheduled" and e["message"] == f"Successfully assigned {ns}/p0 to {placed['p0']}"
               and e["source"]["component"] == "default-scheduler" for e in json.loads(events)["items"])


def test_unschedulable_pod_stays_pending_until_a_node_fits(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    nodes.append(f"{zone}-n")
    ready_node(cluster, nodes[-1], labels={"lifecycle-zone": "elsewhere"})
    apply(cluster, pod("waiting", nodeSelector={"lifecycle-zone": zone}), ns)

    cond = wait_until(lambda: next((c for c in ((get(cluster, "pod", "waiting", ns) or {}).get("status") or {})
                                    .get("conditions", []) if c["type"] == "PodScheduled"), None),
                      "the PodScheduled condition")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    pattern = (r"0/(\d+) nodes are available: (.*)\. preemption: 0/\1 nodes are available: \1 Preemption is not "
               r"helpful for scheduling\.")
    m = re.fullmatch(pattern, cond["message"])
    assert m, cond["message"]
    assert "node(s) didn't match Pod's node affinity/selector" in m.group(2)

    describe = wait_until(lambda: (d := cluster.kubectl("describe", "pod", "waiting", "-n", ns, check=True).stdout)
                          and "FailedScheduling" in d and d, "the FailedScheduling event in describe")
    assert re.search(r"Warning\s+FailedScheduling\s+\S+\s+default-scheduler\s+0/\d+ nodes are available: ", describe)
    assert get(cluster, "pod", "waiting", ns)["spec"].get("nodeName") is None  # type: ignore[index]

    # A node change is a reason to try again.
    cluster.kubectl("label", "node", nodes[-1], f"lifecycle-zone={zone}", "--overwrite", check=True)
    wait_until(lambda: (get(cluster, "pod", "waiting", ns) or {})["spec"].get("nodeName") == nodes[-1],
               "the pod to be bound once a node matches")


def test_taints_and_tolerations(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    nodes.append(f"{zone}-tainted")
    ready_node(cluster, nodes[-1], labels={"lifecycle-zone": zone},
               taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    apply(cluster, pod("intolerant", nodeSelector={"lifecycle-zone": zone}), ns)
    apply(cluster, pod("tolerant", nodeSelector={"lifecycle-zone": zone},
                       tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db",
                                     "effect": "NoSchedule"}]), ns)
    wait_until(lambda: (get(cluster, "pod", "tolerant", ns) or {})["spec"].get("nodeName") == nodes[-1],
               "the tolerating pod to be bound")
    cond = wait_until(lambda: next((c for c in ((get(cluster, "pod", "intolerant", ns) or {}).get("status") or {})
                                    .get("conditions", []) if c["type"] == "PodScheduled"), None),
                      "the intolerant pod's PodScheduled condition")
    assert "1 node(s) had untolerated taint {dedicated: db}" in cond["message"], cond["message"]


def test_not_ready_node_gets_no_pods(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    nodes.append(f"{zone}-new")
    apply(cluster, {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": nodes[-1], "labels": {"lifecycle-zone": zone}}})  # no Ready condition yet
    apply(cluster, pod("p", nodeSelector={"lifecycle-zone": zone}), ns)
    cond = wait_until(lambda: next((c for c in ((get(cluster, "pod", "p", ns) or {}).get("status") or {})
                                    .get("conditions", []) if c["type"] == "PodScheduled"), None),
                      "the PodScheduled condition")
    # Other test files share this cluster and leave Nodes of their own: count-independent match.
    assert re.search(r"0/\d+ nodes are available: .*\d+ node\(s\) had untolerated taint "
                     r"\{node\.kubernetes\.io/unreachable: \}", cond["message"]), cond["message"]
    ready_node(cluster, nodes[-1], labels={"lifecycle-zone": zone})
    wait_until(lambda: (get(cluster, "pod", "p", ns) or {})["spec"].get("nodeName") == nodes[-1],
               "the pod to be bound once the node is Ready")


def test_a_pod_that_fits_no_node_waits_until_resources_are_freed(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    nodes.append(f"{zone}-n")
    ready_node(cluster, nodes[-1], labels={"lifecycle-zone": zone})  # 2 CPUs allocatable

    def requesting(name: str, cpu: str, **spec: Any) -> Obj:
        p = pod(name, nodeSelector={"lifecycle-zone": zone}, **spec)
        p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
        return p

    def scheduled_condition(name: str) -> Obj | None:
        return next((c for c in ((get(cluster, "pod", name, ns) or {}).get("status") or {}).get("conditions", [])
                     if c["type"] == "PodScheduled"), None)

    apply(cluster, requesting("huge", "100"), ns)
    apply(cluster, requesting("first", "1500m"), ns)
    wait_until(lambda: (get(cluster, "pod", "first", ns) or {})["spec"].get("nodeName"), "the first pod to be bound")
    apply(cluster, requesting("second", "1"), ns)  # 1.5 of 2 CPUs are held: does not fit
    for name in ("huge", "second"):
        cond = wait_until(functools.partial(scheduled_condition, name), f"{name}'s PodScheduled condition")
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    # Other test files leave nodes of their own in this shared cluster: match this node's part.
    cond = scheduled_condition("huge")
    assert cond is not None
    assert re.match(r"0/(\d+) nodes are available: (.*, )?1 Insufficient cpu[,.]", cond["message"]), cond["message"]
    assert "preemption: 0/" in cond["message"] and "1 No preemption victims found for incoming pod" in cond["message"]
    events = json.loads(cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=huge",
                                        "-o", "json", check=True).stdout)["items"]
    failed = [e for e in events if e["reason"] == "FailedScheduling"]
    assert failed and failed[0]["type"] == "Warning" and failed[0]["message"] == cond["message"]
    assert failed[0]["source"]["component"] == "default-scheduler"
    # Deleting the pod that holds the CPUs lets the waiting one in, without any other change.
    cluster.kubectl("delete", "pod", "first", "-n", ns, "--grace-period=0", "--force", check=True)
    wait_until(lambda: (get(cluster, "pod", "second", ns) or {})["spec"].get("nodeName") == nodes[-1],
               "the second pod to be bound once the first is gone")
    assert not (get(cluster, "pod", "huge", ns) or {})["spec"].get("nodeName")
    # A node that grows (its allocatable changes) is looked at again too.
    grown = {"status": {"capacity": {"cpu": "128"}, "allocatable": {"cpu": "128"}}}
    cluster.kubectl("patch", "node", nodes[-1], "--subresource=status", "--type=merge", "-p", json.dumps(grown),
                    check=True)
    wait_until(lambda: (get(cluster, "pod", "huge", ns) or {})["spec"].get("nodeName") == nodes[-1],
               "the huge pod to be bound once the node is big enough")


def test_a_higher_priority_pod_preempts_a_lower_one(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    nodes.append(f"{zone}-n")
    ready_node(cluster, nodes[-1], labels={"lifecycle-zone": zone})  # 2 CPUs allocatable
    classes = {f"lc-low-{zone}": 10, f"lc-high-{zone}": 1000}
    for name, value in classes.items():
        apply(cluster, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                        "metadata": {"name": name}, "value": value})
    low_class, high_class = classes
    try:
        def requesting(name: str, cpu: str, priority_class: str) -> Obj:
            p = pod(name, nodeSelector={"lifecycle-zone": zone}, priorityClassName=priority_class)
            p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
            return p

        apply(cluster, requesting("low", "1500m", low_class), ns)
        wait_until(lambda: (get(cluster, "pod", "low", ns) or {})["spec"].get("nodeName"), "the low pod bound")
        high = apply(cluster, requesting("high", "1", high_class), ns)
        low = wait_until(lambda: (p := get(cluster, "pod", "low", ns)) and p["metadata"].get("deletionTimestamp")
                         and p, "the low-priority pod to be preempted")
        target = next(c for c in low["status"]["conditions"] if c["type"] == "DisruptionTarget")
        assert (target["status"], target["reason"], target["message"]) == (
            "True", "PreemptionByScheduler", "default-scheduler: preempting to accommodate a higher priority pod")
        events = json.loads(cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=low",
                                            "-o", "json", check=True).stdout)["items"]
        assert any(e["reason"] == "Preempted" and e["message"] ==
                   f"Preempted by pod {high['metadata']['uid']} on node {nodes[-1]}" for e in events)
        waiting = wait_until(lambda: (p := get(cluster, "pod", "high", ns)) and p["status"].get("nominatedNodeName")
                             and p, "the nominated node")
        assert waiting["status"]["nominatedNodeName"] == nodes[-1] and not waiting["spec"].get("nodeName")
        # The kubelet's part: the victim's containers stop and it goes; then the room is free.
        cluster.kubectl("delete", "pod", "low", "-n", ns, "--grace-period=0", "--force", check=True)
        wait_until(lambda: (get(cluster, "pod", "high", ns) or {})["spec"].get("nodeName") == nodes[-1],
                   "the high-priority pod to be bound")
    finally:
        for name in classes:
            cluster.kubectl("delete", "priorityclass", name, "--wait=false")


def test_a_taken_host_port_keeps_a_pod_off_the_node(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    zone = f"zone-{uid()}"
    nodes.append(f"{zone}-n")
    ready_node(cluster, nodes[-1], labels={"lifecycle-zone": zone})

    def web(name: str) -> Obj:
        p = pod(name, nodeSelector={"lifecycle-zone": zone})
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 18080}]
        return p

    apply(cluster, web("a"), ns)
    wait_until(lambda: (get(cluster, "pod", "a", ns) or {})["spec"].get("nodeName"), "the first pod to be bound")
    apply(cluster, web("b"), ns)
    cond = wait_until(lambda: next((c for c in ((get(cluster, "pod", "b", ns) or {}).get("status") or {})
                                    .get("conditions", []) if c["type"] == "PodScheduled"), None),
                      "b's PodScheduled condition")
    assert "1 node(s) didn't have free ports for the requested pod ports" in cond["message"], cond["message"]


# ---------------------------------------------------------------------- service accounts and root CA


def test_new_namespace_gets_default_serviceaccount_and_root_ca(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    kc = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()

    wait_until(lambda: get(cluster, "serviceaccount", "default", ns), "the default serviceaccount")
    cm = wait_until(lambda: get(cluster, "configmap", "kube-root-ca.crt", ns), "the root CA configmap")
    assert cm["data"] == {"ca.crt": ca}
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith("Contains a CA bundle")

    # Both come back: deleted, or edited.
    cluster.kubectl("delete", "serviceaccount", "default", "-n", ns, check=True)
    wait_until(lambda: get(cluster, "serviceaccount", "default", ns), "the default serviceaccount to be recreated")
    cluster.kubectl("patch", "configmap", "kube-root-ca.crt", "-n", ns, "--type=merge", "-p",
                    '{"data":{"ca.crt":"tampered"}}', check=True)
    wait_until(lambda: (get(cluster, "configmap", "kube-root-ca.crt", ns) or {}).get("data") == {"ca.crt": ca},
               "the root CA to be restored")
    cluster.kubectl("delete", "configmap", "kube-root-ca.crt", "-n", ns, check=True)
    wait_until(lambda: get(cluster, "configmap", "kube-root-ca.crt", ns), "the root CA configmap to be recreated")


def test_qos_class_compares_quantities_by_value(cluster: Cluster) -> None:
    """The API server stamps the QoS class the node agent reports later: one computation
    (kubelite.api.resource). ``cpu: 1`` against ``1000m`` is equal, so the pod is Guaranteed;
    it used to be created Burstable (strings compared) and flip to Guaranteed when the agent
    reported its status."""
    ns = new_namespace(cluster)
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guaranteed"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}}
    created = apply(cluster, pod, ns)
    assert created["status"]["qosClass"] == "Guaranteed"
    half = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "burstable"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": half}]}}
    assert apply(cluster, pod, ns)["status"]["qosClass"] == "Burstable"


def test_no_execute_taints_evict_pods_after_their_toleration_seconds(cluster: Cluster, nodes: list[str]) -> None:
    ns = new_namespace(cluster)
    nodes.append(f"evict-{uid()}")
    ready_node(cluster, nodes[-1])
    taint = {"key": "example.com/evict", "value": "yes", "effect": "NoExecute"}

    def tolerating(name: str, seconds: int | None) -> Obj:
        tol: Obj = {"key": taint["key"], "operator": "Equal", "value": "yes", "effect": "NoExecute"}
        if seconds is not None:
            tol["tolerationSeconds"] = seconds
        return pod(name, nodeName=nodes[-1], tolerations=[tol])

    apply(cluster, pod("none", nodeName=nodes[-1]), ns)
    for name, seconds in (("short", 2), ("cancelled", 20), ("forever", None)):
        apply(cluster, tolerating(name, seconds), ns)

    def deleting(name: str) -> bool:
        p = get(cluster, "pod", name, ns)
        return p is None or bool(p["metadata"].get("deletionTimestamp"))

    cluster.kubectl("taint", "node", nodes[-1], "example.com/evict=yes:NoExecute", check=True)
    wait_until(lambda: deleting("none"), "the untolerating pod evicted at once", 10)
    assert not deleting("short")
    wait_until(lambda: deleting("short"), "the 2 s pod evicted", 15)
    conditions = (get(cluster, "pod", "short", ns) or {}).get("status", {}).get("conditions") or []
    assert any(c["type"] == "DisruptionTarget" and c["reason"] == "DeletionByTaintManager" for c in conditions)
    cluster.kubectl("taint", "node", nodes[-1], "example.com/evict=yes:NoExecute-", check=True)

    def events() -> list[str]:
        items = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json", check=True).stdout)["items"]
        return [e["message"] for e in items if e["reason"] == "TaintManagerEviction"]

    wait_until(lambda: f"Cancelling deletion of Pod {ns}/cancelled" in events(), "the cancelled eviction", 10)
    assert f"Marking for deletion Pod {ns}/short" in events()
    assert not deleting("cancelled") and not deleting("forever")
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
