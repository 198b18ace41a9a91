"""Pure helpers of the workload controllers: pod readiness, controller references, templates.

Kubernetes spreads these over ``pkg/api/v1/pod`` (readiness, availability),
``pkg/controller/controller_utils.go`` (pods from templates, which pod to delete first,
template hashes) and apimachinery (controller references). Here they are one module of
functions over plain dicts with no I/O, shared by the ReplicaSet and Deployment controllers
and unit-tested without a server.

One deliberate difference: Kubernetes hashes a pod template by feeding Go's ``spew`` dump of
the struct to FNV-32a. That dump cannot be reproduced outside Go, so the template is hashed
as canonical JSON (sorted keys) instead. The name shape is the same (``<deploy>-<hash>``,
hash rendered with ``SafeEncodeString``'s alphabet); only the exact characters differ.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import struct
from collections.abc import Iterable
from typing import Any

import orjson

from kubelite.api import timeutil
from kubelite.api.timeutil import ZERO_TIME
from kubelite.api.types import Obj

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
CONTROLLER_UID_INDEX = "workloads/controller-uid"

# rand.SafeEncodeString's alphabet: no vowels (no words) and no look-alikes (0/o, 1/l, 3/e).
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}

def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def creation_time(obj: Obj) -> dt.datetime:
    return timeutil.parse_time(_meta(obj).get("creationTimestamp")) or ZERO_TIME  # Go's zero time sorts before every real time


# ---------------------------------------------------------------------------------- pods


def is_pod_active(pod: Obj) -> bool:
    """controller.IsPodActive: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not _meta(pod).get("deletionTimestamp")


def pod_ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, at: dt.datetime) -> bool:
    """podutil.IsPodAvailable: ready, and for longer than minReadySeconds."""
    c = pod_ready_condition(pod)
    if c is None or c.get("status") != "True":
        return False
    if min_ready_seconds == 0:
        return True
    since = timeutil.parse_time(c.get("lastTransitionTime"))
    return since is not None and since + dt.timedelta(seconds=min_ready_seconds) < at


# ---------------------------------------------------------------------------------- owners


def controller_ref(obj: Obj) -> Obj | None:
    """metav1.GetControllerOf: the ownerReference with ``controller: true``."""
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller") is True:
            return dict(ref)
    return None


def controller_uid_index(obj: Obj) -> list[str]:
    """Index function: the UID of an object's controller (an informer index)."""
    ref = controller_ref(obj)
    return [str(ref["uid"])] if ref and ref.get("uid") else []


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == _meta(owner).get("uid")


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """metav1.NewControllerRef: controller and blockOwnerDeletion both true."""
    meta = _meta(owner)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def adopt_patch(obj: Obj, ref: Obj) -> Obj:
    """The strategic merge patch a controller sends to adopt an orphan (ownerRefControllerPatch)."""
    return {"metadata": {"ownerReferences": [ref], "uid": _meta(obj).get("uid")}}


def release_patch(obj: Obj, owner_uid: str) -> Obj:
    """The strategic merge patch that drops one owner (deleteOwnerRefStrategicMergePatch)."""
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": _meta(obj).get("uid")}}


# ---------------------------------------------------------------------------------- templates


def pods_prefix(controller_name: str) -> str:
    """getPodsPrefix: ``<name>-`` unless that is too long to leave room for the random suffix."""
    prefix = f"{controller_name}-"
    return prefix if len(prefix) <= 58 else controller_name


