"""The resourcequota controller: every ResourceQuota's ``status.hard`` and ``status.used``, recounted.

kube-controller-manager's ``pkg/controller/resourcequota``. ResourceQuota admission charges
new objects against ``status.used`` as they are created; this controller is the other half:
it sets ``status.hard`` from the spec (admission ignores a quota until then) and recounts what
the namespace really holds, which gives back what deleted or finished pods held and what a
create that failed after admission took. Pricing is kubelite.api.quota's, the same code
admission uses.

Pods and Services come from the shared informers; other counted kinds (``configmaps``,
``secrets``, ``count/<resource>.<group>``...) get an informer of their own the first time a
quota tracks them (a cluster without such quotas watches none of them). Deletions trigger a
recount of the namespace's quotas, as Kubernetes' replenishment does, and every quota is
recounted each ``--resource-quota-sync-period``. A quota's own
status writes do not trigger a sync (only a spec change does), or the controller would undo
admission's charges while their objects are being written.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelite.api import quota as apiquota
from kubelite.api.registry import RESOURCES, lookup
from kubelite.api.types import EventType, Obj
from kubelite.client import PODS, SERVICES, Informer, ResourceType
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

RESOURCEQUOTAS = lookup("", "v1", "resourcequotas")


def resource_of(name: str) -> tuple[str, str] | None:
    """(plural, group) a count name counts: ``count/deployments.apps``, ``configmaps``; None for compute names."""
    if name in apiquota.LEGACY_COUNT_NAMES:
        return name, ""
    if not name.startswith("count/"):
        return None
    plural, _, group = name[len("count/"):].partition(".")
    return plural, group


def _served(plural: str, group: str) -> ResourceType | None:
    return next((r for r in RESOURCES if r.plural == plural and r.group == group), None)


class ResourceQuotaController(Controller):
    name = "resourcequota"
    service_account = "resourcequota-controller"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        assert RESOURCEQUOTAS is not None
        self.rt = RESOURCEQUOTAS
        self.sync_period = ctx.options.resource_quota_sync_period
        self.quotas = ctx.informer(self.rt)
        self.pods = ctx.informer(PODS)
        self.services = ctx.informer(SERVICES)
        self.quotas.add_handler(self._on_quota)
        self.pods.add_handler(self._on_pod)
        self.services.add_handler(self._on_service)
        # Informers of the other counted kinds, started on first need (never stopped: quotas come back).
        self.counted: dict[ResourceType, Informer] = {}
        self._counted_tasks: list[asyncio.Task[None]] = []

    # -- events

    def _on_quota(self, kind: EventType, rq: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            return
        spec_hard = (rq.get("spec") or {}).get("hard") or {}
        status = rq.get("status") or {}
        if kind == "ADDED" or spec_hard != (status.get("hard") or {}) or "used" not in status:
            self.enqueue(rq)

    def _enqueue_namespace(self, namespace: str, tracks: frozenset[str]) -> None:
        for rq in self.quotas.list(namespace):
            hard = (rq.get("spec") or {}).get("hard") or {}
            if any(n in tracks or n.startswith(("requests.", "limits.", "hugepages-")) for n in hard):
                self.enqueue(rq)

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        ns = (pod.get("metadata") or {}).get("namespace") or ""
        # Replenishment: a pod that went away or finished frees what it held; a new one is a recount
        # of what admission charged (and the correction of a create that failed after it).
        if kind == "MODIFIED" and old is not None and apiquota.pod_is_terminal(pod) == apiquota.pod_is_terminal(old):
            return
        self._enqueue_namespace(ns, apiquota.POD_RESOURCES)

    def _on_service(self, kind: EventType, svc: Obj, old: Obj | None) -> None:
        if kind == "MODIFIED" and old is not None and apiquota.service_usage(svc) == apiquota.service_usage(old):
            return
        self._enqueue_namespace((svc.get("metadata") or {}).get("namespace") or "", apiquota.SERVICE_RESOURCES)

    # -- the loop

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync(), name="resourcequota-resync")
        try:
            await super().run()
        finally:
            resync.cancel()
            for t in self._counted_tasks:
                t.cancel()

    async def _informer_for(self, rt: ResourceType) -> Informer:
        inf = self.counted.get(rt)
        if inf is None:
            inf = self.counted[rt] = Informer(self.client, rt)
            name = rt.plural

            def replenish(kind: EventType, obj: Obj, old: Obj | None) -> None:
                if kind == "DELETED":
                    self._enqueue_namespace((obj.get("metadata") or {}).get("namespace") or "",
                                            frozenset(apiquota.count_usage(name, rt.group)))

            inf.add_handler(replenish)
            self._counted_tasks.append(asyncio.create_task(inf.run(), name=f"resourcequota-{name}"))
        await asyncio.wait_for(inf.wait_synced(), 30.0)  # a failing list is retried with the key
        return inf

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for rq in self.quotas.list():
                self.enqueue(rq)

    async def reconcile(self, key: str) -> None:
        rq = self.quotas.get(key)
        if rq is None:
            return
        ns = rq["metadata"].get("namespace") or ""
        hard: dict[str, str] = dict((rq.get("spec") or {}).get("hard") or {})
        status = rq.get("status") or {}
        used = {k: v for k, v in (status.get("used") or {}).items() if k in hard}
        used.update(await self.usage(rq, ns, hard))
        new_status: dict[str, Any] = {"hard": hard, "used": dict(sorted(used.items()))}
        if status == new_status:
            return
        await self.client.update_status(self.rt, {**rq, "status": new_status})

    async def usage(self, rq: Obj, ns: str, hard: dict[str, str]) -> dict[str, str]:
        """CalculateUsage: what the namespace's objects (those in the quota's scopes) charge, per hard name."""
        used: dict[str, str] = {}
        for plural, informer in (("pods", self.pods), ("services", self.services)):
            names = apiquota.matching_resources(plural, "", hard)
            if not names:
                continue
            total = apiquota.zero_usage(names)
            for obj in informer.list(ns):
                if apiquota.matches(rq, plural, "", obj, hard):
                    total = apiquota.add(total, apiquota.mask(apiquota.usage(plural, "", obj), names))
            used.update(total)
        for name in hard:
            target = resource_of(name)
            if target is None or name in used:
                continue
            plural, group = target
            if plural == "events" and group in ("", "events.k8s.io"):
                continue  # quota ignores events (DefaultIgnoredResources): never counted
            if apiquota.scope_selectors(rq):
                used[name] = "0"  # scopes select pods only
                continue
            rt = _served(plural, group)
            if rt is None or not rt.namespaced:
                used[name] = "0"
                continue
            # ResourceQuotas count from the informer whose event started this sync: another one
            # may not have seen the new quota yet, and its arrival there triggers no recount.
            informer = self.quotas if rt == self.rt else await self._informer_for(rt)
            used[name] = str(len(informer.list(ns)))
        return used
