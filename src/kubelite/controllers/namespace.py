"""The namespace lifecycle controller: empty a terminating namespace, then let it go.

Deleting a namespace only marks it (deletionTimestamp, phase Terminating); the API server
keeps it while ``spec.finalizers`` holds ``kubernetes``. This controller does what
Kubernetes' namespace controller does: it deletes every namespaced kind in the namespace
(deletecollection, Background propagation), pods first and alone (OrderedNamespaceDeletion,
on by default since 1.33: workloads stop before what protects them goes), lists again to
see what is left, records that in the namespace's status conditions, and once nothing is
left removes its finalizer through ``namespaces/<name>/finalize``; the API server then
deletes the namespace.

Pods bound to a node are only marked by a delete: they stay until their kubelet has
stopped them. The controller waits for that, as Kubernetes does, rather than force-deleting
them (which would leave their processes running with nobody to stop them). Kubernetes polls
after an estimate (the pods' grace period); kubelite watches every namespaced kind anyway
(the garbage collector's informers are shared), so a deletion inside a terminating namespace
brings the namespace back at once, and the estimate is only a fallback.
"""

from __future__ import annotations

import datetime as dt
import logging

from kubelite.api import timeutil
from kubelite.api.registry import RESOURCES, ResourceType
from kubelite.api.types import EventType, Obj
from kubelite.client import NAMESPACES, PODS, ApiError, Informer
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
# Kubernetes' finalizerEstimateSeconds: how long to give other controllers' finalizers.
FINALIZER_ESTIMATE = 15

# Namespace condition types the deleter maintains, with their "all is well" variants
# (pkg/controller/namespace/deletion/status_condition_utils.go).
CONDITION_TYPES = (
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
)
OK_REASONS = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": (
        "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentRemoved", "All content successfully removed"),
}


def deletable_kinds() -> list[ResourceType]:
    """Every namespaced kind that can be listed and deleted, pods first."""
    kinds = [rt for rt in RESOURCES if rt.namespaced and {"list", "delete"} <= set(rt.verbs)]
    return sorted(kinds, key=lambda rt: rt != PODS)


def content_conditions(remaining: dict[ResourceType, int], finalizers: dict[str, int],
                       errors: list[str]) -> list[Obj]:
    """The deleter's view of a namespace's content, as the failing conditions (status True)."""
    out: list[Obj] = []
    if errors:
        out.append({
            "type": "NamespaceDeletionContentFailure", "status": "True", "reason": "ContentDeletionFailed",
            "message": f"Failed to delete all resource types, {len(errors)} remaining: {', '.join(sorted(errors))}",
        })
    if remaining:
        # Kubernetes prints resource.group, so core kinds end with a bare dot ("pods.").
        parts = sorted(f"{rt.plural}.{rt.group} has {n} resource instances" for rt, n in remaining.items() if n)
        out.append({"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
                    "message": f"Some resources are remaining: {', '.join(parts)}"})
    if finalizers:
        parts = sorted(f"{f} in {n} resource instances" for f, n in finalizers.items() if n)
        out.append({"type": "NamespaceFinalizersRemaining", "status": "True", "reason": "SomeFinalizerRemain",
                    "message": f"Some finalizers are remaining: {', '.join(parts)}"})
    return out


def merge_conditions(current: list[Obj], failing: list[Obj], now: str) -> tuple[list[Obj], bool]:
    """updateConditions: every maintained type is present, failing or "ok"; returns (conditions, changed)."""
    result = [dict(c) for c in current]
    changed = False
    by_type = {c["type"]: c for c in failing}
    for ctype in CONDITION_TYPES:
        want = by_type.get(ctype)
        if want is None:
            reason, message = OK_REASONS[ctype]
            want = {"type": ctype, "status": "False", "reason": reason, "message": message}
        have = next((c for c in result if c.get("type") == ctype), None)
        if have is None:
            result.append({**want, "lastTransitionTime": now})
            changed = True
        elif any(have.get(k) != want[k] for k in ("status", "reason", "message")):
            if have.get("status") != want["status"]:
                have["lastTransitionTime"] = now
            have.update(want)
            changed = True
    return result, changed