def pod_from_template(template: Obj, owner: Obj, ref: Obj | None) -> Obj:
    """controller.GetPodFromTemplate: labels, annotations, finalizers and spec from the template."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {"generateName": pods_prefix(_meta(owner)["name"])}
    for key in ("labels", "annotations"):
        if tmeta.get(key):
            meta[key] = dict(tmeta[key])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if ref is not None:
        meta["ownerReferences"] = [ref]
    spec = orjson.loads(orjson.dumps(template.get("spec") or {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def safe_encode_string(s: str) -> str:
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in s.encode())


def _fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def semantic(value: Any) -> Any:
    """A value as Go would see it after decoding into API types: ``null`` fields and empty maps
    or lists are the same as absent ones (apimachinery's Semantic.DeepEqual treats nil and empty
    alike). kubectl re-encodes templates from Go structs (``creationTimestamp: null``...), so a
    template written back by ``kubectl rollout undo`` must still equal the one it came from."""
    if isinstance(value, dict):
        out = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """controller.ComputeHash: FNV-32a of the template (+ collisionCount), safe-encoded."""
    h = _fnv32a(orjson.dumps(semantic(template), option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        # Kubernetes writes the uint32 little-endian into an 8-byte buffer and hashes all 8 bytes.
        h = _fnv32a(struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0", h)
    return safe_encode_string(str(h))


def equal_ignore_hash(t1: Obj, t2: Obj) -> bool:
    """deploymentutil.EqualIgnoreHash: templates semantically equal but for the pod-template-hash label."""

    def strip(t: Obj) -> Any:
        t = semantic(t)
        labels = (t.get("metadata") or {}).get("labels") or {}
        if POD_TEMPLATE_HASH_LABEL in labels:
            del labels[POD_TEMPLATE_HASH_LABEL]
        return semantic(t)

    return bool(strip(t1) == strip(t2))


# ---------------------------------------------------------------------------------- scale-down order


def _deletion_cost(pod: Obj) -> int:
    raw = (_meta(pod).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        cost = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return cost if -(2**31) <= cost < 2**31 else 0


def _ready_time(pod: Obj) -> dt.datetime | None:
    c = pod_ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return timeutil.parse_time(c.get("lastTransitionTime"))


def _max_restarts(pod: Obj) -> int:
    return max((int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or []),
               default=0)


def _after_or_zero(t1: dt.datetime | None, t2: dt.datetime | None) -> bool:
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _log_rank_diff(t1: dt.datetime, t2: dt.datetime, at: dt.datetime) -> int:
    """logarithmicRankDiff: compare ages on a log2 scale of nanoseconds (LogarithmicScaleDown)."""

    def rank(t: dt.datetime) -> int:
        ns = (at - t) // dt.timedelta(microseconds=1) * 1000
        return int(math.log2(ns)) if ns > 0 else -1

    return rank(t1) - rank(t2)


def _delete_first(a: Obj, b: Obj, rank_a: int, rank_b: int, at: dt.datetime) -> bool:
    """ActivePodsWithRanks.Less: whether ``a`` is a better pod to delete than ``b``."""
    node_a, node_b = (a.get("spec") or {}).get("nodeName") or "", (b.get("spec") or {}).get("nodeName") or ""
    if node_a != node_b and (not node_a or not node_b):
        return not node_a
    phase_a = _PHASE_ORDINAL.get((a.get("status") or {}).get("phase") or "", 0)
    phase_b = _PHASE_ORDINAL.get((b.get("status") or {}).get("phase") or "", 0)
    if phase_a != phase_b:
        return phase_a < phase_b
    ready_a, ready_b = is_pod_ready(a), is_pod_ready(b)
    if ready_a != ready_b:
        return not ready_a
    cost_a, cost_b = _deletion_cost(a), _deletion_cost(b)
    if cost_a != cost_b:
        return cost_a < cost_b
    if rank_a != rank_b:
        return rank_a > rank_b
    uid_a, uid_b = str(_meta(a).get("uid", "")), str(_meta(b).get("uid", ""))
    if ready_a and ready_b:
        ta, tb = _ready_time(a), _ready_time(b)
        if ta != tb:
            if ta is None or tb is None:
                return _after_or_zero(ta, tb)
            diff = _log_rank_diff(ta, tb, at)
            return uid_a < uid_b if diff == 0 else diff < 0
    restarts_a, restarts_b = _max_restarts(a), _max_restarts(b)
    if restarts_a != restarts_b:
        return restarts_a > restarts_b
    ca, cb = timeutil.parse_time(_meta(a).get("creationTimestamp")), timeutil.parse_time(_meta(b).get("creationTimestamp"))
    if ca != cb:
        if ca is None or cb is None:
            return _after_or_zero(ca, cb)
        diff = _log_rank_diff(ca, cb, at)
        return uid_a < uid_b if diff == 0 else diff < 0
    return False


def pods_to_delete(pods: list[Obj], related: Iterable[Obj], count: int, at: dt.datetime) -> list[Obj]:
    """getPodsToDelete: the ``count`` pods a ReplicaSet should delete first.

    A pod's rank is how many active related pods (of this ReplicaSet and of its siblings under
    the same Deployment) share its node: doubled-up nodes are thinned out first.
    """
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)) for p in pods]

    def cmp(x: tuple[Obj, int], y: tuple[Obj, int]) -> int:
        if _delete_first(x[0], y[0], x[1], y[1], at):
            return -1
        if _delete_first(y[0], x[0], y[1], x[1], at):
            return 1
        return 0

    ranked.sort(key=functools.cmp_to_key(cmp))
    return [p for p, _ in ranked[:count]]
