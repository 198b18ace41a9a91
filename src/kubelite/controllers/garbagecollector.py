"""The garbage collector: ownerReferences cascade, as Kubernetes' pkg/controller/garbagecollector.

Kubernetes keeps a graph of every object's owners and dependents. Here the shared informers
*are* the graph: every kind the API serves (events excepted, as in Kubernetes) gets an
informer indexed by uid and by owner uid, so "who depends on X" and "is X cached" are
dictionary lookups. The caches only decide *what to look at*; every decision is taken on the
live objects, as Kubernetes' ``attemptToDeleteItem`` does: the dependent is read again, and
each owner is read by name and compared by uid (an owner of the same name with another uid
is gone). That costs a few GETs per decision and never deletes on a stale cache.

The three propagation policies, which the API server records as finalizers on the owner:

- Background (no finalizer): the owner is gone at once; its dependents lose their last
  owner and are deleted here (with the policy their own finalizers ask for).
- Foreground (``foregroundDeletion``): dependents are deleted first; once none with
  ``blockOwnerDeletion: true`` is left, the finalizer goes and the API server deletes the
  owner. A dependent that has dependents of its own is deleted in the foreground too.
- Orphan (``orphan``): the reference to the owner is removed from every dependent, then the
  finalizer.

A dependent with another live owner is not deleted; references to owners that are gone (or
being deleted in the foreground) are removed from it instead.
"""

from __future__ import annotations

import logging

from kubelite.api.registry import RESOURCES, ResourceType
from kubelite.api.types import EventType, Obj
from kubelite.client import ApiError, Informer
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
UID_INDEX = "gc-uid"
OWNER_INDEX = "gc-owner"

# Events are never owners that matter and are by far the busiest kind: Kubernetes' GC
# ignores them too (garbagecollector's DefaultIgnoredResources).
IGNORED = {("", "events"), ("events.k8s.io", "events")}


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _uid(obj: Obj) -> list[str]:
    uid = _meta(obj).get("uid")
    return [uid] if uid else []


def _owner_uids(obj: Obj) -> list[str]:
    return [r["uid"] for r in _meta(obj).get("ownerReferences") or [] if r.get("uid")]


def deleting_dependents(obj: Obj) -> bool:
    """Being deleted in the foreground: waiting for its blocking dependents to go."""
    meta = _meta(obj)
    return bool(meta.get("deletionTimestamp")) and FOREGROUND in (meta.get("finalizers") or [])


def blocks(dependent: Obj, owner_uid: str) -> bool:
    return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
               for r in _meta(dependent).get("ownerReferences") or [])


def deletion_policy(obj: Obj) -> str:
    """The propagation policy an object's own finalizers ask for when the GC deletes it."""
    finalizers = _meta(obj).get("finalizers") or []
    if ORPHAN in finalizers:
        return "Orphan"
    if FOREGROUND in finalizers:
        return "Foreground"
    return "Background"


def resolve(api_version: str, kind: str) -> ResourceType | None:
    """The served resource of an ownerReference; any served version of its group will do."""
    group = api_version.rpartition("/")[0]
    exact = next((r for r in RESOURCES if r.api_version == api_version and r.kind == kind), None)
    return exact or next((r for r in RESOURCES if r.group == group and r.kind == kind), None)


