"""The generic registry: every verb on every served resource, against the store, without HTTP.

kube-apiserver splits its REST API in two: ``endpoints/handlers`` decode requests and
encode answers, and ``registry/generic/registry/store.go`` does the work against etcd. This
module is the second half. One implementation serves all kinds (kubelite.api.registry says
which exist, apiserver.strategy what is special about each, apiserver.services and
apiserver.eviction what some kinds and subresources do beyond storing), and nothing here
knows of aiohttp: the HTTP layer (apiserver.handlers) turns a request into a call here and
the result into a response.

The write paths follow ``GuaranteedUpdate``: read the current object, compute the new one,
validate, then compare-and-swap on the revision, retrying when another writer got in
between, unless the client itself named the resourceVersion it expects, in which case the
conflict is theirs. A create runs: strategy (reset, defaults), validation, namespace
lifecycle, managed fields, allocation (a Service's ClusterIP and node ports, given back if
the write fails), then the store's create-if-absent.

Objects are stored without ``metadata.resourceVersion``; the store's revision is the
resourceVersion and is put in on the way out, so the two can never disagree.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import copy
import datetime as dt
import functools
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jsonpatch
import orjson

from kubelite.api import apply as ssa
from kubelite.api import decoding, errors, jsonpatching, managedfields, schema, strategicpatch, timeutil
from kubelite.api.errors import StatusError
from kubelite.api.fields import object_fields, parse_field_selector
from kubelite.api.labels import SelectorError, parse_selector, selector_from_label_selector
from kubelite.api.podsecurity import Configuration as PodSecurityConfiguration
from kubelite.api.registry import ResourceType, lookup
from kubelite.api.types import Obj
from kubelite.api.validation.names import is_dns1123_subdomain
from kubelite.apiserver import eviction, noderestriction, objects
from kubelite.apiserver.admission import Admission
from kubelite.apiserver.auth import (
    API_AUDIENCES,
    EXPIRATION_EXTENSION_SECONDS,
    REQUEST_USER,
    WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS,
    User,
)
from kubelite.apiserver.strategy import Rollback, Strategy, strategy_for
from kubelite.apiserver.writeturns import WriteTurns
from kubelite.store import (
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
    StoreError,
    WatchBatch,
)

log = logging.getLogger(__name__)

PatchType = Literal["json", "merge", "strategic"]


# ---------------------------------------------------------------------------- what the registry is given


class ServiceAllocator(Protocol):
    """ClusterIP and node port allocation for Services (apiserver.services.ServiceAllocation)."""

    async def allocate(self, svc: Obj, old: Obj | None, dry_run: bool) -> Rollback: ...

    async def release_unused(self, new: Obj | None, old: Obj) -> None: ...


def _core(plural: str) -> ResourceType:
    rt = lookup("", "v1", plural)
    assert rt is not None, plural
    return rt


class TokenIssuer(Protocol):
    """Signs service account tokens (apiserver.auth.TokenSigner: it holds the key)."""

    def issue(
        self, namespace: str, service_account: str, sa_uid: str, *, expiration_seconds: int = ...,
        audiences: builtins.list[str] | None = None, pod: tuple[str, str] | None = None,
        secret: tuple[str, str] | None = None, node: tuple[str, str] | None = None, warn_after: int = 0,
    ) -> tuple[str, int]: ...



@dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_path(path: str) -> Target | None:
    """Resolve ``/api/v1/namespaces/ns/pods/name/status`` & co. to a :class:`Target`."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        # /namespaces/{ns}/{plural}[/{name}[/{sub}]]; but /namespaces/{name}/status|finalize
        # names the namespace's own subresource.
        namespace_subresource = len(rest) == 3 and rest[2] in ("status", "finalize") and lookup(
            group, version, rest[2]) is None
        if not namespace_subresource:
            namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    rt = lookup(group, version, rest[0])
    if rt is None:
        return None
    # .../{name}/proxy/{path...}: the rest of the path is the backend's.
    if len(rest) > 3 and not (rest[2] == "proxy" and "proxy" in rt.subresources):
        return None
    if namespace is not None and not rt.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in rt.subresources:
        return None
    return Target(rt, namespace, name, sub)


# ---------------------------------------------------------------------------- encoding


def decode_kv(kv: KeyValue, rt: ResourceType | None = None) -> dict[str, Any]:
    """The stored object with its resourceVersion; as ``rt`` serves it when ``rt`` is a view
    of another kind's storage (an events.k8s.io Event read from its stored core form)."""
    obj: dict[str, Any] = orjson.loads(kv.value)
    if rt is not None and rt.view is not None:
        obj = rt.view.to_view(obj)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


# Stored objects begin with apiVersion, kind and metadata (encode_for_store puts them first),
# so that the resourceVersion can be spliced into the stored bytes on the way out: gets,
# lists, watch events and write responses are then served without a parse and a re-encode.
# apiVersion and kind are plain strings (no quote, no backslash), which is what makes the
# match exact: the metadata it finds is the top-level one.
_STORED_HEAD = re.compile(rb'\{"apiVersion":"[^"\\]*","kind":"[^"\\]*","metadata":\{')
_HEAD_KEYS = ("apiVersion", "kind", "metadata")


def object_bytes(kv: KeyValue, rt: ResourceType | None = None) -> bytes:
    """The object's JSON as served (with its resourceVersion), from the stored bytes."""
    if rt is not None and rt.view is not None:
        return orjson.dumps(decode_kv(kv, rt))
    value = kv.value
    m = _STORED_HEAD.match(value)
    if m is None:  # written in another shape (an older version): take the long way
        return orjson.dumps(decode_kv(kv))
    end = m.end()
    rv = b'"resourceVersion":"%d"' % kv.mod_revision
    if value[end : end + 1] == b"}":
        return value[:end] + rv + value[end:]
    return value[:end] + rv + b"," + value[end:]