class NamespaceController(Controller):
    name = "namespace"
    service_account = "namespace-controller"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.informer(NAMESPACES)
        self.namespaces.add_handler(self._on_namespace)
        self.content: dict[ResourceType, Informer] = {}
        for rt in deletable_kinds():
            if rt.plural == "events":
                continue  # events carry no finalizers: once deleted they are gone, nothing to wait for
            self.content[rt] = inf = ctx.informer(rt)
            inf.add_handler(self._on_content)

    def _on_namespace(self, kind: EventType, ns: Obj, old: Obj | None) -> None:
        if kind != "DELETED" and (ns.get("metadata") or {}).get("deletionTimestamp"):
            self.enqueue(ns)

    def _on_content(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        if kind != "DELETED":
            return
        ns = self.namespaces.get(str((obj.get("metadata") or {}).get("namespace") or ""))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    async def reconcile(self, key: str) -> None:
        try:
            ns = await self.client.get(NAMESPACES, key)
        except ApiError as e:
            if e.not_found:
                return
            raise
        meta = ns["metadata"]
        if not meta.get("deletionTimestamp") or FINALIZER not in (ns.get("spec") or {}).get("finalizers", []):
            return
        estimate, remaining, finalizers, errors = await self._delete_content(key, timeutil.parse_time(meta["deletionTimestamp"]) or timeutil.now())
        conditions, changed = merge_conditions((ns.get("status") or {}).get("conditions") or [],
                                               content_conditions(remaining, finalizers, errors), timeutil.now_rfc3339())
        if changed:
            ns.setdefault("status", {})["conditions"] = conditions
            try:
                ns = await self.client.update_status(NAMESPACES, ns)
            except ApiError as e:
                log.info("namespace %s: updating status conditions: %s", key, e)
        if errors:
            raise RuntimeError("; ".join(errors))
        if remaining:
            left = ", ".join(f"{n} {rt.qualified}" for rt, n in remaining.items())
            if estimate > 0:
                log.info("namespace %s: waiting for %s (checking again in %ss)", key, left, estimate)
                self.queue.add_after(key, estimate)
                return
            # Past every estimate: retried with back-off (and at once when something here is deleted).
            raise RuntimeError(f"unexpected items still remain in namespace {key}: {left}")
        await self._finalize(key, ns)

    async def _delete_content(
        self, ns: str, deleted_at: dt.datetime,
    ) -> tuple[int, dict[ResourceType, int], dict[str, int], list[str]]:
        """Delete everything; returns (estimate seconds, remaining per kind, per finalizer, errors)."""
        estimate = 0
        remaining: dict[ResourceType, int] = {}
        finalizers: dict[str, int] = {}
        errors: list[str] = []
        for rt in deletable_kinds():
            try:
                left, est = await self._delete_kind(rt, ns, deleted_at)
            except ApiError as e:
                errors.append(str(e))
                continue
            estimate = max(estimate, est)
            if left:
                remaining[rt] = len(left)
                for obj in left:
                    for f in obj["metadata"].get("finalizers") or []:
                        finalizers[f] = finalizers.get(f, 0) + 1
                if any(obj["metadata"].get("finalizers") for obj in left):
                    estimate = max(estimate, FINALIZER_ESTIMATE)
            if rt == PODS and left:
                break  # ordered deletion: nothing else goes while pods remain
        return estimate, remaining, finalizers, errors

    async def _delete_kind(self, rt: ResourceType, ns: str, deleted_at: dt.datetime) -> tuple[list[Obj], int]:
        """Delete one kind's objects in ``ns``; returns what is still there and a wait estimate."""
        estimate = 0
        if rt == PODS:
            estimate = pods_termination_estimate(await self._list(rt, ns), deleted_at)
        opts = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        collection = "deletecollection" in rt.verbs
        if collection:
            try:
                await self.client.request("DELETE", self.client.url(rt, ns), body=opts)
            except ApiError as e:
                if e.code not in (404, 405):  # not supported after all: one by one, as Kubernetes falls back
                    raise
                collection = False
        if not collection:
            for obj in await self._list(rt, ns):
                try:
                    await self.client.delete(rt, obj["metadata"]["name"], ns, propagation_policy="Background")
                except ApiError as e:
                    if not e.not_found:
                        raise
        return await self._list(rt, ns), estimate

    async def _list(self, rt: ResourceType, ns: str) -> list[Obj]:
        items: list[Obj] = (await self.client.list_all(rt, ns)).get("items") or []
        return items

    async def _finalize(self, key: str, ns: Obj) -> None:
        for _attempt in range(5):
            ns["spec"]["finalizers"] = sorted({f for f in ns["spec"].get("finalizers") or [] if f != FINALIZER})
            try:
                await self.client.update(NAMESPACES, ns, subresource="finalize")
                log.info("namespace %s: content deleted, finalized", key)
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict:
                    raise
            ns = await self.client.get(NAMESPACES, key)
        raise RuntimeError(f"namespace {key}: finalize kept conflicting")


def pods_termination_estimate(pods: list[Obj], deleted_at: dt.datetime) -> int:
    """The longest grace period of the pods still running, unless that much time has passed."""
    estimate = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        if grace is not None:
            estimate = max(estimate, int(grace))
    if (timeutil.now() - deleted_at).total_seconds() >= estimate:
        return 0
    return estimate
