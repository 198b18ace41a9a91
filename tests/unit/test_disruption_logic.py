"""The disruption controller's status computation, with a fixed clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubelite.controllers.disruption import (
    DELETION_TIMEOUT,
    SyncError,
    compute_status,
    failed_status,
    selects,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.UTC)
RS_REF = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs-uid", "controller": True}


def _pod(name: str, ready: bool = True, owner: dict[str, Any] | None = RS_REF, deleting: bool = False,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {"app": "web"}}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T11:59:00Z"
    return {"metadata": meta, "status": {"phase": "Running",
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _pdb(spec: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}, "status": status or {}}


def _scale(replicas: int) -> Any:
    return lambda namespace, ref: ("deploy-uid", replicas)


def test_min_available_integer_counts_selected_pods() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c", ready=False)]
    st = compute_status(_pdb({"minAvailable": 1}), pods, _scale(5), NOW).status
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 2, 1, 1)
    assert st["observedGeneration"] == 1
    cond = st["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("DisruptionAllowed", "True", "SufficientPods")


def test_max_unavailable_uses_the_controllers_scale() -> None:
    # Three replicas wanted, two exist: the missing one already uses up maxUnavailable 1.
    st = compute_status(_pdb({"maxUnavailable": 1}), [_pod("a"), _pod("b")], _scale(3), NOW).status
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (3, 2, 2, 0)
    assert st["conditions"][0]["reason"] == "InsufficientPods"
    assert st["conditions"][0]["status"] == "False"


def test_percentages_round_up() -> None:
    pods = [_pod(n) for n in "abcd"]
    st = compute_status(_pdb({"minAvailable": "50%"}), pods, _scale(3), NOW).status
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 2, 2)
    st = compute_status(_pdb({"maxUnavailable": "10%"}), pods, _scale(4), NOW).status
    assert (st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 1)


def test_terminating_and_disrupted_pods_are_not_healthy() -> None:
    granted = (NOW - dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = [_pod("a"), _pod("b", deleting=True), _pod("c")]
    computed = compute_status(_pdb({"minAvailable": 1}, {"disruptedPods": {"c": granted}}), pods, _scale(3), NOW)
    assert computed.status["currentHealthy"] == 1
    assert computed.status["disruptionsAllowed"] == 0
    assert computed.status["disruptedPods"] == {"c": granted}
    assert computed.recheck_at == NOW - dt.timedelta(seconds=30) + DELETION_TIMEOUT


def test_a_disrupted_pod_not_deleted_in_time_counts_again() -> None:
    granted = (NOW - DELETION_TIMEOUT - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    computed = compute_status(_pdb({"minAvailable": 1}, {"disruptedPods": {"a": granted}}), [_pod("a"), _pod("b")],
                              _scale(2), NOW)
    assert "disruptedPods" not in computed.status
    assert computed.not_deleted == ["a"]
    assert computed.status["disruptionsAllowed"] == 1


def test_unmanaged_pods_are_left_out_of_a_scale_count() -> None:
    computed = compute_status(_pdb({"maxUnavailable": 0}), [_pod("a"), _pod("b", owner=None)], _scale(1), NOW)
    assert computed.unmanaged == ["b"]
    assert computed.status["expectedPods"] == 1


def test_a_missing_controller_fails_the_sync_safe() -> None:
    with pytest.raises(SyncError, match='found no controllers for pod "a"'):
        compute_status(_pdb({"maxUnavailable": 1}), [_pod("a")], lambda ns, ref: None, NOW)
    st = failed_status(_pdb({"maxUnavailable": 1}, {"disruptionsAllowed": 3}, generation=2), "boom", NOW)
    assert st["disruptionsAllowed"] == 0 and st["observedGeneration"] == 2
    assert {k: st["conditions"][0][k] for k in ("status", "reason", "message")} == {
        "status": "False", "reason": "SyncFailed", "message": "boom"}


def test_no_pods_expected_allows_nothing() -> None:
    st = compute_status(_pdb({"minAvailable": 0}), [], _scale(0), NOW).status
    assert st["disruptionsAllowed"] == 0


def test_selector_semantics() -> None:
    pod = _pod("a")
    assert selects(_pdb({}), pod)
    assert not selects({"metadata": {"namespace": "default"}, "spec": {}}, pod)  # no selector: nothing
    assert selects({"metadata": {"namespace": "default"}, "spec": {"selector": {}}}, pod)  # {}: everything
    assert not selects({"metadata": {"namespace": "other"}, "spec": {"selector": {}}}, pod)
