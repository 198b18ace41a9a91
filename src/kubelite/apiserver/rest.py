"""Generic REST handlers: every verb on every served resource, as kube-apiserver answers it.

One implementation serves all kinds (the registry says which exist, the strategy what is
special about each), the way kube-apiserver's generic registry does. The write paths follow
its ``GuaranteedUpdate`` loop: read the current object, compute the new one, validate, then
compare-and-swap on the revision, retrying when another writer got in between, unless the
client itself named the resourceVersion it expects, in which case the conflict is theirs.

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
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonpatch
import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict

from kubelite.api import apply as ssa
from kubelite.api import decoding, errors, managedfields, printers, protobuf, schema, strategicpatch
from kubelite.api.errors import StatusError
from kubelite.api.fields import object_fields, parse_field_selector
from kubelite.api.labels import SelectorError, parse_selector
from kubelite.api.registry import SUBRESOURCES, ResourceType, lookup
from kubelite.apiserver import eviction, objects
from kubelite.apiserver.strategy import Strategy, strategy_for

if TYPE_CHECKING:
    from kubelite.apiserver.services import ServiceAllocation
from kubelite.store import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
    StoreError,
    WatchEvent,
)

log = logging.getLogger(__name__)

JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a request body
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
BOOKMARK_INTERVAL = 60.0
EVENT_CACHE_SIZE = 4096


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
        if len(rest) == 3 and rest[2] in ("status", "finalize") and lookup(group, version, rest[2]) is None:
            pass
        else:
            namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    rt = lookup(group, version, rest[0])
    if rt is None:
        return None
    if namespace is not None and not rt.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in rt.subresources:
        return None
    return Target(rt, namespace, name, sub)


# ---------------------------------------------------------------------------- encoding


def decode_kv(kv: KeyValue) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


# Stored objects begin with apiVersion, kind and metadata (encode_for_store puts them first),
# so that the resourceVersion can be spliced into the stored bytes on the way out: gets,
# lists, watch events and write responses are then served without a parse and a re-encode.
# apiVersion and kind are plain strings (no quote, no backslash), which is what makes the
# match exact: the metadata it finds is the top-level one.
_STORED_HEAD = re.compile(rb'\{"apiVersion":"[^"\\]*","kind":"[^"\\]*","metadata":\{')
_HEAD_KEYS = ("apiVersion", "kind", "metadata")


def object_bytes(kv: KeyValue) -> bytes:
    """The object's JSON as served (with its resourceVersion), from the stored bytes."""
    value = kv.value
    m = _STORED_HEAD.match(value)
    if m is None:  # written in another shape (an older version): take the long way
        return orjson.dumps(decode_kv(kv))
    end = m.end()
    rv = b'"resourceVersion":"%d"' % kv.mod_revision
    if value[end : end + 1] == b"}":
        return value[:end] + rv + value[end:]
    return value[:end] + rv + b"," + value[end:]


def encode_for_store(obj: dict[str, Any]) -> bytes:
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


def json_response(body: Any, status: int = 200, headers: Any = None) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type=JSON, headers=headers)


def status_response(err: StatusError) -> web.Response:
    return json_response(err.status(), err.code, err.headers or None)


def success_status(rt: ResourceType, name: str, uid: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _accept_params(accept: str) -> list[dict[str, str]]:
    out = []
    for part in accept.split(","):
        bits = part.strip().split(";")
        params = {"type": bits[0].strip()}
        for b in bits[1:]:
            k, _, v = b.strip().partition("=")
            params[k] = v
        out.append(params)
    return out


def wants_table(request: web.Request) -> bool:
    for p in _accept_params(request.headers.get("Accept", "")):
        if p.get("as") == "Table" and p.get("g") == "meta.k8s.io":
            return True
        if p["type"] in ("application/json", "*/*", "application/*") and "as" not in p:
            return False
    return False


def wants_partial_metadata(request: web.Request) -> bool:
    for p in _accept_params(request.headers.get("Accept", "")):
        if p.get("as", "").startswith("PartialObjectMetadata"):
            return True
        if p["type"] in ("application/json", "*/*") and "as" not in p:
            return False
    return False


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large()
    content = request.content
    if content.is_eof():
        # The whole body has arrived (a small request always has, with its headers): take
        # it as it is, without the async iteration below.
        data = content.read_nowait()
        if len(data) > MAX_BODY:
            raise errors.too_large()
        return data
    # read() of the whole body: content.read(n) returns only what has arrived so far.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(data: bytes, content_type: str) -> Any:
    """Decode a JSON or YAML request body; junk gets a 400, never a 500."""
    if not data.strip():
        raise errors.bad_request("the body of the request was empty")
    ctype = content_type.split(";")[0].strip().lower()
    if ctype.endswith("yaml"):
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
        except (UnicodeDecodeError, ValueError) as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None


def _qualified_kind(rt: ResourceType) -> str:
    return rt.kind


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


_EVENT_HEADS = {t: b'{"type":"%s","object":' % t.encode() for t in ("ADDED", "MODIFIED", "DELETED")}


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


def request_verb(method: str, target: Target, query: Any) -> str:
    """The Kubernetes verb of a request (as RBAC and discovery name it), "" for none."""
    if target.name is None:
        return {"GET": "watch" if _flag(query, "watch") else "list", "POST": "create",
                "DELETE": "deletecollection"}.get(method, "")
    return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "")


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("1", "true")


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'Invalid value: "{v}": supported values: "All"')
    return bool(values)


