"""The ReplicaSet controller (kube-controller-manager's pkg/controller/replicaset).

It keeps ``spec.replicas`` active pods matching a ReplicaSet's selector: it creates pods from
the template, deletes the surplus in Kubernetes' order of preference, adopts orphans that
match, releases pods that stopped matching, and reports counts in the status.

The informer cache always lags the API: right after creating three pods a reconcile still
sees none and would create three more. Kubernetes prevents that with *expectations*, and so
does this controller: before writing, it records how many creations and which deletions it
expects to see; pod events from the informer count them down; a ReplicaSet whose
expectations are pending is not scaled again (its status is still updated). Expectations
expire after five minutes so that a lost event cannot wedge a ReplicaSet forever.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from kubelite.api import timeutil
from kubelite.api.labels import Selector, SelectorError, selector_from_label_selector, selector_from_map
from kubelite.api.types import EventType, Obj
from kubelite.client import PODS, REPLICASETS, ApiError, ResourceType, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers import podutil
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.podcontrol import PodControl

log = logging.getLogger(__name__)

BURST_REPLICAS = 500  # most pods created or deleted by one sync (the controller-manager's default)
EXPECTATIONS_TIMEOUT = 300.0  # controller.ExpectationsTimeout


@dataclass
class _Expectation:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    stamp: float = field(default_factory=time.monotonic)


class Expectations:
    """UIDTrackingControllerExpectations: pending creations (a count) and deletions (pod keys) per owner."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._by_key: dict[str, _Expectation] = {}
        self._timeout = timeout

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True
        if e.adds <= 0 and not e.deletes:
            return True
        return time.monotonic() - e.stamp > self._timeout

    def expect_creations(self, key: str, count: int) -> None:
        self._by_key[key] = _Expectation(adds=count)

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._by_key[key] = _Expectation(deletes=set(pod_keys))

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.deletes.discard(pod_key)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _group(api_version: str) -> str:
    """The group of an apiVersion ("" for core's "v1")."""
    return api_version.rpartition("/")[0]


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 1))


def calculate_status(rs: Obj, pods: list[Obj], manage_error: Exception | None, at: dt.datetime) -> Obj:
    """calculateStatus: counts over the ReplicaSet's active pods; a ReplicaFailure condition on errors.

    Fields Kubernetes marks ``omitempty`` are left out when zero, as the API would serve them.
    """
    spec = rs.get("spec") or {}
    template_labels = selector_from_map(((spec.get("template") or {}).get("metadata") or {}).get("labels"))
    min_ready = int(spec.get("minReadySeconds") or 0)
    counts = {
        "fullyLabeledReplicas": sum(1 for p in pods if template_labels.matches(_meta(p).get("labels") or {})),
        "readyReplicas": sum(1 for p in pods if podutil.is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if podutil.is_pod_available(p, min_ready, at)),
    }
    status: Obj = {"replicas": len(pods)}
    status.update({k: v for k, v in counts.items() if v})
    conditions = [dict(c) for c in (rs.get("status") or {}).get("conditions") or []]
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        reason = "FailedCreate" if len(pods) < _replicas(rs) else "FailedDelete"
        conditions.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": timeutil.format_time(at),
                           "reason": reason, "message": str(manage_error)})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    if conditions:
        status["conditions"] = conditions
    return status


