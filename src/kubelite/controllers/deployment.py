"""The Deployment controller (kube-controller-manager's pkg/controller/deployment).

A Deployment owns one ReplicaSet per pod template it has had, named
``<deployment>-<pod-template-hash>``; the ReplicaSet whose template equals the Deployment's is
the *new* one and the others are *old*. A rollout moves replicas from old to new, within
``maxSurge`` extra and ``maxUnavailable`` missing pods (RollingUpdate) or by emptying the old
ones first (Recreate). Revisions, rollback (``kubectl rollout undo`` copies an old
ReplicaSet's template back, client-side), history (``kubectl rollout history``) and
``kubectl rollout status`` all read the annotations and status fields written here, so their
names, reasons and messages are Kubernetes' own.

The module has two halves. The pure half (module functions, named after their Kubernetes
counterparts in ``deployment/util``) computes sizes, annotations, status and conditions from
plain dicts and is unit-tested without a server; the controller class reads the informer
caches, calls it, and writes the difference.

One difference from Kubernetes: kube-apiserver lets a Deployment's status update also change
its annotations (the revision), kubelite's status subresource does not, so the revision
annotation is written with a merge patch of the Deployment itself.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
from collections.abc import Iterable

from kubelite.api import timeutil
from kubelite.api.labels import Selector, SelectorError, selector_from_label_selector
from kubelite.api.types import EventType, Obj
from kubelite.client import DEPLOYMENTS, PODS, REPLICASETS, ApiError, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers import podutil
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO})
MAX_REV_HISTORY_LENGTH = 2000
MAX_INT32 = 2**31 - 1

# Condition reasons (deployment/util): what `kubectl describe` and `rollout status` show.
REASON_RS_UPDATED = "ReplicaSetUpdated"
REASON_FAILED_RS_CREATE = "ReplicaSetCreateError"
REASON_NEW_RS_CREATED = "NewReplicaSetCreated"
REASON_FOUND_NEW_RS = "FoundNewReplicaSet"
REASON_NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
REASON_TIMED_OUT = "ProgressDeadlineExceeded"
REASON_PAUSED = "DeploymentPaused"
REASON_RESUMED = "DeploymentResumed"
REASON_MIN_AVAILABLE = "MinimumReplicasAvailable"
REASON_MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


# ======================================================================== the pure half


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def _status(obj: Obj | None) -> Obj:
    return (obj or {}).get("status") or {}


def replicas(obj: Obj | None) -> int:
    """spec.replicas of a Deployment or ReplicaSet (defaulted to 1 by the API server)."""
    return int(_spec(obj).get("replicas", 1))


def _status_count(obj: Obj | None, field: str) -> int:
    return int(_status(obj).get(field) or 0)


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, ``N%`` of total rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
    percent = int(value[:-1])
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None, desired: int) -> tuple[int, int]:
    """ResolveFenceposts: surge rounds up, unavailable down; both zero means one unavailable."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(d: Obj) -> bool:
    strategy: str = (_spec(d).get("strategy") or {}).get("type", "RollingUpdate")
    return strategy == "RollingUpdate"


