"""Informers: a local, indexed cache of one resource kept current by list-then-watch.

This is client-go's shared informer in asyncio form. It lists, then watches from the list's
resourceVersion; when the watch ends it resumes from the last resourceVersion it saw
(bookmarks keep that fresh), and when the server answers 410 Gone it lists again and
reports the difference as events, so handlers never miss a deletion. Handlers only learn
*which* object changed; controllers read the cache when they reconcile (level-triggered).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections.abc import Callable, Iterable

from kubelite.api.registry import ResourceType
from kubelite.api.types import EventType, Obj
from kubelite.client.rest import ApiError, Client

log = logging.getLogger(__name__)

Handler = Callable[[EventType, Obj, Obj | None], None]
IndexFunc = Callable[[Obj], Iterable[str]]


def key_of(obj: Obj) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace", ""))]


class Informer:
    def __init__(
        self,
        client: Client,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        indexers: dict[str, IndexFunc] | None = None,
    ) -> None:
        self.client = client
        self.rt = rt
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, Obj] = {}
        self.indexers: dict[str, IndexFunc] = {"namespace": by_namespace, **(indexers or {})}
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self.indexers}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self.resource_version = ""

    # ------------------------------------------------------------------ cache access

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)
        # A handler added late still hears about everything already known, as in client-go.
        for obj in list(self.cache.values()):
            handler("ADDED", obj, None)

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.cache.values())
        return self.by_index("namespace", namespace)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        keys = self._indices[index].get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # ------------------------------------------------------------------ updates

    def _index(self, key: str, obj: Obj | None, old: Obj | None) -> None:
        for name, fn in self.indexers.items():
            idx = self._indices[name]
            if old is not None:
                for v in fn(old):
                    s = idx.get(v)
                    if s is not None:
                        s.discard(key)
                        if not s:
                            del idx[v]
            if obj is not None:
                for v in fn(obj):
                    idx.setdefault(v, set()).add(key)

    def _emit(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        for h in self._handlers:
            try:
                h(kind, obj, old)
            except Exception:
                log.exception("%s informer handler failed", self.rt.plural)

    @staticmethod
    def _slim(obj: Obj) -> Obj:
        # managedFields are often the largest part of an object and no controller reads them:
        # dropped from the cache, as kube-controller-manager's informers do.
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        return obj

    def _apply(self, kind: EventType, obj: Obj) -> None:
        self._slim(obj)
        key = key_of(obj)
        old = self.cache.get(key)
        if kind == "DELETED":
            if old is not None:
                del self.cache[key]
                self._index(key, None, old)
            self._emit("DELETED", obj, old)
            return
        self.cache[key] = obj
        self._index(key, obj, old)
        self._emit("MODIFIED" if old is not None else "ADDED", obj, old)

    def _replace(self, items: builtins.list[Obj]) -> None:
        """A fresh list: emit what changed relative to the cache (deletions included)."""
        fresh = {key_of(o): self._slim(o) for o in items}
        for key, gone in builtins.list(self.cache.items()):
            if key not in fresh:
                del self.cache[key]
                self._index(key, None, gone)
                self._emit("DELETED", gone, gone)
        for key, obj in fresh.items():
            old = self.cache.get(key)
            if old is not None and old.get("metadata", {}).get("resourceVersion") == obj["metadata"].get("resourceVersion"):
                continue
            self.cache[key] = obj
            self._index(key, obj, old)
            self._emit("MODIFIED" if old is not None else "ADDED", obj, old)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if not self.resource_version:
                    body = await self.client.list_all(self.rt, self.namespace, label_selector=self.label_selector,
                                                      field_selector=self.field_selector)
                    self._replace(body.get("items") or [])
                    self.resource_version = body["metadata"]["resourceVersion"]
                    self._synced.set()
                async for kind, obj in self.client.watch(
                    self.rt, self.namespace, resource_version=self.resource_version,
                    label_selector=self.label_selector, field_selector=self.field_selector,
                    timeout_seconds=random.randint(300, 600),
                ):
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if kind != "BOOKMARK" and kind != "ERROR":  # the client raises ERROR events
                        self._apply(kind, obj)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.gone:
                    log.info("%s watch expired; relisting", self.rt.plural)
                    self.resource_version = ""
                    continue
                log.warning("%s informer: %s", self.rt.plural, e)
            except Exception as e:  # connection lost, server restarting: retry with back-off
                log.info("%s informer: %s: %s", self.rt.plural, type(e).__name__, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
