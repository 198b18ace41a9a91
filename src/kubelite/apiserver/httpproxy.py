"""The ``proxy`` subresources of pods, services and nodes: HTTP relayed to a backend.

``/api/v1/namespaces/NS/services/web:80/proxy/some/path?q`` is how dashboards and ``kubectl
proxy`` users reach a Service from the host. kube-apiserver resolves the name (``NAME``,
``NAME:PORT`` or ``SCHEME:NAME:PORT``) to one backend address (a ready endpoint of the
Service, the pod's IP, the node's kubelet) and reverse-proxies the request there, every HTTP
method, path and query as sent.

kubelite's API server runs in the host's network namespace, where the pod network is not
routed, so a connection to a pod is dialled by the node agent inside the pod's namespace
(its ``/dial`` tunnel, see :mod:`kubelite.node.streaming`), and a node's "kubelet" is the
agent's own socket. Over that byte stream this module speaks plain HTTP/1.1 itself, one
request per connection (``Connection: close``), the body read whole (bounded by the server's
request size limit): small, and the same code for all three. Like kube-apiserver's
transport, it sets ``X-Forwarded-For`` and ``X-Forwarded-Uri``, rewrites a ``Location`` pointing back at
the backend to go through the proxy path again, drops CORS headers of the backend, and
turns a backend it cannot reach into ``503 error trying to reach service: ...``.
Links in HTML pages are rewritten to go through the proxy too, as kube-apiserver does, and an
upgrade (a websocket to the pod) switches the client's connection once the backend has.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import os
import random
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from kubelite.api import errors
from kubelite.api.errors import StatusError
from kubelite.apiserver.proxy import AGENT, Feeder, StreamingProxy, agent_session, spawn

PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
KUBELET_PORT = "10250"
HEAD_LIMIT = 1 << 20
# Hop-by-hop headers (RFC 7230 6.1) and what the apiserver itself consumes.
_REQUEST_DROP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "expect", "authorization",
})
_RESPONSE_DROP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
    # kube-apiserver's corsRemovingTransport: the apiserver's own CORS policy applies.
    "access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods",
    "access-control-allow-origin",
})
_PROXY_PATH = re.compile(r"^(?P<prefix>.*?/(?:pods|services|nodes)/[^/]+/proxy)(?P<rest>/.*)?$")


def split_scheme_name_port(ref: str) -> tuple[str, str, str] | None:
    """``name``, ``name:port`` or ``scheme:name:port`` (scheme http or https), as apimachinery splits them."""
    parts = ref.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in ("", "http", "https"):
        return None
    return scheme, name, port


def proxy_path(raw_path: str, query_path: str) -> tuple[str, str]:
    """(the client's path up to ``/proxy``, the backend's path) of a proxy request.

    The backend's path is what follows ``/proxy`` (escaped as sent), else the ``path``
    query parameter, starting with "/", a trailing slash kept; "" when there is none at
    all (``.../proxy``), which kube-apiserver answers with a redirect to ``.../proxy/``.
    """
    m = _PROXY_PATH.match(raw_path)
    if m is None:
        return raw_path, "/"
    rest = m.group("rest") or ""
    if not rest.strip("/") and query_path:
        rest = query_path
    if not rest:
        return m.group("prefix"), ""
    return m.group("prefix"), "/" + rest.lstrip("/")


def rewrite_location(location: str, backend_host: str, request_host: str, prefix: str) -> str:
    """A redirect to the backend itself, made to go through the proxy (kube's Transport.rewriteURL).

    The result is a path on the API server: kube-apiserver fills in the scheme and host from
    its request's URL, which on the server side has neither.
    """
    url = urllib.parse.urlsplit(location)
    if (url.netloc and url.netloc not in (backend_host, request_host)) or not url.path.startswith("/"):
        return location
    path = url.path if url.path.startswith(prefix) else prefix.rstrip("/") + url.path
    return urllib.parse.urlunsplit(("", "", path, url.query, url.fragment))


def _port_number(port: str) -> int:
    """A port as Go's dialer reads one: a number, or a service name (``http`` is 80)."""
    if port.isdigit():
        return int(port)
    try:
        return socket.getservbyname(port, "tcp")
    except OSError:
        raise ConnectionError(f"dial tcp: lookup tcp/{port}: unknown port") from None


@dataclass(frozen=True)
class _Backend:
    """Where one proxied request goes: a pod (through its node's agent) or the agent itself."""

    sock: str  # the agent's unix socket
    host: str  # host:port as the backend knows itself (for Location rewrites)
    scheme: str
    pod: tuple[str, str, int] | None = None  # (namespace, name, port) to dial; None: the agent's own HTTP


class _Tunnel:
    """The agent's ``/dial`` websocket as a real socket, so that asyncio (and TLS) can use it."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.error = ""
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self._tasks: list[asyncio.Future[Any]] = []

    @classmethod
    async def open(cls, sock: str, namespace: str, pod: str, port: int) -> _Tunnel:
        http = agent_session(sock)
        try:
            ws = await http.ws_connect(f"{AGENT}/dial/{namespace}/{pod}", params={"port": str(port)},
                                       max_msg_size=0)
        except (aiohttp.ClientError, OSError) as e:
            await http.close()
            raise ConnectionError(f"dial unix {sock}: connect: {e}") from None
        self = cls(http, ws)
        self._tasks = [asyncio.ensure_future(self._down()), asyncio.ensure_future(self._up())]
        return self

    async def _down(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    if not msg.data:
                        break
                    await loop.sock_sendall(self.ours, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self.error = msg.data
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.ours.shutdown(socket.SHUT_WR)

    async def _up(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            while data := await loop.sock_recv(self.ours, 64 * 1024):
                await self.ws.send_bytes(data)
            await self.ws.send_bytes(b"")  # half-close toward the pod

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.ours.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()
        await self.http.close()


class ResourceProxy:
    """pods/NAME/proxy, services/NAME/proxy and nodes/NAME/proxy."""

    def __init__(self, streaming: StreamingProxy) -> None:
        self.streaming = streaming

    async def serve(self, request: web.Request, plural: str, namespace: str | None, ref: str) -> web.StreamResponse:
        if request.method not in PROXY_METHODS:
            raise errors.method_not_allowed()
        if plural == "pods":
            backend = await self._pod_backend(namespace or "", ref)
        elif plural == "services":
            backend = await self._service_backend(namespace or "", ref)
        else:
            backend = await self._node_backend(ref)
        return await self._relay(request, backend)

    # -- resolving the name to one backend

    async def _pod_backend(self, namespace: str, ref: str) -> _Backend:
        split = split_scheme_name_port(ref)
        if split is None:
            raise errors.bad_request(f'invalid pod request "{ref}"')
        scheme, name, port = split
        pod = await self.streaming.get("pods", namespace, name)
        if pod is None:
            raise errors.not_found_error("pods", name)
        if not port:
            # No port named: the first declared container port, else none (HTTP's 80).
            for c in pod.get("spec", {}).get("containers") or []:
                if c.get("ports"):
                    port = str(c["ports"][0].get("containerPort", ""))
                    break
        ip = (pod.get("status") or {}).get("podIP", "")
        if not _global_unicast(ip):
            raise errors.bad_request("address not allowed")
        sock = await self.streaming.pod_agent_socket(pod)
        number = port or ("443" if scheme == "https" else "80")
        return _Backend(sock, _join_host_port(ip, port), scheme or "http", (namespace, name, _lazy_port(number)))

    async def _service_backend(self, namespace: str, ref: str) -> _Backend:
        split = split_scheme_name_port(ref)
        if split is None:
            raise errors.bad_request(f'invalid service request "{ref}"')
        scheme, name, port = split
        if port.isdigit():
            svc = await self.streaming.get("services", namespace, name)
            if svc is None:
                raise errors.not_found_error("services", name)
            named = [p.get("name", "") for p in (svc.get("spec") or {}).get("ports") or []
                     if str(p.get("port")) == port]
            if not named:
                raise _unavailable(f'no service port {port} found for service "{name}"')
            port = named[0]
        eps = await self.streaming.get("endpoints", namespace, name)
        if eps is None:
            raise errors.not_found_error("endpoints", name)
        subsets = eps.get("subsets") or []
        if not subsets:
            raise _unavailable(f'no endpoints available for service "{name}"')
        start = random.randrange(len(subsets))
        for k in range(len(subsets)):
            subset = subsets[(start + k) % len(subsets)]
            addresses = subset.get("addresses") or []
            for ep_port in subset.get("ports") or []:
                if ep_port.get("name", "") != port or not addresses:
                    continue
                first = random.randrange(len(addresses))
                for t in range(len(addresses)):
                    addr = addresses[(first + t) % len(addresses)]
                    target = await self._endpoint_pod(namespace, addr)
                    if target is None:
                        continue
                    sock = await self.streaming.pod_agent_socket(target)
                    number = int(ep_port["port"])
                    return _Backend(sock, _join_host_port(addr["ip"], str(number)), scheme or "http",
                                    (namespace, target["metadata"]["name"], number))
        raise _unavailable(f'no endpoints available for service "{ref}"')

    async def _endpoint_pod(self, namespace: str, addr: dict[str, Any]) -> dict[str, Any] | None:
        """The pod behind an endpoint address, if it is still that pod (kube's isValidAddress)."""
        ref = addr.get("targetRef") or {}
        if ref.get("kind") != "Pod" or not ref.get("name"):
            return None
        pod = await self.streaming.get("pods", ref.get("namespace") or namespace, ref["name"])
        if pod is None:
            return None
        status = pod.get("status") or {}
        ips = {p.get("ip") for p in status.get("podIPs") or []} | {status.get("podIP")}
        return pod if addr.get("ip") in ips else None

    async def _node_backend(self, ref: str) -> _Backend:
        split = split_scheme_name_port(ref)
        if split is None:
            raise errors.bad_request(f'invalid node request "{ref}"')
        scheme, name, port = split
        node = await self.streaming.get("nodes", None, name)
        if node is None:
            raise errors.not_found_error("nodes", name)
        if port and port != KUBELET_PORT:
            # The agent serves the kubelet's endpoints only; other ports of a node are not reachable.
            raise _unavailable(
                f"error trying to reach service: kubelite proxies only the kubelet port {KUBELET_PORT} of a node"
            )
        sock = await self.streaming.agent_socket(name)
        return _Backend(sock, f"{name}:{KUBELET_PORT}", scheme or "https")

    # -- the HTTP exchange

    async def _connect(self, backend: _Backend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, _Tunnel | None]:
        if backend.pod is None:
            reader, writer = await asyncio.open_unix_connection(backend.sock)
            return reader, writer, None
        namespace, name, port = backend.pod
        tunnel = await _Tunnel.open(backend.sock, namespace, name, port)
        try:
            tls: ssl.SSLContext | None = None
            if backend.scheme == "https":
                # kube-apiserver's proxy transport does not verify pods' certificates either.
                tls = ssl.create_default_context()
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(
                sock=tunnel.theirs, ssl=tls, server_hostname="" if tls else None, limit=HEAD_LIMIT
            )
        except BaseException:
            await tunnel.close()
            raise
        return reader, writer, tunnel

    async def _relay(self, request: web.Request, backend: _Backend) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")  # as sent: aiohttp's query_string is decoded
        prefix, path = proxy_path(raw_path, request.query.get("path", ""))
        upgrade = "upgrade" in request.headers.get("Connection", "").lower() and "Upgrade" in request.headers
        if not path and not upgrade:
            # kube-apiserver's "hack for issue 4958": a backend path must not be empty.
            return web.Response(status=301, headers={"Location": raw_path + "/" + (f"?{raw_query}" if raw_query else "")})
        target = (path or "/") + (f"?{raw_query}" if raw_query else "")
        body = b"" if upgrade else await request.read()
        head = [f"{request.method} {target} HTTP/1.1"]
        for k, v in request.headers.items():
            if k.lower() not in _REQUEST_DROP and not k.lower().startswith("impersonate-"):
                head.append(f"{k}: {v}")
        if "Host" not in request.headers:
            head.append(f"Host: {backend.host}")
        forwarded_for = ", ".join(filter(None, (request.headers.get("X-Forwarded-For"), request.remote)))
        head += [f"X-Forwarded-For: {forwarded_for}", f"X-Forwarded-Uri: {raw_path}"]
        # An upgrade (a websocket to the pod) keeps its connection; anything else is one exchange.
        head += [f"Upgrade: {request.headers['Upgrade']}", "Connection: Upgrade"] if upgrade else ["Connection: close"]
        if body or request.method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        tunnel: _Tunnel | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer, tunnel = await self._connect(backend)
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                status, reason, headers = await _read_head(reader)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                    ssl.SSLError) as e:
                cause = (tunnel.error if tunnel is not None else "") or _go_error(e, backend)
                raise _unavailable(f"error trying to reach service: {cause}") from None
            if upgrade and status == 101:
                return await _switch_protocols(request, reader, writer, headers)
            resp = web.StreamResponse(status=status, reason=reason or None)
            length: int | None = None
            chunked = False
            for k, v in headers:
                lk = k.lower()
                if lk == "content-length" and v.strip().isdigit():
                    length = int(v)
                elif lk == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
                if lk in _RESPONSE_DROP:
                    continue
                if lk == "location":
                    v = rewrite_location(v, backend.host, request.host, prefix)
                resp.headers.add(k, v)
            no_body = request.method == "HEAD" or status in (204, 304) or 100 <= status < 200
            if no_body:
                if length is not None:
                    resp.content_length = length
                await resp.prepare(request)
                await resp.write_eof()
                return resp
            body_chunks = _body(reader, chunked, length)
            html = _media_type(resp.headers.get("Content-Type", "")) == "text/html"
            encoding = resp.headers.get("Content-Encoding", "").strip().lower()
            if html and encoding in ("", "gzip"):
                # Links in a page point at the backend's paths: make them go through the proxy.
                page = b"".join([chunk async for chunk in body_chunks])
                page = rewrite_html(gzip.decompress(page) if encoding == "gzip" else page,
                                    lambda url: rewrite_location(url, backend.host, request.host, prefix))
                if encoding == "gzip":
                    page = gzip.compress(page)
                resp.content_length = len(page)
                await resp.prepare(request)
                await resp.write(page)
                await resp.write_eof()
                return resp
            if length is not None and not chunked:
                resp.content_length = length
            else:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                async for chunk in body_chunks:
                    await resp.write(chunk)
                await resp.write_eof()
            return resp
        finally:
            if writer is not None:
                writer.close()
            if tunnel is not None:
                await tunnel.close()


async def _switch_protocols(
    request: web.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: list[tuple[str, str]]
) -> web.StreamResponse:
    """The backend switched protocols: so does the client's connection, then bytes flow both ways."""
    assert request.transport is not None
    client = asyncio.StreamReader(limit=1 << 20)
    client.set_transport(request.transport)
    request.protocol.set_parser(Feeder(client))  # type: ignore[arg-type]
    resp = web.StreamResponse(status=101)
    for k, v in headers:
        if k.lower() not in ("content-length", "transfer-encoding"):
            resp.headers.add(k, v)
    await resp.prepare(request)

    async def up() -> None:
        while data := await client.read(64 * 1024):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def down() -> None:
        while data := await reader.read(64 * 1024):
            await resp.write(data)

    tasks = {spawn(up()), spawn(down())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        if request.transport is not None:
            request.transport.close()
    return resp


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, list[tuple[str, str]]]:
    while True:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ValueError(f"malformed HTTP response {lines[0]!r}")
        status = int(code)
        if status == 100:
            continue  # an interim answer: the real one follows
        headers = []
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
        return status, reason, headers


async def _body(reader: asyncio.StreamReader, chunked: bool, length: int | None) -> AsyncIterator[bytes]:
    """A response body by its framing: chunked, a Content-Length, or up to the end of the connection."""
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    elif length is not None:
        left = length
        while left > 0 and (data := await reader.read(min(left, 64 * 1024))):
            left -= len(data)
            yield data
    else:
        while data := await reader.read(64 * 1024):
            yield data


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# The attributes holding URLs that kube-apiserver's proxy rewrites in HTML, by element.
_URL_ATTRS: dict[str, frozenset[str]] = {
    tag: frozenset(attrs.split()) for tag, attrs in {
        "a": "href", "applet": "codebase", "area": "href", "audio": "src", "base": "href", "blockquote": "cite",
        "body": "background", "button": "formaction", "command": "icon", "del": "cite", "embed": "src",
        "form": "action", "frame": "longdesc src", "head": "profile", "html": "manifest", "iframe": "longdesc src",
        "img": "longdesc src usemap", "input": "src usemap formaction", "ins": "cite", "link": "href",
        "object": "classid codebase data usemap", "q": "cite", "script": "src", "source": "src",
        "video": "poster src",
    }.items()
}
_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]*)(\s[^>]*)?>")
_ATTR = re.compile(r"""([^\s=/>]+)(\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)""")


