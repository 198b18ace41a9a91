"""The disruption controller (kube-controller-manager's pkg/controller/disruption).

It fills in each PodDisruptionBudget's status: how many selected pods are healthy, how many
must stay healthy, and so how many may be disrupted now (``disruptionsAllowed``). The
eviction subresource reads only that status, never the pods: so an eviction is refused
with 429 until this controller has observed the budget's generation, and each granted
eviction is recorded in ``status.disruptedPods`` by the API server, which this controller
keeps counting as unhealthy until the pod's deletion shows up, or for at most two minutes.

How many pods a budget *expects* depends on its form, as in Kubernetes:

- ``minAvailable: N`` (an integer): the selected pods are the expected ones; N must stay healthy.
- ``minAvailable: P%`` or ``maxUnavailable``: the expected count is the sum of the scales of
  the pods' controllers (a ReplicaSet's replicas, or its Deployment's), so that a pod that
  has not been created yet still counts as unavailable. Pods without a controller are left
  out of the count, with a warning event, as since Kubernetes 1.27.

The status computation is a pure function over the budget, its pods and their
controllers' scales (``compute_status``), unit-tested with a fixed clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubelite.api import timeutil
from kubelite.api.labels import Selector, SelectorError, selector_from_label_selector
from kubelite.api.types import EventType, Obj
from kubelite.client import (
    DEPLOYMENTS,
    PODDISRUPTIONBUDGETS,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    ApiError,
    Informer,
)
from kubelite.client.events import EventRecorder
from kubelite.controllers import podutil
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

# DeletionTimeout: a pod the API server granted an eviction is expected to be gone (or
# terminating) within this long; after it, the budget counts it healthy again.
DELETION_TIMEOUT = dt.timedelta(minutes=2)


class SyncError(Exception):
    """The budget's expected count cannot be computed (a pod's controller is missing)."""


@dataclass
class Computed:
    """What one sync decided: the new status, and when to look again."""

    status: Obj
    recheck_at: dt.datetime | None = None
    unmanaged: list[str] = field(default_factory=list)
    not_deleted: list[str] = field(default_factory=list)


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def pdb_selector(pdb: Obj) -> Selector | None:
    """metav1.LabelSelectorAsSelector: a missing selector selects nothing, ``{}`` everything."""
    raw = (pdb.get("spec") or {}).get("selector")
    if raw is None:
        return None
    return selector_from_label_selector(raw)


def selects(pdb: Obj, pod: Obj) -> bool:
    if _meta(pdb).get("namespace") != _meta(pod).get("namespace"):
        return False
    try:
        sel = pdb_selector(pdb)
    except SelectorError:
        return False
    return sel is not None and sel.matches(_meta(pod).get("labels") or {})


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text.endswith("%"):
        raise SyncError("invalid value for IntOrString: invalid type: string is not a percentage")
    pct = int(text[:-1])
    scaled = pct * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def _is_percent(value: Any) -> bool:
    return isinstance(value, str)


def expected_scale(pods: list[Obj], scale_of: Callable[[str, Obj], tuple[str, int] | None]) -> tuple[int, list[str]]:
    """getExpectedScale: the summed scale of the pods' distinct controllers, and the unmanaged pods.

    ``scale_of(namespace, controllerRef)`` answers ``(uid, replicas)`` of the controller that
    finally owns the scale (a Deployment for its ReplicaSets), or None when it is not found.
    """
    seen: dict[str, int] = {}
    unmanaged: list[str] = []
    for pod in pods:
        ref = podutil.controller_ref(pod)
        if ref is None:
            unmanaged.append(_meta(pod).get("name", ""))
            continue
        found = scale_of(_meta(pod).get("namespace", ""), ref)
        if found is None:
            raise SyncError(f'found no controllers for pod "{_meta(pod).get("name", "")}"')
        uid, replicas = found
        seen[uid] = replicas
    return sum(seen.values()), unmanaged


def compute_status(pdb: Obj, pods: list[Obj], scale_of: Callable[[str, Obj], tuple[str, int] | None],
                   now: dt.datetime) -> Computed:
    """trySync: the budget's new status from its pods (already selected) and their controllers."""
    spec = pdb.get("spec") or {}
    old = pdb.get("status") or {}
    max_unavailable = spec.get("maxUnavailable")
    min_available = spec.get("minAvailable")
    unmanaged: list[str] = []
    expected = desired = 0
    if max_unavailable is not None:
        expected, unmanaged = expected_scale(pods, scale_of)
        desired = max(expected - scaled_value(max_unavailable, expected, True), 0)
    elif min_available is not None:
        if _is_percent(min_available):
            expected, unmanaged = expected_scale(pods, scale_of)
            desired = scaled_value(min_available, expected, True)
        else:
            expected = len(pods)
            desired = int(min_available)

    # buildDisruptedPodMap: evictions granted and not yet seen as deletions.
    disrupted: dict[str, str] = {}
    recheck: dt.datetime | None = None
    not_deleted: list[str] = []
    old_disrupted: Mapping[str, str] = old.get("disruptedPods") or {}
    for pod in pods:
        name = _meta(pod).get("name", "")
        if _meta(pod).get("deletionTimestamp") or name not in old_disrupted:
            continue
        at = timeutil.parse_time(old_disrupted[name])
        if at is None:
            continue
        deadline = at + DELETION_TIMEOUT
        if deadline < now:
            not_deleted.append(name)
            continue
        disrupted[name] = old_disrupted[name]
        recheck = deadline if recheck is None or deadline < recheck else recheck

    healthy = sum(1 for p in pods
                  if not _meta(p).get("deletionTimestamp") and _meta(p).get("name") not in disrupted
                  and podutil.is_pod_ready(p))
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    status: Obj = {
        "observedGeneration": int(_meta(pdb).get("generation") or 0),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    status["conditions"] = _conditions(old, allowed, status["observedGeneration"], now)
    return Computed(status, recheck, unmanaged, not_deleted)


def _conditions(old: Obj, allowed: int, generation: int, now: dt.datetime,
                reason: str = "", message: str = "") -> list[Obj]:
    """UpdateDisruptionAllowedCondition: DisruptionAllowed True (SufficientPods) or False."""
    if not reason:
        reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
    value = "True" if allowed > 0 and reason == "SufficientPods" else "False"
    conditions = [dict(c) for c in old.get("conditions") or []]
    current = next((c for c in conditions if c.get("type") == "DisruptionAllowed"), None)
    new = {"type": "DisruptionAllowed", "status": value, "observedGeneration": generation,
           "lastTransitionTime": timeutil.format_time(now), "reason": reason, "message": message}
    if current is not None and current.get("status") == value:
        new["lastTransitionTime"] = current.get("lastTransitionTime") or new["lastTransitionTime"]
    others = [c for c in conditions if c.get("type") != "DisruptionAllowed"]
    return [*others, new]


def failed_status(pdb: Obj, error: str, now: dt.datetime) -> Obj:
    """failSafe: nothing may be disrupted while the budget cannot be computed."""
    old = pdb.get("status") or {}
    generation = int(_meta(pdb).get("generation") or 0)
    status = {k: v for k, v in old.items() if k not in ("conditions", "disruptionsAllowed", "observedGeneration")}
    status.update({"observedGeneration": generation, "disruptionsAllowed": 0})
    status["conditions"] = _conditions(old, 0, generation, now, "SyncFailed", error)
    return status


def _same(old: Obj, new: Obj) -> bool:
    def strip(s: Obj) -> Obj:
        out = dict(s)
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                             for c in s.get("conditions") or []]
        out.setdefault("disruptedPods", {})
        return out
    return strip(old) == strip(new)