class GarbageCollector(Controller):
    name = "garbagecollector"
    service_account = "generic-garbage-collector"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.informers: dict[ResourceType, Informer] = {}
        for rt in RESOURCES:
            if (rt.group, rt.plural) in IGNORED or not {"list", "watch", "delete"} <= set(rt.verbs):
                continue
            inf = ctx.informer(rt, indexers={UID_INDEX: _uid, OWNER_INDEX: _owner_uids})
            self.informers[rt] = inf
            inf.add_handler(self._on_change)

    # ------------------------------------------------------------------ the graph, from the caches

    def _cached(self, uid: str) -> tuple[ResourceType, Obj] | None:
        for rt, inf in self.informers.items():
            for obj in inf.by_index(UID_INDEX, uid):
                return rt, obj
        return None

    def _dependents(self, owner: Obj) -> list[tuple[ResourceType, Obj]]:
        """Objects referring to ``owner``; a namespaced owner has dependents in its namespace only."""
        meta = _meta(owner)
        ns = meta.get("namespace")
        return [(rt, obj) for rt, inf in self.informers.items() for obj in inf.by_index(OWNER_INDEX, meta["uid"])
                if not ns or _meta(obj).get("namespace") == ns]

    def _owner_in_doubt(self, dependent: Obj, ref: Obj) -> bool:
        """True unless the cache shows this owner alive and not deleting its dependents."""
        rt = resolve(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            return False  # a kind this server does not serve: nothing can be verified
        inf = self.informers.get(rt)
        if inf is None:
            return True
        owners = inf.by_index(UID_INDEX, ref.get("uid", ""))
        if not owners:
            return True
        owner = owners[0]
        if rt.namespaced and _meta(owner).get("namespace") != _meta(dependent).get("namespace"):
            return True  # an owner in another namespace is no owner
        return deleting_dependents(owner)

    def _on_change(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        meta = _meta(obj)
        uid = meta.get("uid")
        if not uid:
            return
        refs = meta.get("ownerReferences") or []
        if kind == "DELETED":
            for _, dep in self._dependents(obj):
                self.queue.add(_meta(dep)["uid"])
            self._wake_waiting_owners(refs)
            return
        if meta.get("deletionTimestamp") and {ORPHAN, FOREGROUND} & set(meta.get("finalizers") or []):
            self.queue.add(uid)
            if deleting_dependents(obj):
                for _, dep in self._dependents(obj):
                    self.queue.add(_meta(dep)["uid"])
        if any(self._owner_in_doubt(obj, r) for r in refs):
            self.queue.add(uid)
        if old is not None:
            # An owner waiting in the foreground may be freed by a reference removed or unblocked.
            gone = [r for r in _meta(old).get("ownerReferences") or []
                    if r.get("blockOwnerDeletion") and not blocks(obj, r.get("uid", ""))]
            self._wake_waiting_owners(gone)

    def _wake_waiting_owners(self, refs: list[Obj]) -> None:
        for ref in refs:
            found = self._cached(ref.get("uid", ""))
            if found is not None and deleting_dependents(found[1]):
                self.queue.add(ref["uid"])

    # ------------------------------------------------------------------ reconcile one object (by uid)

    async def reconcile(self, uid: str) -> None:
        found = self._cached(uid)
        if found is None:
            return
        rt, cached = found
        cmeta = _meta(cached)
        if cmeta.get("deletionTimestamp"):
            if not {ORPHAN, FOREGROUND} & set(cmeta.get("finalizers") or []):
                return  # being deleted, and nothing of ours to do about it
        elif not any(self._owner_in_doubt(cached, r) for r in cmeta.get("ownerReferences") or []):
            return
        live = await self._get(rt, cmeta["name"], cmeta.get("namespace"))
        if live is None or _meta(live).get("uid") != uid:
            return
        meta = _meta(live)
        if meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if ORPHAN in finalizers:
                live = await self._orphan_dependents(rt, live)
            if live is not None and deleting_dependents(live):
                await self._process_deleting_dependents(rt, live)
            return
        if meta.get("ownerReferences"):
            await self._attempt_to_delete(rt, live)

    async def _get(self, rt: ResourceType, name: str, namespace: str | None) -> Obj | None:
        try:
            return await self.client.get(rt, name, namespace)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def _attempt_to_delete(self, rt: ResourceType, item: Obj) -> None:
        meta = _meta(item)
        ns = meta.get("namespace")
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for ref in meta.get("ownerReferences") or []:
            ort = resolve(ref.get("apiVersion", ""), ref.get("kind", ""))
            if ort is None:
                log.debug("%s %s/%s: owner kind %s/%s is not served", rt.kind, ns, meta["name"],
                          ref.get("apiVersion"), ref.get("kind"))
                return
            if ort.namespaced and not ns:
                # A cluster-scoped object cannot have a namespaced owner; retrying will not help.
                await self.ctx.recorder.event(
                    item, "Warning", "OwnerRefInvalidNamespace",
                    f"ownerRef [{ref.get('apiVersion')}/{ref.get('kind')}, namespace: , name: {ref.get('name')}, "
                    f"uid: {ref.get('uid')}] does not exist in namespace \"\"",
                )
                return
            owner = await self._get(ort, ref.get("name", ""), ns if ort.namespaced else None)
            if owner is None or _meta(owner).get("uid") != ref.get("uid"):
                dangling.append(ref)
            elif deleting_dependents(owner):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            drop = {r["uid"] for r in dangling + waiting}
            if drop:
                keep = [r for r in meta["ownerReferences"] if r.get("uid") not in drop]
                await self._patch_meta(rt, item, {"ownerReferences": keep or None})
            return
        if waiting and self._dependents(item):
            # Its owner waits for it, and it has dependents: delete those first too. A dependent
            # already deleting in the foreground and blocking on this item would wait forever
            # (a cycle); it stops blocking, as in Kubernetes.
            for drt, dep in self._dependents(item):
                if deleting_dependents(dep) and blocks(dep, meta["uid"]):
                    fresh = await self._get(drt, _meta(dep)["name"], _meta(dep).get("namespace"))
                    if fresh is not None:
                        refs = [{**r, "blockOwnerDeletion": False} if r.get("uid") == meta["uid"] else r
                                for r in _meta(fresh).get("ownerReferences") or []]
                        await self._patch_meta(drt, fresh, {"ownerReferences": refs})
            await self._delete(rt, item, "Foreground")
            return
        await self._delete(rt, item, deletion_policy(item))

    async def _orphan_dependents(self, rt: ResourceType, owner: Obj) -> Obj | None:
        uid = _meta(owner)["uid"]
        for drt, dep in self._dependents(owner):
            fresh = await self._get(drt, _meta(dep)["name"], _meta(dep).get("namespace"))
            if fresh is None:
                continue
            keep = [r for r in _meta(fresh).get("ownerReferences") or [] if r.get("uid") != uid]
            if len(keep) != len(_meta(fresh).get("ownerReferences") or []):
                await self._patch_meta(drt, fresh, {"ownerReferences": keep or None})
        return await self._remove_finalizer(rt, owner, ORPHAN)

    async def _process_deleting_dependents(self, rt: ResourceType, owner: Obj) -> None:
        uid = _meta(owner)["uid"]
        blocking = [dep for _, dep in self._dependents(owner) if blocks(dep, uid)]
        if not blocking:
            await self._remove_finalizer(rt, owner, FOREGROUND)
            return
        for dep in blocking:
            if not deleting_dependents(dep):
                self.queue.add(_meta(dep)["uid"])

    # ------------------------------------------------------------------ writes

    async def _patch_meta(self, rt: ResourceType, obj: Obj, changes: Obj) -> Obj | None:
        """A JSON merge patch of metadata, conditional on the version we decided on (409 → retry)."""
        meta = _meta(obj)
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"], **changes}}
        try:
            result: Obj = await self.client.patch(rt, meta["name"], patch, meta.get("namespace"))
            return result
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def _remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> Obj | None:
        remaining = [f for f in _meta(obj).get("finalizers") or [] if f != finalizer]
        return await self._patch_meta(rt, obj, {"finalizers": remaining or None})

    async def _delete(self, rt: ResourceType, obj: Obj, policy: str) -> None:
        meta = _meta(obj)
        log.info("garbage collecting %s %s/%s (propagation %s)", rt.kind, meta.get("namespace", ""),
                 meta["name"], policy)
        try:
            await self.client.delete(rt, meta["name"], meta.get("namespace"), propagation_policy=policy,
                                     preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if not (e.not_found or e.conflict):  # gone, or replaced by a namesake
                raise
