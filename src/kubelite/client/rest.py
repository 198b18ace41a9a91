"""An async Kubernetes client: kubeconfig or in-cluster credentials, typed errors, watch streams.

Every kubelite component (controllers, node agent, proxy, DNS) talks to the API server
through this, exactly as Kubernetes' components use client-go: over HTTPS with a client
certificate or a bearer token, never by importing the server or the store. That keeps each
component runnable as its own process and against any cluster. Objects are plain dicts;
resources are named by :class:`kubelite.api.registry.ResourceType`.
"""

from __future__ import annotations

import base64
import logging
import os
import pathlib
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import yaml

from kubelite.api.registry import ResourceType
from kubelite.api.types import PATCH_CONTENT_TYPES, PatchType, WatchEventType

SA_DIR = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
log = logging.getLogger(__name__)


def warning_texts(values: list[str]) -> list[str]:
    """The texts of ``Warning`` headers as client-go's ParseWarningHeaders reads them: code 299
    only (others are not the API server's), ``299 AGENT "TEXT" [DATE]``, TEXT a quoted-string
    (backslash escapes). A value that does not parse is skipped."""
    texts = []
    for value in values:
        code, _, rest = value.strip().partition(" ")
        _agent, _, rest = rest.partition(" ")
        if code != "299" or not rest.startswith('"'):
            continue
        out, i, closed = [], 1, False
        while i < len(rest):
            ch = rest[i]
            if ch == "\\" and i + 1 < len(rest):
                out.append(rest[i + 1])
                i += 2
                continue
            if ch == '"':
                closed = True
                break
            out.append(ch)
            i += 1
        if closed:
            texts.append("".join(out))
    return texts


class ApiError(Exception):
    """A non-2xx answer, carrying the server's Status object."""

    def __init__(self, status: dict[str, Any], code: int) -> None:
        self.status = status
        self.code = int(status.get("code") or code)
        self.reason = str(status.get("reason", ""))
        super().__init__(f"{self.code} {self.reason}: {status.get('message', '')}")

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.code == 410

    def has_cause(self, reason: str) -> bool:
        """apimachinery's HasStatusCause: whether the Status's details list a cause of ``reason``."""
        causes = (self.status.get("details") or {}).get("causes") or []
        return any(c.get("reason") == reason for c in causes)

    @property
    def namespace_terminating(self) -> bool:
        """A create refused because its namespace is being deleted (NamespaceTerminatingCause):
        every create there fails until the namespace is gone."""
        return self.has_cause("NamespaceTerminating")


@dataclass(frozen=True)
class Config:
    server: str
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None) -> Config:
        kc = yaml.safe_load(pathlib.Path(path).read_text())
        ctx_name = context or kc.get("current-context")
        ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
        user: dict[str, Any] = next((u["user"] for u in kc.get("users", []) if u["name"] == ctx.get("user")), {})

        def data(d: dict[str, Any], key: str) -> bytes | None:
            if d.get(f"{key}-data"):
                return base64.b64decode(d[f"{key}-data"])
            if d.get(key):
                return pathlib.Path(d[key]).read_bytes()
            return None

        return cls(
            server=cluster["server"],
            ca_data=data(cluster, "certificate-authority"),
            cert_data=data(user, "client-certificate"),
            key_data=data(user, "client-key"),
            token=user.get("token"),
        )

    @classmethod
    def in_cluster(cls) -> Config:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        return cls(
            server=f"https://{host}:{port}",
            ca_data=(SA_DIR / "ca.crt").read_bytes(),
            token_file=str(SA_DIR / "token"),
        )

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.cert_data and self.key_data:
            # ssl only loads client certificates from files; keep them private and short-lived.
            with tempfile.TemporaryDirectory() as d:
                cert, key = os.path.join(d, "c.crt"), os.path.join(d, "c.key")
                for p, content in ((cert, self.cert_data), (key, self.key_data)):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(content)
                ctx.load_cert_chain(cert, key)
        return ctx


