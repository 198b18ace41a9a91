"""The legacy Endpoints controller: one ``v1 Endpoints`` per selecting Service, same name.

Kubernetes still runs it (deprecated since 1.33) because older clients and tools read
Endpoints, and ``kubectl get endpoints`` is what most people type. Unlike slices, the
object has no owner reference, so when a Service goes away this controller deletes its
Endpoints itself; on start it also looks at every Endpoints once, to delete those whose
Service vanished while it was not running (checkLeftoverEndpoints).

Subsets are computed by :func:`kubelite.controllers.endpointutil.desired_subsets` and only
written when they, the labels or the over-capacity annotation differ from what is stored.
"""

from __future__ import annotations

import copy
import logging
from typing import cast

from kubelite.api.types import EventType, Obj, Service
from kubelite.client import ENDPOINTS, ApiError, key_of
from kubelite.controllers import endpointutil as eu
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.endpointslice import (
    StaleCache,
    namespace_terminating,
    pod_informer,
    select_pods,
    service_informer,
    services_of_pod_event,
)

log = logging.getLogger(__name__)



class EndpointsController(Controller):
    name = "endpoints"
    service_account = "endpoint-controller"
    workers = 5  # kube-controller-manager's --concurrent-endpoint-syncs

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.services = service_informer(ctx)
        self.pods = pod_informer(ctx)
        self.endpoints = ctx.informer(ENDPOINTS)
        self.trigger_times = eu.TriggerTimeTracker()
        # resourceVersion we replaced, per key: seeing it again in the cache means it lags.
        self._stale_rv: dict[str, str] = {}
        self.services.add_handler(lambda kind, obj, old: self.enqueue(obj))
        self.pods.add_handler(self._on_pod)
        self.endpoints.add_handler(self._on_endpoints)

    def _on_pod(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        for key in services_of_pod_event(self.services, kind, obj, old):
            self.queue.add(key)

    def _on_endpoints(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            self.enqueue(obj)

    async def run(self) -> None:
        for ep in self.endpoints.list():
            if eu.LEADER_ANNOTATION not in ((ep.get("metadata") or {}).get("annotations") or {}):
                self.enqueue(ep)
        await super().run()

    async def reconcile(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        svc = cast(Service | None, self.services.get(key))  # validated by the API server
        if svc is None:
            try:
                await self.client.delete(ENDPOINTS, name, namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
            self.trigger_times.forget(key)
            self._stale_rv.pop(key, None)
            return
        selector = eu.selector_of(svc)
        if not eu.manages(svc) or selector is None:
            return  # no selector: the Endpoints, if any, belong to whoever wrote them
        pods = select_pods(self.pods, svc, selector)
        trigger = self.trigger_times.compute(key, svc, pods)
        subsets = eu.desired_subsets(svc, pods)
        truncated = eu.truncate_subsets(subsets)
        labels = eu.endpoints_labels(svc)

        current = self.endpoints.get(key)
        if current is not None and self._stale_rv.get(key) == current["metadata"].get("resourceVersion"):
            raise StaleCache(f"endpoints informer cache is out of date for {key}")
        if current is not None:
            annotations = current["metadata"].get("annotations") or {}
            if (eu.subsets_equal(current.get("subsets"), subsets)
                    and (current["metadata"].get("labels") or {}) == labels
                    and (eu.ANNOTATION_OVER_CAPACITY in annotations) == truncated):
                return

        new: Obj = copy.deepcopy(current) if current is not None else {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
        }
        meta = new["metadata"]
        meta["labels"] = labels
        annotations = dict(meta.get("annotations") or {})
        if trigger:
            annotations[eu.ANNOTATION_TRIGGER_TIME] = trigger
        else:
            annotations.pop(eu.ANNOTATION_TRIGGER_TIME, None)
        if truncated:
            annotations[eu.ANNOTATION_OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(eu.ANNOTATION_OVER_CAPACITY, None)
        if annotations:
            meta["annotations"] = annotations
        else:
            meta.pop("annotations", None)
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)

        try:
            if current is None:
                await self.client.create(ENDPOINTS, new, namespace)
                return
            updated = await self.client.update(ENDPOINTS, new)
        except ApiError as e:
            if current is None and namespace_terminating(e):
                return
            if not (e.conflict or e.already_exists):  # lost races with our own lagging cache: just retry
                reason, message = (
                    ("FailedToCreateEndpoint", f"Failed to create endpoint for service {key}: {e}") if current is None
                    else ("FailedToUpdateEndpoint", f"Failed to update endpoint {key}: {e}"))
                await self.ctx.recorder.event(new, "Warning", reason, message)
            raise
        if updated["metadata"].get("resourceVersion") != current["metadata"].get("resourceVersion"):
            self._stale_rv[key_of(updated)] = current["metadata"].get("resourceVersion", "")