def encode_for_store(obj: dict[str, Any], rt: ResourceType | None = None) -> bytes:
    if rt is not None and rt.view is not None:
        obj = rt.view.to_storage(obj)
    meta = obj.get("metadata", {})
    rv = meta.pop("resourceVersion", None)
    try:
        keys = iter(obj)
        if (
            next(keys, None) != "apiVersion" or next(keys, None) != "kind" or next(keys, None) != "metadata"
        ) and all(k in obj for k in _HEAD_KEYS):
            return orjson.dumps({k: obj[k] for k in _HEAD_KEYS} | obj)
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def check_object_body(obj: Any, rt: ResourceType, expect_kind: str | None = None) -> dict[str, Any]:
    """The body must be an object of the kind and version the URL names."""
    if not isinstance(obj, dict):
        raise errors.bad_request(
            f"json: cannot unmarshal {type(obj).__name__} into Go value of type struct"
            if obj is not None
            else "the body of the request was empty"
        )
    kind = expect_kind or rt.kind
    got_kind, got_av = obj.get("kind"), obj.get("apiVersion")
    if got_kind in (None, "") and got_av in (None, ""):
        # kube-apiserver defaults both from the URL when both are missing.
        obj["kind"], obj["apiVersion"] = kind, rt.api_version
    elif not isinstance(got_kind, str) or not got_kind:
        raise errors.bad_request(f"Object 'Kind' is missing in '{orjson.dumps(obj).decode()[:200]}'")
    elif got_av != rt.api_version:
        raise errors.bad_request(
            f"the API version in the data ({got_av}) does not match the expected API version ({rt.api_version})"
        )
    elif got_kind != kind:
        raise errors.bad_request(f"the kind in the data ({got_kind}) does not match the expected kind ({kind})")
    meta = obj.get("metadata")
    if meta is None:
        obj["metadata"] = {}
    elif not isinstance(meta, dict):
        raise errors.bad_request(
            f"{kind} in version \"{rt.version}\" cannot be handled as a {kind}: "
            f"json: cannot unmarshal {type(meta).__name__} into Go struct field {kind}.metadata of type v1.ObjectMeta"
        )
    return obj


# ---------------------------------------------------------------------------- list helpers


