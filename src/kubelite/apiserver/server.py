"""kube-apiserver's counterpart: HTTPS, authentication, discovery, OpenAPI and the REST API.

This module wires the pieces together: TLS with client-certificate verification against
the cluster CA (a request without credentials is a 401, never served), the discovery and
OpenAPI documents kubectl needs before it sends anything, health endpoints (apiserver.healthz),
and the REST API: the HTTP layer (apiserver.handlers) over the generic registry
(apiserver.registry), which is built here with its collaborators, Service allocation
(apiserver.services) and the token signer (apiserver.auth). A request that raises a
:class:`StatusError` is answered with that Status; anything else is a bug, logged, and
answered 500 without taking the server down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from kubelite import __version__
from kubelite.api import errors, openapi, rbac, schema
from kubelite.api.errors import StatusError
from kubelite.api.registry import lookup
from kubelite.apiserver import (
    admission,
    audit,
    authorization,
    discovery,
    healthz,
    memtrim,
    metrics,
    requestcontext,
    systemobjects,
    watchstreams,
)
from kubelite.apiserver.auth import (
    OPEN_PATHS,
    REQUEST_USER,
    TokenAuthenticator,
    TokenSigner,
    User,
    user_from_peercert,
)
from kubelite.apiserver.authorization import Authorizer
from kubelite.apiserver.handlers import (
    JSON,
    USER_KEY,
    RestHandlers,
    json_response,
    status_response,
    warning_header,
)
from kubelite.apiserver.ipalloc import NodePortAllocator, ServiceCIDR
from kubelite.apiserver.kubernetesservice import INTERVAL, KubernetesService
from kubelite.apiserver.pki import PKI
from kubelite.apiserver.registry import Registry, parse_path
from kubelite.apiserver.services import ServiceAllocation
from kubelite.store import Store

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 6443
    cluster_name: str = "kubelite"
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    # Where pods reach the API server: the node network's gateway address, where the node
    # agent relays to this server's loopback socket (the host's namespace stays untouched).
    advertise_address: str = "10.244.0.1"
    # How often the primary puts the `kubernetes` Service and its endpoints back (kube-apiserver: 10 s).
    kubernetes_service_interval: float = INTERVAL
    # Where the audit log goes (kube-apiserver's --audit-log-path); "" for none.
    audit_log: str = ""
    # --service-account-extend-token-expiration (Registry.create_token).
    extend_token_expiration: bool = True
    # --admission-control-config-file: PodSecurity's configuration ("": the default).
    admission_control_config_file: str = ""


def version_info() -> dict[str, str]:
    major, minor, _ = schema.kubernetes_version().split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{schema.kubernetes_version()}+kubelite.{__version__}",
        # kube-apiserver's is its source commit, 40 hex digits (clients check the form, e.g.
        # conformance's "kubectl version" test): a fixed digest of this release stands in.
        "gitCommit": hashlib.sha1(f"kubelite {__version__}".encode()).hexdigest(),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "python",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


class APIServer:
    """One API server process. The *primary* owns the store and bootstraps the cluster's
    objects; *workers* (``primary=False``) serve the same API on the same port (SO_REUSEPORT:
    the kernel spreads connections over the processes) with the primary's store opened
    through kubelite.store.remote. Everything an API server keeps across requests lives in
    the store, so any process can serve any request."""

    def __init__(self, store: Store, pki: PKI, config: ServerConfig, *, primary: bool = True) -> None:
        self.store = store
        self.pki = pki
        self.config = config
        self.primary = primary
        self.cidr = ServiceCIDR.parse(config.service_cidr)
        self.signer = TokenSigner(pki.sa_key.read_bytes())
        # The allocator writes IPAddress objects through a registry of its own (they need no
        # allocation); the registry that serves the API is then built with both collaborators.
        self.services = ServiceAllocation(store, Registry(store), self.cidr, NodePortAllocator(*config.node_port_range))
        pod_security = (admission.load_configuration(config.admission_control_config_file)
                        if config.admission_control_config_file else None)
        self.registry = Registry(store, services=self.services, tokens=self.signer,
                                 extend_token_expiration=config.extend_token_expiration, pod_security=pod_security)
        self.authorizer = Authorizer(store)
        self.tokens = TokenAuthenticator(self.signer, self.authorizer.objects)
        self.authorizer.tokens = self.tokens
        self.rest = RestHandlers(self.registry, self.authorizer)
        self.kubernetes_service = KubernetesService(
            self.registry, self.cidr, config.advertise_address, config.port, config.kubernetes_service_interval
        )
        self.ready = False
        self._runner: web.AppRunner | None = None
        self.trimmer = memtrim.Trimmer()  # gives freed memory back after bursts
        self.audit = audit.AuditLog(config.audit_log) if config.audit_log else None
        # kube-apiserver writes /version with json.MarshalIndent (two spaces, no final newline),
        # not with its object serializer.
        self._version = orjson.dumps(version_info(), option=orjson.OPT_INDENT_2)
        self.app = self._build_app()

    # ------------------------------------------------------------------ app

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        r = app.router
        # Trailing slashes as kube-apiserver routes them: go-restful 3.11 (CurlyRouter, whose
        # tokenizer trims every trailing slash) serves /version, /api, /api/v1, /apis/GROUP and
        # /apis/GROUP/VERSION with any number of them (the last two in _resource; resource
        # paths ignore them in parse_path); /apis itself is matched by exact path, with one
        # slash or none; the health endpoints are exact paths of a plain mux.
        r.add_get("/version{_:/*}", self._version_handler)
        for path in ("/healthz", "/livez", "/readyz"):
            r.add_get(path, self._health)
            r.add_get(path + "/{check:.*}", self._health)
        r.add_get("/metrics", self._metrics)
        r.add_get("/api{_:/*}", self._api)
        r.add_get("/apis{_:/?}", self._apis)
        r.add_get("/api/v1", self._resource_list)
        r.add_get("/apis/{group}{_:/*}", self._group)
        r.add_get("/apis/{group}/{version}", self._resource_list)
        r.add_get("/openapi/v2", self._openapi_v2)
        r.add_get("/openapi/v3", self._openapi_index)
        r.add_get("/openapi/v3/{path:.*}", self._openapi_doc)
        r.add_route("*", "/api/v1/{tail:.*}", self._resource)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._resource)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # The request's context gathers warnings and audit annotations from every layer below.
        ctx, token = requestcontext.open_context()
        received = time.time()
        user: User | None = None
        acting: User | None = None
        attrs: rbac.Attributes | None = None
        failure: StatusError | None = None
        try:
            try:
                user = acting = await self._authenticate(request)
                if user is None and request.path not in OPEN_PATHS and not request.path.startswith(("/livez/", "/readyz/", "/healthz/")):
                    raise errors.unauthorized()
                if user is not None:
                    # Impersonation, then authorization, as kube-apiserver's filter chain orders them.
                    if "Impersonate-User" in request.headers or "Impersonate-Group" in request.headers:
                        ctx.annotations[audit.DECISION_ANNOTATION] = "forbid"  # unless impersonation passes
                        acting = self.authorizer.impersonate(user, request.headers,
                                                             lambda key: request.headers.getall(key, []))
                    assert acting is not None
                    try:
                        attrs = await self.authorizer.check_request(acting, request.method, request.path,
                                                                    request.query)
                    except StatusError:
                        ctx.annotations[audit.DECISION_ANNOTATION] = "forbid"
                        ctx.annotations[audit.REASON_ANNOTATION] = ""
                        raise
                    ctx.annotations[audit.DECISION_ANNOTATION] = "allow"
                    if self.audit is not None and request.method not in audit.READ_METHODS:
                        ctx.annotations[audit.REASON_ANNOTATION] = self.authorizer.policy().allowed_by(attrs)
                request[USER_KEY] = acting
                # Admission reads who asks from the request's context, as kube-apiserver's plugins do.
                REQUEST_USER.set(acting)
                resp: web.StreamResponse = await handler(request)
            except StatusError as e:
                failure = e
                resp = status_response(e, request)
            except web.HTTPException as e:
                if e.status == 404:
                    failure = StatusError(404, "NotFound", "the server could not find the requested resource", {})
                elif e.status == 405:
                    failure = errors.method_not_allowed()
                elif e.status == 413:
                    failure = errors.too_large()
                else:
                    raise
                resp = status_response(failure, request)
            except (ConnectionResetError, asyncio.CancelledError):
                raise
            except Exception as e:  # a bug: report it, keep serving
                log.exception("internal error serving %s %s", request.method, request.path)
                failure = errors.internal_error(f"{type(e).__name__}: {e}")
                resp = status_response(failure, request)
            if ctx.warnings and not resp.prepared:
                for w in ctx.warnings:
                    resp.headers.add("Warning", warning_header(w))
            if self.audit is not None and request.method not in audit.READ_METHODS:
                self._audit(request, resp, ctx, received, user, acting, attrs, failure)
            return resp
        finally:
            requestcontext.close_context(token)

    def _audit(self, request: web.Request, resp: web.StreamResponse, ctx: requestcontext.RequestContext,
               received: float, user: User | None, acting: User | None, attrs: rbac.Attributes | None,
               failure: StatusError | None) -> None:
        """Record the request's audit event (the log is enabled)."""
        assert self.audit is not None
        audit_id = request.headers.get("Audit-ID") or audit.new_audit_id()
        if not resp.prepared:
            resp.headers["Audit-Id"] = audit_id
        if attrs is None:
            who = acting or user
            attrs = rbac.request_attributes(who.name if who else "", who.groups if who else (), request.method,
                                            request.path, request.query)
        ref = None
        if attrs.resource_request:
            ref = audit.object_ref(attrs.resource, attrs.namespace, attrs.name or ctx.object_name, attrs.api_group,
                                   attrs.api_version, attrs.subresource)
        if user is None:
            who_info = audit.user_info("system:anonymous", ["system:unauthenticated"])
        else:
            who_info = audit.user_info(user.name, user.groups, user.uid, user.extra)
        impersonated = None
        if acting is not None and acting is not user:
            impersonated = audit.user_info(acting.name, acting.groups, acting.uid, acting.extra)
        self.audit.record(audit.event(
            audit_id=audit_id, request_uri=request.raw_path, verb=attrs.verb, user=who_info,
            impersonated_user=impersonated,
            source=audit.source_ips(request.headers.get("X-Forwarded-For", ""), request.headers.get("X-Real-Ip", ""),
                                    request.remote),
            user_agent=request.headers.get("User-Agent", ""), ref=ref,
            response_status=audit.response_status(resp.status, failure.status() if failure is not None else None),
            received=received, completed=time.time(), annotations=dict(sorted(ctx.annotations.items())),
        ))

    async def _authenticate(self, request: web.Request) -> User | None:
        transport = request.transport
        if transport is not None:
            user = user_from_peercert(transport.get_extra_info("peercert"))
            if user is not None:
                return user
        # The scheme is case-insensitive, as kube-apiserver reads it: the official Python
        # client's in-cluster config sends "bearer".
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return await self.tokens.authenticate(token.strip())
        return None

    # ------------------------------------------------------------------ plain endpoints

    async def _version_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._version, content_type=JSON)

    def health_checks(self, path: str) -> list[healthz.Check]:
        """The checks of ``/healthz``, ``/livez`` or ``/readyz`` (kube-apiserver's names where it has them)."""
        etcd, compaction = healthz.store_checks(self.store)
        checks = [healthz.PING, etcd]
        if path == "readyz":

            # kube-apiserver's hook of this name starts the `kubernetes` Service controller:
            # ready once the first pass is written (bootstrap), failed if the primary's loop ended.
            async def bootstrapped() -> str | None:
                if not self.ready:
                    return "not finished"
                if self.primary and self.kubernetes_service.stopped:
                    return "the kubernetes service controller stopped"
                return None

            checks += [compaction, healthz.Check("poststarthook/bootstrap-controller", bootstrapped)]
        return checks

    async def _health(self, request: web.Request) -> web.Response:
        # Exact paths, as kube-apiserver's mux has them: /healthz/ and /livez/ping/ are 404s.
        path, sep, check = request.path[1:].partition("/")
        checks = self.health_checks(path)
        if sep:
            answer = await healthz.single(checks, check)
            if answer is None:
                raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        else:
            answer = await healthz.root(path, checks, request.query, request.query.getall("exclude", []))
        return web.Response(status=answer.status, text=answer.text, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _metrics(self, request: web.Request) -> web.Response:
        # Authenticated like kube-apiserver's /metrics (the middleware refuses anonymous calls).
        return web.Response(text=metrics.render(await self.store.health()) + watchstreams.render(self.rest.watchers),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _api(self, request: web.Request) -> web.Response:
        agg = discovery.aggregated_version_wanted(request.headers.get("Accept", ""))
        if agg:
            return web.Response(
                body=discovery.aggregated(True, agg) + b"\n",  # the serializer's newline, as every object
                headers={"Content-Type": f"application/json;g=apidiscovery.k8s.io;v={agg};as=APIGroupDiscoveryList"},
            )
        return json_response(discovery.api_versions(f"{self.config.host}:{self.config.port}"))

    async def _apis(self, request: web.Request) -> web.Response:
        agg = discovery.aggregated_version_wanted(request.headers.get("Accept", ""))
        if agg:
            return web.Response(
                body=discovery.aggregated(False, agg) + b"\n",  # the serializer's newline, as every object
                headers={"Content-Type": f"application/json;g=apidiscovery.k8s.io;v={agg};as=APIGroupDiscoveryList"},
            )
        return json_response(discovery.api_group_list())

    async def _group(self, request: web.Request) -> web.Response:
        body = discovery.api_group(request.match_info["group"])
        if body is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return json_response(body)

    async def _resource_list(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group")
        gv = f"{group}/{request.match_info['version']}" if group else "v1"
        body = discovery.api_resource_list(gv)
        if body is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return json_response(body)

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        # kubectl 1.27/1.28 fetch the v2 document before explain/create/apply and give up on a
        # 404; an empty document makes them fall back to v3 (newer kubectl never asks).
        return web.Response(
            body=b"", headers={"Content-Type": "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"}
        )

    async def _openapi_index(self, request: web.Request) -> web.Response:
        # kube-openapi marshals its discovery document without the serializer's final newline.
        return web.Response(body=orjson.dumps(openapi.v3_index()), content_type=JSON)

    async def _openapi_doc(self, request: web.Request) -> web.Response:
        doc = openapi.v3_document(request.match_info["path"])
        if doc is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        body, digest = doc
        etag = f'"{digest}"'
        headers = {"ETag": etag, "Cache-Control": "public, immutable" if request.query.get("hash") else "no-cache, private"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=JSON, headers=headers)

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        if not request.match_info["tail"].strip("/"):  # /api/v1/, /apis/GROUP/VERSION//: discovery
            if request.method != "GET":
                raise errors.method_not_allowed()
            return await self._resource_list(request)
        target = parse_path(request.path)
        if target is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return await self.rest.handle(request, target)

    # ------------------------------------------------------------------ lifecycle

    async def bootstrap(self) -> None:
        """Objects a cluster has from its first second: system namespaces, the `kubernetes` Service,
        the system priority classes, flow control's mandatory objects, the local APIServices."""
        ns_rt = lookup("", "v1", "namespaces")
        assert ns_rt is not None
        for ns in SYSTEM_NAMESPACES:
            if await self.store.get(ns_rt.key(None, ns)) is None:
                obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                try:
                    await self.registry.create_object(ns_rt, None, obj, manager="kube-apiserver")
                except StatusError as e:
                    if e.code != 409:
                        raise
        await self.services.repair()
        await self.kubernetes_service.reconcile()
        await systemobjects.bootstrap(self.registry)
        await authorization.bootstrap(self.registry)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        ctx.load_verify_locations(cafile=str(self.pki.ca_cert))
        # Optional, not required: a client without a certificate may still present a bearer
        # token, and one with neither gets a proper 401 Status instead of a TLS alert.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    async def start(self) -> None:
        if self.primary:
            await self.bootstrap()
        else:
            await self.services.load_hints()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await self.registry.start_caches()
        await self.authorizer.start()
        if self.audit is not None:
            await self.audit.start()
        site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=self.ssl_context(), backlog=1024,
            reuse_address=True, reuse_port=True,
        )
        await site.start()
        if self.primary:
            self.kubernetes_service.start()
        self.trimmer.start()
        self.ready = True
        log.info("API server %sserving on https://%s:%d", "" if self.primary else "worker ",
                 self.config.host, self.config.port)

    async def stop(self) -> None:
        self.ready = False
        await self.kubernetes_service.stop()
        await self.registry.stop_caches()
        await self.authorizer.stop()
        await self.rest.watchers.stop()
        await self.trimmer.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.audit is not None:
            await self.audit.close()  # after the last request: its event is in

