"""The endpoint controllers' pure rules: which pods count, port resolution, slice packing, subsets."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from kubelite.api.types import Endpoint, EndpointConditions, EndpointSlice, Obj, Pod, Service
from kubelite.controllers import endpointutil as eu

NODE = {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}


def svc(name: str = "web", ports: list[Obj] | None = None, **spec: Any) -> Service:
    return cast(Service, {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"team": "a"},
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"app": name}, "clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"],
                 "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080,
                                                            "protocol": "TCP"}],
                 **spec},
    })


def pod(name: str, ip: str | None = "10.244.0.1", ready: bool = True, *, container_ports: list[Obj] | None = None,
        node: str = "n1", deleting: bool = False, phase: str = "Running", **spec: Any) -> Pod:
    p = cast(Pod, {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"},
                     "resourceVersion": "1"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": container_ports or []}], **spec},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                  "lastTransitionTime": "2026-01-01T00:01:00Z"}]},
    })
    if ip:
        p["status"]["podIP"] = ip
        p["status"]["podIPs"] = [{"ip": ip}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:02:00Z"
    return p


def node_of(name: str) -> Obj | None:
    return NODE if name == "n1" else None


def eps(s: EndpointSlice) -> list[Endpoint]:
    return s.get("endpoints") or []


def realize(plan: eu.SlicePlan, existing: list[EndpointSlice]) -> list[EndpointSlice]:
    """Apply a plan the way the API server would, naming and versioning new slices."""
    by_name = {s["metadata"]["name"]: s for s in existing}
    for s in plan.delete:
        del by_name[s["metadata"]["name"]]
    for s in plan.update:
        s = copy.deepcopy(s)
        s["metadata"]["generation"] = by_name[s["metadata"]["name"]]["metadata"].get("generation", 1) + 1
        by_name[s["metadata"]["name"]] = s
    for i, s in enumerate(plan.create):
        s = copy.deepcopy(s)
        s["metadata"]["name"] = f"{s['metadata']['generateName']}{len(by_name)}-{i}"
        s["metadata"]["uid"] = s["metadata"]["name"]
        s["metadata"]["generation"] = 1
        by_name[s["metadata"]["name"]] = s
    return list(by_name.values())


# ---------------------------------------------------------------------------------- pods and ports


def test_pod_membership_and_conditions() -> None:
    s = svc()
    assert eu.should_pod_be_in_endpoints(pod("a"), False)
    assert not eu.should_pod_be_in_endpoints(pod("a", ip=None), True)
    assert not eu.should_pod_be_in_endpoints(pod("a", phase="Succeeded"), True)
    assert not eu.should_pod_be_in_endpoints(pod("a", phase="Failed"), True)
    assert not eu.should_pod_be_in_endpoints(pod("a", deleting=True), False)
    assert eu.should_pod_be_in_endpoints(pod("a", deleting=True), True)

    def cond(p: Pod, service: Service = s) -> EndpointConditions:
        return eu.pod_to_endpoint(p, NODE, service, "IPv4")["conditions"]

    assert cond(pod("a")) == {"ready": True, "serving": True, "terminating": False}
    assert cond(pod("a", ready=False)) == {"ready": False, "serving": False, "terminating": False}
    assert cond(pod("a", deleting=True)) == {"ready": False, "serving": True, "terminating": True}
    publish = svc(publishNotReadyAddresses=True)
    assert cond(pod("a", ready=False), publish) == {"ready": True, "serving": False, "terminating": False}
    assert cond(pod("a", deleting=True, ready=False), publish) == {"ready": True, "serving": False, "terminating": True}


def test_endpoint_fields() -> None:
    ep = eu.pod_to_endpoint(pod("a", hostname="h", subdomain="web"), NODE, svc(), "IPv4")
    assert ep == {
        "addresses": ["10.244.0.1"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "hostname": "h",
        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
        "nodeName": "n1",
        "zone": "z1",
    }
    # Hostname only when the subdomain names this Service.
    assert "hostname" not in eu.pod_to_endpoint(pod("a", hostname="h", subdomain="other"), NODE, svc(), "IPv4")
    assert "hostname" not in eu.pod_to_endpoint(pod("a", hostname="h"), NODE, svc(), "IPv4")
    assert "zone" not in eu.pod_to_endpoint(pod("a"), {"metadata": {"name": "n1"}}, svc(), "IPv4")
    assert eu.pod_to_endpoint(pod("a"), NODE, svc(), "IPv6")["addresses"] == []


def test_find_port() -> None:
    p = pod("a", container_ports=[{"name": "http", "containerPort": 100, "protocol": "TCP"},
                                  {"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    assert eu.find_port(p, {"port": 80, "targetPort": 8080, "protocol": "TCP"}) == 8080
    assert eu.find_port(p, {"port": 80, "targetPort": "http", "protocol": "TCP"}) == 100
    assert eu.find_port(p, {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None
    assert eu.find_port(p, {"port": 53, "targetPort": "dns", "protocol": "UDP"}) == 53
    assert eu.find_port(p, {"port": 80, "targetPort": "nope", "protocol": "TCP"}) is None
    sidecar = pod("b")
    sidecar["spec"]["initContainers"] = [
        {"name": "s", "restartPolicy": "Always", "ports": [{"name": "side", "containerPort": 9}]},
        {"name": "i", "ports": [{"name": "init", "containerPort": 10}]},
    ]
    assert eu.find_port(sidecar, {"port": 1, "targetPort": "side", "protocol": "TCP"}) == 9
    assert eu.find_port(sidecar, {"port": 1, "targetPort": "init", "protocol": "TCP"}) is None


def test_slice_ports_skip_unresolved_names() -> None:
    s = svc(ports=[{"name": "svc1", "port": 80, "targetPort": "http", "protocol": "TCP"},
                   {"name": "svc2", "port": 81, "targetPort": 9000, "protocol": "TCP", "appProtocol": "h2c"}])
    with_name = pod("a", container_ports=[{"name": "http", "containerPort": 100}])
    assert eu.slice_ports(s, with_name) == [
        {"name": "svc1", "port": 100, "protocol": "TCP"},
        {"name": "svc2", "port": 9000, "protocol": "TCP", "appProtocol": "h2c"},
    ]
    assert eu.slice_ports(s, pod("b")) == [{"name": "svc2", "port": 9000, "protocol": "TCP", "appProtocol": "h2c"}]
    assert eu.port_key(eu.slice_ports(s, with_name)) == eu.port_key(list(reversed(eu.slice_ports(s, with_name))))


def test_services_to_sync_on_relabel() -> None:
    sel = {"ns/web": {"app": "web"}, "ns/db": {"app": "db"}, "ns/all": {"tier": "x"}}

    def lookup(ns: str, labels: Any) -> set[str]:
        return {k for k, v in sel.items() if eu.matches(v, labels)}

    old = pod("a")
    old["metadata"]["labels"] = {"app": "web", "tier": "x"}
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "2"
    assert eu.services_to_sync(old, new, lookup) == set()  # nothing that matters moved
    new["metadata"]["labels"] = {"app": "db", "tier": "x"}
    assert eu.services_to_sync(old, new, lookup) == {"ns/web", "ns/db"}  # left one, joined one
    new["status"]["conditions"][0]["status"] = "False"
    assert eu.services_to_sync(old, new, lookup) == {"ns/web", "ns/db", "ns/all"}
    ready_only = copy.deepcopy(old)
    ready_only["metadata"]["resourceVersion"] = "3"
    ready_only["status"]["conditions"][0]["status"] = "False"
    assert eu.services_to_sync(old, ready_only, lookup) == {"ns/web", "ns/all"}
    assert eu.services_to_sync(None, old, lookup) == {"ns/web", "ns/all"}
    assert eu.services_to_sync(old, None, lookup) == {"ns/web", "ns/all"}


# ---------------------------------------------------------------------------------- slices


def test_placeholder_when_nothing_matches() -> None:
    s = svc()
    plan = eu.plan_slices(s, [], [], node_of)
    assert not plan.update and not plan.delete and len(plan.create) == 1
    ph = plan.create[0]
    assert ph["endpoints"] == [] and ph["ports"] == [] and ph["addressType"] == "IPv4"
    assert ph["metadata"]["generateName"] == "web-"
    assert ph["metadata"]["labels"] == {"team": "a", "kubernetes.io/service-name": "web",
                                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert ph["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                  "uid": "uid-web", "controller": True, "blockOwnerDeletion": True}]
    # The placeholder is stable: a second sync writes nothing.
    assert eu.plan_slices(s, [], realize(plan, []), node_of).empty
    # Pods without IPs do not make endpoints either.
    assert eu.plan_slices(s, [pod("a", ip=None)], realize(plan, []), node_of).empty
    sent = eu.finish_slice(copy.deepcopy(ph), "")
    assert sent["endpoints"] is None and sent["ports"] is None and "annotations" not in sent["metadata"]


def test_headless_label() -> None:
    labels = eu.new_slice(svc(clusterIP="None"), [], "IPv4")["metadata"]["labels"]
    assert labels["service.kubernetes.io/headless"] == ""
    assert "service.kubernetes.io/headless" not in eu.new_slice(svc(), [], "IPv4")["metadata"]["labels"]


def test_minimal_churn() -> None:
    s = svc()
    pods = [pod(f"p{i}", ip=f"10.244.0.{i}") for i in range(1, 4)]
    slices = realize(eu.plan_slices(s, pods, [], node_of), [])
    assert len(slices) == 1 and len(eps(slices[0])) == 3
    assert eu.plan_slices(s, pods, slices, node_of).empty
    # The pods' resourceVersions move on every update: that alone writes nothing.
    for p in pods:
        p["metadata"]["resourceVersion"] = "9"
    assert eu.plan_slices(s, pods, slices, node_of).empty
    # One pod turns unready: one update of that slice, endpoint changed in place.
    pods[1]["status"]["conditions"][0]["status"] = "False"
    plan = eu.plan_slices(s, pods, slices, node_of)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == slices[0]["metadata"]["name"]
    conds = {e["targetRef"]["name"]: e["conditions"]["ready"] for e in eps(plan.update[0])}
    assert conds == {"p1": True, "p2": False, "p3": True}


def test_service_label_change_updates_slice() -> None:
    s = svc()
    slices = realize(eu.plan_slices(s, [pod("a")], [], node_of), [])
    s["metadata"]["labels"] = {"team": "b"}
    plan = eu.plan_slices(s, [pod("a")], slices, node_of)
    assert len(plan.update) == 1 and plan.update[0]["metadata"]["labels"]["team"] == "b"


def test_relabelled_service_fills_its_empty_slice_read_back_as_null() -> None:
    # A slice stored without endpoints reads back ``endpoints: null``; when the Service's
    # labels change in the same sync as a pod arrives, that slice is relabelled and filled
    # (this raised TypeError on len(None) before).
    s = svc(ports=[], clusterIP="None")
    placeholder = eu.finish_slice(eu.plan_slices(s, [], [], node_of).create[0], "")
    [stored] = realize(eu.SlicePlan(create=[placeholder]), [])
    assert stored["endpoints"] is None
    s["metadata"]["labels"] = {"team": "b"}
    plan = eu.plan_slices(s, [pod("a")], [stored], node_of)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    [updated] = plan.update
    assert updated["metadata"]["name"] == stored["metadata"]["name"] and updated["metadata"]["labels"]["team"] == "b"
    assert [e["addresses"] for e in updated["endpoints"] or []] == [["10.244.0.1"]]


def test_split_and_refill() -> None:
    s = svc()
    pods = [pod(f"p{i:03d}", ip=f"10.244.{i // 200}.{i % 200 + 1}") for i in range(250)]
    plan = eu.plan_slices(s, pods, [], node_of, max_per_slice=100)
    assert sorted(len(eps(x)) for x in plan.create) == [50, 100, 100]
    slices = realize(plan, [])
    assert eu.plan_slices(s, pods, slices, node_of, max_per_slice=100).empty
    # A new pod goes into an existing slice with room, not a new slice.
    pods.append(pod("p999", ip="10.244.9.9"))
    plan = eu.plan_slices(s, pods, slices, node_of, max_per_slice=100)
    assert not plan.create and len(plan.update) == 1 and len(eps(plan.update[0])) == 51
    slices = realize(plan, slices)
    # Removing pods removes them from their slices; an emptied slice is deleted.
    only = pods[:1]
    plan = eu.plan_slices(s, only, slices, node_of, max_per_slice=100)
    assert not plan.create and len(plan.update) == 1 and len(plan.delete) == 2
    assert [e["targetRef"]["name"] for e in eps(plan.update[0])] == ["p000"]


def test_multiport_named_ports_split_by_port_set() -> None:
    """The e2e multiport case: svc1→"http" is 100 on pod1, 101 on pod2: two slices."""
    s = svc(ports=[{"name": "svc1", "port": 80, "targetPort": "http", "protocol": "TCP"},
                   {"name": "svc2", "port": 81, "targetPort": "metrics", "protocol": "TCP"}])
    p1 = pod("pod1", ip="10.244.0.1", container_ports=[{"name": "http", "containerPort": 100, "protocol": "TCP"},
                                                       {"name": "metrics", "containerPort": 200, "protocol": "TCP"}])
    p2 = pod("pod2", ip="10.244.0.2", container_ports=[{"name": "http", "containerPort": 101, "protocol": "TCP"}])
    plan = eu.plan_slices(s, [p1, p2], [], node_of)
    got = sorted(((x["ports"], [e["targetRef"]["name"] for e in eps(x)]) for x in plan.create),
                 key=lambda g: g[1])
    assert got == [
        ([{"name": "svc1", "port": 100, "protocol": "TCP"}, {"name": "svc2", "port": 200, "protocol": "TCP"}],
         ["pod1"]),
        ([{"name": "svc1", "port": 101, "protocol": "TCP"}], ["pod2"]),
    ]
    slices = realize(plan, [])
    # pod2 goes away: its slice is deleted, pod1's untouched.
    plan = eu.plan_slices(s, [p1], slices, node_of)
    assert not plan.create and not plan.update and len(plan.delete) == 1
    assert eps(plan.delete[0])[0]["targetRef"]["name"] == "pod2"


def test_recycles_slice_instead_of_delete_and_create() -> None:
    s = svc()
    slices = realize(eu.plan_slices(s, [pod("a")], [], node_of), [])
    # The port changes: a new port group would need a new slice, the old one is emptied.
    s["spec"]["ports"][0]["targetPort"] = 9090
    plan = eu.plan_slices(s, [pod("a")], slices, node_of)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == slices[0]["metadata"]["name"]
    assert plan.update[0]["ports"] == [{"name": "http", "port": 9090, "protocol": "TCP"}]
    # All pods gone: the slice becomes the placeholder, updated in place.
    plan = eu.plan_slices(s, [], slices, node_of)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["endpoints"] == [] and plan.update[0]["ports"] == []


def test_foreign_and_unsupported_slices_are_deleted() -> None:
    s = svc()
    slices = realize(eu.plan_slices(s, [pod("a")], [], node_of), [])
    stranger = copy.deepcopy(slices[0])
    stranger["metadata"].update({"name": "old-1", "uid": "old-1", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "other"}]})
    v6 = copy.deepcopy(slices[0])
    v6["metadata"].update({"name": "v6-1", "uid": "v6-1"})
    v6["addressType"] = "IPv6"
    plan = eu.plan_slices(s, [pod("a")], [*slices, stranger, v6], node_of)
    assert {x["metadata"]["name"] for x in plan.delete} == {"old-1", "v6-1"} and plan.empty is False
    assert not plan.create and not plan.update


def test_missing_node_skips_pod_and_reports() -> None:
    s = svc()
    plan = eu.plan_slices(s, [pod("a", node="ghost"), pod("b", ip="10.244.0.2")], [], node_of)
    assert [e["targetRef"]["name"] for e in eps(plan.create[0])] == ["b"]
    assert plan.errors == ["skipping Pod a for Service ns/web: Node ghost Not Found"]
    publish = svc(publishNotReadyAddresses=True)
    plan = eu.plan_slices(publish, [pod("a", node="ghost")], [], node_of)
    assert len(eps(plan.create[0])) == 1 and not plan.errors


def test_dual_stack_service_gets_a_slice_per_family() -> None:
    s = svc(ipFamilies=["IPv4", "IPv6"])
    p = pod("a")
    p["status"]["podIPs"] = [{"ip": "10.244.0.1"}, {"ip": "fd00::0001"}]
    plan = eu.plan_slices(s, [p], [], node_of)
    assert sorted((x["addressType"], eps(x)[0]["addresses"]) for x in plan.create) == [
        ("IPv4", ["10.244.0.1"]), ("IPv6", ["fd00::1"])]


# ---------------------------------------------------------------------------------- trackers


def test_slice_tracker() -> None:
    t = eu.SliceTracker()
    s = {"metadata": {"namespace": "ns", "uid": "u1", "generation": 2,
                      "labels": {"kubernetes.io/service-name": "web"}}}
    assert not t.stale("ns/web", "svc-uid", [])
    assert t.should_sync(s)
    t.update(s)
    assert not t.should_sync(s)  # our own write echoing back
    assert t.stale("ns/web", "svc-uid", [])  # written but not yet in the cache
    older = copy.deepcopy(s)
    older["metadata"]["generation"] = 1
    assert t.stale("ns/web", "svc-uid", [older])
    assert not t.stale("ns/web", "svc-uid", [s])
    newer = copy.deepcopy(s)
    newer["metadata"]["generation"] = 3
    assert t.should_sync(newer)  # someone else changed it
    t.expect_deletion(s)
    assert t.stale("ns/web", "svc-uid", [s])
    assert t.handle_deletion(s)  # we deleted it: no resync
    assert not t.handle_deletion(s)  # not ours: resync
    t.update(s)
    assert not t.stale("ns/web", "new-uid", [])  # Service recreated: old writes forgotten


def test_trigger_time() -> None:
    t = eu.TriggerTimeTracker()
    s = svc()
    p = pod("a")
    assert t.compute("ns/web", s, [p]) == "2026-01-01T00:00:00Z"  # first sync: Service creation
    assert t.compute("ns/web", s, [p]) == ""  # nothing moved
    p["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:05:00.250Z"
    assert t.compute("ns/web", s, [p]) == "2026-01-01T00:05:00.25Z"


# ---------------------------------------------------------------------------------- Endpoints


def test_subsets_ready_and_not_ready() -> None:
    s = svc()
    pods = [pod("b", ip="10.244.0.10"), pod("a", ip="10.244.0.9", ready=False), pod("t", ip="10.244.0.11",
                                                                                    deleting=True)]
    subsets = eu.desired_subsets(s, pods)
    assert subsets == [{
        "addresses": [{"ip": "10.244.0.10", "nodeName": "n1",
                       "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "uid-b"}}],
        "notReadyAddresses": [{"ip": "10.244.0.9", "nodeName": "n1",
                               "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }]
    # publishNotReadyAddresses: unready and terminating pods are addresses.
    subsets = eu.desired_subsets(svc(publishNotReadyAddresses=True), pods)
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.0.10", "10.244.0.11", "10.244.0.9"]
    assert "notReadyAddresses" not in subsets[0]


def test_subsets_grouped_by_ports_and_hostname() -> None:
    s = svc(ports=[{"name": "svc1", "port": 80, "targetPort": "http", "protocol": "TCP"}], clusterIP="None")
    p1 = pod("pod1", ip="10.244.0.1", container_ports=[{"name": "http", "containerPort": 100}],
             hostname="h1", subdomain="web")
    p2 = pod("pod2", ip="10.244.0.2", container_ports=[{"name": "http", "containerPort": 101}])
    subsets = eu.desired_subsets(s, [p1, p2])
    assert [(x["ports"][0]["port"], [a["ip"] for a in x["addresses"]]) for x in subsets] == [
        (100, ["10.244.0.1"]), (101, ["10.244.0.2"])]
    assert subsets[0]["addresses"][0]["hostname"] == "h1" and "hostname" not in subsets[1]["addresses"][0]
    # Headless without ports: addresses without ports.
    portless = svc(ports=[], clusterIP="None")
    assert eu.desired_subsets(portless, [p2]) == [{"addresses": [{
        "ip": "10.244.0.2", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "pod2",
                                                            "uid": "uid-pod2"}}]}]
    assert eu.endpoints_labels(s) == {"team": "a", "endpoints.kubernetes.io/managed-by": "endpoint-controller",
                                      "service.kubernetes.io/headless": ""}


def test_subsets_same_ports_merge() -> None:
    s = svc(ports=[{"name": "a", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"name": "b", "port": 81, "targetPort": 8081, "protocol": "TCP"}])
    subsets = eu.desired_subsets(s, [pod("x", ip="10.244.0.1"), pod("y", ip="10.244.0.2")])
    assert len(subsets) == 1 and [p["port"] for p in subsets[0]["ports"]] == [8080, 8081]
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.0.1", "10.244.0.2"]


@pytest.mark.parametrize("ready,not_ready,want_ready,want_not_ready", [
    (900, 200, 900, 100),   # ready kept, not-ready cut to what fits
    (1200, 50, 1000, 0),    # ready over capacity: not-ready dropped entirely
    (500, 500, 500, 500),   # exactly at capacity: untouched
])
def test_truncation(ready: int, not_ready: int, want_ready: int, want_not_ready: int) -> None:
    def addrs(n: int, base: int) -> list[Obj]:
        return [{"ip": f"10.{base}.{i // 250}.{i % 250}", "targetRef": {"uid": str(i)}} for i in range(n)]
    subsets = [{"addresses": addrs(ready, 1), "notReadyAddresses": addrs(not_ready, 2),
                "ports": [{"port": 80, "protocol": "TCP"}]}]
    truncated = eu.truncate_subsets(subsets)
    assert truncated == (ready + not_ready > 1000)
    assert len(subsets[0].get("addresses") or []) == want_ready
    assert len(subsets[0].get("notReadyAddresses") or []) == want_not_ready


def test_truncation_is_proportional_across_subsets() -> None:
    subsets = [{"addresses": [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(n)]} for n in (900, 300)]
    assert eu.truncate_subsets(subsets)
    assert [len(x["addresses"]) for x in subsets] == [750, 250]


def test_subsets_equal_ignores_target_resource_version() -> None:
    s = svc()
    a = eu.desired_subsets(s, [pod("x")])
    b = copy.deepcopy(a)
    b[0]["addresses"][0]["targetRef"]["resourceVersion"] = "42"
    assert eu.subsets_equal(a, b)
    b[0]["addresses"][0]["nodeName"] = "n2"
    assert not eu.subsets_equal(a, b)