def _encode_continue(rev: int, last_key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key})).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        d = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(d["rv"]), str(d["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None


class Filter:
    """Label and field selectors of a list or watch request, parsed once."""

    def __init__(self, rt: ResourceType, query: Any) -> None:
        self.rt = rt
        try:
            self.labels = parse_selector(query.get("labelSelector", ""))
        except SelectorError as e:
            raise errors.bad_request(str(e)) from None
        try:
            # In internal names: a Pod's old ``spec.host`` selects on ``spec.nodeName``.
            self.fields = parse_field_selector(query.get("fieldSelector", "")).validate_for(rt.group, rt.kind)
        except SelectorError as e:
            raise errors.bad_request(str(e)) from None
        self.trivial = self.labels.empty and self.fields.empty
        # Terms a store key answers (it ends in [namespace/]name): checked before decoding, so
        # that a watch for one object by name does not decode every write of its kind.
        self._key_terms = [r for r in self.fields.requirements if r.field in ("metadata.name", "metadata.namespace")]
        self._prefix_len = len(rt.key_prefix())

    def key_excludes(self, key: str) -> bool:
        """True when the key alone shows the object does not match."""
        if not self._key_terms:
            return False
        rest = key[self._prefix_len:]
        ns, _, name = rest.partition("/") if self.rt.namespaced else ("", "", rest)
        fields = {"metadata.name": name, "metadata.namespace": ns}
        return not all(r.matches(fields) for r in self._key_terms)

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.trivial:
            return True
        meta = obj.get("metadata", {})
        if not self.labels.matches(meta.get("labels") or {}):
            return False
        return self.fields.empty or self.fields.matches(object_fields(self.rt.group, self.rt.kind, obj))



# ---------------------------------------------------------------------------- namespaces


NAMESPACES_PREFIX = "/registry/core/namespaces/"


class ActiveNamespaces:
    """The namespaces that exist and are not terminating, kept current from a watch.

    kube-apiserver's NamespaceLifecycle admission reads namespaces from an informer the same
    way and looks up live only what the cache does not vouch for. Here it spares every
    namespaced create a store round trip, which for an API server worker is a trip through
    the owner's event loop. A namespace that started terminating a moment ago may still
    admit a create for as long as its event takes to arrive, as in Kubernetes; the
    namespace controller deletes such stragglers with the rest.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.names: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self._relist()
        self._task = asyncio.create_task(self._follow(rev), name="active-namespaces")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _relist(self) -> int:
        kvs, rev, _ = await self.store.list(NAMESPACES_PREFIX)
        self.names = {kv.key[len(NAMESPACES_PREFIX):] for kv in kvs if b'"deletionTimestamp"' not in kv.value}
        return rev

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.store.watch_batches(NAMESPACES_PREFIX, rev)) as batches:
                    async for batch in batches:
                        for ev in batch.events:
                            name = ev.kv.key[len(NAMESPACES_PREFIX):]
                            # A timestamp mentioned elsewhere only costs a live lookup.
                            if ev.type == "DELETED" or b'"deletionTimestamp"' in ev.kv.value:
                                self.names.discard(name)
                            else:
                                self.names.add(name)
                        rev = batch.revision
            except StoreError as e:  # compacted past us, or fell behind: start over
                self.names = set()
                log.info("namespace cache: %s; relisting", e)
                await asyncio.sleep(0.1)
                try:
                    rev = await self._relist()
                except StoreError:
                    continue




class CachedKind:
    """Every object of one cluster-scoped kind, kept current from a watch: an informer's cache.

    kube-apiserver's admission plugins read what they need (the Priority plugin its
    PriorityClasses) from informers, not from etcd. Here the cache spares every pod create a
    store round trip. Until it has listed once (and after it lost its watch) it is not
    ``synced`` and readers go to the store; like an informer it may lag a write by the time
    an event takes, so a reader that misses a name looks it up live.
    """

    def __init__(self, store: Store, rt: ResourceType) -> None:
        self.store = store
        self.rt = rt
        self.prefix = rt.key_prefix()
        self.objects: dict[str, Obj] = {}
        self.synced = False
        self.generation = 0  # moves with every change: readers that derive data from it rebuild
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self._relist()
        self._task = asyncio.create_task(self._follow(rev), name=f"cache {self.prefix}")

    async def stop(self) -> None:
        self.synced = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _relist(self) -> int:
        kvs, rev, _ = await self.store.list(self.prefix)
        self.objects = {kv.key: decode_kv(kv, self.rt) for kv in kvs}
        self.synced = True
        self.generation += 1
        return rev

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.store.watch_batches(self.prefix, rev)) as batches:
                    async for batch in batches:
                        for ev in batch.events:
                            if ev.type == "DELETED":
                                self.objects.pop(ev.kv.key, None)
                            else:
                                self.objects[ev.kv.key] = decode_kv(ev.kv, self.rt)
                        rev = batch.revision
                        if batch.events:  # not for progress alone: what readers derived still holds
                            self.generation += 1
            except StoreError as e:
                self.synced = False
                log.info("cache of %s: %s; relisting", self.prefix, e)
                await asyncio.sleep(0.1)
                try:
                    rev = await self._relist()
                except StoreError:
                    continue


# ---------------------------------------------------------------------------- the registry


@dataclass
class ListPage:
    """One page of a list: the stored objects, decoded where a selector needed them."""

    kvs: builtins.list[KeyValue]
    decoded: builtins.list[Obj]
    revision: int
    continue_token: str


@dataclass(frozen=True)
class ListOptions:
    """What a list or watch asks for beyond the resource: selectors, paging."""

    filter: Filter
    limit: int = 0
    continue_token: str = ""
    # Whether the caller needs the decoded objects (a Table, metadata only): otherwise a
    # list without selectors is served from the stored bytes.
    decode: bool = False


@dataclass
class Registry:
    """Store access for every resource; per-kind behaviour comes from the strategies.

    ``services`` and ``tokens`` are handed in by whoever builds the API server (constructor
    injection, narrow protocols): a registry without them serves everything but Service
    allocation and TokenRequests, which is what the IPAddress objects of the allocator need.
    """

    store: Store
    services: ServiceAllocator | None = None
    tokens: TokenIssuer | None = None
    # --service-account-extend-token-expiration (default true): see create_token.
    extend_token_expiration: bool = True
    # PodSecurity's configuration (--admission-control-config-file); None: kube-apiserver's default.
    pod_security: PodSecurityConfiguration | None = None
    namespaces: ActiveNamespaces = field(init=False)
    # Kinds admission reads on hot paths, cached (started with the server, like namespaces).
    caches: dict[ResourceType, CachedKind] = field(init=False, default_factory=dict)
    admission: Admission = field(init=False)
    _strategies: dict[ResourceType, Strategy] = field(init=False, default_factory=dict)
    _write_turns: WriteTurns = field(init=False, default_factory=WriteTurns)

    def __post_init__(self) -> None:
        self.namespaces = ActiveNamespaces(self.store)
        self.admission = Admission(self.store, self.pod_security)
        priority_classes = lookup("scheduling.k8s.io", "v1", "priorityclasses")
        if priority_classes is not None:
            self.caches[priority_classes] = CachedKind(self.store, priority_classes)

    async def start_caches(self) -> None:
        """Start what admission reads from watches: namespaces, cached kinds, the policy indexes."""
        await self.namespaces.start()
        for cache in self.caches.values():
            await cache.start()
        await self.admission.start()

    async def stop_caches(self) -> None:
        await self.namespaces.stop()
        for cache in self.caches.values():
            await cache.stop()
        await self.admission.stop()

    def strategy(self, rt: ResourceType) -> Strategy:
        s = self._strategies.get(rt)
        if s is None:
            s = self._strategies[rt] = strategy_for(rt, self.services)
        return s

    # -- reads

    async def get(self, target: Target) -> tuple[Obj, KeyValue]:
        """The object and its stored form (served as is, without a re-encode)."""
        assert target.name is not None
        kv = await self.store.get(target.rt.key(target.namespace, target.name))
        if kv is None:
            raise errors.not_found_error(target.rt.plural, target.name, target.rt.group)
        return decode_kv(kv, target.rt), kv

    async def get_object(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj, _ = await self.get(Target(rt, namespace, name, None))
        return obj

    async def list_objects(self, rt: ResourceType, namespace: str | None, *, fresh: bool = False) -> builtins.list[Obj]:
        """Every object of a kind (in a namespace); from the kind's cache if it has a synced one,
        unless ``fresh`` asks for the store's current state."""
        cache = self.caches.get(rt)
        if cache is not None and cache.synced and not fresh:
            return list(cache.objects.values())
        kvs, _, _ = await self.store.list(rt.key_prefix(namespace))
        return [decode_kv(kv, rt) for kv in kvs]

    async def list(self, target: Target, opts: ListOptions) -> ListPage:
        """A page of objects matching the selectors; with a selector the limit counts matches."""
        rt, flt, limit = target.rt, opts.filter, opts.limit
        start = ""
        if opts.continue_token:
            _, start = _decode_continue(opts.continue_token)
        prefix = rt.key_prefix(target.namespace)
        decode = opts.decode or not flt.trivial
        matched: builtins.list[KeyValue] = []
        decoded: builtins.list[Obj] = []
        more, last_key = False, start
        rev = self.store.revision
        while True:
            chunk_limit = 0 if limit <= 0 else max(limit - len(matched), 64 if not flt.trivial else limit - len(matched))
            kvs, rev, more = await self.store.list(prefix, start_after=last_key, limit=chunk_limit)
            if not decode:
                take = kvs if limit <= 0 else kvs[: limit - len(matched)]
                matched += take
                if take:
                    last_key = take[-1].key
                if limit > 0 and len(matched) >= limit:
                    more = more or len(take) < len(kvs)
                    if not more:
                        more = bool((await self.store.list(prefix, start_after=last_key, limit=1))[0])
                    break
                if not more:
                    break
                continue
            for kv in kvs:
                last_key = kv.key
                if flt.key_excludes(kv.key):
                    continue
                obj = decode_kv(kv, rt)
                if flt.matches(obj):
                    matched.append(kv)
                    decoded.append(obj)
                    if limit > 0 and len(matched) >= limit:
                        break
            if limit > 0 and len(matched) >= limit:
                more = more or last_key != (kvs[-1].key if kvs else last_key)
                if not more:
                    # Are there more matches after the last key we returned?
                    more = bool((await self.store.list(prefix, start_after=last_key, limit=1))[0])
                break
            if not more:
                break
        cont = _encode_continue(rev, last_key) if limit > 0 and more else ""
        return ListPage(matched, decoded, rev, cont)

    def watch_batches(self, target: Target, from_revision: int) -> AsyncGenerator[WatchBatch, None]:
        """The store's change batches under the target's prefix (the HTTP layer filters and streams)."""
        return self.store.watch_batches(target.rt.key_prefix(target.namespace), from_revision)

    async def initial(self, target: Target) -> tuple[builtins.list[KeyValue], int]:
        """Everything under the target's prefix and the revision it reflects (a watch's ADDED events)."""
        kvs, rev, _ = await self.store.list(target.rt.key_prefix(target.namespace))
        return kvs, rev

    # -- creates and updates

    async def _ensure_namespace(self, rt: ResourceType, ns: str | None, *, creating: bool) -> None:
        if not rt.namespaced or ns is None or ns in self.namespaces.names:
            return
        kv = await self.store.get(f"{NAMESPACES_PREFIX}{ns}")
        if kv is None:
            raise errors.not_found_error("namespaces", ns)
        if creating and b'"deletionTimestamp"' in kv.value:
            ns_obj = decode_kv(kv)
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise errors.StatusError(
                    403,
                    "Forbidden",
                    f"{rt.plural} \"{'...'}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    {"kind": rt.plural, "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {ns} is being terminated", "field": "metadata.namespace"}]},
                )

    def _invalid(self, rt: ResourceType, obj: dict[str, Any], errs: builtins.list[errors.FieldError]) -> StatusError:
        name = obj.get("metadata", {}).get("name") or ""
        return errors.invalid_error(rt.kind, name, errs, rt.group)


    async def create(
        self, target: Target, obj: Obj, *, manager: str, dry_run: bool = False, requester: User | None = None,
    ) -> KeyValue | Obj:
        """POST on a collection: the stored KeyValue, or the object that would be (dry run)."""
        if target.subresource:
            raise errors.method_not_allowed()
        return await self.store_new(
            target.rt, target.namespace, obj, manager=manager, dry_run=dry_run, requester=requester
        )

    async def create_object(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        manager: str,
        dry_run: bool = False,
        managed: builtins.list[dict[str, Any]] | None = None,
        requester: User | None = None,
    ) -> dict[str, Any]:
        """Create path shared by POST, apply-creates and create-on-update."""
        created = await self.store_new(
            rt, namespace, obj, manager=manager, dry_run=dry_run, managed=managed, requester=requester
        )
        return decode_kv(created, rt) if isinstance(created, KeyValue) else created

    async def store_new(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        manager: str,
        dry_run: bool = False,
        managed: builtins.list[dict[str, Any]] | None = None,
        requester: User | None = None,
    ) -> KeyValue | dict[str, Any]:
        """The create itself: the stored KeyValue, or the object that would be (dry run)."""
        strat = self.strategy(rt)
        meta = obj["metadata"]
        body_ns = meta.get("namespace")
        if rt.namespaced:
            if namespace is None:
                raise errors.bad_request("the server could not find the requested resource")
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
        # Mutating admission runs before the name is generated, as in kube-apiserver (a refused
        # generateName pod is `pods is forbidden: ...`), in its plugin order: LimitRanger
        # (on the defaulted pod, as kube-apiserver decodes it), then the strategy's (Priority).
        await self.admission.mutate(rt, namespace, obj, strat.defaults)
        await strat.admit(obj, None, self)
        body_name = meta.get("name")
        if not body_name and meta.get("generateName") and isinstance(meta["generateName"], str):
            meta["name"] = objects.generate_name(meta["generateName"])
        objects.prepare_create(
            obj, has_status=strat.has_status, namespaced=rt.namespaced, namespace=namespace,
            generation=strat.tracks_generation,
        )
        strat.prepare_create(obj)
        if requester is not None:
            strat.prepare_create_by(obj, requester)
        strat.defaults(obj)
        errs = strat.validate(obj, None)
        if errs:
            raise self._invalid(rt, obj, errs)
        await self.restrict_node("CREATE", rt, None, namespace, str(meta.get("name") or ""), obj, None)
        await self._ensure_namespace(rt, namespace, creating=True)
        # Validating admission in kube-apiserver's plugin order: LimitRanger, Priority (the
        # strategy's), CertificateSubjectRestriction, ResourceQuota last (it charges the quota).
        await self.admission.validate(rt, namespace, obj, dry_run=dry_run, before_quota=functools.partial(
            strat.admit_validating, obj, None, self))
        now = objects.now_rfc3339()
        if managed is not None:
            meta["managedFields"] = managed
        else:
            managedfields.update_managed_fields(
                None, obj, manager=manager, api_version=rt.api_version, now=now,
                schema=schema.schema_for(rt.group, rt.version, rt.kind),
            )
        generated = not body_name and bool(meta.get("generateName"))
        # RetryGenerateName (GA in 1.32): a generated name that collides is drawn again.
        for attempt in range(8 if generated else 1):
            name = meta["name"]
            if (strat.allocates or dry_run) and await self.store.get(rt.key(namespace, name)) is not None:
                if generated and attempt < 7:
                    meta["name"] = objects.generate_name(meta["generateName"])
                    continue
                raise errors.already_exists(rt.plural, name, rt.group)
            rollback = await strat.allocate(obj, None, dry_run)
            if dry_run:
                return obj
            try:
                kv = await self.store.create(rt.key(namespace, name), encode_for_store(obj, rt))
            except BaseException as e:
                if rollback is not None:
                    await rollback()
                if isinstance(e, KeyExistsError):
                    if generated and attempt < 7:
                        meta["name"] = objects.generate_name(meta["generateName"])
                        continue
                    raise errors.already_exists(rt.plural, name, rt.group) from None
                raise
            return kv
        raise errors.already_exists(rt.plural, meta["name"], rt.group)

    async def guaranteed_update(
        self,
        target: Target,
        compute: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        manager: str,
        operation: str = "Update",
        precondition_rv: str | None = None,
        dry_run: bool = False,
        create_missing: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        track_fields: bool = True,
        internal: bool = False,
        admit: bool = False,
        via_subresource: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """Read-modify-write with compare-and-swap; returns (object, created). ``admit``: a
        client's own update (update, patch, apply, status, scale), which admission sees.

        ``via_subresource``: the subresource the request came through when it writes the main
        object (``scale``): admission sees that subresource, as in kube-apiserver.

        Writers of one object in this process take turns (writeturns): otherwise N
        concurrent patches all read the same revision, all compute, one wins each commit and
        the rest redo everything, so contended throughput fell with every added client.
        """
        assert target.name is not None
        async with self._write_turns.turn(target.rt.key(target.namespace, target.name)):
            return await self._guaranteed_update(
                target, compute, manager=manager, operation=operation, precondition_rv=precondition_rv,
                dry_run=dry_run, create_missing=create_missing, track_fields=track_fields, internal=internal,
                admit=admit,
                via_subresource=via_subresource,
            )

    async def _guaranteed_update(
        self,
        target: Target,
        compute: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        manager: str,
        operation: str,
        precondition_rv: str | None,
        dry_run: bool,
        create_missing: Callable[[], Awaitable[dict[str, Any]]] | None,
        track_fields: bool,
        internal: bool,
        admit: bool = False,
        via_subresource: str = "",
    ) -> tuple[dict[str, Any], bool]:
        rt = target.rt
        assert target.name is not None
        key = rt.key(target.namespace, target.name)
        strat = self.strategy(rt)
        for _attempt in range(64):
            kv = await self.store.get(key)
            if kv is None:
                if create_missing is not None:
                    return await create_missing(), True
                raise errors.not_found_error(rt.plural, target.name, rt.group)
            old = decode_kv(kv, rt)
            new = compute(copy.deepcopy(old))
            check_object_body(new, rt)
            nmeta = new["metadata"]
            # Only a resourceVersion the client itself sent is a precondition (a PUT body's, or
            # one inside a patch); otherwise a lost compare-and-swap is retried on the new state.
            client_rv = precondition_rv
            if client_rv:
                if client_rv != old["metadata"]["resourceVersion"]:
                    raise errors.conflict(rt.plural, target.name, group=rt.group)
            elif not nmeta.get("resourceVersion"):
                # An unconditional update (the store's doUnconditionalUpdate): the object takes
                # the stored resourceVersion before it is validated, as if the client had sent it.
                nmeta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if nmeta.get("name") not in (None, target.name):
                raise errors.bad_request(
                    f"the name of the object ({nmeta.get('name')}) does not match the name on the URL ({target.name})"
                )
            nmeta["name"] = target.name
            if rt.namespaced:
                if nmeta.get("namespace") not in (None, "", target.namespace):
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                nmeta["namespace"] = target.namespace
            if target.subresource == "status":
                strat.prepare_status_update(new, old)
            elif target.subresource == "approval":
                strat.prepare_approval_update(new, old)
            elif target.subresource is None and not internal:
                strat.prepare_update(new, old)
            objects.carry_server_fields(new, old)
            if strat.tracks_generation and target.subresource is None and objects.spec_changed(new, old):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            strat.defaults(new)
            # ``internal`` writes (a binding) change what a client's update may not; like
            # kube-apiserver's binding path, they skip the update validation.
            errs = [] if internal else strat.validate(new, old, target.subresource)
            if errs:
                raise self._invalid(rt, new, errs)
            if admit:
                await self.restrict_node("UPDATE", rt, target.subresource, target.namespace, target.name, new, old)
            if target.subresource is None and not internal:
                await strat.admit(new, old, self)
                # Validating admission in kube-apiserver's plugin order: PodSecurity, then the strategy's.
                if not via_subresource:
                    await self.admission.validate_update(rt, target.namespace, new, old)
                await strat.admit_validating(new, old, self)
            if track_fields:
                managedfields.update_managed_fields(
                    old, new, manager=manager, operation=operation, api_version=rt.api_version,
                    subresource=target.subresource or "", now=objects.now_rfc3339(),
                    schema=schema.schema_for(rt.group, rt.version, rt.kind),
                )
            if objects.strip_for_compare(new) == objects.strip_for_compare(old):
                if new["metadata"].get("managedFields") == old["metadata"].get("managedFields"):
                    return old, False
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            rollback = await strat.allocate(new, old, dry_run)
            if dry_run:
                return new, False
            if self._finalized(rt, new):
                try:
                    dkv = await self.store.delete(key, expected_mod_revision=kv.mod_revision)
                except ConflictError:
                    continue
                except KeyNotFoundError:
                    raise errors.not_found_error(rt.plural, target.name, rt.group) from None
                await strat.release(None, old)
                return decode_kv(dkv, rt), False
            try:
                nkv = await self.store.update(key, encode_for_store(new, rt), expected_mod_revision=kv.mod_revision)
            except BaseException as e:
                if rollback is not None:
                    await rollback()
                if isinstance(e, ConflictError):
                    if client_rv:
                        raise errors.conflict(rt.plural, target.name, group=rt.group) from None
                    continue
                if isinstance(e, KeyNotFoundError):
                    if create_missing is not None:
                        return await create_missing(), True
                    raise errors.not_found_error(rt.plural, target.name, rt.group) from None
                raise
            await strat.release(new, old)
            return decode_kv(nkv, rt), False
        raise errors.conflict(rt.plural, target.name, "too many concurrent writers", group=rt.group)

    @staticmethod
    def _finalized(rt: ResourceType, obj: dict[str, Any]) -> bool:
        """A terminating object whose last finalizer just went: it is deleted for real."""
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if rt.kind == "Namespace" and rt.group == "" and (obj.get("spec") or {}).get("finalizers"):
            return False
        if rt.kind == "Pod" and rt.group == "" and (meta.get("deletionGracePeriodSeconds") or 0) > 0:
            return False  # the node agent deletes it once its processes are gone
        return True


    async def update(self, target: Target, obj: Obj, *, manager: str, dry_run: bool) -> tuple[Obj, bool]:
        """PUT: replace the object (or its status, or a namespace's finalizers); (object, created)."""
        rt = target.rt
        if target.subresource == "scale":
            raise errors.method_not_allowed()
        strat = self.strategy(rt)

        async def create_missing() -> Obj:
            if not strat.allow_create_on_update or target.subresource:
                raise errors.not_found_error(rt.plural, target.name or "", rt.group)
            fresh = copy.deepcopy(obj)
            fresh["metadata"]["name"] = target.name
            return await self.create_object(rt, target.namespace, fresh, manager=manager, dry_run=dry_run)

        if target.subresource == "finalize":
            def compute(old: Obj) -> Obj:
                old["spec"] = obj.get("spec", {})
                return old
        else:
            def compute(old: Obj) -> Obj:
                new = copy.deepcopy(obj)
                new["metadata"].setdefault("managedFields", old["metadata"].get("managedFields"))
                if new["metadata"]["managedFields"] is None:
                    del new["metadata"]["managedFields"]
                return new

        client_rv = obj["metadata"].get("resourceVersion") or None
        if client_rv is None and not strat.allow_unconditional_update and target.subresource != "finalize":
            await self.get(target)  # a missing object is a 404 before this 422
            raise unconditional_update_refused(rt, target.name or "")
        return await self.guaranteed_update(
            target, compute, manager=manager, dry_run=dry_run, create_missing=create_missing,
            precondition_rv=client_rv, admit=True,
        )

    async def patch(
        self, target: Target, ptype: PatchType, patch: Any, *, manager: str, directive: str, dry_run: bool
    ) -> tuple[Obj, builtins.list[str]]:
        """A JSON, merge or strategic merge patch; returns the object and strict decoding's warnings."""
        rt = target.rt
        kind_schema = schema.schema_for(rt.group, rt.version, rt.kind) or {}
        precondition = None
        if isinstance(patch, dict):
            precondition = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch.get("metadata"), dict) else None
        warnings: builtins.list[str] = []

        def compute(old: Obj) -> Obj:
            nonlocal warnings
            try:
                if ptype == "json":
                    new = jsonpatching.apply(old, patch)  # bounded while applying
                elif ptype == "merge":
                    new = merge_patch(old, patch)
                else:
                    new = strategicpatch.apply_strategic_merge_patch(old, patch, kind_schema)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise errors.StatusError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from None
            except strategicpatch.PatchError as e:
                raise e.status_error() from None
            except (TypeError, KeyError, ValueError, AttributeError) as e:
                raise errors.bad_request(f"unable to apply patch: {e}") from None
            if not isinstance(new, dict):
                raise errors.bad_request("the patched object is not an object")
            # The patched object goes through strict decoding like any body.
            check_object_body(new, rt)
            warnings = decoding.enforce_patched(
                decoding.check(rt.group, rt.version, rt.kind, new), directive, new
            )
            return new

        result, _ = await self.guaranteed_update(
            target, compute, manager=manager, precondition_rv=precondition, dry_run=dry_run, admit=True,
        )
        return result, warnings

    async def apply(
        self, target: Target, applied: Obj, *, manager: str, force: bool, dry_run: bool,
        requester: User | None = None,
    ) -> tuple[Obj, bool]:
        """Server-side apply of an already checked object; (object, created)."""
        rt = target.rt
        kind_schema = schema.schema_for(rt.group, rt.version, rt.kind) or {}
        now = objects.now_rfc3339()

        def run(live: Obj | None) -> Obj:
            try:
                result = ssa.server_side_apply(
                    live, applied, manager=manager, force=force, schema=kind_schema,
                    api_version=rt.api_version, now=now,
                )
                decoding.bounded(result)  # the applied and the live object are each bounded; merged, they may not be
                return result
            except strategicpatch.PatchError as e:
                raise e.status_error() from None

        async def create_missing() -> Obj:
            obj = run(None)
            obj["metadata"]["name"] = target.name
            managed = obj["metadata"].get("managedFields")
            return await self.create_object(
                rt, target.namespace, obj, manager=manager, dry_run=dry_run, managed=managed, requester=requester
            )

        return await self.guaranteed_update(
            target, run, manager=manager, operation="Apply", dry_run=dry_run,
            create_missing=create_missing, track_fields=False, admit=True,
        )

    async def update_status(
        self, rt: ResourceType, namespace: str | None, name: str,
        compute: Callable[[Obj], Obj], *, manager: str, dry_run: bool,
    ) -> Obj:
        """A read-modify-write of the status subresource (what eviction does to a budget)."""
        result, _ = await self.guaranteed_update(
            Target(rt, namespace, name, "status"), compute, manager=manager, dry_run=dry_run
        )
        return result

    # -- subresources

    async def get_scale(self, target: Target) -> Obj:
        obj, _ = await self.get(Target(target.rt, target.namespace, target.name, None))
        return scale_of(obj)

    async def update_scale(
        self, target: Target, wanted_of: Callable[[Obj], Any], *, manager: str, precondition_rv: str | None,
        dry_run: bool,
    ) -> Obj:
        """``deployments/scale``, ``replicasets/scale``, ``replicationcontrollers/scale``: ``wanted_of`` maps the
        current Scale to the wanted one."""

        def compute(old: Obj) -> Obj:
            wanted = wanted_of(scale_of(old))
            replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool):
                raise errors.invalid_error("Scale", target.name or "", [errors.invalid("spec.replicas", replicas, "must be an integer")], "autoscaling")
            if replicas < 0:
                raise errors.invalid_error("Scale", target.name or "", [errors.invalid("spec.replicas", replicas, "must be greater than or equal to 0")], "autoscaling")
            old.setdefault("spec", {})["replicas"] = replicas
            return old

        result, _ = await self.guaranteed_update(
            Target(target.rt, target.namespace, target.name, None), compute, manager=manager,
            precondition_rv=precondition_rv, dry_run=dry_run, admit=True, via_subresource="scale",
        )
        return scale_of(result)

    async def bind(self, target: Target, binding: Obj, *, manager: str) -> None:
        """``pods/<name>/binding``: the scheduler's way to set spec.nodeName, once."""
        if not isinstance(binding.get("target"), dict):
            raise errors.bad_request("a Binding with a target is required")
        node = binding["target"].get("name")
        name = target.name or (binding.get("metadata") or {}).get("name")
        if not node or not name:
            raise errors.invalid_error("Binding", name or "", [errors.required("target.name")])
        pod_target = Target(target.rt, target.namespace, name, None)

        def compute(old: Obj) -> Obj:
            if old["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host")
            current = (old.get("spec") or {}).get("nodeName")
            if current:
                raise errors.conflict("pods/binding", name, f'pod {name} is already assigned to node "{current}"')
            old["spec"]["nodeName"] = node
            conds = [c for c in (old.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": objects.now_rfc3339()})
            old.setdefault("status", {})["conditions"] = conds
            return old

        if is_dns1123_subdomain(node):
            raise errors.invalid_error("Binding", name, [errors.invalid("target.name", node, "a lowercase RFC 1123 subdomain")])
        await self.guaranteed_update(pod_target, compute, manager=manager, internal=True)

    async def restrict_node(self, operation: str, rt: ResourceType, subresource: str | None, namespace: str | None,
                            name: str, obj: Obj | None, old: Obj | None) -> None:
        """NodeRestriction admission for the request being served (a no-op unless a node sends it)."""
        user = REQUEST_USER.get()
        if user is None or not user.name.startswith("system:node:"):
            return

        async def get_pod(ns: str, pod_name: str) -> Obj | None:
            kv = await self.store.get(_core("pods").key(ns, pod_name))
            return decode_kv(kv) if kv is not None else None

        await noderestriction.admit(user, operation, rt, subresource, namespace, name, obj, old, get_pod)

    async def create_token(self, target: Target, request: Obj) -> Obj:
        """``serviceaccounts/<name>/token``: a TokenRequest answered with a signed, bound token
        (TokenREST.Create): audiences default to the API server's, expirationSeconds to an hour
        (at least 10 minutes, at most 2^32 seconds); a boundObjectRef names a Pod (of this
        account; its node goes into the token too), a Secret or a Node, which must exist with the
        UID given.

        Extended expiration (``--service-account-extend-token-expiration``, on by default), as
        TokenREST.Create: a pod-bound token asked for exactly 3607 seconds (what the kubelet asks
        for a ``kube-api-access-*`` volume) for the API server's own audiences is signed to last a
        year, with ``kubernetes.io.warnafter`` at the requested expiry; the answer's
        expirationTimestamp is still the requested one, so the kubelet renews it as before. It
        lets clients that never re-read their token file keep working while they are found
        (kube-apiserver counts and audits the stale uses; kubelite does not yet)."""
        if self.tokens is None:
            raise errors.method_not_allowed()
        name, namespace = target.name or "", target.namespace or ""
        meta = request.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.invalid_error("TokenRequest", name, [errors.invalid(
                "metadata.name", meta["name"], "must match the service account name if specified")],
                "authentication.k8s.io")
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.invalid_error("TokenRequest", name, [errors.invalid(
                "metadata.namespace", meta["namespace"], "must match the service account namespace if specified")],
                "authentication.k8s.io")
        await self.restrict_node("CREATE", target.rt, "token", namespace, name, request, None)
        sa, _ = await self.get(target)
        spec = dict(request.get("spec") or {})
        spec["audiences"] = spec.get("audiences") or list(API_AUDIENCES)
        seconds = spec.get("expirationSeconds")
        seconds = 3600 if seconds is None else seconds
        spec["expirationSeconds"] = seconds
        problem = ""
        if not isinstance(seconds, int) or seconds < 600:
            problem = "may not specify a duration less than 10 minutes"
        elif seconds > 2**32:
            problem = "may not specify a duration larger than 2^32 seconds"
        if problem:
            raise errors.invalid_error("TokenRequest", "", [errors.invalid("spec.expirationSeconds", seconds, problem)],
                                       "authentication.k8s.io")
        pod = secret = node = None
        ref = spec.get("boundObjectRef")
        if ref:
            kind, api_version, ref_name = ref.get("kind", ""), ref.get("apiVersion", ""), ref.get("name", "")
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            if group == "" and kind == "Pod":
                obj = await self.get_object(_core("pods"), namespace, ref_name)
                if ((obj.get("spec") or {}).get("serviceAccountName") or "default") != name:
                    raise errors.bad_request(f'cannot bind token for serviceaccount "{name}" to pod running with '
                                             "different serviceaccount name.")
                pod = (ref_name, obj["metadata"].get("uid", ""))
                node_name = (obj.get("spec") or {}).get("nodeName") or ""
                if node_name:
                    kv = await self.store.get(_core("nodes").key(None, node_name))
                    node_uid = (orjson.loads(kv.value).get("metadata") or {}).get("uid", "") if kv else ""
                    node = (node_name, node_uid)  # a missing Node still leaves its name in the token
            elif group == "" and kind == "Secret":
                obj = await self.get_object(_core("secrets"), namespace, ref_name)
                secret = (ref_name, obj["metadata"].get("uid", ""))
            elif group == "" and kind == "Node":
                obj = await self.get_object(_core("nodes"), None, ref_name)
                node = (ref_name, obj["metadata"].get("uid", ""))
            else:
                gvk = f"{api_version}, Kind={kind}" if "/" in api_version else f"/{api_version}, Kind={kind}"
                raise errors.bad_request(f"cannot bind token to object of type {gvk}")
            uid = obj["metadata"].get("uid", "")
            if ref.get("uid") and ref["uid"] != uid:
                raise errors.conflict(kind, ref_name, f"the UID in the bound object reference ({ref['uid']}) does not "
                                      "match the UID in record. The object might have been deleted and then recreated",
                                      group=group)
        warn_after, valid_for = 0, seconds
        if (self.extend_token_expiration and pod is not None and seconds == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
                and set(spec["audiences"]) <= set(API_AUDIENCES)):
            warn_after, valid_for = seconds, EXPIRATION_EXTENSION_SECONDS
        now = time.time()
        token, exp = self.tokens.issue(
            namespace, name, sa["metadata"].get("uid", ""), expiration_seconds=valid_for,
            audiences=spec["audiences"], pod=pod, secret=secret, node=node, warn_after=warn_after,
        )
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": timeutil.format_epoch(now)},
            "spec": spec,
            # The requested expiry: the token's own exp is later (<=) when extended.
            "status": {"token": token, "expirationTimestamp": timeutil.format_epoch(exp - valid_for + seconds)},
        }

    async def evict(self, target: Target, body: Obj, *, dry_run: bool) -> Obj:
        """``pods/<name>/eviction`` (apiserver.eviction); the Status to answer, its code the HTTP status."""
        if (body.get("metadata") or {}).get("name") != target.name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        opts = body.get("deleteOptions") or {}
        if not isinstance(opts, dict):
            raise errors.bad_request("deleteOptions must be an object")
        opts = dict(opts)
        if dry_run and opts.get("dryRun") not in (None, [], ["All"]):
            raise errors.bad_request(
                f"Non-matching dry-run options in request and content: [All] and {opts.get('dryRun')}"
            )
        opts["dryRun"] = dry_run or bool(opts.get("dryRun"))
        assert target.name is not None and target.namespace is not None
        await self.restrict_node("CREATE", target.rt, "eviction", target.namespace, target.name, body, None)
        result = await eviction.evict(self, target.namespace, target.name, opts)
        # The create handler's rule for a returned Status: its code is the HTTP status, 201
        # when it has none.
        result.setdefault("code", 201)
        return result

    # -- deletes

    async def delete_named(self, rt: ResourceType, namespace: str | None, name: str, opts: Obj) -> tuple[Obj, int]:
        return await self.delete_object(Target(rt, namespace, name, None), opts)

    async def delete_object(self, target: Target, opts: dict[str, Any]) -> tuple[dict[str, Any], int]:
        rt = target.rt
        assert target.name is not None
        key = rt.key(target.namespace, target.name)
        for _attempt in range(64):
            obj, kv = await self.get(target)
            meta = obj["metadata"]
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(
                    rt.plural, target.name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
                    group=rt.group,
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(
                    rt.plural, target.name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                    group=rt.group,
                )
            await self.restrict_node("DELETE", rt, None, target.namespace, target.name, None, obj)
            graceful = self._graceful_update(rt, obj, opts)
            if graceful is not None:
                if opts.get("dryRun"):
                    return graceful, 200
                if graceful is obj:
                    return obj, 202 if meta.get("finalizers") else 200
                try:
                    nkv = await self.store.update(key, encode_for_store(graceful, rt), expected_mod_revision=kv.mod_revision)
                except ConflictError:
                    continue
                except KeyNotFoundError:
                    raise errors.not_found_error(rt.plural, target.name, rt.group) from None
                out = decode_kv(nkv, rt)
                return out, 202 if out["metadata"].get("finalizers") else 200
            if opts.get("dryRun"):
                return obj, 200
            try:
                dkv = await self.store.delete(key, expected_mod_revision=kv.mod_revision)
            except ConflictError:
                continue
            except KeyNotFoundError:
                raise errors.not_found_error(rt.plural, target.name, rt.group) from None
            deleted = decode_kv(dkv, rt)
            await self.strategy(rt).release(None, obj)
            return deleted, 200
        raise errors.conflict(rt.plural, target.name, "too many concurrent writers", group=rt.group)

    def _graceful_update(self, rt: ResourceType, obj: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any] | None:
        """The object as it must be kept (terminating), or None to delete it now.

        Returns the very same object when it is already terminating and nothing changes.
        """
        meta = obj["metadata"]
        policy = opts.get("propagationPolicy")
        finalizers = list(meta.get("finalizers") or [])
        wanted = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy or "")
        if wanted and wanted not in finalizers:
            finalizers.append(wanted)
        if policy == "Background" and "orphan" in finalizers and not meta.get("deletionTimestamp"):
            finalizers.remove("orphan")
        grace = 0
        is_pod = rt.group == "" and rt.kind == "Pod"
        is_ns = rt.group == "" and rt.kind == "Namespace"
        if is_pod and (obj.get("spec") or {}).get("nodeName") and (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            default = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            grace = opts.get("gracePeriodSeconds", default)
            if grace is None:
                grace = default
            grace = max(int(grace), 0)
        ns_pending = is_ns and bool((obj.get("spec") or {}).get("finalizers"))
        if not finalizers and grace == 0 and not ns_pending:
            return None
        new = copy.deepcopy(obj)
        nmeta = new["metadata"]
        if finalizers:
            nmeta["finalizers"] = finalizers
        if nmeta.get("deletionTimestamp"):
            current = nmeta.get("deletionGracePeriodSeconds")
            if is_pod and current is not None and grace < current:
                # A shorter grace period may replace a longer one (kubectl delete --grace-period=1).
                nmeta["deletionGracePeriodSeconds"] = grace
                nmeta["deletionTimestamp"] = _ts_in(grace)
                if grace == 0 and not finalizers:
                    return None
                return new
            if nmeta.get("finalizers") == meta.get("finalizers"):
                return obj
            return new
        nmeta["deletionTimestamp"] = _ts_in(grace)
        nmeta["deletionGracePeriodSeconds"] = grace
        if is_ns:
            new.setdefault("status", {})["phase"] = "Terminating"
        return new


    async def delete_collection(self, target: Target, flt: Filter, opts: Obj) -> Obj:
        """DELETE on a collection: each matching object as a delete of its own would go."""
        rt = target.rt
        kvs, _rev, _ = await self.store.list(rt.key_prefix(target.namespace))
        deleted = []
        for kv in kvs:
            obj = decode_kv(kv, rt)
            if not flt.matches(obj):
                continue
            name = obj["metadata"]["name"]
            ns = obj["metadata"].get("namespace")
            try:
                out, _ = await self.delete_object(Target(rt, ns, name, None), opts)
            except StatusError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(out)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.revision)}, "items": deleted}


