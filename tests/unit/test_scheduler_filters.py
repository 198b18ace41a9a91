"""The scheduler's filters and messages, against kube-scheduler's semantics and texts."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.controllers.scheduler import (
    filter_node,
    fit_error,
    matches_node_affinity,
    needs_scheduling,
    node_taints,
    tolerates,
    untolerated_taint,
)

Obj = dict[str, Any]
READY = {"type": "Ready", "status": "True"}


def node(name: str = "n1", labels: Obj | None = None, taints: list[Obj] | None = None, ready: str | None = "True",
         unschedulable: bool = False) -> Obj:
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    status: Obj = {"conditions": [{"type": "Ready", "status": ready}]} if ready else {}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": status}


def pod(**spec: Any) -> Obj:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}], **spec}}


TAINT = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


@pytest.mark.parametrize("toleration,expected", [
    ({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}, True),
    ({"key": "dedicated", "value": "db"}, True),  # operator defaults to Equal; any effect
    ({"key": "dedicated", "value": "web"}, False),
    ({"key": "dedicated", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),  # empty key with Exists tolerates everything
    ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "other", "operator": "Exists"}, False),
])
def test_tolerates(toleration: Obj, expected: bool) -> None:
    assert tolerates(toleration, TAINT) is expected


def test_only_noschedule_and_noexecute_taints_filter() -> None:
    soft = {"key": "a", "effect": "PreferNoSchedule"}
    hard = {"key": "b", "value": "1", "effect": "NoExecute"}
    assert untolerated_taint([soft], []) is None
    assert untolerated_taint([soft, hard], []) == hard
    assert untolerated_taint([soft, hard], [{"key": "b", "operator": "Exists"}]) is None


def test_not_ready_nodes_carry_the_lifecycle_taints() -> None:
    assert node_taints(node(ready="True")) == []
    assert node_taints(node(ready="False")) == [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]
    assert node_taints(node(ready="Unknown")) == [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]
    assert node_taints(node(ready=None)) == [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]
    # Not twice when the node lifecycle controller already put it there.
    already = [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]
    assert node_taints(node(ready="False", taints=already)) == already


def test_node_selector_and_required_affinity() -> None:
    n = node(labels={"disk": "ssd", "gen": "5"})
    assert matches_node_affinity(pod(nodeSelector={"disk": "ssd"}), n)
    assert not matches_node_affinity(pod(nodeSelector={"disk": "hdd"}), n)

    def affinity(*terms: Obj) -> Obj:
        return pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": list(terms)}}})

    assert matches_node_affinity(affinity({"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}), n)
    assert matches_node_affinity(affinity({"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}), n)
    assert not matches_node_affinity(affinity({"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}), n)
    assert matches_node_affinity(affinity({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}), n)
    assert matches_node_affinity(affinity({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}), n)
    assert matches_node_affinity(affinity({"matchFields": [{"key": "metadata.name", "operator": "In",
                                                            "values": ["n1"]}]}), n)
    # Terms are ORed, expressions within a term ANDed; an empty term matches nothing.
    assert matches_node_affinity(affinity({"matchExpressions": [{"key": "disk", "operator": "In", "values": ["x"]}]},
                                          {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}), n)
    assert not matches_node_affinity(affinity({"matchExpressions": [
        {"key": "disk", "operator": "Exists"}, {"key": "zone", "operator": "Exists"}]}), n)
    assert not matches_node_affinity(affinity({}), n)
    # nodeSelector and affinity must both hold.
    both = affinity({"matchExpressions": [{"key": "disk", "operator": "Exists"}]})
    both["spec"]["nodeSelector"] = {"disk": "hdd"}
    assert not matches_node_affinity(both, n)


def test_filter_order_and_reasons() -> None:
    p = pod(nodeSelector={"disk": "ssd"})
    assert filter_node(p, node(labels={"disk": "ssd"})) is None
    assert filter_node(p, node()) == "node(s) didn't match Pod's node affinity/selector"
    assert filter_node(p, node(labels={"disk": "ssd"}, taints=[TAINT])) == \
        "node(s) had untolerated taint {dedicated: db}"
    # NodeUnschedulable runs first, and a toleration of its taint lets the pod through.
    assert filter_node(p, node(taints=[TAINT], unschedulable=True)) == "node(s) were unschedulable"
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                 "effect": "NoSchedule"}])
    assert filter_node(tolerant, node(unschedulable=True)) is None
    assert filter_node(pod(), node(ready="False")) == "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"


def test_fit_error_is_kube_schedulers_message() -> None:
    reasons = ["node(s) didn't match Pod's node affinity/selector", "node(s) had untolerated taint {a: }",
               "node(s) didn't match Pod's node affinity/selector"]
    assert fit_error(pod(), 3, reasons) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {a: }, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    assert fit_error(pod(preemptionPolicy="Never"), 1, reasons[:1]) == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
        "preemption: not eligible due to preemptionPolicy=Never."
    )


def test_which_pods_need_scheduling() -> None:
    assert needs_scheduling(pod())
    assert needs_scheduling(pod(schedulerName="default-scheduler"))
    assert not needs_scheduling(pod(nodeName="n1"))
    assert not needs_scheduling(pod(schedulerName="my-scheduler"))
    assert not needs_scheduling(pod(schedulingGates=[{"name": "wait"}]))
    gone = pod()
    gone["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert not needs_scheduling(gone)
    done = pod()
    done["status"] = {"phase": "Succeeded"}
    assert not needs_scheduling(done)
