"""Pure parts of the garbage collector and the namespace controller."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubelite.client import DEPLOYMENTS, PODS
from kubelite.controllers.garbagecollector import blocks, deleting_dependents, deletion_policy, resolve
from kubelite.controllers.namespace import (
    OK_REASONS,
    content_conditions,
    deletable_kinds,
    merge_conditions,
    pods_termination_estimate,
)


def test_resolve_owner_kinds() -> None:
    assert resolve("apps/v1", "Deployment") == DEPLOYMENTS
    assert resolve("apps/v1beta2", "Deployment") == DEPLOYMENTS  # another version of a served group
    assert resolve("v1", "Pod") == PODS
    assert resolve("example.com/v1", "Widget") is None


def test_finalizers_decide_the_policy() -> None:
    assert deletion_policy({"metadata": {}}) == "Background"
    assert deletion_policy({"metadata": {"finalizers": ["orphan"]}}) == "Orphan"
    assert deletion_policy({"metadata": {"finalizers": ["x", "foregroundDeletion"]}}) == "Foreground"
    assert not deleting_dependents({"metadata": {"finalizers": ["foregroundDeletion"]}})
    assert deleting_dependents({"metadata": {"deletionTimestamp": "t", "finalizers": ["foregroundDeletion"]}})


def test_blocking_references() -> None:
    dep = {"metadata": {"ownerReferences": [{"uid": "a", "blockOwnerDeletion": True}, {"uid": "b"}]}}
    assert blocks(dep, "a") and not blocks(dep, "b") and not blocks(dep, "c")


def test_pods_are_deleted_first() -> None:
    kinds = deletable_kinds()
    assert kinds[0] == PODS
    assert all(rt.namespaced for rt in kinds)
    assert {"configmaps", "secrets", "services", "deployments", "endpointslices", "events"} <= {
        rt.plural for rt in kinds}


def test_content_conditions_texts() -> None:
    conds = content_conditions({PODS: 2, DEPLOYMENTS: 1}, {"example.com/hold": 1}, [])
    assert conds == [
        {"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
         "message": "Some resources are remaining: deployments.apps has 1 resource instances, "
                    "pods. has 2 resource instances"},
        {"type": "NamespaceFinalizersRemaining", "status": "True", "reason": "SomeFinalizerRemain",
         "message": "Some finalizers are remaining: example.com/hold in 1 resource instances"},
    ]
    assert content_conditions({}, {}, ["b failed", "a failed"]) == [
        {"type": "NamespaceDeletionContentFailure", "status": "True", "reason": "ContentDeletionFailed",
         "message": "Failed to delete all resource types, 2 remaining: a failed, b failed"},
    ]


def test_merge_conditions_fills_ok_variants_and_keeps_transition_times() -> None:
    failing = content_conditions({PODS: 1}, {}, [])
    first, changed = merge_conditions([], failing, "T1")
    assert changed and [c["type"] for c in first] == list(OK_REASONS)
    remaining = next(c for c in first if c["type"] == "NamespaceContentRemaining")
    assert remaining["status"] == "True" and remaining["lastTransitionTime"] == "T1"
    ok = next(c for c in first if c["type"] == "NamespaceDeletionDiscoveryFailure")
    assert (ok["status"], ok["reason"], ok["message"]) == (
        "False", "ResourcesDiscovered", "All resources successfully discovered")

    same, changed = merge_conditions(first, failing, "T2")
    assert not changed and same == first
    # Same status, new message: the transition time stays.
    more, changed = merge_conditions(first, content_conditions({PODS: 2}, {}, []), "T3")
    assert changed
    assert next(c for c in more if c["type"] == "NamespaceContentRemaining")["lastTransitionTime"] == "T1"
    cleared, changed = merge_conditions(more, [], "T4")
    done = next(c for c in cleared if c["type"] == "NamespaceContentRemaining")
    assert changed and (done["status"], done["reason"], done["lastTransitionTime"]) == ("False", "ContentRemoved", "T4")


def test_pod_estimate_is_the_longest_grace_period_until_it_has_passed() -> None:
    pods: list[dict[str, Any]] = [{"spec": {"terminationGracePeriodSeconds": 30}},
            {"spec": {"terminationGracePeriodSeconds": 90}, "status": {"phase": "Succeeded"}}]
    now = dt.datetime.now(dt.UTC)
    assert pods_termination_estimate(pods, now) == 30
    assert pods_termination_estimate(pods, now - dt.timedelta(seconds=31)) == 0
