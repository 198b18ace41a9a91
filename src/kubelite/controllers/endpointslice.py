"""The EndpointSlice controller: each selecting Service's pods, published as EndpointSlices.

This is kube-controller-manager's ``endpointslice-controller.k8s.io``. A sync reads the
Service, its pods and its slices from the shared caches, asks
:func:`kubelite.controllers.endpointutil.plan_slices` for the least set of writes, and
makes them. Churn is what costs here (every slice write fans out to every proxy and DNS
server), so an unchanged endpoint never causes a write, and our own writes echoing back
through the watch are recognised by generation and do not cause a sync.

The trade-off taken from Kubernetes: the cache may lag behind our own writes, and a sync
computed from a lagging cache would duplicate or undo them; rather than reading back from
the API server, such a sync is refused and retried a few milliseconds later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import cast

from kubelite.api.types import EndpointSlice, EventType, Obj, Pod, Service
from kubelite.client import ENDPOINTSLICES, NODES, PODS, SERVICES, ApiError, Informer, key_of
from kubelite.controllers import endpointutil as eu
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)


# endpointSliceChangeMinSyncDelay: a slice changed by someone else is looked at after this.
SLICE_CHANGE_DELAY = 1.0


class StaleCache(Exception):
    """The informer has not caught up with our own writes yet; retry shortly."""


def pod_label_index(pod: Obj) -> list[str]:
    m = pod.get("metadata") or {}
    return eu.pod_label_keys(m.get("namespace", ""), m.get("labels"))


def slice_service_index(s: Obj) -> list[str]:
    name = ((s.get("metadata") or {}).get("labels") or {}).get(eu.LABEL_SERVICE_NAME)
    return [eu.SliceTracker.service_key(s)] if name else []


def service_informer(ctx: Context) -> Informer:
    return ctx.informer(SERVICES, indexers={"endpoints-selector": eu.selector_index})


def pod_informer(ctx: Context) -> Informer:
    return ctx.informer(PODS, indexers={"endpoints-labels": pod_label_index})


def lookup_services(services: Informer, namespace: str, labels: Mapping[str, str]) -> set[str]:
    """Keys of the Services in ``namespace`` whose selector matches ``labels``.

    Services are indexed by each pair of their selector, so only those sharing at least
    one label with the pod are checked, not every Service of the namespace.
    """
    out: set[str] = set()
    seen: set[str] = set()
    for ikey in eu.pod_label_keys(namespace, labels):
        for svc in services.by_index("endpoints-selector", ikey):
            key = key_of(svc)
            if key in seen:
                continue
            seen.add(key)
            sel = eu.selector_of(cast(Service, svc))
            if sel is not None and eu.matches(sel, labels):
                out.add(key)
    return out


def services_of_pod_event(services: Informer, kind: EventType, pod: Obj, old: Obj | None) -> set[str]:
    """Keys of the Services an informer's pod event concerns (the Endpoints and EndpointSlice
    controllers' addPod, updatePod and deletePod); a deleted pod as it was last seen."""
    def lookup(namespace: str, labels: Mapping[str, str]) -> set[str]:
        return lookup_services(services, namespace, labels)

    if kind == "ADDED":
        return eu.services_to_sync(None, pod, lookup)
    if kind == "DELETED":
        return eu.services_to_sync(old or pod, None, lookup)
    return eu.services_to_sync(old, pod, lookup)


def select_pods(pods: Informer, svc: Service, selector: Mapping[str, str]) -> list[Pod]:
    """The pods a selector matches, starting from the smallest index bucket of its pairs."""
    ns = (svc.get("metadata") or {}).get("namespace", "")
    buckets = [pods.by_index("endpoints-labels", k) for k in eu.pod_label_keys(ns, selector)]
    smallest = min(buckets, key=len)
    return [cast(Pod, p) for p in smallest if eu.matches(selector, (p.get("metadata") or {}).get("labels"))]


def namespace_terminating(e: ApiError) -> bool:
    return e.code == 403 and e.namespace_terminating