# ---------------------------------------------------------------------------- the handlers


WriteFn = Callable[[dict[str, Any] | None], Awaitable[dict[str, Any] | None]]


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


class RestHandlers:
    """The generic verbs. ``server`` gives access to the store and to cluster-wide hooks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.namespaces = ActiveNamespaces(store)
        self._strategies: dict[ResourceType, Strategy] = {}
        self.watchers: set[asyncio.Task[Any]] = set()
        self.services: ServiceAllocation | None = None
        self._decode_cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._line_cache: dict[tuple[str, int, str], bytes] = {}
        # Signs service-account tokens (set by the server: it holds the key).
        self.token_issuer: Any = None
        self._subresources = self.subresource_handlers()

    def strategy(self, rt: ResourceType) -> Strategy:
        s = self._strategies.get(rt)
        if s is None:
            s = self._strategies[rt] = strategy_for(rt, self.services)
        return s

    # -- entry point

    def subresource_handlers(self) -> dict[str, Callable[[web.Request, Target], Awaitable[web.StreamResponse]]]:
        """Who serves each subresource of registry.SUBRESOURCES; the verbs come from that table."""
        from kubelite.apiserver.proxy import StreamingProxy

        streaming = StreamingProxy(self)
        return {
            "status": self._main,
            "finalize": self._main,
            "scale": self.scale,
            "binding": self.bind,
            "eviction": self.evict,
            "token": self.token_request,
            "log": lambda request, _target: streaming.log(request),
            "exec": lambda request, _target: streaming.exec(request),
            "attach": lambda request, _target: streaming.attach(request),
            "portforward": lambda request, _target: streaming.port_forward(request),
        }

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        sub = target.subresource
        if sub is None:
            return await self._main(request, target)
        # The verbs discovery advertises for the subresource are the ones dispatched, and no others.
        if request_verb(request.method, target, request.query) not in SUBRESOURCES[sub].verbs:
            raise errors.method_not_allowed()
        return await self._subresources[sub](request, target)

    async def _main(self, request: web.Request, target: Target) -> web.StreamResponse:
        """The verbs of the resource itself, and of the status and finalize subresources."""
        verb = request_verb(request.method, target, request.query)
        handler = {
            "list": self.list, "watch": self.watch, "create": self.create, "deletecollection": self.delete_collection,
            "get": self.get, "update": self.update, "patch": self.patch, "delete": self.delete,
        }.get(verb)
        if handler is None or (verb == "delete" and target.subresource is not None):
            raise errors.method_not_allowed()
        return await handler(request, target)

    # -- reads

    async def _get_obj(self, target: Target) -> tuple[dict[str, Any], KeyValue]:
        assert target.name is not None
        kv = await self.store.get(target.rt.key(target.namespace, target.name))
        if kv is None:
            raise errors.not_found_error(target.rt.plural, target.name, target.rt.group)
        return decode_kv(kv), kv

    async def get(self, request: web.Request, target: Target) -> web.StreamResponse:
        obj, kv = await self._get_obj(target)
        if wants_table(request):
            return json_response(self._table(request, target, [obj], obj["metadata"]["resourceVersion"]))
        if wants_partial_metadata(request):
            return json_response(_partial(obj))
        return json_response(object_bytes(kv))

    def _table(
        self, request: web.Request, target: Target, objs: list[dict[str, Any]], rv: str, cont: str = ""
    ) -> dict[str, Any]:
        list_meta: dict[str, Any] = {"resourceVersion": rv}
        if cont:
            list_meta["continue"] = cont
        return printers.to_table(
            target.rt.group,
            target.rt.kind,
            objs,
            now=dt.datetime.now(dt.UTC),
            include_object=request.query.get("includeObject", "Metadata"),
            list_meta=list_meta,
        )

    async def list(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt, q = target.rt, request.query
        flt = Filter(rt, q)
        try:
            limit = int(q.get("limit", "0") or 0)
        except ValueError:
            raise errors.bad_request(f"invalid limit: {q.get('limit')}") from None
        start = ""
        if q.get("continue"):
            _, start = _decode_continue(q["continue"])
        prefix = rt.key_prefix(target.namespace)
        # A plain JSON list is spliced together from the stored bytes; objects are decoded
        # only to test a selector or to render a Table or metadata.
        as_bytes = not wants_table(request) and not wants_partial_metadata(request)
        decode = not (as_bytes and flt.trivial)
        matched: list[KeyValue] = []
        decoded: list[dict[str, Any]] = []
        more, last_key = False, start
        rev = self.store.revision
        # With a selector, a page is filled by scanning further: the limit counts matches.
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
                obj = decode_kv(kv)
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
        list_meta: dict[str, Any] = {"resourceVersion": str(rev)}
        cont = ""
        if limit > 0 and more:
            cont = _encode_continue(rev, last_key)
            list_meta["continue"] = cont
        if wants_table(request):
            return json_response(self._table(request, target, decoded, str(rev), cont))
        if wants_partial_metadata(request):
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta,
                    "items": [_partial(o) for o in decoded],
                }
            )
        head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta})
        body = b"".join((head[:-1], b',"items":[', b",".join([object_bytes(kv) for kv in matched]), b"]}"))
        return json_response(body)

    # -- watch

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt, q = target.rt, request.query
        flt = Filter(rt, q)
        name_filter = target.name
        rv_param = q.get("resourceVersion", "")
        send_initial = _flag(q, "sendInitialEvents") or rv_param in ("", "0")
        if _flag(q, "sendInitialEvents") and q.get("resourceVersionMatch") != "NotOlderThan":
            raise errors.invalid_error(
                "ListOptions", "",
                [errors.forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")],
            )
        bookmarks = _flag(q, "allowWatchBookmarks")
        try:
            timeout = float(q.get("timeoutSeconds", "0") or 0)
        except ValueError:
            raise errors.bad_request(f"invalid timeoutSeconds: {q.get('timeoutSeconds')}") from None
        if timeout <= 0:
            timeout = 1800 * (1 + random.random())
        try:
            start_rev = int(rv_param) if rv_param and not send_initial else 0
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{rv_param}"') from None
        table = wants_table(request)
        prefix = rt.key_prefix(target.namespace)
        if start_rev and start_rev < self.store.compacted_revision:
            # Kubernetes answers a too-old resourceVersion with a 200 stream holding one ERROR.
            pass

        resp = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        task = asyncio.current_task()
        if task:
            self.watchers.add(task)
        first_table = [True]

        def encode(ev_type: str, obj: dict[str, Any]) -> bytes:
            if table and ev_type in ("ADDED", "MODIFIED", "DELETED"):
                include = request.query.get("includeObject", "Metadata")
                t = printers.to_table(
                    rt.group, rt.kind, [obj], now=dt.datetime.now(dt.UTC), include_object=include,
                    list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                )
                if not first_table[0]:
                    t["columnDefinitions"] = []
                first_table[0] = False
                obj = t
            return orjson.dumps({"type": ev_type, "object": obj}) + b"\n"

        everything = name_filter is None and flt.trivial and not table

        def visible(obj: dict[str, Any]) -> bool:
            if name_filter is not None and obj.get("metadata", {}).get("name") != name_filter:
                return False
            return flt.matches(obj)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if send_initial:
                kvs, start_rev, _ = await self.store.list(prefix)
                buf = bytearray()
                for kv in kvs:
                    obj = decode_kv(kv)
                    if visible(obj):
                        buf += encode("ADDED", obj)
                        if len(buf) > 256 * 1024:
                            await resp.write(bytes(buf))
                            buf.clear()
                if buf:
                    await resp.write(bytes(buf))
                if _flag(q, "sendInitialEvents") and bookmarks:
                    await resp.write(encode("BOOKMARK", _bookmark(rt, start_rev, initial_end=True)))
            last_rev = [start_rev]

            async def send_bookmarks() -> None:
                # The revision this stream has delivered everything up to (progress batches
                # move it while other keys change), never the store's newest: events of a
                # commit not yet sent here would be skipped by a client resuming from it.
                while True:
                    await asyncio.sleep(BOOKMARK_INTERVAL)
                    await resp.write(encode("BOOKMARK", _bookmark(rt, last_rev[0])))

            bookmarker = asyncio.create_task(send_bookmarks()) if bookmarks else None
            try:
                # One deadline for the whole stream, no per-event timers or tasks.
                # What one commit changed goes out in one write (one TLS record, one send),
                # and an unfiltered watch never decodes: its lines are spliced from the
                # stored bytes once and shared by every such watcher.
                batches = self.store.watch_batches(prefix, start_rev)
                async with asyncio.timeout_at(deadline), contextlib.aclosing(batches):
                    async for batch in batches:
                        lines: list[bytes] = []
                        for ev in batch.events:
                            if everything:
                                lines.append(self._raw_line(ev))
                                continue
                            if flt.key_excludes(ev.kv.key):
                                continue  # the key never changes: it was not in view before either
                            new = self._decoded(ev.kv)
                            if ev.type == "DELETED":
                                if visible(new):
                                    lines.append(self._event_line(ev.kv, "DELETED", new, encode, table))
                                continue
                            now_in = visible(new)
                            was_in = ev.prev is not None and visible(self._decoded(ev.prev))
                            if now_in and (ev.type == "ADDED" or not was_in):
                                lines.append(self._event_line(ev.kv, "ADDED", new, encode, table))
                            elif now_in:
                                lines.append(self._event_line(ev.kv, "MODIFIED", new, encode, table))
                            elif was_in:
                                lines.append(self._event_line(ev.kv, "DELETED", new, encode, table))
                        last_rev[0] = batch.revision
                        if lines:
                            await resp.write(lines[0] if len(lines) == 1 else b"".join(lines))
            except TimeoutError:
                pass
            finally:
                if bookmarker is not None:
                    bookmarker.cancel()
        except CompactedError as e:
            err = errors.gone(f"too old resource version: {e.requested} ({e.compacted})")
            await resp.write(orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n")
        except StoreError as e:
            # A watcher too slow to keep up: end the stream, the client re-watches from its last RV.
            log.info("closing watch on %s: %s", prefix, e)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if task:
                self.watchers.discard(task)
        try:
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    # Watch events are shared by every watcher of a prefix: decode and encode each once.
    def _decoded(self, kv: KeyValue) -> dict[str, Any]:
        key = (kv.key, kv.mod_revision)
        obj = self._decode_cache.get(key)
        if obj is None:
            if len(self._decode_cache) > EVENT_CACHE_SIZE:
                self._decode_cache.clear()
            obj = self._decode_cache[key] = decode_kv(kv)
        return obj

    def _raw_line(self, ev: WatchEvent) -> bytes:
        """The event as an unfiltered watch sends it, from the stored bytes."""
        kv = ev.kv
        key = (kv.key, kv.mod_revision, ev.type)
        line = self._line_cache.get(key)
        if line is None:
            if len(self._line_cache) > EVENT_CACHE_SIZE:
                self._line_cache.clear()
            line = self._line_cache[key] = b"".join(
                (_EVENT_HEADS[ev.type], object_bytes(kv), b"}\n")
            )
        return line

    def _event_line(self, kv: KeyValue, ev_type: str, obj: dict[str, Any],
                    encode: Callable[[str, dict[str, Any]], bytes], table: bool) -> bytes:
        if table:  # rendered per watcher (columns, includeObject)
            return encode(ev_type, obj)
        key = (kv.key, kv.mod_revision, ev_type)
        line = self._line_cache.get(key)
        if line is None:
            if len(self._line_cache) > EVENT_CACHE_SIZE:
                self._line_cache.clear()
            line = self._line_cache[key] = encode(ev_type, obj)
        return line

    # -- writes

    def _field_manager(self, request: web.Request, *, apply: bool = False) -> str:
        fm = request.query.get("fieldManager", "")
        if fm:
            if len(fm) > 128:
                raise errors.invalid_error("PatchOptions", "", [errors.too_long("fieldManager", fm, 128)])
            return fm
        if apply:
            raise errors.invalid_error(
                "PatchOptions", "", [errors.required("fieldManager", "is required for apply patch")], "meta.k8s.io"
            )
        return managedfields.default_manager(request.headers.get("User-Agent", ""))

    @staticmethod
    def _validation_directive(request: web.Request) -> str:
        mode = request.query.get("fieldValidation", "") or "Warn"
        if mode not in ("Ignore", "Warn", "Strict"):
            raise errors.bad_request(
                f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'
            )
        return mode

    def _decode_object(self, request: web.Request, rt: ResourceType, raw: bytes) -> tuple[dict[str, Any], builtins.list[str]]:
        """Parse a create/update body and apply strict decoding; returns (object, warnings)."""
        directive = self._validation_directive(request)
        ctype = request.content_type.lower()
        if ctype in ("application/json", "", "application/octet-stream") or ctype.endswith("+json"):
            if not raw.strip():
                raise errors.bad_request("the body of the request was empty")
            try:
                obj, result = decoding.decode(rt.group, rt.version, rt.kind, raw)
            except orjson.JSONDecodeError as e:
                raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None
        elif ctype.endswith("yaml"):
            obj = parse_body(raw, ctype)
            result = None
        elif ctype == PROTOBUF:
            # kubectl 1.32+ sends its typed-client writes (create configmap, namespace...) as protobuf.
            try:
                obj = protobuf.decode_envelope(raw)
            except protobuf.ProtobufError as e:
                raise errors.bad_request(f"the body of the request could not be decoded as protobuf: {e}") from None
            result = None
        else:
            raise errors.unsupported_media_type(["application/json", "application/yaml", PROTOBUF])
        obj = check_object_body(obj, rt)
        if result is None:
            result = decoding.check(rt.group, rt.version, rt.kind, obj)
        body_version = str(obj.get("apiVersion", rt.api_version)).rpartition("/")[2]
        warnings = decoding.enforce(
            result, directive, body_kind=str(obj.get("kind", rt.kind)), body_version=body_version, kind=rt.kind
        )
        return obj, warnings

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

    async def create(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt = target.rt
        if target.subresource:
            raise errors.method_not_allowed()
        obj, warnings = self._decode_object(request, rt, await read_body(request))
        dry_run = _dry_run(request.query)
        created = await self.store_new(
            rt, target.namespace, obj, manager=self._field_manager(request), dry_run=dry_run
        )
        body = object_bytes(created) if isinstance(created, KeyValue) else created
        return json_response(body, 201, _warning_headers(warnings))

    async def create_object(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        manager: str,
        dry_run: bool = False,
        managed: builtins.list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create path shared by POST, apply-creates and create-on-update."""
        created = await self.store_new(rt, namespace, obj, manager=manager, dry_run=dry_run, managed=managed)
        return decode_kv(created) if isinstance(created, KeyValue) else created

    async def store_new(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        manager: str,
        dry_run: bool = False,
        managed: builtins.list[dict[str, Any]] | None = None,
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
        body_name = meta.get("name")
        if not body_name and meta.get("generateName") and isinstance(meta["generateName"], str):
            meta["name"] = objects.generate_name(meta["generateName"])
        objects.prepare_create(
            obj, has_status=strat.has_status, namespaced=rt.namespaced, namespace=namespace,
            generation=strat.tracks_generation,
        )
        strat.prepare_create(obj)
        strat.defaults(obj)
        errs = strat.validate(obj, None)
        if errs:
            raise self._invalid(rt, obj, errs)
        await self._ensure_namespace(rt, namespace, creating=True)
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
                kv = await self.store.create(rt.key(namespace, name), encode_for_store(obj))
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
    ) -> tuple[dict[str, Any], bool]:
        """Read-modify-write with compare-and-swap; returns (object, created)."""
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
            old = decode_kv(kv)
            new = compute(copy.deepcopy(old))
            check_object_body(new, rt)
            nmeta = new["metadata"]
            # Only a resourceVersion the client itself sent is a precondition (a PUT body's, or
            # one inside a patch); otherwise a lost compare-and-swap is retried on the new state.
            client_rv = precondition_rv
            if client_rv:
                if client_rv != old["metadata"]["resourceVersion"]:
                    raise errors.conflict(rt.plural, target.name, group=rt.group)
            elif not strat.allow_unconditional_update:
                raise errors.invalid_error(rt.kind, target.name, [errors.required("metadata.resourceVersion", "must be specified for an update")], rt.group)
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
            elif target.subresource is None and not internal:
                strat.prepare_update(new, old)
            objects.carry_server_fields(new, old)
            if strat.tracks_generation and target.subresource is None and objects.spec_changed(new, old):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            strat.defaults(new)
            # ``internal`` writes (a binding) change what a client's update may not; like
            # kube-apiserver's binding path, they skip the update validation.
            errs = [] if internal else strat.validate(new, old)
            if errs:
                raise self._invalid(rt, new, errs)
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
                return decode_kv(dkv), False
            try:
                nkv = await self.store.update(key, encode_for_store(new), expected_mod_revision=kv.mod_revision)
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
            return decode_kv(nkv), False
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

    async def update(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt = target.rt
        if target.subresource == "scale":
            raise errors.method_not_allowed()
        obj, warnings = self._decode_object(request, rt, await read_body(request))
        manager = self._field_manager(request)
        dry_run = _dry_run(request.query)
        strat = self.strategy(rt)

        async def create_missing() -> dict[str, Any]:
            if not strat.allow_create_on_update or target.subresource:
                raise errors.not_found_error(rt.plural, target.name or "", rt.group)
            fresh = copy.deepcopy(obj)
            fresh["metadata"]["name"] = target.name
            return await self.create_object(rt, target.namespace, fresh, manager=manager, dry_run=dry_run)

        if target.subresource == "finalize":
            def compute(old: dict[str, Any]) -> dict[str, Any]:
                old["spec"] = obj.get("spec", {})
                return old
        else:
            def compute(old: dict[str, Any]) -> dict[str, Any]:
                new = copy.deepcopy(obj)
                new["metadata"].setdefault("managedFields", old["metadata"].get("managedFields"))
                if new["metadata"]["managedFields"] is None:
                    del new["metadata"]["managedFields"]
                return new

        result, created = await self.guaranteed_update(
            target, compute, manager=manager, dry_run=dry_run, create_missing=create_missing,
            precondition_rv=obj["metadata"].get("resourceVersion") or None,
        )
        return json_response(result, 201 if created else 200, _warning_headers(warnings))

    async def patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt = target.rt
        ctype = request.content_type.lower()
        ptype = PATCH_TYPES.get(ctype)
        if ptype is None:
            raise errors.unsupported_media_type(list(PATCH_TYPES))
        raw = await read_body(request)
        patch = parse_body(raw, "application/yaml" if ptype == "apply" else JSON)
        dry_run = _dry_run(request.query)
        if ptype == "json":
            if not isinstance(patch, list):
                raise errors.bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
        elif not isinstance(patch, dict):
            raise errors.bad_request(
                f"json: cannot unmarshal {type(patch).__name__} into Go value of type map[string]interface {{}}"
            )
        warnings: list[str] = []
        if ptype == "apply":
            return await self._apply(request, target, patch, dry_run)
        if "force" in request.query:
            raise errors.invalid_error(
                "PatchOptions", "", [errors.forbidden("force", "may not be specified for non-apply patch")], "meta.k8s.io"
            )
        manager = self._field_manager(request)
        directive = self._validation_directive(request)
        kind_schema = schema.schema_for(rt.group, rt.version, rt.kind) or {}
        precondition = None
        if isinstance(patch, dict):
            precondition = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch.get("metadata"), dict) else None

        def compute(old: dict[str, Any]) -> dict[str, Any]:
            nonlocal warnings
            try:
                if ptype == "json":
                    new = jsonpatch.apply_patch(old, patch)
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
            target, compute, manager=manager, precondition_rv=precondition, dry_run=dry_run,
        )
        return json_response(result, 200, _warning_headers(warnings))

    async def _apply(
        self, request: web.Request, target: Target, applied: dict[str, Any], dry_run: bool
    ) -> web.StreamResponse:
        rt = target.rt
        manager = self._field_manager(request, apply=True)
        force = _flag(request.query, "force")
        applied = check_object_body(applied, rt)
        body_version = str(applied.get("apiVersion", rt.api_version)).rpartition("/")[2]
        warnings = decoding.enforce(
            decoding.check(rt.group, rt.version, rt.kind, applied), self._validation_directive(request),
            body_kind=str(applied.get("kind")), body_version=body_version, kind=rt.kind,
        )
        kind_schema = schema.schema_for(rt.group, rt.version, rt.kind) or {}
        now = objects.now_rfc3339()

        def run(live: dict[str, Any] | None) -> dict[str, Any]:
            try:
                return ssa.server_side_apply(
                    live, applied, manager=manager, force=force, schema=kind_schema,
                    api_version=rt.api_version, now=now,
                )
            except strategicpatch.PatchError as e:
                raise e.status_error() from None

        async def create_missing() -> dict[str, Any]:
            obj = run(None)
            obj["metadata"]["name"] = target.name
            managed = obj["metadata"].get("managedFields")
            return await self.create_object(
                rt, target.namespace, obj, manager=manager, dry_run=dry_run, managed=managed
            )

        result, created = await self.guaranteed_update(
            target, run, manager=manager, operation="Apply", dry_run=dry_run,
            create_missing=create_missing, track_fields=False,
        )
        return json_response(result, 201 if created else 200, _warning_headers(warnings))

    # -- subresources

    @staticmethod
    def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        sel = ((obj.get("spec") or {}).get("selector") or {})
        from kubelite.api.labels import selector_from_label_selector

        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)),
                       "selector": str(selector_from_label_selector(sel))},
        }

    async def scale(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``deployments/scale`` and ``replicasets/scale``: the autoscaling/v1 Scale view of replicas."""
        if request.method == "GET":
            obj, _ = await self._get_obj(target)
            return json_response(self._scale_of(obj))
        if request.method not in ("PUT", "PATCH"):
            raise errors.method_not_allowed()
        raw = await read_body(request)
        ctype = request.content_type.lower()
        body = parse_body(raw, "application/yaml" if ctype.endswith("yaml") else JSON)
        if not isinstance(body, (dict, list)):
            raise errors.bad_request("the body of the request must be a Scale object or a patch")

        def compute(old: dict[str, Any]) -> dict[str, Any]:
            current = self._scale_of(old)
            if request.method == "PUT":
                wanted = body
            elif ctype == "application/json-patch+json":
                wanted = jsonpatch.apply_patch(current, body)
            else:
                wanted = merge_patch(current, body)
            replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool):
                raise errors.invalid_error("Scale", target.name or "", [errors.invalid("spec.replicas", replicas, "must be an integer")], "autoscaling")
            if replicas < 0:
                raise errors.invalid_error("Scale", target.name or "", [errors.invalid("spec.replicas", replicas, "must be greater than or equal to 0")], "autoscaling")
            old.setdefault("spec", {})["replicas"] = replicas
            return old

        rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) and isinstance(body.get("metadata"), dict) else None
        sub_target = Target(target.rt, target.namespace, target.name, None)
        result, _ = await self.guaranteed_update(
            sub_target, compute, manager=self._field_manager(request), precondition_rv=rv or None,
            dry_run=_dry_run(request.query),
        )
        return json_response(self._scale_of(result))

    async def bind(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``pods/<name>/binding``: the scheduler's way to set spec.nodeName, once."""
        body = parse_body(await read_body(request), request.content_type or JSON)
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict):
            raise errors.bad_request("a Binding with a target is required")
        node = body["target"].get("name")
        name = target.name or (body.get("metadata") or {}).get("name")
        if not node or not name:
            raise errors.invalid_error("Binding", name or "", [errors.required("target.name")])
        pod_target = Target(target.rt, target.namespace, name, None)

        def compute(old: dict[str, Any]) -> dict[str, Any]:
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

        if not is_dns1123_subdomain_ok(node):
            raise errors.invalid_error("Binding", name, [errors.invalid("target.name", node, "a lowercase RFC 1123 subdomain")])
        await self.guaranteed_update(pod_target, compute, manager=self._field_manager(request), internal=True)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def token_request(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``serviceaccounts/<name>/token``: a TokenRequest answered with a signed, bound token."""
        sa, _ = await self._get_obj(target)
        raw = await read_body(request)
        ctype = request.content_type.lower()
        if ctype == PROTOBUF:
            try:
                body: Any = protobuf.decode_envelope(raw)
            except protobuf.ProtobufError as e:
                raise errors.bad_request(f"the body of the request could not be decoded as protobuf: {e}") from None
        else:
            body = parse_body(raw, ctype or JSON)
        if not isinstance(body, dict):
            raise errors.bad_request("a TokenRequest is required")
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise errors.invalid_error(
                "TokenRequest", target.name or "",
                [errors.invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")],
                "authentication.k8s.io",
            )
        seconds = min(seconds, 2**32)
        bound = spec.get("boundObjectRef") or {}
        pod = (bound.get("name", ""), bound.get("uid", "")) if bound.get("kind") == "Pod" else None
        token, exp = self.token_issuer.issue(
            target.namespace or "default", target.name or "", sa["metadata"].get("uid", ""),
            expiration_seconds=seconds, pod=pod, audiences=spec.get("audiences") or None,
        )
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace, "creationTimestamp": None},
            "spec": {**spec, "expirationSeconds": seconds},
            "status": {"token": token, "expirationTimestamp": dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
        return json_response(out, 201)

    async def evict(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``pods/<name>/eviction``: a policy/v1 (or v1beta1) Eviction, answered as eviction.go does."""
        raw = await read_body(request)
        ctype = request.content_type.lower()
        if ctype == PROTOBUF:
            try:
                body: Any = protobuf.decode_envelope(raw)
            except protobuf.ProtobufError as e:
                raise errors.bad_request(f"the body of the request could not be decoded as protobuf: {e}") from None
        else:
            body = parse_body(raw, ctype or JSON)
        body = check_eviction_body(body)
        if (body.get("metadata") or {}).get("name") != target.name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        opts = body.get("deleteOptions") or {}
        if not isinstance(opts, dict):
            raise errors.bad_request("deleteOptions must be an object")
        opts = dict(opts)
        query_dry_run = _dry_run(request.query)
        body_dry_run = bool(opts.get("dryRun"))
        if query_dry_run and opts.get("dryRun") not in (None, [], ["All"]):
            raise errors.bad_request(
                f"Non-matching dry-run options in request and content: [All] and {opts.get('dryRun')}"
            )
        opts["dryRun"] = query_dry_run or body_dry_run
        assert target.name is not None and target.namespace is not None
        result = await eviction.evict(self, target.namespace, target.name, opts)
        # The create handler's rule for a returned Status: its code is the HTTP status, 201
        # when it has none.
        code = int(result.setdefault("code", 201))
        return json_response(result, code)

    # -- what the eviction subresource needs of the registry (eviction.EvictionStorage)

    async def get_object(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj, _ = await self._get_obj(Target(rt, namespace, name, None))
        return obj

    async def list_objects(self, rt: ResourceType, namespace: str | None) -> builtins.list[dict[str, Any]]:
        kvs, _, _ = await self.store.list(rt.key_prefix(namespace))
        return [decode_kv(kv) for kv in kvs]

    async def delete_named(
        self, rt: ResourceType, namespace: str | None, name: str, opts: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        return await self.delete_object(Target(rt, namespace, name, None), opts)

    async def update_status(
        self, rt: ResourceType, namespace: str | None, name: str,
        compute: Callable[[dict[str, Any]], dict[str, Any]], *, manager: str, dry_run: bool,
    ) -> dict[str, Any]:
        result, _ = await self.guaranteed_update(
            Target(rt, namespace, name, "status"), compute, manager=manager, dry_run=dry_run
        )
        return result

    # -- deletes

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        raw = await read_body(request)
        if raw.strip():
            body = parse_body(raw, request.content_type or JSON)
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            opts.update(body)
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request(f"invalid gracePeriodSeconds: {q['gracePeriodSeconds']}") from None
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") in ("true", "false") and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan" if q["orphanDependents"] == "true" else "Background"
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Orphan", "Foreground", "Background"):
            raise errors.invalid_error(
                "DeleteOptions", "",
                [errors.not_supported("propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])],
            )
        if q.getall("dryRun", []) or opts.get("dryRun"):
            opts["dryRun"] = True
        return opts

    async def delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        opts = await self._delete_options(request)
        obj, status = await self.delete_object(target, opts)
        return json_response(obj, status)

    async def delete_object(self, target: Target, opts: dict[str, Any]) -> tuple[dict[str, Any], int]:
        rt = target.rt
        assert target.name is not None
        key = rt.key(target.namespace, target.name)
        for _attempt in range(64):
            obj, kv = await self._get_obj(target)
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
            graceful = self._graceful_update(rt, obj, opts)
            if graceful is not None:
                if opts.get("dryRun"):
                    return graceful, 200
                if graceful is obj:
                    return obj, 202 if meta.get("finalizers") else 200
                try:
                    nkv = await self.store.update(key, encode_for_store(graceful), expected_mod_revision=kv.mod_revision)
                except ConflictError:
                    continue
                except KeyNotFoundError:
                    raise errors.not_found_error(rt.plural, target.name, rt.group) from None
                out = decode_kv(nkv)
                return out, 202 if out["metadata"].get("finalizers") else 200
            if opts.get("dryRun"):
                return obj, 200
            try:
                dkv = await self.store.delete(key, expected_mod_revision=kv.mod_revision)
            except ConflictError:
                continue
            except KeyNotFoundError:
                raise errors.not_found_error(rt.plural, target.name, rt.group) from None
            deleted = decode_kv(dkv)
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

    async def delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt = target.rt
        flt = Filter(rt, request.query)
        opts = await self._delete_options(request)
        kvs, _rev, _ = await self.store.list(rt.key_prefix(target.namespace))
        deleted = []
        for kv in kvs:
            obj = decode_kv(kv)
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
        return json_response(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(self.store.revision)}, "items": deleted}
        )


def check_eviction_body(body: Any) -> dict[str, Any]:
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


def is_dns1123_subdomain_ok(name: str) -> bool:
    from kubelite.api.validation.names import is_dns1123_subdomain

    return not is_dns1123_subdomain(name)


def _ts_in(seconds: int) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bookmark(rt: ResourceType, rev: int, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rev)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _warning_headers(warnings: list[str]) -> CIMultiDict[str] | None:
    if not warnings:
        return None
    return CIMultiDict(("Warning", f"299 - {orjson.dumps(w).decode()}") for w in warnings)


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