class DisruptionController(Controller):
    name = "disruption"
    service_account = "disruption-controller"
    workers = 2

    def __init__(self, ctx: Context, clock: Callable[[], dt.datetime] = timeutil.now) -> None:
        super().__init__(ctx)
        self.recorder = EventRecorder(self.client, "controllermanager")
        self.clock = clock
        self.pdbs = ctx.informer(PODDISRUPTIONBUDGETS)
        self.pods = ctx.informer(PODS)
        self.replicasets = ctx.informer(REPLICASETS)
        self.deployments = ctx.informer(DEPLOYMENTS)
        self.replicationcontrollers = ctx.informer(REPLICATIONCONTROLLERS)
        self.pdbs.add_handler(lambda kind, obj, old: self.enqueue(obj))
        self.pods.add_handler(self._on_pod)

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        # A pod whose labels changed may have left one budget and joined another.
        for p in (pod, old):
            if p is None:
                continue
            for pdb in self.pdbs.list(_meta(p).get("namespace", "")):
                if selects(pdb, p):
                    self.enqueue(pdb)

    def _scale_of(self, namespace: str, ref: Obj) -> tuple[str, int] | None:
        """The finders of disruption.go: ReplicaSet (or its Deployment), Deployment, ReplicationController."""
        api, kind = str(ref.get("apiVersion", "")), ref.get("kind")
        if api == "v1" and kind == "ReplicationController":
            informer: Informer | None = self.replicationcontrollers
        elif not api.startswith("apps/"):
            return None
        else:
            informer = {"ReplicaSet": self.replicasets, "Deployment": self.deployments}.get(str(kind))
        if informer is None:
            return None
        owner = informer.get(f"{namespace}/{ref.get('name')}")
        if owner is None or _meta(owner).get("uid") != ref.get("uid"):
            return None
        if kind == "ReplicaSet":
            parent = podutil.controller_ref(owner)
            if parent is not None and parent.get("kind") == "Deployment":
                found = self._scale_of(namespace, parent)
                if found is not None:
                    return found
        return str(ref.get("uid")), int((owner.get("spec") or {}).get("replicas", 1))

    async def reconcile(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return
        now = self.clock()
        namespace = _meta(pdb).get("namespace", "")
        try:
            sel = pdb_selector(pdb)
            pods = [] if sel is None else [p for p in self.pods.list(namespace)
                                           if sel.matches(_meta(p).get("labels") or {})]
            computed = compute_status(pdb, pods, self._scale_of, now)
        except (SyncError, SelectorError, ValueError) as e:
            log.info("pdb %s: sync failed: %s", key, e)
            await self._write(pdb, failed_status(pdb, str(e), now))
            return
        for name in computed.not_deleted:
            pod = self.pods.get(f"{namespace}/{name}")
            if pod is not None:
                await self.recorder.event(pod, "Warning", "NotDeleted",
                                    f"Pod was expected by PDB {key} to be deleted but it wasn't")
        if computed.unmanaged:
            await self.recorder.event(
                pdb, "Warning", "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. "
                "As a result, the status of the PDB cannot be calculated correctly, which may result in "
                'undefined behavior. To account for these pods please set ".spec.minAvailable" field of '
                "the PDB to an integer value.")
        await self._write(pdb, computed.status)
        if computed.recheck_at is not None:
            delay = (computed.recheck_at - now).total_seconds()
            self.queue.add_after(key, max(delay, 0.0) + 0.001)

    async def _write(self, pdb: Obj, status: Obj) -> None:
        if _same(pdb.get("status") or {}, status):
            return
        new = {**pdb, "status": status}
        try:
            await self.client.update_status(PODDISRUPTIONBUDGETS, new, field_manager="kube-controller-manager")
        except ApiError as e:
            if e.not_found:
                return
            # A conflict means the eviction subresource won the race: the worker retries the
            # key with back-off, and the next sync starts from the newer budget.
            raise
