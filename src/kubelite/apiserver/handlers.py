"""The HTTP layer of the REST API: requests in, responses out, over the generic registry.

kube-apiserver's ``endpoints/handlers``: this module reads a request (its URL resolved to a
:class:`~kubelite.apiserver.registry.Target`, its body decoded as JSON, YAML or protobuf
with strict field validation, its query options), calls the generic registry
(apiserver.registry, which holds no aiohttp type), and writes the answer in what the client
accepts (the object, a Table for kubectl's columns, metadata only) with strict decoding's
warnings as ``Warning`` headers. Watches are streamed from here: the registry hands out the
store's change batches, this layer filters them per watcher and writes one chunk per commit.

Which verbs each subresource answers is kubelite.api.registry.SUBRESOURCES, the table
discovery and OpenAPI are built from, so nothing is advertised that is not dispatched here.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict

from kubelite.api import (
    decoding,
    errors,
    jsonpatching,
    managedfields,
    printers,
    protobuf,
    rbac,
    timeutil,
    yamlload,
)
from kubelite.api.errors import StatusError
from kubelite.api.registry import SUBRESOURCES, ResourceType
from kubelite.apiserver import componentstatus, httplog, requestcontext
from kubelite.apiserver.auth import User
from kubelite.apiserver.authorization import RBAC_GROUP, REVIEW_GROUPS, Authorizer
from kubelite.apiserver.httpproxy import ResourceProxy
from kubelite.apiserver.proxy import StreamingProxy
from kubelite.apiserver.registry import (
    Filter,
    ListOptions,
    PatchType,
    Registry,
    Target,
    check_eviction_body,
    check_object_body,
    decode_kv,
    merge_patch,
    object_bytes,
)
from kubelite.apiserver.watchstreams import WatchLabels, WatchStreams
from kubelite.store import CompactedError, KeyValue, StoreError, WatchEvent

log = logging.getLogger(__name__)

JSON = "application/json"
# Who is calling (set by the server's authentication middleware): what a create records of
# its requestor (a CertificateSigningRequest's spec.username), and what authorization will read.
USER_KEY: web.RequestKey[User | None] = web.RequestKey("user", object)  # type: ignore[arg-type]
PROTOBUF = "application/vnd.kubernetes.protobuf"
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a request body
PATCH_TYPES: dict[str, PatchType | None] = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": None,  # server-side apply: not a patch of the stored object
}
BOOKMARK_INTERVAL = 60.0
EVENT_CACHE_SIZE = 4096

Handler = Callable[[web.Request, Target], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200, headers: Any = None) -> web.Response:
    # kube-apiserver encodes every object with Go's json.Encoder (its streaming list encoder
    # too), which ends each one with a newline: clients that compare bodies see the same bytes.
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data + b"\n", status=status, content_type=JSON, headers=headers)


def status_response(err: StatusError, request: web.Request | None = None) -> web.Response:
    if request is not None:
        return object_response(request, err.status(), err.code, err.headers or None)
    return json_response(err.status(), err.code, err.headers or None)


def wants_protobuf(request: web.Request) -> bool:
    """Whether the client prefers protobuf: it comes before any JSON in its Accept.

    client-go's typed clients ask for ``application/vnd.kubernetes.protobuf,
    application/json``; Tables and metadata-only answers (``as=``) stay JSON.
    """
    for p in _accept_params(request.headers.get("Accept", "")):
        if p["type"] == PROTOBUF and "as" not in p:
            return True
        if p["type"] in ("application/json", "application/yaml", "*/*", "application/*"):
            return False
    return False


def object_response(request: web.Request, body: Any, status: int = 200, headers: Any = None) -> web.Response:
    """An object in the encoding the client prefers: protobuf, as kube-apiserver answers a
    client that asks for it first (errors' Status too), or JSON. A kind without a wire table,
    or a value that does not fit one, is answered in JSON, which every client also reads."""
    if wants_protobuf(request):
        obj = orjson.loads(body) if isinstance(body, bytes) else body
        try:
            data = protobuf.encode_envelope(obj)
        except protobuf.ProtobufError as e:
            log.debug("answering %s in JSON: %s", request.path, e)
        else:
            return web.Response(body=data, status=status, content_type=PROTOBUF, headers=headers)
    return json_response(body, status, headers)




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


def accepts_plain_object(request: web.Request) -> bool:
    """Whether the Accept header lets the object itself be the answer (no header does)."""
    header = request.headers.get("Accept", "").strip()
    if not header:
        return True
    plain = ("application/json", "application/yaml", PROTOBUF, "*/*", "application/*")
    return any(p["type"] in plain and "as" not in p for p in _accept_params(header))


def wants_partial_metadata(request: web.Request) -> bool:
    for p in _accept_params(request.headers.get("Accept", "")):
        if p.get("as", "").startswith("PartialObjectMetadata"):
            return True
        if p["type"] in ("application/json", "*/*") and "as" not in p:
            return False
    return False


_BODY_KEY: web.RequestKey[bytes] = web.RequestKey("body", bytes)


async def read_body(request: web.Request) -> bytes:
    """The request's whole body, read once (the escalation check reads it before the handler)."""
    if _BODY_KEY in request:
        return request[_BODY_KEY]
    data = await _read_body(request)
    request[_BODY_KEY] = data
    return data


async def _read_body(request: web.Request) -> bytes:
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
            return decoding.bounded(yamlload.load(data))
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None



_EVENT_HEADS = {t: b'{"type":"%s","object":' % t.encode() for t in ("ADDED", "MODIFIED", "DELETED")}


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



class RestHandlers:
    """The HTTP side of every verb; the work is the registry's."""

    def __init__(self, registry: Registry, authorizer: Authorizer | None = None) -> None:
        self.registry = registry
        self.authorizer = authorizer
        self.watchers = WatchStreams()
        httplog.quiet_client_errors()  # unparsable requests: one INFO line, not an ERROR traceback
        self._decode_cache: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._line_cache: dict[tuple[str, int, str, str], bytes] = {}
        streaming = StreamingProxy(registry)
        proxying = ResourceProxy(streaming)
        # Who serves each subresource of registry.SUBRESOURCES; the verbs come from that table.
        self._subresources: dict[str, Handler] = {
            "status": self._main,
            "finalize": self._main,
            "approval": self._main,
            "scale": self.scale,
            "binding": self.bind,
            "eviction": self.evict,
            "token": self.token_request,
            "log": lambda request, _target: streaming.log(request),
            "exec": lambda request, _target: streaming.exec(request),
            "attach": lambda request, _target: streaming.attach(request),
            "portforward": lambda request, _target: streaming.port_forward(request),
            "proxy": lambda request, target: proxying.serve(request, target.rt.plural, target.namespace,
                                                            target.name or ""),
        }

    def served_subresources(self) -> frozenset[str]:
        return frozenset(self._subresources)

    # -- entry point

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        sub = target.subresource
        decoding.check_path_segments(target.namespace, target.name)
        if sub is None:
            return await self._main(request, target)
        # The verbs discovery advertises for the subresource are the ones dispatched, and no others
        # (proxy takes every HTTP method a backend may want, HEAD and OPTIONS too: it checks them).
        if sub != "proxy" and request_verb(request.method, target, request.query) not in SUBRESOURCES[sub].verbs:
            raise errors.method_not_allowed()
        return await self._subresources[sub](request, target)

    async def _main(self, request: web.Request, target: Target) -> web.StreamResponse:
        """The verbs of the resource itself, and of the status and finalize subresources."""
        verb = request_verb(request.method, target, request.query)
        handler: Handler | None = {
            "list": self.list, "watch": self.watch, "create": self.create, "deletecollection": self.delete_collection,
            "get": self.get, "update": self.update, "patch": self.patch, "delete": self.delete,
        }.get(verb)
        if handler is None or (verb == "delete" and target.subresource is not None):
            raise errors.method_not_allowed()
        # A kind's own verbs are its table entry's (read-only kinds, a namespace's missing
        # deletecollection): what discovery does not advertise is not dispatched.
        if target.subresource is None and verb not in target.rt.verbs:
            raise errors.method_not_allowed()
        if target.rt.group == "" and target.rt.kind == "ComponentStatus":
            return await self._component_statuses(request, target)
        if target.rt.group in REVIEW_GROUPS and self.authorizer is not None:
            return await self._review(request, target)
        if target.rt.group == RBAC_GROUP and verb in ("create", "update", "patch") and self.authorizer is not None:
            await self._check_escalation(request, target, verb)
        return await handler(request, target)

    async def _review(self, request: web.Request, target: Target) -> web.StreamResponse:
        """SelfSubjectAccessReview, SelfSubjectReview & co: answered by the authorizer, never stored."""
        assert self.authorizer is not None
        if not accepts_plain_object(request):
            # The review kinds have no table convertor: kube-apiserver's negotiation skips an
            # ``as=Table`` clause for them and, with nothing else acceptable, answers 406.
            raise errors.not_acceptable("only the following media types are accepted: "
                                        f"application/json, application/yaml, {PROTOBUF}")
        body = await self._decoded_body(request, (target.rt.group, target.rt.version, target.rt.kind))
        if not isinstance(body, dict):
            raise errors.bad_request(f"a {target.rt.kind} is required")
        user = request.get(USER_KEY) or User("system:anonymous", ("system:unauthenticated",))
        return object_response(request, await self.authorizer.answer(target.rt, body, user, target.namespace), 201)

    async def _check_escalation(self, request: web.Request, target: Target, verb: str) -> None:
        """Roles and bindings may grant only what their writer holds (RBAC's escalation check); a
        patch is checked on its result, computed first as a dry run."""
        assert self.authorizer is not None
        user = request.get(USER_KEY)
        if user is None or rbac.SUPER_GROUP in user.groups:
            return
        if verb == "patch":
            ptype = PATCH_TYPES.get(request.content_type.lower())
            if ptype is None:
                return  # server-side apply: not checked here (noted as a gap)
            patch = parse_body(await read_body(request), JSON)
            obj, _ = await self.registry.patch(target, ptype, patch, manager="escalation-check",
                                                directive=self._validation_directive(request), dry_run=True)
        else:
            body = await self._decoded_body(request, (target.rt.group, target.rt.version, target.rt.kind))
            if not isinstance(body, dict):
                return  # the create or update itself answers the bad body
            obj = body
        self.authorizer.check_escalation(user, target.rt, obj, target.namespace)

    async def _component_statuses(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``componentstatuses``: computed from the components' health on each read, never stored."""
        warn = _warning_headers([componentstatus.DEPRECATION_WARNING])
        store = self.registry.store
        if target.name is not None:
            obj = await componentstatus.get_status(store, target.name)
            if wants_table(request):
                return json_response(self._table(request, target, [obj], ""), headers=warn)
            return object_response(request, obj, headers=warn)
        flt = Filter(target.rt, request.query)
        items = [o for o in await componentstatus.list_statuses(store) if flt.matches(o)]
        if wants_table(request):
            return json_response(self._table(request, target, items, ""), headers=warn)
        return object_response(
            request,
            {"kind": target.rt.list_kind, "apiVersion": target.rt.api_version, "metadata": {}, "items": items},
            headers=warn,
        )

    # -- reads

    async def get(self, request: web.Request, target: Target) -> web.StreamResponse:
        obj, kv = await self.registry.get(target)
        if wants_table(request):
            return json_response(self._table(request, target, [obj], obj["metadata"]["resourceVersion"]))
        if wants_partial_metadata(request):
            return json_response(_partial(obj))
        return object_response(request, object_bytes(kv, target.rt))

    def _table(
        self, request: web.Request, target: Target, objs: builtins.list[dict[str, Any]], rv: str, cont: str = ""
    ) -> dict[str, Any]:
        list_meta: dict[str, Any] = {"resourceVersion": rv}
        if cont:
            list_meta["continue"] = cont
        return printers.to_table(
            target.rt.group,
            target.rt.kind,
            objs,
            now=timeutil.now(),
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
        decoding.resource_version(q.get("resourceVersion", ""))
        # A plain JSON list is spliced together from the stored bytes; objects are decoded
        # only to test a selector or to render a Table or metadata.
        table, partial = wants_table(request), wants_partial_metadata(request)
        page = await self.registry.list(
            target, ListOptions(flt, limit, q.get("continue", ""), decode=table or partial)
        )
        list_meta: dict[str, Any] = {"resourceVersion": str(page.revision)}
        if page.continue_token:
            list_meta["continue"] = page.continue_token
        if table:
            return json_response(self._table(request, target, page.decoded, str(page.revision), page.continue_token))
        if partial:
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta,
                    "items": [_partial(o) for o in page.decoded],
                }
            )
        head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta})
        body = b"".join((head[:-1], b',"items":[', b",".join([object_bytes(kv, rt) for kv in page.kvs]), b"]}"))
        return object_response(request, body)

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
            timeout = float(int(q.get("timeoutSeconds", "0") or 0))  # an int64 in ListOptions
        except ValueError:
            raise errors.bad_request(f"invalid timeoutSeconds: {q.get('timeoutSeconds')}") from None
        if timeout == 0:  # a negative timeout has expired already: the stream ends at once, as Go's timer does
            timeout = 1800 * (1 + random.random())
        start_rev = 0 if send_initial else decoding.resource_version(rv_param)
        decoding.resource_version(rv_param)  # checked even when initial events make it unused
        table = wants_table(request)
        # Protobuf frames for a client that prefers them, as kube-apiserver streams them; a
        # kind without a wire table is watched in JSON, which client-go reads too.
        proto = not table and wants_protobuf(request) and protobuf.response_message_for(rt.api_version, rt.kind) is not None
        prefix = rt.key_prefix(target.namespace)

        ctype = protobuf.WATCH_CONTENT_TYPE if proto else JSON
        resp = web.StreamResponse(headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        task = asyncio.current_task()
        if task:
            # kube-apiserver's RequestInfo takes a watch's name from ``fieldSelector=metadata.name=X`` too.
            named = name_filter or flt.fields.requires_exact_match("metadata.name")
            scope = "resource" if named else "namespace" if target.namespace else "cluster"
            self.watchers.add(task, request, WatchLabels(rt.group, rt.version, rt.plural, scope))
        first_table = [True]

        def encode(ev_type: str, obj: dict[str, Any]) -> bytes:
            if table and ev_type in ("ADDED", "MODIFIED", "DELETED"):
                include = request.query.get("includeObject", "Metadata")
                t = printers.to_table(
                    rt.group, rt.kind, [obj], now=timeutil.now(), include_object=include,
                    list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                )
                if not first_table[0]:
                    t["columnDefinitions"] = []
                first_table[0] = False
                obj = t
            if proto:
                return protobuf.encode_watch_event(ev_type, obj)
            return orjson.dumps({"type": ev_type, "object": obj}) + b"\n"

        everything = name_filter is None and flt.trivial and not table and not proto
        per_watcher = table or proto  # lines not shared through the JSON line cache

        def visible(obj: dict[str, Any]) -> bool:
            if name_filter is not None and obj.get("metadata", {}).get("name") != name_filter:
                return False
            return flt.matches(obj)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if send_initial:
                kvs, start_rev = await self.registry.initial(target)
                buf = bytearray()
                for kv in kvs:
                    obj = decode_kv(kv, rt)
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
                # A too-old resourceVersion: the store raises CompactedError, answered below
                # as Kubernetes does, with a 200 stream holding one ERROR event.
                batches = self.registry.watch_batches(target, start_rev)
                async with asyncio.timeout_at(deadline), contextlib.aclosing(batches):
                    async for batch in batches:
                        lines: list[bytes] = []
                        for ev in batch.events:
                            if everything:
                                lines.append(self._raw_line(ev, rt))
                                continue
                            if flt.key_excludes(ev.kv.key):
                                continue  # the key never changes: it was not in view before either
                            new = self._decoded(ev.kv, rt)
                            if ev.type == "DELETED":
                                if visible(new):
                                    lines.append(self._event_line(ev.kv, rt, "DELETED", new, encode, per_watcher))
                                continue
                            now_in = visible(new)
                            was_in = ev.prev is not None and visible(self._decoded(ev.prev, rt))
                            if now_in and (ev.type == "ADDED" or not was_in):
                                lines.append(self._event_line(ev.kv, rt, "ADDED", new, encode, per_watcher))
                            elif now_in:
                                lines.append(self._event_line(ev.kv, rt, "MODIFIED", new, encode, per_watcher))
                            elif was_in:
                                lines.append(self._event_line(ev.kv, rt, "DELETED", new, encode, per_watcher))
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
            await resp.write(encode("ERROR", err.status()))
        except protobuf.ProtobufError as e:
            # An object our wire tables cannot carry: end the stream rather than skip an event.
            log.warning("closing protobuf watch on %s: %s", prefix, e)
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

    # Watch events are shared by every watcher of a prefix: decode and encode each once (per
    # group: core and events.k8s.io watchers see the same stored Event in their own view).
    def _decoded(self, kv: KeyValue, rt: ResourceType) -> dict[str, Any]:
        key = (kv.key, kv.mod_revision, rt.group)
        obj = self._decode_cache.get(key)
        if obj is None:
            if len(self._decode_cache) > EVENT_CACHE_SIZE:
                self._decode_cache.clear()
            obj = self._decode_cache[key] = decode_kv(kv, rt)
        return obj

    def _raw_line(self, ev: WatchEvent, rt: ResourceType) -> bytes:
        """The event as an unfiltered watch sends it, from the stored bytes."""
        kv = ev.kv
        key = (kv.key, kv.mod_revision, ev.type, rt.group)
        line = self._line_cache.get(key)
        if line is None:
            if len(self._line_cache) > EVENT_CACHE_SIZE:
                self._line_cache.clear()
            line = self._line_cache[key] = b"".join(
                (_EVENT_HEADS[ev.type], object_bytes(kv, rt), b"}\n")
            )
        return line

    def _event_line(self, kv: KeyValue, rt: ResourceType, ev_type: str, obj: dict[str, Any],
                    encode: Callable[[str, dict[str, Any]], bytes], table: bool) -> bytes:
        if table:  # rendered per watcher (columns, includeObject)
            return encode(ev_type, obj)
        key = (kv.key, kv.mod_revision, ev_type, rt.group)
        line = self._line_cache.get(key)
        if line is None:
            if len(self._line_cache) > EVENT_CACHE_SIZE:
                self._line_cache.clear()
            line = self._line_cache[key] = encode(ev_type, obj)
        return line

    # -- writes

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


    async def create(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.subresource or target.name is not None:
            raise errors.method_not_allowed()
        obj, warnings = self._decode_object(request, target.rt, await read_body(request))
        requestcontext.set_object_name(str((obj.get("metadata") or {}).get("name") or ""))
        dry_run = _dry_run(request.query)
        created = await self.registry.create(
            target, obj, manager=self._field_manager(request), dry_run=dry_run, requester=request.get(USER_KEY)
        )
        body = object_bytes(created, target.rt) if isinstance(created, KeyValue) else created
        return object_response(request, body, 201, _warning_headers(warnings))

    async def update(self, request: web.Request, target: Target) -> web.StreamResponse:
        obj, warnings = self._decode_object(request, target.rt, await read_body(request))
        manager = self._field_manager(request)
        dry_run = _dry_run(request.query)
        result, created = await self.registry.update(target, obj, manager=manager, dry_run=dry_run)
        return object_response(request, result, 201 if created else 200, _warning_headers(warnings))

    async def patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        ctype = request.content_type.lower()
        if ctype not in PATCH_TYPES:
            raise errors.unsupported_media_type(list(PATCH_TYPES))
        ptype = PATCH_TYPES[ctype]
        raw = await read_body(request)
        patch = parse_body(raw, "application/yaml" if ptype is None else JSON)
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
        if ptype is None:
            return await self._apply(request, target, patch, dry_run)
        if "force" in request.query:
            raise errors.invalid_error(
                "PatchOptions", "", [errors.forbidden("force", "may not be specified for non-apply patch")], "meta.k8s.io"
            )
        result, warnings = await self.registry.patch(
            target, ptype, patch, manager=self._field_manager(request),
            directive=self._validation_directive(request), dry_run=dry_run,
        )
        return object_response(request, result, 200, _warning_headers(warnings))

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
        result, created = await self.registry.apply(
            target, applied, manager=manager, force=force, dry_run=dry_run, requester=request.get(USER_KEY)
        )
        return object_response(request, result, 201 if created else 200, _warning_headers(warnings))

    # -- subresources

    async def scale(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``deployments/scale`` and ``replicasets/scale``: the autoscaling/v1 Scale view of replicas."""
        if request.method == "GET":
            return object_response(request, await self.registry.get_scale(target))
        ctype = request.content_type.lower()
        body = await self._decoded_body(request)
        if not isinstance(body, (dict, list)):
            raise errors.bad_request("the body of the request must be a Scale object or a patch")
        directive = self._validation_directive(request)
        if request.method == "PUT":
            decoding.enforce_body("autoscaling", "v1", "Scale", body, directive)

        def wanted_of(current: dict[str, Any]) -> Any:
            if request.method == "PUT":
                return body
            if ctype == "application/json-patch+json":
                patched = jsonpatching.apply(current, body)
            else:
                patched = merge_patch(current, body)
            if isinstance(patched, dict):
                decoding.enforce_patched(decoding.check("autoscaling", "v1", "Scale", patched), directive, patched)
            return patched

        rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) and isinstance(body.get("metadata"), dict) else None
        result = await self.registry.update_scale(
            target, wanted_of, manager=self._field_manager(request), precondition_rv=rv or None,
            dry_run=_dry_run(request.query),
        )
        return object_response(request, result)

    async def bind(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``pods/<name>/binding``: the scheduler's way to set spec.nodeName, once."""
        body = await self._decoded_body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("a Binding with a target is required")
        warnings = decoding.enforce_body("", "v1", "Binding", body, self._validation_directive(request))
        await self.registry.bind(target, body, manager=self._field_manager(request))
        return object_response(request, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                               201, _warning_headers(warnings))

    async def _decoded_body(self, request: web.Request, kind: tuple[str, str, str] | None = None) -> Any:
        """A subresource's body: JSON, YAML or (kubectl's typed clients) protobuf, type-checked as
        ``kind`` when given (callers that also take patches check it themselves)."""
        body = self._parse_any(await read_body(request), request.content_type.lower())
        if kind is not None:
            decoding.enforce_body(*kind, body, self._validation_directive(request))
        return body

    @staticmethod
    def _parse_any(raw: bytes, ctype: str) -> Any:
        if ctype == PROTOBUF:
            try:
                return protobuf.decode_envelope(raw)
            except protobuf.ProtobufError as e:
                raise errors.bad_request(f"the body of the request could not be decoded as protobuf: {e}") from None
        return parse_body(raw, "application/yaml" if ctype.endswith("yaml") else JSON)

    async def token_request(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``serviceaccounts/<name>/token``: a TokenRequest answered with a signed, bound token."""
        if self.registry.tokens is None:
            raise errors.method_not_allowed()
        await self.registry.get(target)  # a missing ServiceAccount is a 404 before a bad body is a 400
        body = await self._decoded_body(request, ("authentication.k8s.io", "v1", "TokenRequest"))
        if not isinstance(body, dict):
            raise errors.bad_request("a TokenRequest is required")
        return object_response(request, await self.registry.create_token(target, body), 201)

    async def evict(self, request: web.Request, target: Target) -> web.StreamResponse:
        """``pods/<name>/eviction``: a policy/v1 (or v1beta1) Eviction, answered as eviction.go does."""
        body = check_eviction_body(await self._decoded_body(request, ("policy", "v1", "Eviction")))
        result = await self.registry.evict(target, body, dry_run=_dry_run(request.query))
        return object_response(request, result, int(result["code"]))

    # -- deletes

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        raw = await read_body(request)
        if raw.strip():
            # client-go sends its DeleteOptions as protobuf for built-in kinds.
            body = self._parse_any(raw, request.content_type.lower())
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            decoding.enforce_body("", "v1", "DeleteOptions", body, self._validation_directive(request))
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
        obj, status = await self.registry.delete_object(target, opts)
        return object_response(request, obj, status)

    async def delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        flt = Filter(target.rt, request.query)
        opts = await self._delete_options(request)
        return object_response(request, await self.registry.delete_collection(target, flt, opts))


def _bookmark(rt: ResourceType, rev: int, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rev)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def warning_header(text: str) -> str:
    """A ``Warning`` header's value as kube-apiserver writes it: code 299, no agent, the text quoted."""
    return f"299 - {orjson.dumps(text).decode()}"


def _warning_headers(warnings: builtins.list[str]) -> CIMultiDict[str] | None:
    if not warnings:
        return None
    return CIMultiDict(("Warning", warning_header(w)) for w in warnings)