def _rolling(d: Obj) -> Obj:
    return (_spec(d).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    r = _rolling(d)
    return resolve_fenceposts(r.get("maxSurge", "25%"), r.get("maxUnavailable", "25%"), replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    r = _rolling(d)
    unavailable = resolve_fenceposts(r.get("maxSurge", "25%"), r.get("maxUnavailable", "25%"), replicas(d))[1]
    return min(unavailable, replicas(d))


def has_progress_deadline(d: Obj) -> bool:
    pds = _spec(d).get("progressDeadlineSeconds")
    return pds is not None and pds != MAX_INT32


def has_revision_history_limit(d: Obj) -> bool:
    limit = _spec(d).get("revisionHistoryLimit")
    return limit is not None and limit != MAX_INT32


def revision(rs: Obj) -> int:
    """The revision annotation; 0 when absent. Raises ValueError when it is not a number."""
    value = (_meta(rs).get("annotations") or {}).get(REVISION)
    return 0 if value is None else int(value)


def max_revision(rss: Iterable[Obj | None]) -> int:
    best = 0
    for rs in rss:
        if rs is None:
            continue
        try:
            best = max(best, revision(rs))
        except ValueError:
            continue  # Kubernetes skips replica sets whose revision does not parse
    return best


def by_creation(rss: Iterable[Obj]) -> list[Obj]:
    """ReplicaSetsByCreationTimestamp: oldest first, ties by name."""
    return sorted(rss, key=lambda rs: (podutil.creation_time(rs), _meta(rs).get("name", "")))


def by_revision(rss: Iterable[Obj]) -> list[Obj]:
    """ReplicaSetsByRevision: lowest revision first; creation order when revisions tie or do not parse."""

    def key(rs: Obj) -> tuple[int, dt.datetime, str]:
        try:
            rev = revision(rs)
        except ValueError:
            rev = -1
        return rev, podutil.creation_time(rs), _meta(rs).get("name", "")

    return sorted(rss, key=key)


def find_new_replicaset(d: Obj, rss: Iterable[Obj]) -> Obj | None:
    """FindNewReplicaSet: the oldest ReplicaSet whose template equals the Deployment's (hash aside)."""
    template = _spec(d).get("template") or {}
    for rs in by_creation(rss):
        if podutil.equal_ignore_hash(_spec(rs).get("template") or {}, template):
            return rs
    return None


def find_old_replicasets(d: Obj, rss: list[Obj]) -> list[Obj]:
    """FindOldReplicaSets (all of them, scaled down or not)."""
    new = find_new_replicaset(d, rss)
    new_uid = _meta(new).get("uid") if new is not None else None
    return [rs for rs in rss if new is None or _meta(rs).get("uid") != new_uid]


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    """FilterActiveReplicaSets: those with replicas to run."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def total_replicas(rss: Iterable[Obj | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def total_status(rss: Iterable[Obj | None], field: str) -> int:
    return sum(_status_count(rs, field) for rs in rss if rs is not None)


def _int_annotation(rs: Obj, key: str) -> int | None:
    value = (_meta(rs).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = _meta(rs).get("annotations") or {}
    return annotations.get(DESIRED_REPLICAS) != str(desired) or annotations.get(MAX_REPLICAS) != str(max_replicas)


def set_new_replicaset_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool,
                                   limit: int = MAX_REV_HISTORY_LENGTH) -> bool:
    """SetNewReplicaSetAnnotations: copy the Deployment's annotations, raise the revision, keep history."""
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in (_meta(d).get("annotations") or {}).items():
        if k in ANNOTATIONS_TO_SKIP or annotations.get(k) == v:
            continue
        annotations[k] = v
        changed = True
    had_revision = REVISION in annotations
    old_revision = annotations.get(REVISION, "")
    try:
        old_int = int(old_revision) if old_revision else 0
    except ValueError:
        return False
    new_int = int(new_revision)
    if old_int < new_int:
        annotations[REVISION] = new_revision
        changed = True
        if had_revision:
            # The template came back (a rollback): remember the revisions it served before.
            history = annotations.get(REVISION_HISTORY, "")
            olds = history.split(",")
            if not olds[0]:
                annotations[REVISION_HISTORY] = old_revision
            else:
                total, start = len(history) + len(old_revision) + 1, 0
                while total > limit and start < len(olds):
                    total -= len(olds[start]) + 1
                    start += 1
                if total <= limit:
                    annotations[REVISION_HISTORY] = ",".join([*olds[start:], old_revision])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """FindActiveOrLatest: the only active ReplicaSet, or the newest if none is; None if several are active."""
    if new_rs is None and not old_rss:
        return None
    newest_first = list(reversed(by_creation(old_rss)))
    live = active([*newest_first, new_rs])
    if not live:
        return new_rs if new_rs is not None else newest_first[0]
    return live[0] if len(live) == 1 else None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """IsSaturated: the new ReplicaSet has all the Deployment's replicas, all available."""
    if rs is None:
        return False
    desired = _int_annotation(rs, DESIRED_REPLICAS)
    if desired is None:
        return False
    n = replicas(d)
    return replicas(rs) == n and desired == n and _status_count(rs, "availableReplicas") == n


def _round_half_away(x: float) -> int:
    """integer.RoundToInt32: math.Round, halves away from zero (not Python's banker's rounding)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def replicaset_fraction(rs: Obj, d: Obj) -> int:
    """getReplicaSetFraction: how many replicas this ReplicaSet gains (or loses) in a proportional scale."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = _status_count(d, "replicas")
    if annotated == 0:
        return 0
    return _round_half_away(replicas(rs) * deployment_replicas / annotated) - replicas(rs)


def get_proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """GetProportion: the fraction, bounded by what is still left to add or remove."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replicaset_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> tuple[list[tuple[Obj, int]], str]:
    """The proportional half of ``scale``: new sizes of every active ReplicaSet, and "up"/"down".

    Bigger ReplicaSets go first; among equals, newer ones first when scaling up and older
    ones first when scaling down. Rounding leftovers go to the first one.
    """
    rss = active([*old_rss, new_rs])
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total_replicas(rss)
    operation = ""
    if to_add > 0:
        rss = sorted(by_creation(rss)[::-1], key=lambda rs: -replicas(rs))
        operation = "up"
    elif to_add < 0:
        rss = sorted(by_creation(rss), key=lambda rs: -replicas(rs))
        operation = "down"
    sizes: list[int] = []
    added = 0
    for rs in rss:
        proportion = get_proportion(rs, d, to_add, added) if to_add else 0
        sizes.append(replicas(rs) + proportion)
        added += proportion
    if rss and to_add:
        sizes[0] = max(sizes[0] + to_add - added, 0)
    return list(zip(rss, sizes, strict=True)), operation


def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    if not is_rolling_update(d):
        return replicas(d)
    surge = scaled_value(_rolling(d).get("maxSurge", "25%"), replicas(d), True)
    current = total_replicas(all_rss)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def plan_old_scale_down(all_rss: list[Obj | None], old_rss: list[Obj], new_rs: Obj | None, d: Obj) -> list[tuple[Obj, int]]:
    """reconcileOldReplicaSets as a plan: (old ReplicaSet, new size), in the order to apply them.

    First unhealthy replicas go (cleanupUnhealthyReplicas), never more than keeps the
    Deployment at its minimum availability; then available ones, oldest ReplicaSets first
    (scaleDownOldReplicaSetsForRollingUpdate).
    """
    if total_replicas(old_rss) == 0:
        return []
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = replicas(new_rs) - _status_count(new_rs, "availableReplicas") if new_rs is not None else 0
    max_scaled_down = total_replicas(all_rss) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    sizes = {id(rs): replicas(rs) for rs in old_rss}
    plan: list[tuple[Obj, int]] = []
    cleaned = 0
    for rs in by_creation(old_rss):
        if cleaned >= max_scaled_down:
            break
        size, available_now = sizes[id(rs)], _status_count(rs, "availableReplicas")
        if size == 0 or size == available_now:
            continue
        count = min(max_scaled_down - cleaned, size - available_now)
        sizes[id(rs)] = size - count
        plan.append((rs, size - count))
        cleaned += count
    # The second step sees the old ReplicaSets that are still active, as reconcileOldReplicaSets passes them.
    available = total_status([*old_rss, new_rs], "availableReplicas")
    if available > min_available:
        budget, done = available - min_available, 0
        for rs in by_creation(old_rss):
            if done >= budget:
                break
            size = sizes[id(rs)]
            if size == 0:
                continue
            count = min(size, budget - done)
            sizes[id(rs)] = size - count
            plan.append((rs, size - count))
            done += count
    return plan


# -- status and conditions


def new_condition(type_: str, status: str, reason: str, message: str, at: dt.datetime) -> Obj:
    ts = timeutil.format_time(at)
    return {"type": type_, "status": status, "lastUpdateTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def get_condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason is no change; same status keeps the transition time."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    status["conditions"] = [*(c for c in status.get("conditions") or [] if c.get("type") != cond["type"]), cond]


def remove_condition(status: Obj, type_: str) -> None:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, at: dt.datetime) -> Obj:
    """calculateStatus: sums over the ReplicaSets plus the Available condition (zero fields omitted)."""
    available = total_status(all_rss, "availableReplicas")
    unavailable = max(total_replicas(all_rss) - available, 0)
    counts = {
        "observedGeneration": int(_meta(d).get("generation") or 0),
        "replicas": total_status(all_rss, "replicas"),
        "updatedReplicas": total_status([new_rs], "replicas"),
        "readyReplicas": total_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    status: Obj = {k: v for k, v in counts.items() if v}
    if "collisionCount" in _status(d):
        status["collisionCount"] = _status(d)["collisionCount"]
    if _status(d).get("conditions"):
        status["conditions"] = [dict(c) for c in _status(d)["conditions"]]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", REASON_MIN_AVAILABLE,
                                            "Deployment has minimum availability.", at))
    else:
        set_condition(status, new_condition("Available", "False", REASON_MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", at))
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    n = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == n and int(status.get("replicas") or 0) == n
            and int(status.get("availableReplicas") or 0) == n
            and int(status.get("observedGeneration") or 0) >= int(_meta(d).get("generation") or 0))


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = _status(d)

    def n(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    return (n(status, "updatedReplicas") > n(old, "updatedReplicas")
            or n(status, "replicas") - n(status, "updatedReplicas") < n(old, "replicas") - n(old, "updatedReplicas")
            or n(status, "readyReplicas") > n(old, "readyReplicas")
            or n(status, "availableReplicas") > n(old, "availableReplicas"))


def deployment_timed_out(d: Obj, status: Obj, at: dt.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == REASON_NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == REASON_TIMED_OUT:
        return True
    since = timeutil.parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    return since + dt.timedelta(seconds=int(_spec(d)["progressDeadlineSeconds"])) < at


def rollout_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, at: dt.datetime) -> Obj:
    """The status syncRolloutStatus writes: calculateStatus plus the Progressing and ReplicaFailure conditions."""
    status = calculate_status(all_rss, new_rs, d, at)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
    current = get_condition(_status(d), "Progressing")
    complete_before = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                       and current is not None and current.get("reason") == REASON_NEW_RS_AVAILABLE)
    subject = f'ReplicaSet "{_meta(new_rs)["name"]}"' if new_rs is not None else f'Deployment "{_meta(d)["name"]}"'
    if has_progress_deadline(d) and not complete_before:
        if deployment_complete(d, status):
            set_condition(status, new_condition("Progressing", "True", REASON_NEW_RS_AVAILABLE,
                                                f"{subject} has successfully progressed.", at))
        elif deployment_progressing(d, status):
            cond = new_condition("Progressing", "True", REASON_RS_UPDATED, f"{subject} is progressing.", at)
            if current is not None:
                # Progress moves lastUpdateTime even when the reason stays: that is what the deadline measures.
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif deployment_timed_out(d, status, at):
            set_condition(status, new_condition("Progressing", "False", REASON_TIMED_OUT,
                                                f"{subject} has timed out progressing.", at))
    failure = replica_failure(all_rss, new_rs)
    if failure is not None:
        set_condition(status, failure)
    else:
        remove_condition(status, "ReplicaFailure")
    return status


def replica_failure(all_rss: list[Obj | None], new_rs: Obj | None) -> Obj | None:
    """getReplicaFailures: a ReplicaFailure of the new ReplicaSet first, else of any other."""
    for rs in [new_rs, *all_rss]:
        cond = get_condition(_status(rs), "ReplicaFailure") if rs is not None else None
        if cond is not None:
            return {"type": "ReplicaFailure", "status": cond.get("status"),
                    "lastUpdateTime": cond.get("lastTransitionTime"), "lastTransitionTime": cond.get("lastTransitionTime"),
                    "reason": cond.get("reason"), "message": cond.get("message")}
    return None


def progress_check_delay(d: Obj, status: Obj, at: dt.datetime) -> float | None:
    """requeueStuckDeployment: seconds until the progress deadline must be checked, or None."""
    cond = get_condition(_status(d), "Progressing")
    if not has_progress_deadline(d) or cond is None:
        return None
    if deployment_complete(d, status) or cond.get("reason") == REASON_TIMED_OUT:
        return None
    since = timeutil.parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    after = (since + dt.timedelta(seconds=int(_spec(d)["progressDeadlineSeconds"])) - at).total_seconds()
    return 0.0 if after < 1 else after + 1


def new_replicaset(d: Obj, old_rss: list[Obj], new_revision: str) -> Obj:
    """The ReplicaSet getNewReplicaSet creates: hashed name, label and selector; sized by NewRSNewReplicas."""
    template = copy.deepcopy(_spec(d).get("template") or {})
    pod_hash = podutil.compute_hash(template, _status(d).get("collisionCount"))
    labels = {**((template.get("metadata") or {}).get("labels") or {}), podutil.POD_TEMPLATE_HASH_LABEL: pod_hash}
    template.setdefault("metadata", {})["labels"] = labels
    selector = copy.deepcopy(_spec(d).get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), podutil.POD_TEMPLATE_HASH_LABEL: pod_hash}
    spec: Obj = {"replicas": 0, "selector": selector, "template": template}
    if _spec(d).get("minReadySeconds"):
        spec["minReadySeconds"] = _spec(d)["minReadySeconds"]
    rs: Obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{_meta(d)['name']}-{pod_hash}",
            "namespace": _meta(d)["namespace"],
            "labels": dict(labels),
            "ownerReferences": [podutil.new_controller_ref(d, "apps/v1", "Deployment")],
        },
        "spec": spec,
    }
    spec["replicas"] = new_rs_new_replicas(d, [*old_rss, rs], rs)
    set_new_replicaset_annotations(d, rs, new_revision, False)
    return rs


# ======================================================================== the controller


class DeploymentController(Controller):
    name = "deployment"
    service_account = "deployment-controller"
    workers = 5

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # Kubernetes names the source of these events after the controller, not the process.
        self.recorder = EventRecorder(self.client, "deployment-controller")
        self.d_informer = ctx.informer(DEPLOYMENTS)
        self.rs_informer = ctx.informer(REPLICASETS, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.pod_informer = ctx.informer(PODS, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.d_informer.add_handler(lambda kind, d, old: self.enqueue(d))
        self.rs_informer.add_handler(self._on_replicaset)
        self.pod_informer.add_handler(self._on_pod)

    # ------------------------------------------------------------------ event handlers

    def _owner(self, namespace: str, ref: Obj | None) -> Obj | None:
        if not ref or ref.get("kind") != "Deployment" or not str(ref.get("apiVersion", "")).startswith("apps/"):
            return None
        d = self.d_informer.get(f"{namespace}/{ref.get('name')}")
        if d is None or _meta(d).get("uid") != ref.get("uid"):
            return None
        return d

    def _matching_deployments(self, rs: Obj) -> list[Obj]:
        """getDeploymentsForReplicaSet: Deployments whose selector matches an orphan ReplicaSet."""
        labels = _meta(rs).get("labels") or {}
        out = []
        for d in self.d_informer.list(_meta(rs).get("namespace", "")):
            try:
                sel = selector_from_label_selector(_spec(d).get("selector"))
            except SelectorError:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(d)
        return out

    def _on_replicaset(self, kind: EventType, rs: Obj, old: Obj | None) -> None:
        ns = _meta(rs).get("namespace", "")
        ref = podutil.controller_ref(rs)
        if kind == "DELETED" or _meta(rs).get("deletionTimestamp"):
            d = self._owner(ns, ref)
            if d is not None:
                self.enqueue(d)
            return
        if old is not None:
            if _meta(rs).get("resourceVersion") == _meta(old).get("resourceVersion"):
                return
            old_ref = podutil.controller_ref(old)
            if old_ref != ref:
                prev = self._owner(ns, old_ref)
                if prev is not None:
                    self.enqueue(prev)
        if ref is not None:
            d = self._owner(ns, ref)
            if d is not None:
                self.enqueue(d)
            return
        if old is None or _meta(rs).get("labels") != _meta(old).get("labels") or podutil.controller_ref(old) is not None:
            for d in self._matching_deployments(rs):
                self.enqueue(d)

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        # Only Recreate cares about pods: it waits for the old ones to be gone.
        if kind != "DELETED":
            return
        ns = _meta(pod).get("namespace", "")
        ref = podutil.controller_ref(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(f"{ns}/{ref.get('name')}")
        if rs is None or _meta(rs).get("uid") != ref.get("uid"):
            return
        d = self._owner(ns, podutil.controller_ref(rs))
        if d is not None and not is_rolling_update(d):
            self.enqueue(d)

    # ------------------------------------------------------------------ sync

    async def reconcile(self, key: str) -> None:
        cached = self.d_informer.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        selector_obj = _spec(d).get("selector")
        if selector_obj == {}:
            await self.recorder.event(d, "Warning", "SelectingAll",
                                          "This deployment is selecting all pods. A non-empty selector is required.")
            if int(_status(d).get("observedGeneration") or 0) < int(_meta(d).get("generation") or 0):
                d.setdefault("status", {})["observedGeneration"] = _meta(d)["generation"]
                await self._write_status(d)
            return
        try:
            selector = selector_from_label_selector(selector_obj)
        except SelectorError as e:
            log.warning("deployment %s has an invalid selector: %s", key, e)
            return
        rs_list = await self._claim_replicasets(d, selector)
        if _meta(d).get("deletionTimestamp"):
            await self._sync_status_only(d, rs_list)
            return
        await self._check_paused_conditions(d)
        if _spec(d).get("paused"):
            await self._sync(d, rs_list)
            return
        if await self._is_scaling_event(d, rs_list):
            await self._sync(d, rs_list)
            return
        if is_rolling_update(d):
            await self._rollout_rolling(d, rs_list)
        else:
            await self._rollout_recreate(d, rs_list)

    # -- ownership

    async def _can_adopt(self, d: Obj) -> bool:
        try:
            fresh = await self.client.get(DEPLOYMENTS, _meta(d)["name"], _meta(d)["namespace"])
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return _meta(fresh).get("uid") == _meta(d).get("uid") and not _meta(fresh).get("deletionTimestamp")

    async def _claim_replicasets(self, d: Obj, selector: Selector) -> list[Obj]:
        """ClaimReplicaSets over every ReplicaSet of the namespace; returns deep copies we may mutate."""
        uid = _meta(d)["uid"]
        deleting = bool(_meta(d).get("deletionTimestamp"))
        claimed: list[Obj] = []
        adoptable: bool | None = None
        for rs in self.rs_informer.list(_meta(d)["namespace"]):
            owner = podutil.controller_ref(rs)
            matches = selector.matches(_meta(rs).get("labels") or {})
            if owner is not None:
                if owner.get("uid") != uid:
                    continue
                if matches:
                    claimed.append(copy.deepcopy(rs))
                elif not deleting:
                    await self._patch_rs(rs, podutil.release_patch(rs, uid))
                continue
            if deleting or not matches or _meta(rs).get("deletionTimestamp"):
                continue
            if adoptable is None:
                adoptable = await self._can_adopt(d)
            if adoptable:
                adopted = await self._patch_rs(rs, podutil.adopt_patch(rs, podutil.new_controller_ref(d, "apps/v1", "Deployment")))
                if adopted is not None:
                    claimed.append(adopted)
        return claimed

    async def _patch_rs(self, rs: Obj, patch: Obj) -> Obj | None:
        try:
            out: Obj = await self.client.patch(REPLICASETS, _meta(rs)["name"], patch, _meta(rs)["namespace"],
                                               type="strategic")
            return out
        except ApiError as e:
            if e.not_found:
                return None
            raise

    # -- writes

    async def _write_status(self, d: Obj) -> None:
        """UpdateStatus with the working copy; keep its resourceVersion current for the next write."""
        out = await self.client.update_status(DEPLOYMENTS, d)
        d["metadata"]["resourceVersion"] = _meta(out).get("resourceVersion")

    async def _set_revision(self, d: Obj, rev: str) -> bool:
        """SetDeploymentRevision, written through the main resource (see the module docstring)."""
        annotations = _meta(d).get("annotations") or {}
        if annotations.get(REVISION) == rev:
            return False
        # An update, as the deployment controller writes it (its role grants update, not patch).
        out = await self.client.update(DEPLOYMENTS, {**d, "metadata": {**d["metadata"],
                                                                       "annotations": {**annotations, REVISION: rev}}})
        d["metadata"]["annotations"] = _meta(out).get("annotations") or {}
        d["metadata"]["resourceVersion"] = _meta(out).get("resourceVersion")
        return True

    async def _update_rs(self, rs: Obj) -> None:
        out = await self.client.update(REPLICASETS, rs)
        rs.clear()
        rs.update(out)

    async def _scale_replicaset(self, rs: Obj, new_scale: int, d: Obj, operation: str) -> bool:
        """scaleReplicaSet: set the size and the replicas annotations; an event when the size moves."""
        size_changes = replicas(rs) != new_scale
        desired, most = replicas(d), replicas(d) + max_surge(d)
        if not size_changes and not replicas_annotations_need_update(rs, desired, most):
            return False
        old_scale = replicas(rs)
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = new_scale
        set_replicas_annotations(updated, desired, most)
        await self._update_rs(updated)
        rs.clear()
        rs.update(updated)
        if size_changes:
            await self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                          f"Scaled {operation} replica set {_meta(rs)['name']} from {old_scale} to {new_scale}")
        return size_changes

    async def _scale_and_record(self, rs: Obj, new_scale: int, d: Obj) -> bool:
        if replicas(rs) == new_scale:
            return False
        return await self._scale_replicaset(rs, new_scale, d, "up" if replicas(rs) < new_scale else "down")

    # -- the new ReplicaSet

    async def _all_replicasets(self, d: Obj, rs_list: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision: (new, old), the new one's revision brought up to date."""
        old_rss = find_old_replicasets(d, rs_list)
        return await self._new_replicaset(d, rs_list, old_rss, create), old_rss

    async def _new_replicaset(self, d: Obj, rs_list: list[Obj], old_rss: list[Obj], create: bool) -> Obj | None:
        existing = find_new_replicaset(d, rs_list)
        new_revision = str(max_revision(old_rss) + 1)
        at = timeutil.now()
        if existing is not None:
            updated = copy.deepcopy(existing)
            annotations_changed = set_new_replicaset_annotations(d, updated, new_revision, True)
            min_ready = int(_spec(d).get("minReadySeconds") or 0)
            if annotations_changed or int(_spec(updated).get("minReadySeconds") or 0) != min_ready:
                if min_ready:
                    updated["spec"]["minReadySeconds"] = min_ready
                else:
                    updated["spec"].pop("minReadySeconds", None)
                await self._update_rs(updated)
                existing.clear()
                existing.update(updated)
                return existing
            needs_update = False
            await self._set_revision(d, (_meta(existing).get("annotations") or {}).get(REVISION, ""))
            if has_progress_deadline(d) and get_condition(_status(d), "Progressing") is None:
                set_condition(d.setdefault("status", {}), new_condition(
                    "Progressing", "True", REASON_FOUND_NEW_RS, f'Found new replica set "{_meta(existing)["name"]}"', at))
                needs_update = True
            if needs_update:
                await self._write_status(d)
            return existing
        if not create:
            return None
        rs = new_replicaset(d, old_rss, new_revision)
        already_exists = False
        try:
            created: Obj = await self.client.create(REPLICASETS, rs, _meta(d)["namespace"])
        except ApiError as e:
            if e.already_exists:
                found = self.rs_informer.get(f"{_meta(d)['namespace']}/{_meta(rs)['name']}")
                if found is None:
                    raise
                if (podutil.is_controlled_by(found, d)
                        and podutil.equal_ignore_hash(_spec(d).get("template") or {}, _spec(found).get("template") or {})):
                    created, already_exists = copy.deepcopy(found), True
                else:
                    # A hash collision: bump collisionCount so that the next attempt hashes differently.
                    status = d.setdefault("status", {})
                    status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                    await self._write_status(d)
                    raise
            elif e.namespace_terminating:
                raise
            else:
                msg = f'Failed to create new replica set "{_meta(rs)["name"]}": {e.status.get("message", e)}'
                if has_progress_deadline(d):
                    set_condition(d.setdefault("status", {}),
                                  new_condition("Progressing", "False", REASON_FAILED_RS_CREATE, msg, at))
                    try:
                        await self._write_status(d)
                    except ApiError:
                        pass  # the creation failure is the thing to report
                await self.recorder.event(d, "Warning", REASON_FAILED_RS_CREATE, msg)
                raise
        if not already_exists and replicas(created) > 0:
            await self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                          f"Scaled up replica set {_meta(created)['name']} from 0 to {replicas(created)}")
        await self._set_revision(d, new_revision)
        if not already_exists and has_progress_deadline(d):
            set_condition(d.setdefault("status", {}), new_condition(
                "Progressing", "True", REASON_NEW_RS_CREATED, f'Created new replica set "{_meta(created)["name"]}"', at))
            await self._write_status(d)
        rs_list.append(created)
        return created

    # -- scaling (paused deployments and scaling events)

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        new_rs, old_rss = await self._all_replicasets(d, rs_list, False)
        for rs in active([*old_rss, new_rs]):
            desired = _int_annotation(rs, DESIRED_REPLICAS)
            if desired is not None and desired != replicas(d):
                return True
        return False

    async def _sync(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_replicasets(d, rs_list, False)
        await self._scale(d, new_rs, old_rss)
        if _spec(d).get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        only = find_active_or_latest(new_rs, old_rss)
        if only is not None:
            if replicas(only) != replicas(d):
                await self._scale_and_record(only, replicas(d), d)
            return
        if is_saturated(d, new_rs):
            for rs in active(old_rss):
                await self._scale_and_record(rs, 0, d)
            return
        if is_rolling_update(d):
            sizes, operation = proportional_sizes(d, new_rs, old_rss)
            for rs, size in sizes:
                await self._scale_replicaset(rs, size, d, operation)

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """cleanupDeployment: delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        if not has_revision_history_limit(d):
            return
        alive = [rs for rs in old_rss if not _meta(rs).get("deletionTimestamp")]
        diff = len(alive) - int(_spec(d)["revisionHistoryLimit"])
        for rs in by_revision(alive)[:max(diff, 0)]:
            if (_status_count(rs, "replicas") != 0 or replicas(rs) != 0
                    or int(_meta(rs).get("generation") or 0) > _status_count(rs, "observedGeneration")):
                continue
            try:
                await self.client.delete(REPLICASETS, _meta(rs)["name"], _meta(rs)["namespace"])
            except ApiError as e:
                if not e.not_found:
                    raise

    # -- status

    async def _sync_status_only(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_replicasets(d, rs_list, False)
        await self._sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def _sync_deployment_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        status = calculate_status(all_rss, new_rs, d, timeutil.now())
        if status != _status(d):
            d["status"] = status
            await self._write_status(d)

    async def _check_paused_conditions(self, d: Obj) -> None:
        if not has_progress_deadline(d):
            return
        cond = get_condition(_status(d), "Progressing")
        if cond is not None and cond.get("reason") == REASON_TIMED_OUT:
            return  # a reported lack of progress is not hidden by pausing
        paused_cond = cond is not None and cond.get("reason") == REASON_PAUSED
        paused = bool(_spec(d).get("paused"))
        if paused and not paused_cond:
            new = new_condition("Progressing", "Unknown", REASON_PAUSED, "Deployment is paused", timeutil.now())
        elif not paused and paused_cond:
            new = new_condition("Progressing", "Unknown", REASON_RESUMED, "Deployment is resumed", timeutil.now())
        else:
            return
        set_condition(d.setdefault("status", {}), new)
        await self._write_status(d)

    async def _sync_rollout_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        at = timeutil.now()
        status = rollout_status(all_rss, new_rs, d, at)
        if status == _status(d):
            delay = progress_check_delay(d, status, at)
            if delay == 0:
                self.queue.add_rate_limited(key_of(d))
            elif delay is not None:
                self.queue.add_after(key_of(d), delay)
            return
        d["status"] = status
        await self._write_status(d)

    # -- strategies

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_replicasets(d, rs_list, True)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        # reconcileNewReplicaSet
        if replicas(new_rs) != replicas(d):
            target = replicas(d) if replicas(new_rs) > replicas(d) else new_rs_new_replicas(d, all_rss, new_rs)
            if await self._scale_and_record(new_rs, target, d):
                await self._sync_rollout_status(all_rss, new_rs, d)
                return
        # reconcileOldReplicaSets
        scaled_down = False
        for rs, size in plan_old_scale_down(all_rss, active(old_rss), new_rs, d):
            scaled_down = await self._scale_and_record(rs, size, d) or scaled_down
        if scaled_down:
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if deployment_complete(d, _status(d)):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(all_rss, new_rs, d)

    def _old_pods_running(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        """oldPodsRunning: any old pod not yet finished (terminating ones included)."""
        if total_status(old_rss, "replicas") > 0:
            return True
        selector = selector_from_label_selector(_spec(d).get("selector"))
        for rs in old_rss:
            for pod in self.pod_informer.by_index(podutil.CONTROLLER_UID_INDEX, str(_meta(rs).get("uid"))):
                if _meta(pod).get("namespace") != _meta(d).get("namespace"):
                    continue
                if not selector.matches(_meta(pod).get("labels") or {}):
                    continue
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_replicasets(d, rs_list, False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled_down = False
        for rs in active(old_rss):
            scaled_down = await self._scale_and_record(rs, 0, d) or scaled_down
        if scaled_down or self._old_pods_running(d, new_rs, old_rss):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self._all_replicasets(d, rs_list, True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_and_record(new_rs, replicas(d), d)
        if deployment_complete(d, _status(d)):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(all_rss, new_rs, d)
