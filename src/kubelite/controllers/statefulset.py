"""The StatefulSet controller (kube-controller-manager's pkg/controller/statefulset).

A StatefulSet's pods have identities: ``<set>-<ordinal>`` as name and hostname, the governing
Service as subdomain, and one PersistentVolumeClaim per claim template and ordinal
(``<template>-<set>-<ordinal>``) created before the pod and kept after it. The decisions of
one sync (which pod to create, delete or wait for) are a pure function, :func:`plan`, over
the pods by ordinal and the current/update revisions, so that ordering rules are tested
without a server:

- OrderedReady: ordinals are created one at a time in increasing order, each Running and
  Ready (and available for minReadySeconds) before the next; surplus ordinals go from the
  highest down, each only once every other pod is healthy. Parallel: all at once.
- RollingUpdate: pods whose revision is not the update revision are deleted from the highest
  ordinal down to ``partition`` and recreated from the update revision; one at a time, or up
  to ``maxUnavailable`` unavailable pods when that field is set (the MaxUnavailableStatefulSet
  gate, alpha in 1.33, honoured here whenever the field is present). OnDelete: only deleted
  pods are recreated, from the update revision.

Templates are recorded as ControllerRevisions (:mod:`kubelite.controllers.history`). Unlike
ReplicaSets no expectations are needed: pod names are fixed, so a creation the cache has not
seen yet fails with AlreadyExists instead of doubling the pod.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Literal

from kubelite.api import timeutil
from kubelite.api.labels import Selector, SelectorError, selector_from_label_selector
from kubelite.api.types import EventType, Obj
from kubelite.client import (
    CONTROLLERREVISIONS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    STATEFULSETS,
    ApiError,
    key_of,
)
from kubelite.client.events import EventRecorder
from kubelite.controllers import history, podutil
from kubelite.controllers.base import Context, Controller, update_by_merge

log = logging.getLogger(__name__)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")

ActionKind = Literal["create", "delete"]


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


# ---------------------------------------------------------------------------------- identity


def parent_and_ordinal(pod: Obj) -> tuple[str, int]:
    """getParentNameAndOrdinal: ``web-2`` is ordinal 2 of ``web`` (-1 when the name has none)."""
    m = _ORDINAL.match(str(_meta(pod).get("name", "")))
    if m is None:
        return "", -1
    return m.group(1), int(m.group(2))


def start_ordinal(sts: Obj) -> int:
    return int((_spec(sts).get("ordinals") or {}).get("start") or 0)


def replicas_of(sts: Obj) -> int:
    return int(_spec(sts).get("replicas", 1))


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{_meta(sts)['name']}-{ordinal}"


def claim_name(template_name: str, sts: Obj, ordinal: int) -> str:
    """getPersistentVolumeClaimName: ``<template>-<set>-<ordinal>``."""
    return f"{template_name}-{pod_name(sts, ordinal)}"


def claims_for(sts: Obj, ordinal: int) -> list[Obj]:
    """getPersistentVolumeClaims: one claim per template, labelled with the selector's matchLabels."""
    out = []
    match_labels = (_spec(sts).get("selector") or {}).get("matchLabels") or {}
    for template in _spec(sts).get("volumeClaimTemplates") or []:
        claim = copy.deepcopy(template)
        claim.pop("status", None)
        meta = claim.setdefault("metadata", {})
        meta.pop("creationTimestamp", None)
        meta["name"] = claim_name(str(_meta(template).get("name", "")), sts, ordinal)
        meta["namespace"] = _meta(sts).get("namespace", "")
        meta["labels"] = {**(meta.get("labels") or {}), **match_labels}
        claim["apiVersion"], claim["kind"] = "v1", "PersistentVolumeClaim"
        out.append(claim)
    return out


