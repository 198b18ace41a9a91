"""StatefulSet, DaemonSet and ControllerRevision logic as pure functions: defaults, validation
texts, printers, revision hashing and history, and each controller's decisions (with a fixed
clock where minReadySeconds makes time matter)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api.defaults import apply_defaults
from kubelite.api.printers import to_table
from kubelite.api.validation import validate
from kubelite.controllers import daemonset, history, scheduler, statefulset
from kubelite.controllers.statefulset import Action, plan

Obj = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sts(replicas: int = 3, **spec: Any) -> Obj:
    obj: Obj = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1,
                     "creationTimestamp": ts(60)},
        "spec": {
            "serviceName": "web", "replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}],
            **spec,
        },
    }
    apply_defaults("apps", "StatefulSet", obj)
    return obj


def pod(ordinal: int, revision: str = "web-1", ready: bool = True, ready_for: float = 60,
        phase: str = "Running", terminating: bool = False) -> Obj:
    meta: Obj = {"name": f"web-{ordinal}", "namespace": "default", "uid": f"pod-{ordinal}",
                 "labels": {"app": "web", "controller-revision-hash": revision}, "creationTimestamp": ts(100)}
    if terminating:
        meta["deletionTimestamp"] = ts(0)
    conditions = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts(ready_for)}]
    return {"metadata": meta, "status": {"phase": phase, "conditions": conditions}}


def pods(*ordinals: int, **kw: Any) -> dict[int, Obj]:
    return {o: pod(o, **kw) for o in ordinals}


# ---------------------------------------------------------------------------------- defaults


def test_statefulset_defaults_as_set_defaults_statefulset() -> None:
    obj: Obj = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
                         "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}]}}
    apply_defaults("apps", "StatefulSet", obj)
    spec = obj["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert spec["volumeClaimTemplates"][0]["status"] == {"phase": "Pending"}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_statefulset_defaults_keep_what_is_set() -> None:
    obj: Obj = {"spec": {"updateStrategy": {"type": "OnDelete"}, "podManagementPolicy": "Parallel",
                         "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}}
    apply_defaults("apps", "StatefulSet", obj)
    assert obj["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert obj["spec"]["podManagementPolicy"] == "Parallel"
    assert obj["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Delete", "whenDeleted": "Retain"}
    rolling: Obj = {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}}}
    apply_defaults("apps", "StatefulSet", rolling)
    assert rolling["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 2, "partition": 0}


def test_daemonset_defaults_as_set_defaults_daemonset() -> None:
    obj: Obj = {"spec": {"template": {"spec": {}}}}
    apply_defaults("apps", "DaemonSet", obj)
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert obj["spec"]["revisionHistoryLimit"] == 10
    on_delete: Obj = {"spec": {"updateStrategy": {"type": "OnDelete"}}}
    apply_defaults("apps", "DaemonSet", on_delete)
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}


# ---------------------------------------------------------------------------------- validation


def messages(group: str, kind: str, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in validate(group, kind, obj, old)]


def test_valid_statefulset_passes() -> None:
    assert messages("apps", "StatefulSet", sts()) == []


def test_statefulset_selector_must_match_template_labels() -> None:
    obj = sts()
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "db"}
    assert messages("apps", "StatefulSet", obj) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"db"}: '
        "`selector` does not match template `labels`"]


def test_statefulset_field_errors_in_kubernetes_words() -> None:
    obj = sts()
    obj["spec"]["podManagementPolicy"] = "Sometimes"
    obj["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = "Keep"
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = -1
    assert messages("apps", "StatefulSet", obj) == [
        "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
        "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0",
        'spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: "Keep": '
        'supported values: "Retain", "Delete"',
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
    ]
    obj = sts()
    obj["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 0
    assert messages("apps", "StatefulSet", obj) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0"]
    obj = sts()
    obj["spec"]["selector"] = {}
    assert "empty selector is invalid for statefulset" in messages("apps", "StatefulSet", obj)[0]


def test_statefulset_template_pod_spec_is_not_validated() -> None:
    # ValidatePodTemplateSpecForStatefulSet leaves the pod spec alone: mounts name claim templates.
    obj = sts()
    obj["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/d"}]
    assert messages("apps", "StatefulSet", obj) == []


def test_statefulset_updates_only_some_fields() -> None:
    old = sts()
    old["metadata"]["resourceVersion"] = "5"
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    new["spec"]["template"]["metadata"]["annotations"] = {"a": "b"}
    new["spec"]["updateStrategy"] = {"type": "OnDelete"}
    new["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] = "Delete"
    new["spec"]["minReadySeconds"] = 3
    assert messages("apps", "StatefulSet", new, old) == []
    new["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
    new["spec"]["serviceName"] = "other"
    assert messages("apps", "StatefulSet", new, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]


def ds(**spec: Any) -> Obj:
    obj: Obj = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1,
                     "annotations": {"deprecated.daemonset.template.generation": "1"}},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "c", "image": "agent"}]}}, **spec},
    }
    apply_defaults("apps", "DaemonSet", obj)
    return obj


def test_daemonset_validation_texts() -> None:
    assert messages("apps", "DaemonSet", ds()) == []
    obj = ds()
    obj["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 1, "maxSurge": 1}
    assert messages("apps", "DaemonSet", obj) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
    obj["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 0, "maxSurge": 0}
    assert messages("apps", "DaemonSet", obj) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    obj = ds()
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    assert messages("apps", "DaemonSet", obj) == ["spec.template.spec.containers[0].image: Required value"]
    old = ds()
    old["metadata"]["resourceVersion"] = "1"
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "agent", "x": "y"}}
    new["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    assert any("spec.selector: Invalid value" in m and "field is immutable" in m
               for m in messages("apps", "DaemonSet", new, old))


def test_controller_revision_data_is_required_and_immutable() -> None:
    cr: Obj = {"metadata": {"name": "web-1", "namespace": "default"}, "revision": 1}
    assert messages("apps", "ControllerRevision", cr) == ["data: Required value: data is mandatory"]


# ---------------------------------------------------------------------------------- printers


def cells(kind: str, obj: Obj) -> list[Any]:
    out: list[Any] = to_table("apps", kind, [obj], now=NOW)["rows"][0]["cells"]
    return out


def test_printers() -> None:
    s = sts()
    s["status"] = {"readyReplicas": 2}
    assert cells("StatefulSet", s) == ["web", "2/3", "60s", "c", "nginx"]
    d = ds()
    d["metadata"]["creationTimestamp"] = ts(120)
    d["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    d["status"] = {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1}
    assert cells("DaemonSet", d) == ["agent", 1, 1, 1, 0, 0, "disk=ssd", "2m", "c", "agent", "app=agent"]
    cr = history.new_revision(s, "apps/v1", "StatefulSet", 4, 0)
    cr["metadata"]["creationTimestamp"] = ts(5)
    assert cells("ControllerRevision", cr)[1:] == ["statefulset.apps/web", 4, "5s"]
    names = [c["name"] for c in to_table("apps", "DaemonSet", [], now=NOW)["columnDefinitions"]]
    assert names == ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age",
                     "Containers", "Images", "Selector"]


# ---------------------------------------------------------------------------------- history


def test_revision_hash_and_data() -> None:
    s = sts()
    a = history.new_revision(s, "apps/v1", "StatefulSet", 1, 0)
    assert a["data"]["spec"]["template"]["$patch"] == "replace"
    assert a["metadata"]["name"] == f"web-{a['metadata']['labels'][history.HASH_LABEL]}"
    assert a["metadata"]["labels"]["app"] == "web"
    assert history.new_revision(s, "apps/v1", "StatefulSet", 7, 0)["metadata"]["name"] == a["metadata"]["name"]
    assert history.new_revision(s, "apps/v1", "StatefulSet", 1, 1)["metadata"]["name"] != a["metadata"]["name"]
    changed = copy.deepcopy(s)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    b = history.new_revision(changed, "apps/v1", "StatefulSet", 2, 0)
    assert not history.equal_revision(a, b)
    assert history.template_of(b)["spec"]["containers"][0]["image"] == "nginx:2"
    # FNV-1 (not 1a), as fnv.New32: the empty input hashes to the offset basis.
    assert history._fnv32(b"") == 0x811C9DC5 and history._fnv32(b"a") == 0x050C5D7E


def test_history_limit_keeps_live_revisions() -> None:
    revs = [{"metadata": {"name": f"r{i}"}, "revision": i} for i in range(1, 6)]
    dropped = history.revisions_to_drop(revs, {"r1", "r5"}, 2)
    assert [r["metadata"]["name"] for r in dropped] == ["r2"]
    assert history.revisions_to_drop(revs, set(), 10) == []
    assert history.next_revision(revs) == 6 and history.next_revision([]) == 1


# ---------------------------------------------------------------------------------- statefulset decisions


def test_ordered_ready_creates_the_lowest_missing_ordinal_only() -> None:
    assert plan(sts(), {}, "web-1", "web-1", NOW) == [Action("create", 0, "web-1")]
    assert plan(sts(), pods(0), "web-1", "web-1", NOW) == [Action("create", 1, "web-1")]


def test_ordered_ready_waits_for_ready_and_for_min_ready_seconds() -> None:
    assert plan(sts(), {0: pod(0, ready=False)}, "web-1", "web-1", NOW) == []
    assert plan(sts(), {0: pod(0, phase="Pending")}, "web-1", "web-1", NOW) == []
    slow = sts(minReadySeconds=30)
    assert plan(slow, {0: pod(0, ready_for=10)}, "web-1", "web-1", NOW) == []
    assert plan(slow, {0: pod(0, ready_for=31)}, "web-1", "web-1", NOW) == [Action("create", 1, "web-1")]


def test_parallel_creates_every_missing_ordinal_at_once() -> None:
    par = sts(podManagementPolicy="Parallel")
    assert plan(par, {1: pod(1, ready=False)}, "web-1", "web-1", NOW) == [Action("create", 0, "web-1"),
                                                                         Action("create", 2, "web-1")]


def test_scale_down_removes_the_highest_ordinal_first_once_all_are_healthy() -> None:
    two = sts(2)
    assert plan(two, pods(0, 1, 2, 3), "web-1", "web-1", NOW) == [Action("delete", 3)]
    unhealthy = {**pods(0, 2, 3), 1: pod(1, ready=False)}
    assert plan(two, unhealthy, "web-1", "web-1", NOW) == []
    par = sts(1, podManagementPolicy="Parallel")
    assert plan(par, pods(0, 1, 2), "web-1", "web-1", NOW) == [Action("delete", 2), Action("delete", 1)]


def test_failed_pod_is_deleted_to_be_recreated() -> None:
    assert plan(sts(), {0: pod(0, phase="Failed")}, "web-1", "web-1", NOW) == [Action("delete", 0)]


def test_rolling_update_goes_from_the_highest_ordinal_down_one_at_a_time() -> None:
    s = sts()
    old = pods(0, 1, 2, revision="web-1")
    assert plan(s, old, "web-1", "web-2", NOW) == [Action("delete", 2)]
    step = {**old, 2: pod(2, revision="web-2", ready=False)}
    assert plan(s, step, "web-1", "web-2", NOW) == []
    step[2] = pod(2, revision="web-2")
    assert plan(s, step, "web-1", "web-2", NOW) == [Action("delete", 1)]
    # A pod being deleted is waited for, not deleted again.
    step[1] = pod(1, revision="web-1", terminating=True)
    assert plan(s, step, "web-1", "web-2", NOW) == []


def test_partition_and_on_delete() -> None:
    part = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    assert plan(part, pods(0, 1, revision="web-1") | {2: pod(2, revision="web-2")}, "web-1", "web-2", NOW) == []
    # Below the partition a recreated pod keeps the current revision.
    assert plan(part, pods(0, 2, revision="web-1"), "web-1", "web-2", NOW) == [Action("create", 1, "web-1")]
    assert plan(part, pods(0, 1, revision="web-1"), "web-1", "web-2", NOW) == [Action("create", 2, "web-2")]
    on_delete = sts(updateStrategy={"type": "OnDelete"})
    assert plan(on_delete, pods(0, 1, 2, revision="web-1"), "web-1", "web-2", NOW) == []
    assert plan(on_delete, pods(0, 2, revision="web-1"), "web-1", "web-2", NOW) == [Action("create", 1, "web-2")]


def test_max_unavailable_deletes_several_at_once() -> None:
    s = sts(4, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 2}})
    assert plan(s, pods(0, 1, 2, 3, revision="web-1"), "web-1", "web-2", NOW) == [Action("delete", 3),
                                                                                Action("delete", 2)]
    one_down = {**pods(0, 1, 2, revision="web-1"), 3: pod(3, revision="web-2", ready=False)}
    # OrderedReady waits for the unready pod before anything else, as processReplica does.
    assert plan(s, one_down, "web-1", "web-2", NOW) == []
    s["spec"]["podManagementPolicy"] = "Parallel"
    assert plan(s, one_down, "web-1", "web-2", NOW) == [Action("delete", 2)]


def test_status_counts_and_hands_over_the_revision() -> None:
    s = sts()
    mixed = [pod(0, revision="web-1"), pod(1, revision="web-2"), pod(2, revision="web-2", ready=False)]
    st = statefulset.compute_status(s, mixed, "web-1", "web-2", 0, NOW)
    assert st == {"observedGeneration": 1, "replicas": 3, "readyReplicas": 2, "currentReplicas": 1,
                  "updatedReplicas": 2, "currentRevision": "web-1", "updateRevision": "web-2",
                  "collisionCount": 0, "availableReplicas": 2}
    done = [pod(i, revision="web-2") for i in range(3)]
    st = statefulset.compute_status(s, done, "web-1", "web-2", 0, NOW)
    assert st["currentRevision"] == "web-2" and st["currentReplicas"] == 3


def test_identity_and_claims() -> None:
    s = sts()
    p = statefulset.new_pod(s, s["spec"]["template"], 2, "web-abc")
    assert p["metadata"]["name"] == "web-2" and p["metadata"]["generateName"] == "web-"
    assert p["spec"]["hostname"] == "web-2" and p["spec"]["subdomain"] == "web"
    assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-2",
                                       "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"}
    assert p["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}}]
    claim = statefulset.claims_for(s, 2)[0]
    assert claim["metadata"]["name"] == "www-web-2" and claim["metadata"]["labels"] == {"app": "web"}
    assert "status" not in claim
    assert statefulset.parent_and_ordinal({"metadata": {"name": "my-db-12"}}) == ("my-db", 12)
    assert statefulset.parent_and_ordinal({"metadata": {"name": "nope"}}) == ("", -1)


@pytest.mark.parametrize(("deleted", "scaled", "ordinal", "owners"), [
    ("Retain", "Retain", 0, []),
    ("Delete", "Retain", 0, ["StatefulSet"]),
    ("Delete", "Retain", 5, ["StatefulSet"]),
    ("Retain", "Delete", 0, []),
    ("Retain", "Delete", 5, ["Pod"]),
    ("Delete", "Delete", 0, ["StatefulSet"]),
    ("Delete", "Delete", 5, ["Pod"]),
])
def test_claim_owner_references_follow_the_retention_policy(deleted: str, scaled: str, ordinal: int,
                                                             owners: list[str]) -> None:
    s = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": deleted, "whenScaled": scaled})
    claim: Obj = {"metadata": {"name": f"www-web-{ordinal}"}}
    refs = statefulset.claim_owner_refs(s, pod(ordinal), claim)
    got = [r["kind"] for r in refs] if refs is not None else []
    assert got == owners
    if refs is not None:
        claim["metadata"]["ownerReferences"] = refs
    assert statefulset.claim_owner_refs(s, pod(ordinal), claim) is None  # settled: nothing more to write


# ---------------------------------------------------------------------------------- daemonset


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
         ready: bool = True) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_daemon_pod_gets_default_tolerations_and_node_affinity() -> None:
    d = ds()
    d["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}
    p = daemonset.new_pod(d, "n1", "hash1")
    assert [t["key"] for t in p["spec"]["tolerations"]] == [
        "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure", "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable"]
    assert p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    assert p["metadata"]["labels"] == {"app": "agent", "pod-template-generation": "1",
                                       "controller-revision-hash": "hash1"}
    assert p["metadata"]["generateName"] == "agent-"
    assert daemonset.pod_node(p) == "n1"
    # The scheduler honours the pin: only n1 fits.
    assert scheduler.filter_node(p, node("n1")) is None
    assert scheduler.filter_node(p, node("n2")) == scheduler.REASON_NODE_AFFINITY
    host = ds()
    host["spec"]["template"]["spec"]["hostNetwork"] = True
    keys = [t["key"] for t in daemonset.new_pod(host, "n1", "h")["spec"]["tolerations"]]
    assert keys[-1] == "node.kubernetes.io/network-unavailable"


def test_should_run_follows_selectors_and_taints() -> None:
    d = ds()
    assert daemonset.should_run(d, node("n1")) == (True, True)
    d["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert daemonset.should_run(d, node("n1")) == (False, False)
    assert daemonset.should_run(d, node("n1", {"disk": "ssd"})) == (True, True)
    d = ds()
    assert daemonset.should_run(d, node("n1", taints=[{"key": "k", "effect": "NoSchedule"}])) == (False, True)
    assert daemonset.should_run(d, node("n1", taints=[{"key": "k", "effect": "NoExecute"}])) == (False, False)
    # The default tolerations cover disk pressure and cordoned nodes, not a NotReady node's NoSchedule.
    assert daemonset.should_run(d, node("n1", taints=[{"key": "node.kubernetes.io/disk-pressure",
                                                       "effect": "NoSchedule"}])) == (True, True)
    assert daemonset.should_run(d, node("n1", ready=False)) == (False, True)


def dpod(name: str, node_name: str, hash_: str = "h1", ready: bool = True, phase: str = "Running",
         age: float = 100) -> Obj:
    return {"metadata": {"name": name, "creationTimestamp": ts(age),
                         "labels": {"controller-revision-hash": hash_}},
            "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": ts(60)}]}}


def test_daemonset_plan_creates_missing_and_removes_extra_pods() -> None:
    d = ds()
    eligible = {"n1": (True, True), "n2": (True, True), "n3": (False, False)}
    by_node = {"n2": [dpod("a", "n2", age=200), dpod("b", "n2", age=100)], "n3": [dpod("c", "n3")]}
    out = daemonset.plan(d, eligible, by_node, "h1", NOW)
    assert out.create == ["n1"]
    assert sorted(p["metadata"]["name"] for p in out.delete) == ["b", "c"]
    failed = daemonset.plan(d, {"n1": (True, True)}, {"n1": [dpod("f", "n1", phase="Failed")]}, "h1", NOW)
    assert failed.create == [] and [p["metadata"]["name"] for p in failed.delete] == ["f"]


def test_daemonset_rolling_update_respects_max_unavailable_and_surge() -> None:
    d = ds()
    eligible = {f"n{i}": (True, True) for i in range(3)}
    old = {f"n{i}": [dpod(f"p{i}", f"n{i}")] for i in range(3)}
    out = daemonset.plan(d, eligible, old, "h2", NOW)
    assert [p["metadata"]["name"] for p in out.delete] == ["p0"] and out.create == []
    # One node is already without an available pod: nothing more goes down.
    waiting = {**old, "n0": [dpod("p0new", "n0", hash_="h2", ready=False)]}
    assert daemonset.plan(d, eligible, waiting, "h2", NOW).delete == []
    surge = ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    out = daemonset.plan(surge, eligible, old, "h2", NOW)
    assert out.create == ["n0"] and out.delete == []
    surged = {**old, "n0": [dpod("p0", "n0", age=200), dpod("p0new", "n0", hash_="h2", age=10)]}
    out = daemonset.plan(surge, eligible, surged, "h2", NOW)
    assert [p["metadata"]["name"] for p in out.delete] == ["p0"]


def test_daemonset_status() -> None:
    d = ds()
    eligible = {"n1": (True, True), "n2": (True, True), "n3": (False, True)}
    by_node = {"n1": [dpod("a", "n1", hash_="h2")], "n2": [dpod("b", "n2", ready=False)], "n3": [dpod("c", "n3")]}
    assert daemonset.compute_status(d, eligible, by_node, "h2", NOW) == {
        "currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 2, "numberReady": 1,
        "observedGeneration": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberUnavailable": 1}


# ---------------------------------------------------------------------------------- API strategies


def test_api_strategies_of_statefulsets_and_daemonsets() -> None:
    from kubelite.api.registry import RESOURCES
    from kubelite.apiserver.strategy import STRATEGIES

    rts = {r.kind: r for r in RESOURCES if r.group == "apps"}
    sts_strategy = STRATEGIES[("apps", "StatefulSet")](rts["StatefulSet"])
    created: Obj = {"spec": {}}
    sts_strategy.defaults(created)
    assert created["status"] == {"replicas": 0, "availableReplicas": 0}
    assert sts_strategy.tracks_generation

    ds_strategy = STRATEGIES[("apps", "DaemonSet")](rts["DaemonSet"])
    new = ds()
    new["metadata"].pop("annotations")
    ds_strategy.prepare_create(new)
    assert new["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    same = copy.deepcopy(new)
    ds_strategy.prepare_update(same, new)
    assert same["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    changed = copy.deepcopy(new)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    ds_strategy.prepare_update(changed, new)
    assert changed["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"