class ReplicaSetController(Controller):
    """The ReplicaSet controller, written over the kind it manages.

    Kubernetes' ReplicationManager *is* this controller, given the v1 ReplicationController
    kind and an adapter from RC to RS (pkg/controller/replication): the class attributes below
    and :meth:`label_selector` are that adapter's seams (see kubelite.controllers.replication).
    """

    name = "replicaset"
    service_account = "replicaset-controller"
    workers = 5
    resource: ResourceType = REPLICASETS
    # Kubernetes names the source of these events after the controller, not the process.
    event_source = "replicaset-controller"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.owner_api_version, self.owner_kind = self.resource.api_version, self.resource.kind
        self.recorder = EventRecorder(self.client, self.event_source)
        self.pod_control = PodControl(self.client, self.recorder)
        self.expectations = Expectations()
        self.rs_informer = ctx.informer(self.resource, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.pod_informer = ctx.informer(PODS)
        self.rs_informer.add_handler(self._on_replicaset)
        self.pod_informer.add_handler(self._on_pod)

    def label_selector(self, rs: Obj) -> Obj | None:
        """The managed object's selector as a metav1.LabelSelector (a ReplicaSet's is one)."""
        selector: Obj | None = (rs.get("spec") or {}).get("selector")
        return selector

    # ------------------------------------------------------------------ event handlers

    def _on_replicaset(self, kind: EventType, rs: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(rs))
        self.enqueue(rs)

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        """The ReplicaSet a controller reference points at, if it is this very one (same UID)."""
        if not ref or ref.get("kind") != self.owner_kind or _group(str(ref.get("apiVersion", ""))) != self.resource.group:
            return None
        rs = self.rs_informer.get(f"{namespace}/{ref.get('name')}")
        if rs is None or _meta(rs).get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_replicasets(self, pod: Obj) -> list[Obj]:
        """GetPodReplicaSets: every ReplicaSet whose (non-empty) selector matches an orphan's labels."""
        labels = _meta(pod).get("labels") or {}
        out = []
        for rs in self.rs_informer.list(_meta(pod).get("namespace", "")):
            try:
                sel = selector_from_label_selector(self.label_selector(rs))
            except SelectorError:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(rs)
        return out

    def _pod_gone(self, pod: Obj) -> None:
        rs = self._resolve(_meta(pod).get("namespace", ""), podutil.controller_ref(pod))
        if rs is not None:
            self.expectations.deletion_observed(key_of(rs), key_of(pod))
            self.enqueue(rs)

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        ns = _meta(pod).get("namespace", "")
        if kind == "DELETED":
            self._pod_gone(pod)
            return
        if kind == "ADDED" or old is None:
            if _meta(pod).get("deletionTimestamp"):
                # A restarted controller may first see a pod already terminating: that is a deletion.
                self._pod_gone(pod)
                return
            ref = podutil.controller_ref(pod)
            if ref is not None:
                rs = self._resolve(ns, ref)
                if rs is not None:
                    self.expectations.creation_observed(key_of(rs))
                    self.enqueue(rs)
                return
            for rs in self._matching_replicasets(pod):
                self.enqueue(rs)
            return
        if _meta(pod).get("resourceVersion") == _meta(old).get("resourceVersion"):
            return
        labels_changed = _meta(pod).get("labels") != _meta(old).get("labels")
        if _meta(pod).get("deletionTimestamp"):
            # Graceful deletion: the pod stops counting now, so the deletion is observed now.
            self._pod_gone(pod)
            if labels_changed:
                self._pod_gone(old)
            return
        cur_ref, old_ref = podutil.controller_ref(pod), podutil.controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            prev = self._resolve(ns, old_ref)
            if prev is not None:
                self.enqueue(prev)
        if cur_ref is not None:
            rs = self._resolve(ns, cur_ref)
            if rs is None:
                return
            self.enqueue(rs)
            min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not podutil.is_pod_ready(old) and podutil.is_pod_ready(pod):
                # Availability is a matter of time: look again once minReadySeconds have passed.
                self.queue.add_after(key_of(rs), float(min_ready) + 1.0)
            return
        if labels_changed or ref_changed:
            for rs in self._matching_replicasets(pod):
                self.enqueue(rs)

    # ------------------------------------------------------------------ sync

    async def reconcile(self, key: str) -> None:
        cached = self.rs_informer.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        rs = copy.deepcopy(cached)
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = selector_from_label_selector(self.label_selector(rs))
        except SelectorError as e:
            log.warning("%s %s has an invalid selector: %s", self.owner_kind, key, e)
            return
        ns = _meta(rs)["namespace"]
        active = [p for p in self.pod_informer.list(ns) if podutil.is_pod_active(p)]
        pods = await self._claim_pods(rs, selector, active)
        manage_error: Exception | None = None
        if needs_sync and not _meta(rs).get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, rs, pods)
            except ApiError as e:
                manage_error = e
        at = timeutil.now()
        updated = await self._update_status(rs, calculate_status(rs, pods, manage_error, at))
        spec_min_ready = int((updated.get("spec") or {}).get("minReadySeconds") or 0)
        status = updated.get("status") or {}
        if (manage_error is None and spec_min_ready > 0 and status.get("readyReplicas", 0) == _replicas(updated)
                and status.get("availableReplicas", 0) != _replicas(updated)):
            self.queue.add_after(key, float(spec_min_ready))
        if manage_error is not None:
            raise manage_error

    async def _can_adopt(self, rs: Obj) -> bool:
        """RecheckDeletionTimestamp: adopt only if a fresh read shows the same, living ReplicaSet."""
        try:
            fresh = await self.client.get(self.resource, _meta(rs)["name"], _meta(rs)["namespace"])
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return _meta(fresh).get("uid") == _meta(rs).get("uid") and not _meta(fresh).get("deletionTimestamp")

    async def _claim_pods(self, rs: Obj, selector: Selector, pods: list[Obj]) -> list[Obj]:
        """ClaimPods: keep ours that match, adopt matching orphans, release ours that no longer match."""
        uid = _meta(rs)["uid"]
        deleting = bool(_meta(rs).get("deletionTimestamp"))
        ref = podutil.new_controller_ref(rs, self.owner_api_version, self.owner_kind)
        claimed: list[Obj] = []
        adoptable: bool | None = None
        for pod in pods:
            owner = podutil.controller_ref(pod)
            matches = selector.matches(_meta(pod).get("labels") or {})
            if owner is not None:
                if owner.get("uid") != uid:
                    continue  # another controller's pod
                if matches:
                    claimed.append(pod)
                elif not deleting:
                    await self._patch_pod(pod, podutil.release_patch(pod, uid))
                continue
            if deleting or not matches or _meta(pod).get("deletionTimestamp"):
                continue
            if adoptable is None:
                adoptable = await self._can_adopt(rs)
            if not adoptable:
                continue
            adopted = await self._patch_pod(pod, podutil.adopt_patch(pod, ref))
            if adopted is not None:
                claimed.append(adopted)
        return claimed

    async def _patch_pod(self, pod: Obj, patch: Obj) -> Obj | None:
        try:
            out: Obj = await self.client.patch(PODS, _meta(pod)["name"], patch, _meta(pod)["namespace"], type="strategic")
            return out
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        diff = len(pods) - _replicas(rs)
        if diff < 0:
            await self._create_pods(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete_pods(key, rs, pods, min(diff, BURST_REPLICAS))

    async def _create_pods(self, key: str, rs: Obj, count: int) -> None:
        """Slow-start batches (1, 2, 4, ...) as slowStartBatch: a failing quota or webhook costs one call, not hundreds."""
        self.expectations.expect_creations(key, count)
        ref = podutil.new_controller_ref(rs, self.owner_api_version, self.owner_kind)
        template = (rs.get("spec") or {}).get("template") or {}
        created, batch, first_error = 0, 1, None
        while created < count and first_error is None:
            size = min(batch, count - created)
            results = await asyncio.gather(*(self._create_pod(rs, template, ref) for _ in range(size)),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    if not isinstance(r, ApiError):
                        raise r
                    first_error = first_error or r
                else:
                    created += 1
            batch *= 2
        for _ in range(count - created):
            # Pods never created will never be observed.
            self.expectations.creation_observed(key)
        if first_error is not None:
            raise first_error

    async def _create_pod(self, rs: Obj, template: Obj, ref: Obj) -> None:
        try:
            await self.pod_control.create(rs, podutil.pod_from_template(template, rs, ref))
        except ApiError as e:
            if not e.namespace_terminating:
                raise
            # Every creation will fail until the namespace is gone: nothing to retry.

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """getIndirectlyRelatedPods: active pods of every ReplicaSet under the same controller."""
        ns = _meta(rs)["namespace"]
        owner = podutil.controller_ref(rs)
        siblings = [rs]
        if owner is not None:
            siblings = [s for s in self.rs_informer.by_index(podutil.CONTROLLER_UID_INDEX, str(owner.get("uid")))
                        if _meta(s).get("namespace") == ns] or [rs]
        uids = {_meta(s).get("uid") for s in siblings}
        return [p for p in self.pod_informer.list(ns)
                if podutil.is_pod_active(p) and (podutil.controller_ref(p) or {}).get("uid") in uids]

    async def _delete_pods(self, key: str, rs: Obj, pods: list[Obj], count: int) -> None:
        victims = podutil.pods_to_delete(pods, self._related_pods(rs), count, timeutil.now())
        self.expectations.expect_deletions(key, [key_of(p) for p in victims])
        results = await asyncio.gather(*(self._delete_pod(key, rs, p) for p in victims), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _delete_pod(self, key: str, rs: Obj, pod: Obj) -> None:
        try:
            await self.pod_control.delete(rs, pod)
        except ApiError as e:
            # The informer will not report a deletion that did not happen (or happened before).
            self.expectations.deletion_observed(key, key_of(pod))
            if not e.not_found:
                raise

    async def _update_status(self, rs: Obj, status: Obj) -> Obj:
        """updateReplicaSetStatus: write only on change, with observedGeneration; one retry on conflict."""
        for attempt in range(2):
            generation = _meta(rs).get("generation")
            wanted = {**status, **({"observedGeneration": generation} if generation else {})}
            if (rs.get("status") or {}) == wanted:
                return rs
            try:
                out: Obj = await self.client.update_status(self.resource, {**rs, "status": wanted})
                return out
            except ApiError as e:
                if e.not_found:
                    return rs
                if not e.conflict or attempt == 1:
                    raise
                rs = await self.client.get(self.resource, _meta(rs)["name"], _meta(rs)["namespace"])
        return rs