def new_pod(sts: Obj, template: Obj, ordinal: int, revision: str) -> Obj:
    """newVersionedStatefulSetPod: the template with the ordinal's identity and storage."""
    name = pod_name(sts, ordinal)
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[history.REVISION_LABEL] = revision
    # GetPodFromTemplate sets generateName too, and it stays beside the fixed name.
    meta: Obj = {"name": name, "generateName": podutil.pods_prefix(str(_meta(sts)["name"])),
                 "namespace": _meta(sts).get("namespace", ""), "labels": labels,
                 "ownerReferences": [podutil.new_controller_ref(sts, "apps/v1", "StatefulSet")]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["hostname"] = name
    service = _spec(sts).get("serviceName")
    if service:
        spec["subdomain"] = service
    # updateStorage: each claim template becomes a PVC volume, replacing a template volume of that name.
    claims = {str(_meta(t).get("name", "")): claim_name(str(_meta(t).get("name", "")), sts, ordinal)
              for t in _spec(sts).get("volumeClaimTemplates") or []}
    if claims:
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": t, "persistentVolumeClaim": {"claimName": c}} for t, c in claims.items()]
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def pod_revision(pod: Obj) -> str:
    return str((_meta(pod).get("labels") or {}).get(history.REVISION_LABEL, ""))


# ---------------------------------------------------------------------------------- health


def is_created(pod: Obj) -> bool:
    return bool((pod.get("status") or {}).get("phase"))


def is_terminating(pod: Obj) -> bool:
    return bool(_meta(pod).get("deletionTimestamp"))


def is_failed_or_succeeded(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and podutil.is_pod_ready(pod)


def is_running_and_available(pod: Obj, min_ready: int, now: dt.datetime) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and podutil.is_pod_available(pod, min_ready, now)


def is_healthy(pod: Obj, min_ready: int, now: dt.datetime) -> bool:
    """isHealthy as the update loop uses it: running, available and not terminating."""
    return is_running_and_available(pod, min_ready, now) and not is_terminating(pod)


# ---------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    ordinal: int
    revision: str = ""  # the revision a created pod gets


def _creation_revision(sts: Obj, ordinal: int, current: str, update: str, current_replicas: int) -> str:
    """newVersionedStatefulSetPod's choice: ordinals below the partition (or, with no partition,
    the current pods during a rollout) stay at the current revision."""
    strategy = _spec(sts).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        index = ordinal - start_ordinal(sts)
        rolling = strategy.get("rollingUpdate")
        if rolling is None and index < current_replicas:
            return current
        if rolling is not None and index < int(rolling.get("partition") or 0):
            return current
    return update


def plan(sts: Obj, pods: dict[int, Obj], current: str, update: str, now: dt.datetime,
         current_replicas: int = 0) -> list[Action]:
    """The creations and deletions one sync performs, in order (the rest waits for a later sync)."""
    spec = _spec(sts)
    monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    min_ready = int(spec.get("minReadySeconds") or 0)
    start, count = start_ordinal(sts), replicas_of(sts)
    wanted = range(start, start + count)
    condemned = sorted((o for o in pods if o not in wanted), reverse=True)
    actions: list[Action] = []

    def unhealthy(pod: Obj) -> bool:
        return not is_running_and_ready(pod) or is_terminating(pod)

    first_unhealthy = next((o for o in [*wanted, *condemned] if o in pods and unhealthy(pods[o])), None)
    for ordinal in wanted:
        pod = pods.get(ordinal)
        if pod is not None and is_failed_or_succeeded(pod) and not is_terminating(pod):
            # A finished pod is replaced: deleted now, recreated by the next sync.
            actions.append(Action("delete", ordinal))
            if monotonic:
                return actions
            continue
        if pod is None:
            actions.append(Action("create", ordinal,
                                  _creation_revision(sts, ordinal, current, update, current_replicas)))
            if monotonic:
                return actions
            continue
        if is_terminating(pod) or not is_running_and_available(pod, min_ready, now):
            if monotonic:
                return actions
    for ordinal in condemned:
        pod = pods[ordinal]
        if is_terminating(pod):
            if monotonic:
                return actions
            continue
        if monotonic and unhealthy(pod) and ordinal != first_unhealthy:
            return actions
        actions.append(Action("delete", ordinal))
        if monotonic:
            return actions
    if any(a.kind == "create" for a in actions) or any(o not in pods for o in wanted):
        return actions
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return actions
    rolling = strategy.get("rollingUpdate") or {}
    partition = int(rolling.get("partition") or 0)
    lowest = start + min(partition, count)
    targets = [o for o in reversed(wanted) if o >= lowest]
    max_unavailable = rolling.get("maxUnavailable")
    if max_unavailable is None:
        for ordinal in targets:
            pod = pods[ordinal]
            if pod_revision(pod) != update and not is_terminating(pod):
                actions.append(Action("delete", ordinal))
                return actions
            if not is_healthy(pod, min_ready, now):
                return actions
        return actions
    budget = _scaled_value(max_unavailable, count)
    unavailable = sum(1 for o in wanted if not is_healthy(pods[o], min_ready, now))
    for ordinal in targets:
        if unavailable >= budget:
            break
        pod = pods[ordinal]
        if pod_revision(pod) != update and not is_terminating(pod) and is_healthy(pod, min_ready, now):
            actions.append(Action("delete", ordinal))
            unavailable += 1
    return actions


def _scaled_value(value: int | str, total: int) -> int:
    """GetScaledValueFromIntOrPercent, rounding down, at least 1 (getStatefulSetMaxUnavailable)."""
    is_percent = isinstance(value, str) and value.endswith("%")
    scaled = int(str(value)[:-1]) * total // 100 if is_percent else int(value)
    return max(scaled, 1)


def compute_status(sts: Obj, pods: list[Obj], current: str, update: str, collision_count: int,
                   now: dt.datetime) -> Obj:
    """updateStatefulSetStatus' counts, with completeRollingUpdate's hand-over of revisions."""
    min_ready = int(_spec(sts).get("minReadySeconds") or 0)
    replicas = ready = available = cur = upd = 0
    for pod in pods:
        if is_created(pod):
            replicas += 1
        if is_running_and_ready(pod):
            ready += 1
            if is_running_and_available(pod, min_ready, now):
                available += 1
        if is_created(pod) and not is_terminating(pod):
            revision = pod_revision(pod)
            cur += revision == current
            upd += revision == update
    strategy = (_spec(sts).get("updateStrategy") or {}).get("type", "RollingUpdate")
    wanted = replicas_of(sts)
    if strategy == "RollingUpdate" and upd == wanted and ready == wanted and replicas == wanted:
        cur, current = upd, update
    status: Obj = {"replicas": replicas}
    generation = _meta(sts).get("generation")
    if generation:
        status = {"observedGeneration": generation, **status}
    for key, value in (("readyReplicas", ready), ("currentReplicas", cur), ("updatedReplicas", upd)):
        if value:
            status[key] = value
    if current:
        status["currentRevision"] = current
    if update:
        status["updateRevision"] = update
    status["collisionCount"] = collision_count
    status["availableReplicas"] = available
    return status


def claim_owner_refs(sts: Obj, pod: Obj, claim: Obj) -> list[Obj] | None:
    """updateClaimOwnerRefForSetAndPod: the claim's ownerReferences under the retention policy,
    or None when they are already right. whenDeleted=Delete makes the set an owner (the claim
    goes with the set); whenScaled=Delete makes a scaled-down pod the owner (the claim goes
    with the pod)."""
    policy = _spec(sts).get("persistentVolumeClaimRetentionPolicy") or {}
    when_deleted, when_scaled = policy.get("whenDeleted", "Retain"), policy.get("whenScaled", "Retain")
    _, ordinal = parent_and_ordinal(pod)
    start = start_ordinal(sts)
    scaled_down = not (start <= ordinal < start + replicas_of(sts))
    set_uid, pod_uid = _meta(sts).get("uid"), _meta(pod).get("uid")
    refs = [dict(r) for r in _meta(claim).get("ownerReferences") or []]
    kept = [r for r in refs if r.get("uid") not in (set_uid, pod_uid)]
    want_set = when_deleted == "Delete" and not (when_scaled == "Delete" and scaled_down)
    want_pod = when_scaled == "Delete" and scaled_down
    if want_set:
        kept.append(podutil.new_controller_ref(sts, "apps/v1", "StatefulSet"))
    if want_pod and pod_uid:
        kept.append({"apiVersion": "v1", "kind": "Pod", "name": _meta(pod).get("name"), "uid": pod_uid})
    has_set = any(r.get("uid") == set_uid for r in refs)
    has_pod = any(r.get("uid") == pod_uid for r in refs)
    if has_set == want_set and has_pod == (want_pod and bool(pod_uid)):
        return None
    return kept


# ---------------------------------------------------------------------------------- controller


class StatefulSetController(Controller):
    name = "statefulset"
    service_account = "statefulset-controller"
    workers = 5
    event_source = "statefulset-controller"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.recorder = EventRecorder(self.client, self.event_source)
        self.sts_informer = ctx.informer(STATEFULSETS)
        self.pod_informer = ctx.informer(PODS, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.rev_informer = ctx.informer(CONTROLLERREVISIONS,
                                         indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.pvc_informer = ctx.informer(PERSISTENTVOLUMECLAIMS)
        self.sts_informer.add_handler(self._on_sts)
        self.pod_informer.add_handler(self._on_pod)
        self.rev_informer.add_handler(self._on_owned)

    def _on_sts(self, kind: EventType, sts: Obj, old: Obj | None) -> None:
        self.enqueue(sts)

    def _owner_key(self, obj: Obj) -> str | None:
        ref = podutil.controller_ref(obj)
        if ref is None or ref.get("kind") != "StatefulSet" or not str(ref.get("apiVersion", "")).startswith("apps/"):
            return None
        return f"{_meta(obj).get('namespace', '')}/{ref.get('name')}"

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.queue.add(key)
            sts = self.sts_informer.get(key)
            min_ready = int(_spec(sts or {}).get("minReadySeconds") or 0)
            if min_ready and old is not None and not podutil.is_pod_ready(old) and podutil.is_pod_ready(pod):
                self.queue.add_after(key, float(min_ready) + 1.0)
            return
        if kind != "DELETED" and podutil.controller_ref(pod) is None:
            # An orphan may be adopted by a set whose selector matches it.
            for sts in self._matching_sets(pod):
                self.enqueue(sts)

    def _on_owned(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _matching_sets(self, pod: Obj) -> list[Obj]:
        out = []
        parent, _ = parent_and_ordinal(pod)
        for sts in self.sts_informer.list(_meta(pod).get("namespace", "")):
            if _meta(sts).get("name") != parent:
                continue
            try:
                sel = selector_from_label_selector(_spec(sts).get("selector"))
            except SelectorError:
                continue
            if not sel.empty and sel.matches(_meta(pod).get("labels") or {}):
                out.append(sts)
        return out

    # ------------------------------------------------------------------ sync

    async def reconcile(self, key: str) -> None:
        cached = self.sts_informer.get(key)
        if cached is None:
            return
        sts = copy.deepcopy(cached)
        try:
            selector = selector_from_label_selector(_spec(sts).get("selector"))
        except SelectorError as e:
            log.warning("StatefulSet %s has an invalid selector: %s", key, e)
            return
        if selector.empty:
            return
        uid = _meta(sts)["uid"]
        ns = _meta(sts)["namespace"]
        owned = [p for p in self.pod_informer.by_index(podutil.CONTROLLER_UID_INDEX, uid)
                 if _meta(p).get("namespace") == ns]
        pods = await self._claim_orphans(sts, selector, owned)
        revisions = [r for r in self.rev_informer.by_index(podutil.CONTROLLER_UID_INDEX, uid)
                     if _meta(r).get("namespace") == ns]
        if _meta(sts).get("deletionTimestamp"):
            return
        current_rev, update_rev, collision_count = await self._revisions(sts, revisions)
        current_name = _meta(current_rev)["name"]
        update_name = _meta(update_rev)["name"]
        by_ordinal: dict[int, Obj] = {}
        for p in pods:
            parent, ordinal = parent_and_ordinal(p)
            if parent == _meta(sts)["name"] and ordinal >= 0:
                by_ordinal[ordinal] = p
        now = timeutil.now()
        prior_current = int((sts.get("status") or {}).get("currentReplicas") or 0)
        actions = plan(sts, by_ordinal, current_name, update_name, now, prior_current)
        templates = {current_name: history.template_of(current_rev), update_name: history.template_of(update_rev)}
        error: Exception | None = None
        creations = [a for a in actions if a.kind == "create"]
        deletions = [a for a in actions if a.kind == "delete"]
        for ordinal, p in by_ordinal.items():
            if (p.get("status") or {}).get("phase") == "Pending" and not is_terminating(p):
                # createMissingPersistentVolumeClaims: a claim deleted under a pending pod comes back.
                await self._create_claims(sts, ordinal, _meta(p)["name"])
        results = await asyncio.gather(
            *(self._create_replica(sts, a.ordinal, templates.get(a.revision) or templates[update_name], a.revision)
              for a in creations),
            *(self._delete_replica(sts, by_ordinal[a.ordinal]) for a in deletions),
            return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                error = error or r
        await self._update_claim_owners(sts, list(by_ordinal.values()))
        status = compute_status(sts, list(by_ordinal.values()), current_name, update_name, collision_count, now)
        await self._update_status(sts, status)
        await self._truncate_history(sts, revisions, list(by_ordinal.values()), {current_name, update_name,
                                                                                  str(status.get("currentRevision"))})
        min_ready = int(_spec(sts).get("minReadySeconds") or 0)
        if min_ready and status.get("availableReplicas", 0) != status.get("readyReplicas", 0):
            self.queue.add_after(key, float(min_ready))
        if error is not None:
            raise error

    async def _claim_orphans(self, sts: Obj, selector: Selector, owned: list[Obj]) -> list[Obj]:
        """ClaimPods for the common case: adopt orphans named and labelled as this set's pods."""
        out = list(owned)
        ns = _meta(sts)["namespace"]
        name = _meta(sts)["name"]
        ref = podutil.new_controller_ref(sts, "apps/v1", "StatefulSet")
        for pod in self.pod_informer.list(ns):
            if podutil.controller_ref(pod) is not None or is_terminating(pod):
                continue
            parent, _ = parent_and_ordinal(pod)
            if parent != name or not selector.matches(_meta(pod).get("labels") or {}):
                continue
            try:
                adopted = await self.client.patch(PODS, _meta(pod)["name"], podutil.adopt_patch(pod, ref), ns,
                                                  type="strategic")
            except ApiError as e:
                if e.not_found:
                    continue
                raise
            out.append(adopted)
        return out

    async def _revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """getStatefulSetRevisions: the current and update revisions, creating the latter if new."""
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        revisions = history.sort_revisions(revisions)
        wanted = history.new_revision(sts, "apps/v1", "StatefulSet", history.next_revision(revisions), collision_count)
        equal = history.find_equal(revisions, wanted)
        update: Obj
        if equal and equal[-1] is revisions[-1]:
            update = equal[-1]
        elif equal:
            # A rollback: the old revision becomes the newest by taking the next number.
            update = await self.client.patch(CONTROLLERREVISIONS, _meta(equal[-1])["name"],
                                              {"revision": wanted["revision"]}, _meta(sts)["namespace"],
                                              type="merge")
        else:
            update, collision_count = await self._create_revision(sts, wanted, collision_count)
        current_name = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if _meta(r).get("name") == current_name), update)
        return current, update, collision_count

    async def _create_revision(self, sts: Obj, wanted: Obj, collision_count: int) -> tuple[Obj, int]:
        """CreateControllerRevision: on a name clash with a different revision, bump collisionCount."""
        ns = _meta(sts)["namespace"]
        for _ in range(10):
            try:
                created: Obj = await self.client.create(CONTROLLERREVISIONS, wanted, ns)
                return created, collision_count
            except ApiError as e:
                if not e.already_exists:
                    raise
                existing: Obj = await self.client.get(CONTROLLERREVISIONS, _meta(wanted)["name"], ns)
                if history.equal_revision(existing, wanted) and podutil.is_controlled_by(existing, sts):
                    return existing, collision_count
                collision_count += 1
                wanted = history.new_revision(sts, "apps/v1", "StatefulSet", int(wanted["revision"]),
                                              collision_count)
        raise RuntimeError(f"no free ControllerRevision name for StatefulSet {_meta(sts)['name']}")

    async def _create_replica(self, sts: Obj, ordinal: int, template: Obj, revision: str) -> None:
        ns, set_name = _meta(sts)["namespace"], _meta(sts)["name"]
        pod = new_pod(sts, template, ordinal, revision)
        await self._create_claims(sts, ordinal, _meta(pod)["name"])
        try:
            await self.client.create(PODS, pod, ns)
        except ApiError as e:
            if e.already_exists:
                return  # the cache had not seen it yet
            await self.recorder.event(sts, "Warning", "FailedCreate",
                                      f"create Pod {_meta(pod)['name']} in StatefulSet {set_name} failed error: "
                                      f"{e.status.get('message', e)}")
            raise
        await self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                  f"create Pod {_meta(pod)['name']} in StatefulSet {set_name} successful")

    async def _create_claims(self, sts: Obj, ordinal: int, pod_name_: str) -> None:
        """createPersistentVolumeClaims: the ordinal's claims that do not exist yet."""
        ns, set_name = _meta(sts)["namespace"], _meta(sts)["name"]
        for claim in claims_for(sts, ordinal):
            existing = self.pvc_informer.get(f"{ns}/{_meta(claim)['name']}")
            if existing is not None:
                if _meta(existing).get("deletionTimestamp"):
                    raise RuntimeError(f"pvc {_meta(claim)['name']} is being deleted")
                continue
            try:
                await self.client.create(PERSISTENTVOLUMECLAIMS, claim, ns)
            except ApiError as e:
                if e.already_exists:
                    continue
                await self.recorder.event(sts, "Warning", "FailedCreate",
                                          f"create Claim {_meta(claim)['name']} for Pod {pod_name_} in "
                                          f"StatefulSet {set_name} failed error: {e.status.get('message', e)}")
                raise
            await self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                      f"create Claim {_meta(claim)['name']} Pod {pod_name_} in "
                                      f"StatefulSet {set_name} success")

    async def _delete_replica(self, sts: Obj, pod: Obj) -> None:
        name, set_name = _meta(pod)["name"], _meta(sts)["name"]
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Failed":
            await self.recorder.event(sts, "Warning", "RecreatingFailedPod",
                                      f"StatefulSet {_meta(sts)['namespace']}/{set_name} is recreating failed Pod {name}")
        elif phase == "Succeeded":
            await self.recorder.event(sts, "Normal", "RecreatingTerminatedPod",
                                      f"StatefulSet {_meta(sts)['namespace']}/{set_name} is recreating terminated Pod "
                                      f"{name}")
        # Scaling down with whenScaled=Delete: the claim must name the pod as owner before the
        # pod goes, so that the garbage collector takes the claim with it.
        await self._update_claim_owners(sts, [pod], condemned_only=True)
        try:
            await self.client.delete(PODS, name, _meta(pod)["namespace"],
                                     preconditions={"uid": str(_meta(pod).get("uid", ""))})
        except ApiError as e:
            if e.not_found or e.conflict:
                return
            await self.recorder.event(sts, "Warning", "FailedDelete",
                                      f"delete Pod {name} in StatefulSet {set_name} failed error: "
                                      f"{e.status.get('message', e)}")
            raise
        await self.recorder.event(sts, "Normal", "SuccessfulDelete",
                                  f"delete Pod {name} in StatefulSet {set_name} successful")

    async def _update_claim_owners(self, sts: Obj, pods: list[Obj], condemned_only: bool = False) -> None:
        policy = _spec(sts).get("persistentVolumeClaimRetentionPolicy") or {}
        if not _spec(sts).get("volumeClaimTemplates"):
            return
        if policy.get("whenDeleted", "Retain") == "Retain" and policy.get("whenScaled", "Retain") == "Retain" \
                and condemned_only:
            return
        ns = _meta(sts)["namespace"]
        for pod in pods:
            _, ordinal = parent_and_ordinal(pod)
            for claim in claims_for(sts, ordinal):
                existing = self.pvc_informer.get(f"{ns}/{_meta(claim)['name']}")
                if existing is None:
                    continue
                refs = claim_owner_refs(sts, pod, existing)
                if refs is None:
                    continue
                try:
                    await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, _meta(existing)["name"],
                                          {"metadata": {"ownerReferences": refs,
                                                        "resourceVersion": _meta(existing).get("resourceVersion")}},
                                          ns)
                except ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
                    self.queue.add_after(key_of(sts), 1.0)

    async def _update_status(self, sts: Obj, status: Obj) -> None:
        for attempt in range(2):
            if (sts.get("status") or {}) == status:
                return
            try:
                await self.client.update_status(STATEFULSETS, {**sts, "status": status})
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict or attempt == 1:
                    raise
                sts = await self.client.get(STATEFULSETS, _meta(sts)["name"], _meta(sts)["namespace"])
                generation = _meta(sts).get("generation")
                if generation and "observedGeneration" in status:
                    # The set changed under us: its next sync reports the new generation.
                    self.queue.add(key_of(sts))
                    return

    async def _truncate_history(self, sts: Obj, revisions: list[Obj], pods: list[Obj], live: set[str]) -> None:
        live |= {pod_revision(p) for p in pods}
        limit = int(_spec(sts).get("revisionHistoryLimit", 10))
        for revision in history.revisions_to_drop(revisions, live, limit):
            try:
                await self.client.delete(CONTROLLERREVISIONS, _meta(revision)["name"], _meta(revision)["namespace"])
            except ApiError as e:
                if not e.not_found:
                    raise