def unconditional_update_refused(rt: ResourceType, name: str) -> StatusError:
    """The store's answer to a PUT without resourceVersion for a kind whose strategy forbids one.

    It names the resource, not the kind (``leases.coordination.k8s.io``), and shows the
    resourceVersion as the uint64 zero it parsed, which Go's ``%#v`` prints ``0x0``.
    """
    err = _RawValueError(errors.ErrorType.INVALID, "metadata.resourceVersion", "0x0", "must be specified for an update")
    return errors.invalid_error(rt.plural, name, [err], rt.group)


class _RawValueError(errors.FieldError):
    """A field error whose value is already printed as Go prints it (unquoted)."""

    def body(self) -> str:
        return f"{self.type.text}: {self.value}" + (f": {self.detail}" if self.detail else "")


def scale_of(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a workload's replicas."""
    meta = obj["metadata"]
    sel = ((obj.get("spec") or {}).get("selector") or {})
    if obj.get("kind") == "ReplicationController":
        sel = {"matchLabels": sel}  # a plain label map, not a LabelSelector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)),
                   "selector": str(selector_from_label_selector(sel))},
    }


def check_eviction_body(body: Any) -> Obj:
    """An Eviction of policy/v1 or v1beta1 (EvictionREST accepts both group versions)."""
    if not isinstance(body, dict):
        raise errors.bad_request("an Eviction is required")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind in (None, "") and api_version in (None, ""):
        body["kind"], body["apiVersion"] = "Eviction", "policy/v1"
    elif api_version not in eviction.EVICTION_API_VERSIONS:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )
    elif kind != "Eviction":
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind (Eviction)")
    if not isinstance(body.get("metadata") or {}, dict):
        raise errors.bad_request("metadata must be an object")
    return body


def _ts_in(seconds: int) -> str:
    return timeutil.format_time(timeutil.now() + dt.timedelta(seconds=seconds))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``kubectl patch --type merge`` and ``label`` send)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out
