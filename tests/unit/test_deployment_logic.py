"""The pure half of the Deployment and ReplicaSet controllers, against Kubernetes' own cases.

Sizes (surge and unavailability rounding, proportional scaling, rolling steps), annotations
(revisions, rollback history), status and conditions with Kubernetes' exact reasons and
messages, template hashing and equality, the order in which a ReplicaSet deletes pods, and
the expectations that keep a ReplicaSet from creating twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubelite.api import timeutil
from kubelite.controllers import deployment as du
from kubelite.controllers import podutil
from kubelite.controllers.replicaset import Expectations, calculate_status

Obj = dict[str, Any]
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds: float) -> str:
    return timeutil.format_time(T0 + dt.timedelta(seconds=seconds))


def dep(replicas: int, surge: int | str = 0, unavailable: int | str = 0, **spec: Any) -> Obj:
    return {
        "metadata": {"name": "foo", "namespace": "ns", "uid": "d-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "foo"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "foo"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "progressDeadlineSeconds": 600,
            **spec,
        },
        "status": {},
    }


def rs(name: str, replicas: int, created: float = 0, available: int = 0, annotations: dict[str, str] | None = None,
       **status: int) -> Obj:
    return {
        "metadata": {"name": name, "uid": f"{name}-uid", "creationTimestamp": ts(created),
                     "annotations": dict(annotations or {})},
        "spec": {"replicas": replicas},
        "status": {"replicas": status.get("actual", replicas), "availableReplicas": available,
                   "readyReplicas": status.get("ready", available)},
    }


# ---------------------------------------------------------------------------------- fenceposts


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    ("25%", "25%", 3, (1, 0)),       # surge rounds up, unavailable down
    ("25%", "25%", 10, (3, 2)),
    (0, 0, 5, (0, 1)),               # both zero: one may be unavailable
    ("0%", "1%", 10, (0, 1)),        # 0.1 rounds down to 0, then the same rule
    (2, "50%", 5, (2, 2)),
    ("100%", 0, 0, (0, 1)),
])
def test_resolve_fenceposts(surge: int | str, unavailable: int | str, desired: int, expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_is_bounded_and_zero_for_recreate() -> None:
    assert du.max_unavailable(dep(2, 0, 5)) == 2
    assert du.max_unavailable(dep(0, 0, 5)) == 0
    recreate = dep(4, 1, 1)
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert (du.max_surge(recreate), du.max_unavailable(recreate)) == (0, 0)
    with pytest.raises(ValueError, match="not a percentage"):
        du.scaled_value("3", 10, True)


# ---------------------------------------------------------------------------------- rolling steps


def test_new_replicaset_grows_within_surge() -> None:
    d = dep(4, surge=1, unavailable=1)
    new = rs("new", 0)
    assert du.new_rs_new_replicas(d, [rs("old", 4), new], new) == 1
    new = rs("new", 1)
    assert du.new_rs_new_replicas(d, [rs("old", 4), new], new) == 1  # already at 4 + 1
    new = rs("new", 2)
    assert du.new_rs_new_replicas(d, [rs("old", 1), new], new) == 4  # bounded by spec.replicas
    recreate = dep(4)
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert du.new_rs_new_replicas(recreate, [rs("new", 0)], rs("new", 0)) == 4


def test_old_replicasets_scale_down_unhealthy_first_then_available_oldest_first() -> None:
    d = dep(10, surge=0, unavailable=2)  # at least 8 available
    older = rs("older", 4, created=0, available=2)   # 2 unhealthy
    old = rs("old", 6, created=10, available=6)
    new = rs("new", 0, created=20)
    plan = du.plan_old_scale_down([older, old, new], [older, old], new, d)
    # 2 unhealthy go first (total 10 - min 8 = 2), then nothing: only 8 are available.
    assert [(r["metadata"]["name"], n) for r, n in plan] == [("older", 2)]

    older = rs("older", 4, created=0, available=4)
    plan = du.plan_old_scale_down([older, old, new], [older, old], new, d)
    assert [(r["metadata"]["name"], n) for r, n in plan] == [("older", 2)]  # 10 available, 8 needed

    # Unavailable pods of the new ReplicaSet count against what may go: 8 old + 2 new not ready yet.
    old, new = rs("old", 4, created=10, available=4), rs("new", 2, created=20, available=0)
    assert du.plan_old_scale_down([older, old, new], [older, old], new, d) == []
    new = rs("new", 2, created=20, available=1)
    plan = du.plan_old_scale_down([older, old, new], [older, old], new, d)
    assert [(r["metadata"]["name"], n) for r, n in plan] == [("older", 3)]


def test_proportional_scaling_like_kubernetes() -> None:
    # sync_test.go "proportional scaling: 5 -> 10"
    ann = {du.MAX_REPLICAS: "5"}
    sizes, op = du.proportional_sizes(dep(10), rs("foo-v2", 2, 10, annotations=ann), [rs("foo-v1", 3, 0, annotations=ann)])
    assert op == "up" and {r["metadata"]["name"]: n for r, n in sizes} == {"foo-v1": 6, "foo-v2": 4}
    # "proportional scaling: 5 -> 3"
    sizes, op = du.proportional_sizes(dep(3), rs("foo-v2", 2, 10, annotations=ann), [rs("foo-v1", 3, 0, annotations=ann)])
    assert op == "down" and {r["metadata"]["name"]: n for r, n in sizes} == {"foo-v1": 2, "foo-v2": 1}
    # "leftover distribution: 3 -> 4": the leftover goes to the newest of equals.
    ann = {du.MAX_REPLICAS: "3"}
    olds = [rs("foo-v1", 1, 0, annotations=ann), rs("foo-v2", 1, 5, annotations=ann)]
    sizes, _ = du.proportional_sizes(dep(4), rs("foo-v3", 1, 10, annotations=ann), olds)
    assert {r["metadata"]["name"]: n for r, n in sizes} == {"foo-v1": 1, "foo-v2": 1, "foo-v3": 2}
    # Scaling to zero empties everything.
    sizes, op = du.proportional_sizes(dep(0), rs("foo-v2", 2, 10, annotations=ann), [rs("foo-v1", 3, 0, annotations=ann)])
    assert op == "down" and all(n == 0 for _, n in sizes)


def test_active_or_latest_and_saturation() -> None:
    new, old = rs("new", 0, 10), rs("old", 3, 0)
    assert du.find_active_or_latest(new, [old]) is old
    newest = rs("new", 0, 10)
    assert du.find_active_or_latest(newest, [rs("old", 0, 0)]) is newest
    b = rs("b", 0, 5)
    assert du.find_active_or_latest(None, [rs("a", 0, 0), b]) is b
    assert du.find_active_or_latest(rs("new", 1, 10), [old]) is None
    d = dep(3)
    assert du.is_saturated(d, rs("new", 3, available=3, annotations={du.DESIRED_REPLICAS: "3"}))
    assert not du.is_saturated(d, rs("new", 3, available=2, annotations={du.DESIRED_REPLICAS: "3"}))
    assert not du.is_saturated(d, rs("new", 3, available=3))


# ---------------------------------------------------------------------------------- annotations


def test_new_replicaset_annotations_and_rollback_history() -> None:
    d = dep(3, surge=1)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v2", du.REVISION: "7", du.LAST_APPLIED: "{}"}
    new: Obj = {"metadata": {}}
    assert du.set_new_replicaset_annotations(d, new, "4", exists=False)
    assert new["metadata"]["annotations"] == {"kubernetes.io/change-cause": "v2", du.REVISION: "4",
                                              du.DESIRED_REPLICAS: "3", du.MAX_REPLICAS: "4"}
    assert not du.set_new_replicaset_annotations(d, new, "4", exists=True)
    # The template came back: the ReplicaSet gets the new revision and remembers the old ones.
    assert du.set_new_replicaset_annotations(d, new, "6", exists=True)
    assert new["metadata"]["annotations"][du.REVISION_HISTORY] == "4"
    du.set_new_replicaset_annotations(d, new, "9", exists=True)
    assert (new["metadata"]["annotations"][du.REVISION], new["metadata"]["annotations"][du.REVISION_HISTORY]) == ("9", "4,6")
    assert not du.set_new_replicaset_annotations(d, new, "8", exists=True)  # never lowered
    assert du.max_revision([new, rs("x", 0, annotations={du.REVISION: "bad"}), None]) == 9


def test_new_replicaset_object() -> None:
    d = dep(3, surge="25%", unavailable="25%", minReadySeconds=5)
    d["status"]["collisionCount"] = 2
    new = du.new_replicaset(d, [], "1")
    h = podutil.compute_hash(d["spec"]["template"], 2)
    assert new["metadata"]["name"] == f"foo-{h}"
    assert new["metadata"]["labels"] == {"app": "foo", "pod-template-hash": h}
    assert new["spec"]["selector"] == {"matchLabels": {"app": "foo", "pod-template-hash": h}}
    assert new["spec"]["template"]["metadata"]["labels"] == {"app": "foo", "pod-template-hash": h}
    assert (new["spec"]["replicas"], new["spec"]["minReadySeconds"]) == (3, 5)
    assert new["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "foo",
                                                   "uid": "d-uid", "controller": True, "blockOwnerDeletion": True}]
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "foo"}, "the deployment is not touched"


# ---------------------------------------------------------------------------------- status


def test_status_and_available_condition() -> None:
    d = dep(3, surge=1, unavailable=1)
    new, old = rs("new", 2, available=1, ready=2), rs("old", 2, available=2, ready=2)
    st = du.calculate_status([old, new], new, d, T0)
    assert {k: v for k, v in st.items() if k != "conditions"} == {
        "observedGeneration": 1, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 4,
        "availableReplicas": 3, "unavailableReplicas": 1}
    assert st["conditions"] == [{"type": "Available", "status": "True", "lastUpdateTime": ts(0),
                                 "lastTransitionTime": ts(0), "reason": "MinimumReplicasAvailable",
                                 "message": "Deployment has minimum availability."}]
    st = du.calculate_status([rs("new", 3, available=1)], None, d, T0)
    assert st["conditions"][0]["reason"] == "MinimumReplicasUnavailable"
    assert st["conditions"][0]["message"] == "Deployment does not have minimum availability."


def test_progressing_condition_lifecycle() -> None:
    d = dep(2, surge=1)
    new = rs("foo-abc", 2, available=1)
    d["status"] = {"replicas": 2, "updatedReplicas": 1, "conditions": [
        du.new_condition("Progressing", "True", "NewReplicaSetCreated", 'Created new replica set "foo-abc"', T0)]}
    st = du.rollout_status([new], new, d, T0 + dt.timedelta(seconds=5))
    prog = du.get_condition(st, "Progressing")
    assert prog is not None
    assert (prog["reason"], prog["message"]) == ("ReplicaSetUpdated", 'ReplicaSet "foo-abc" is progressing.')
    assert (prog["lastUpdateTime"], prog["lastTransitionTime"]) == (ts(5), ts(0))

    d["status"] = st
    done = rs("foo-abc", 2, available=2)
    st = du.rollout_status([done], done, d, T0 + dt.timedelta(seconds=9))
    prog = du.get_condition(st, "Progressing")
    assert prog is not None
    assert (prog["status"], prog["reason"], prog["message"]) == (
        "True", "NewReplicaSetAvailable", 'ReplicaSet "foo-abc" has successfully progressed.')
    assert du.deployment_complete(d, st)

    # No progress past the deadline: timed out.
    stuck = dep(2, surge=1, progressDeadlineSeconds=10)
    stuck["status"] = {"replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                       "observedGeneration": 1, "conditions": [
        du.new_condition("Progressing", "True", "ReplicaSetUpdated", "x", T0)]}
    same = rs("foo-abc", 1, available=0)
    assert du.progress_check_delay(stuck, stuck["status"], T0 + dt.timedelta(seconds=4)) == pytest.approx(7.0)
    st = du.rollout_status([rs("old", 1, available=1), same], same, stuck, T0 + dt.timedelta(seconds=11))
    prog = du.get_condition(st, "Progressing")
    assert prog is not None
    assert (prog["status"], prog["reason"], prog["message"]) == (
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "foo-abc" has timed out progressing.')


def test_conditions_keep_transition_time_and_replica_failures_propagate() -> None:
    status: Obj = {}
    du.set_condition(status, du.new_condition("Available", "True", "A", "m", T0))
    du.set_condition(status, du.new_condition("Available", "True", "B", "m", T0 + dt.timedelta(seconds=3)))
    assert status["conditions"][0]["lastTransitionTime"] == ts(0) and status["conditions"][0]["reason"] == "B"
    failing = rs("new", 2)
    failing["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True", "lastTransitionTime": ts(1),
                                        "reason": "FailedCreate", "message": "quota"}]
    st = du.rollout_status([failing], failing, dep(2), T0)
    assert du.get_condition(st, "ReplicaFailure") == {
        "type": "ReplicaFailure", "status": "True", "lastUpdateTime": ts(1), "lastTransitionTime": ts(1),
        "reason": "FailedCreate", "message": "quota"}


# ---------------------------------------------------------------------------------- templates


def test_hash_is_stable_safe_and_moves_with_collisions() -> None:
    t = dep(1)["spec"]["template"]
    h = podutil.compute_hash(t, None)
    assert h == podutil.compute_hash({"spec": t["spec"], "metadata": t["metadata"]}, None)
    # The hash is a decimal number rendered with SafeEncodeString: digits map to these ten characters.
    assert podutil.safe_encode_string("0123456789") == "456789bcdf"
    assert set(h) <= set("456789bcdf")
    assert podutil.compute_hash(t, 1) not in (h, podutil.compute_hash(t, 2))


def test_templates_compare_as_go_would() -> None:
    t: Obj = {"metadata": {"labels": {"app": "foo"}},
              "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}}
    # What kubectl rollout undo writes back: Go's re-encoding, the hash label still on.
    back = {"metadata": {"creationTimestamp": None, "labels": {"app": "foo", "pod-template-hash": "abc"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert podutil.equal_ignore_hash(t, back)
    assert podutil.compute_hash(t, None) == podutil.compute_hash(
        {**back, "metadata": {"labels": {"app": "foo"}}}, None)
    assert not podutil.equal_ignore_hash(t, {**back, "spec": {"containers": [{"name": "c", "image": "j"}]}})
    assert not podutil.equal_ignore_hash(t, {**back, "metadata": {"labels": {"app": "bar"}}})
    assert t["spec"]["containers"][0]["resources"] == {}, "comparison does not modify its inputs"


def test_pod_from_template() -> None:
    owner = {"metadata": {"name": "web-5d4f8b7c9", "uid": "rs-uid"}}
    ref = podutil.new_controller_ref(owner, "apps/v1", "ReplicaSet")
    template = {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["x/y"], "name": "n"},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}
    pod = podutil.pod_from_template(template, owner, ref)
    assert pod["metadata"] == {"generateName": "web-5d4f8b7c9-", "labels": {"app": "web"}, "annotations": {"a": "b"},
                               "finalizers": ["x/y"], "ownerReferences": [ref]}
    assert pod["spec"] == template["spec"] and pod["spec"] is not template["spec"]
    assert podutil.pods_prefix("x" * 60) == "x" * 60


# ---------------------------------------------------------------------------------- pods


def pod(name: str, *, node: str = "n1", phase: str = "Running", ready: bool = True, ready_at: float = 0,
        created: float = 0, restarts: int = 0, cost: int | None = None, uid: str = "") -> Obj:
    p: Obj = {
        "metadata": {"name": name, "uid": uid or name, "creationTimestamp": ts(created), "annotations": {}},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "lastTransitionTime": ts(ready_at)}]},
    }
    if cost is not None:
        p["metadata"]["annotations"][podutil.POD_DELETION_COST] = str(cost)
    return p


def test_scale_down_order() -> None:
    now = T0 + dt.timedelta(days=10)

    def first(*pods: Obj, related: list[Obj] | None = None) -> str:
        return str(podutil.pods_to_delete(list(pods), related or list(pods), 1, now)[0]["metadata"]["name"])

    assert first(pod("scheduled"), pod("unscheduled", node="")) == "unscheduled"
    assert first(pod("running"), pod("pending", phase="Pending", ready=False)) == "pending"
    assert first(pod("ready"), pod("not-ready", ready=False)) == "not-ready"
    assert first(pod("cheap", cost=-5), pod("dear", cost=10)) == "cheap"
    doubled = [pod("a", node="n1"), pod("b", node="n2"), pod("c", node="n2")]
    assert first(doubled[0], doubled[1], related=doubled) == "b", "the pod on the busier node goes first"
    # Ready for a shorter time goes first (log2 buckets: one hour vs nine days apart).
    assert first(pod("old-ready", ready_at=0), pod("new-ready", ready_at=9 * 86400)) == "new-ready"
    assert first(pod("calm"), pod("crashy", restarts=3)) == "crashy"
    assert first(pod("older", created=0), pod("newer", created=9 * 86400)) == "newer"
    # Same log2 bucket: the UID breaks the tie, not the exact time.
    assert first(pod("x", created=100, uid="b"), pod("y", created=101, uid="a")) == "y"
    assert podutil.pods_to_delete([pod("a")], [], 3, now) == [pod("a")]


def test_readiness_and_availability() -> None:
    p = pod("p", ready_at=0)
    assert podutil.is_pod_ready(p) and podutil.is_pod_active(p)
    assert podutil.is_pod_available(p, 0, T0)
    assert not podutil.is_pod_available(p, 10, T0 + dt.timedelta(seconds=10))
    assert podutil.is_pod_available(p, 10, T0 + dt.timedelta(seconds=11))
    assert not podutil.is_pod_available(pod("q", ready=False), 0, T0)
    assert not podutil.is_pod_active(pod("done", phase="Succeeded"))
    terminating = pod("t")
    terminating["metadata"]["deletionTimestamp"] = ts(5)
    assert not podutil.is_pod_active(terminating)


def test_replicaset_status() -> None:
    rset = {"metadata": {"generation": 2}, "spec": {"replicas": 3, "minReadySeconds": 10,
                                                    "template": {"metadata": {"labels": {"app": "a", "v": "1"}}}},
            "status": {}}
    pods = [pod("a", ready_at=0), pod("b", ready_at=55), pod("c", ready=False)]
    for p in pods:
        p["metadata"]["labels"] = {"app": "a", "v": "1"}
    pods[2]["metadata"]["labels"] = {"app": "a"}
    assert calculate_status(rset, pods, None, T0 + dt.timedelta(seconds=60)) == {
        "replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1}
    st = calculate_status(rset, [], RuntimeError("pods is forbidden: exceeded quota"), T0)
    assert st["replicas"] == 0
    assert [(c["type"], c["reason"], c["message"]) for c in st["conditions"]] == [
        ("ReplicaFailure", "FailedCreate", "pods is forbidden: exceeded quota")]
    rset["status"] = st
    assert "conditions" not in calculate_status(rset, [], None, T0)


def test_expectations_hold_a_replicaset_until_observed() -> None:
    e = Expectations()
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/a")
    e.deletion_observed("ns/rs", "ns/a")  # seen twice (terminating, then gone): counted once
    e.deletion_observed("ns/rs", "ns/other")
    assert not e.satisfied("ns/rs")
    e.deletion_observed("ns/rs", "ns/b")
    assert e.satisfied("ns/rs")
    stale = Expectations(timeout=0.0)
    stale.expect_creations("ns/rs", 1)
    assert stale.satisfied("ns/rs"), "expectations expire so that a lost event cannot wedge a ReplicaSet"