class EndpointSliceController(Controller):
    name = "endpointslice"
    service_account = "endpointslice-controller"
    workers = 5  # kube-controller-manager's --concurrent-service-endpoint-syncs

    def __init__(self, ctx: Context, max_endpoints_per_slice: int = eu.DEFAULT_MAX_ENDPOINTS_PER_SLICE) -> None:
        super().__init__(ctx)
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.services = service_informer(ctx)
        self.pods = pod_informer(ctx)
        self.slices = ctx.informer(ENDPOINTSLICES, indexers={"endpoints-service": slice_service_index})
        self.nodes = ctx.informer(NODES)
        self.tracker = eu.SliceTracker()
        self.trigger_times = eu.TriggerTimeTracker()
        self.services.add_handler(self._on_service)
        self.pods.add_handler(self._on_pod)
        self.slices.add_handler(self._on_slice)

    # ------------------------------------------------------------------ events

    def _on_service(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        self.enqueue(obj)

    def _on_pod(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        for key in services_of_pod_event(self.services, kind, obj, old):
            self.queue.add(key)

    @staticmethod
    def _managed(s: Obj | None) -> bool:
        return bool(s) and ((s or {}).get("metadata", {}).get("labels") or {}).get(
            eu.LABEL_SLICE_MANAGED_BY) == eu.SLICE_CONTROLLER_NAME

    def _on_slice(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            if self._managed(obj) and not self.tracker.handle_deletion(obj):
                self._resync_owner(obj)
            return
        if kind == "MODIFIED" and old is not None:
            name = (obj["metadata"].get("labels") or {}).get(eu.LABEL_SERVICE_NAME)
            if name != (old["metadata"].get("labels") or {}).get(eu.LABEL_SERVICE_NAME):
                self._resync_owner(obj)
                self._resync_owner(old)
                return
            if self._managed(obj) != self._managed(old):
                self._resync_owner(obj)
                return
        if self._managed(obj) and self.tracker.should_sync(obj):
            self._resync_owner(obj)

    def _resync_owner(self, s: Obj) -> None:
        if ((s.get("metadata") or {}).get("labels") or {}).get(eu.LABEL_SERVICE_NAME):
            self.queue.add_after(eu.SliceTracker.service_key(s), SLICE_CHANGE_DELAY)

    # ------------------------------------------------------------------ sync

    async def reconcile(self, key: str) -> None:
        svc = cast(Service | None, self.services.get(key))  # validated by the API server
        if svc is None:
            # The slices go with their owner (garbage collector); only our memory is ours to clean.
            self.tracker.forget_service(key)
            self.trigger_times.forget(key)
            return
        selector = eu.selector_of(svc)
        if not eu.manages(svc) or selector is None:
            return
        meta = svc["metadata"]
        pods = select_pods(self.pods, svc, selector)
        slices = [
            cast(EndpointSlice, s) for s in self.slices.by_index("endpoints-service", key)
            if self._managed(s) and not s["metadata"].get("deletionTimestamp")
        ]
        if self.tracker.stale(key, meta.get("uid", ""), slices):
            raise StaleCache(f"EndpointSlice informer cache is out of date for {key}")
        trigger = self.trigger_times.compute(key, svc, pods)
        plan = eu.plan_slices(svc, pods, slices, self.nodes.get, self.max_endpoints_per_slice)
        try:
            await self._apply(svc, plan, trigger)
        except ApiError as e:
            if not e.conflict:  # a lost race is routine: retried at once, not worth an Event
                await self.ctx.recorder.event(
                    svc, "Warning", "FailedToUpdateEndpointSlices",
                    f"Error updating Endpoint Slices for Service {meta.get('namespace')}/{meta['name']}: {e}")
            raise
        if plan.errors:
            raise RuntimeError("; ".join(plan.errors))

    async def _apply(self, svc: Service, plan: eu.SlicePlan, trigger: str) -> None:
        ns = svc["metadata"].get("namespace", "")
        # Never create for a Service on its way out: the garbage collector would race us.
        if not svc["metadata"].get("deletionTimestamp"):
            for s in plan.create:
                try:
                    created = await self.client.create(ENDPOINTSLICES, eu.finish_slice(s, trigger), ns)
                except ApiError as e:
                    if namespace_terminating(e):
                        return
                    raise
                self.tracker.update(created)
        for s in plan.update:
            self.tracker.update(await self.client.update(ENDPOINTSLICES, eu.finish_slice(s, trigger)))
        for s in plan.delete:
            try:
                await self.client.delete(ENDPOINTSLICES, s["metadata"]["name"], ns)
            except ApiError as e:
                if not e.not_found:
                    raise
            self.tracker.expect_deletion(s)