class Client:
    """One connection pool to one API server."""

    def __init__(self, config: Config, *, user_agent: str = "kubelite", max_connections: int = 32,
                 token_source: Callable[[], str] | None = None,
                 on_unauthorized: Callable[[], None] | None = None) -> None:
        self.config = config
        self.user_agent = user_agent
        # A bearer token that changes over the client's life (a refreshed TokenRequest token),
        # and who to tell when the server stops accepting it (client-go's resettable token
        # source: a 401 makes it fetch a new one).
        self.token_source = token_source
        self.on_unauthorized = on_unauthorized
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._warnings_seen: set[str] = set()

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], **kw: Any) -> Client:
        return cls(Config.from_kubeconfig(path), **kw)

    def _warned(self, values: list[str]) -> None:
        """The server's warnings (Pod Security's, deprecated APIs, unknown fields), logged as
        client-go's default handler logs them, but each text once per client: a controller
        creating a thousand pods in a ``warn``-labelled namespace would otherwise log it a
        thousand times (kubectl deduplicates the same way)."""
        for text in warning_texts(values):
            if text not in self._warnings_seen:
                if len(self._warnings_seen) < 1024:
                    self._warnings_seen.add(text)
                log.warning("Warning: %s", text)

    def _headers(self) -> dict[str, str]:
        h = {"User-Agent": self.user_agent, "Accept": "application/json"}
        token = self.config.token
        if self.token_source is not None:
            token = self.token_source()
        elif self.config.token_file:
            token = pathlib.Path(self.config.token_file).read_text().strip()
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=self._max)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
            )
        return self._session

    @property
    def watch_session(self) -> aiohttp.ClientSession:
        """Watches get a pool of their own, without a limit: over HTTP/1.1 every open watch
        holds a connection for its whole life (client-go multiplexes them over one HTTP/2
        connection), so in the bounded pool a process with more informers than connections
        (the controller-manager has 30+) would wait forever for its last lists and watches."""
        if self._watch_session is None or self._watch_session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=0)
            self._watch_session = aiohttp.ClientSession(connector=connector)
        return self._watch_session

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ URLs

    def url(self, rt: ResourceType, namespace: str | None = None, name: str | None = None,
            subresource: str | None = None) -> str:
        base = f"/apis/{rt.group}/{rt.version}" if rt.group else "/api/v1"
        if rt.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{rt.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return self.config.server + base

    async def request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        headers = self._headers()
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        async with self.session.request(method, url, params=params, data=data, headers=headers) as resp:
            raw = await resp.read()
            if "Warning" in resp.headers:
                self._warned(resp.headers.getall("Warning"))
            try:
                out: dict[str, Any] = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                out = {"kind": "Status", "code": resp.status, "message": raw.decode(errors="replace")}
            if resp.status >= 400:
                if resp.status == 401 and self.on_unauthorized is not None:
                    self.on_unauthorized()
                raise ApiError(out, resp.status)
            return out

    # ------------------------------------------------------------------ verbs

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self.request("GET", self.url(rt, namespace, name, subresource))

    async def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_: str = "") -> dict[str, Any]:
        params = _params(labelSelector=label_selector, fieldSelector=field_selector,
                         limit=str(limit) if limit else "", **{"continue": continue_})
        return await self.request("GET", self.url(rt, namespace), params=params)

    async def list_all(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str = "",
                       field_selector: str = "", page: int = 500) -> dict[str, Any]:
        """A whole list, fetched in pages; the result has every item and the last resourceVersion."""
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            body = await self.list(rt, namespace, label_selector=label_selector, field_selector=field_selector,
                                   limit=page, continue_=cont)
            items += body.get("items") or []
            cont = (body.get("metadata") or {}).get("continue", "")
            if not cont:
                body["items"] = items
                return body

    async def create(self, rt: ResourceType, obj: Mapping[str, Any], namespace: str | None = None, *,
                     field_manager: str = "", subresource: str | None = None, name: str | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        params = _params(fieldManager=field_manager, dryRun="All" if dry_run else "")
        return await self.request("POST", self.url(rt, ns, name, subresource), params=params, body=obj)

    async def update(self, rt: ResourceType, obj: Mapping[str, Any], *, subresource: str | None = None,
                     field_manager: str = "") -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request("PUT", self.url(rt, meta.get("namespace"), meta["name"], subresource),
                                  params=_params(fieldManager=field_manager), body=obj)

    async def update_status(self, rt: ResourceType, obj: Mapping[str, Any], *, field_manager: str = "") -> dict[str, Any]:
        return await self.update(rt, obj, subresource="status", field_manager=field_manager)

    async def patch(self, rt: ResourceType, name: str, patch: Any, namespace: str | None = None, *,
                    type: PatchType = "merge", subresource: str | None = None, field_manager: str = "",
                    force: bool = False) -> dict[str, Any]:
        params = _params(fieldManager=field_manager, force="true" if force else "")
        body = orjson.dumps(patch) if type != "apply" or not isinstance(patch, str) else patch
        return await self.request("PATCH", self.url(rt, namespace, name, subresource), params=params,
                                  body=body, content_type=PATCH_CONTENT_TYPES[type])

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if preconditions:
            opts["preconditions"] = preconditions
        return await self.request("DELETE", self.url(rt, namespace, name), body=opts)

    async def watch(self, rt: ResourceType, namespace: str | None = None, *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int = 0,
                    allow_bookmarks: bool = True) -> AsyncIterator[tuple[WatchEventType, dict[str, Any]]]:
        """Watch events as (type, object); an ERROR event raises ApiError (410 Gone included)."""
        params = _params(watch="1", resourceVersion=resource_version, labelSelector=label_selector,
                         fieldSelector=field_selector, timeoutSeconds=str(timeout_seconds) if timeout_seconds else "",
                         allowWatchBookmarks="true" if allow_bookmarks else "")
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.watch_session.get(self.url(rt, namespace), params=params, headers=self._headers(),
                                          timeout=timeout) as resp:
            if resp.status >= 400:
                raise ApiError(orjson.loads(await resp.read() or b"{}"), resp.status)
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = orjson.loads(line)
                if ev.get("type") == "ERROR":
                    raise ApiError(ev.get("object") or {}, int((ev.get("object") or {}).get("code") or 500))
                yield ev["type"], ev["object"]


def _params(**kw: str) -> dict[str, str]:
    return {k: v for k, v in kw.items() if v}