def rewrite_html(page: bytes, rewrite: Callable[[str], str]) -> bytes:
    """``page`` with the URLs of the attributes above passed through ``rewrite``; the rest untouched.

    kube-apiserver re-renders the parsed document; this edits the attributes in place, which
    leaves the page byte for byte as the backend wrote it elsewhere.
    """
    text = page.decode("latin-1")  # byte-transparent: only ASCII syntax is matched

    def tag(m: re.Match[str]) -> str:
        attrs = _URL_ATTRS.get(m.group(1).lower())
        if not attrs or not m.group(2):
            return m.group(0)

        def attr(a: re.Match[str]) -> str:
            if a.group(1).lower() not in attrs:
                return a.group(0)
            value = a.group(3)
            quote = value[0] if value[0] in "\"'" else ""
            url = value[1:-1] if quote else value
            return f"{a.group(1)}{a.group(2)}{quote}{rewrite(url)}{quote}"

        return f"<{m.group(1)}{_ATTR.sub(attr, m.group(2))}>"

    return _TAG.sub(tag, text).encode("latin-1")


def _go_error(e: BaseException, backend: _Backend) -> str:
    if isinstance(e, asyncio.IncompleteReadError):
        return "EOF"
    if isinstance(e, ConnectionError) and e.args and isinstance(e.args[0], str) and not getattr(e, "errno", None):
        return str(e.args[0])
    errno_ = getattr(e, "errno", None)
    reason = (os.strerror(errno_) if errno_ else str(e) or type(e).__name__).lower()
    return f"dial tcp {backend.host}: connect: {reason}"


def _unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def _global_unicast(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_multicast or addr.is_unspecified or addr.is_link_local
                or (addr.version == 4 and int(addr) == 0xFFFFFFFF))


def _join_host_port(host: str, port: str) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{h}:{port}" if port else h


def _lazy_port(port: str) -> int:
    try:
        return _port_number(port)
    except ConnectionError as e:
        raise _unavailable(f"error trying to reach service: {e}") from None
