"""The pods' streaming subresources: ``log``, ``exec``, ``attach`` and ``portforward``.

kube-apiserver answers these by finding the pod's node and proxying to its kubelet. Here
the node agent listens on a unix socket named by the Node's ``kubelite.io/kubelet-socket``
annotation (see :mod:`kubelite.node.streaming` for what it speaks).

Design: the API server *terminates* the client's protocol and speaks one simple protocol per
operation to the agent, rather than piping bytes through. kubectl's protocol depends on its
version (websocket ``v5.channel.k8s.io`` since 1.30, SPDY/3.1 before, SPDY tunnelled in a
websocket for port-forward since 1.31), and kube-apiserver itself already translates
websockets to SPDY for the kubelet; doing all of it here keeps the agent to one protocol and
every wire format in the API server's package (:mod:`.spdy`, :mod:`.wsstream`). Errors found
before anything is upgraded are plain Status responses, as kube-apiserver sends them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from kubelite.api import errors
from kubelite.api.errors import StatusError
from kubelite.api.registry import lookup
from kubelite.apiserver import wsstream
from kubelite.apiserver.registry import Registry, parse_path
from kubelite.apiserver.spdy import SpdySession, SpdyStream

SOCKET_ANNOTATION = "kubelite.io/kubelet-socket"
PORT_FORWARD = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"  # kubectl 1.31+: SPDY frames inside websocket binary messages
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's streamCreationTimeout
FINISH_TIMEOUT = 10.0  # how long a finished session waits for the client to hang up
AGENT = "http://kubelet"  # host part of URLs on the agent's socket (any name does)


# ---------------------------------------------------------------------------- pure helpers


def _pod_ref(request: web.Request) -> tuple[str, str]:
    """(namespace, name) of the pod a request names (the generic dispatch routed it here)."""
    target = parse_path(request.path)
    assert target is not None and target.name is not None
    return target.namespace or "", target.name


def container_names(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec", {})
    return [c.get("name", "") for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []]


def validate_container(pod: dict[str, Any], container: str) -> str:
    """kube-apiserver's validateContainer: the only container by default, else a named one."""
    name = pod["metadata"]["name"]
    if not container:
        containers = pod.get("spec", {}).get("containers") or []
        if len(containers) == 1:
            return str(containers[0]["name"])
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        raise errors.bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(container_names(pod))}]"
        )
    if container not in container_names(pod):
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def log_params(query: Any, name: str) -> dict[str, str]:
    """PodLogOptions validated as kube-apiserver does, as the kubelet's query parameters."""
    params: dict[str, str] = {}
    for flag in ("follow", "previous", "timestamps"):
        if str(query.get(flag, "")).lower() in ("true", "1"):
            params[flag] = "true"
    numbers: dict[str, int] = {}
    for key in ("tailLines", "limitBytes", "sinceSeconds"):
        raw = query.get(key)
        if raw is None:
            continue
        try:
            numbers[key] = int(raw)
        except ValueError:
            raise errors.bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None
    errs = []
    if numbers.get("tailLines", 0) < 0:
        errs.append(errors.invalid("tailLines", numbers["tailLines"], "must be greater than or equal to 0"))
    if numbers.get("limitBytes", 1) < 1:
        errs.append(errors.invalid("limitBytes", numbers["limitBytes"], "must be greater than 0"))
    if "sinceSeconds" in numbers and query.get("sinceTime"):
        errs.append(errors.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif numbers.get("sinceSeconds", 1) < 1:
        errs.append(errors.invalid("sinceSeconds", numbers["sinceSeconds"], "must be greater than 0"))
    if errs:
        raise errors.invalid_error("PodLogOptions", name, errs)
    params.update({k: str(v) for k, v in numbers.items()})
    if query.get("sinceTime"):
        params["sinceTime"] = query["sinceTime"]
    return params


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("true", "1")


def spawn(coro: Awaitable[None]) -> asyncio.Future[None]:
    """A relay task; a peer hanging up mid-copy ends it quietly (the other side notices)."""

    async def run() -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await coro

    return asyncio.ensure_future(run())


def _upgrade(request: web.Request) -> str:
    """"websocket", "spdy" or "" for what the client asks to switch to."""
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return ""
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade == "websocket":
        return "websocket"
    if upgrade.startswith("spdy/3.1"):
        return "spdy"
    return ""


def _offered_subprotocols(request: web.Request) -> list[str]:
    return wsstream.offered_protocols(request.headers.getall("Sec-WebSocket-Protocol", []))


def _reason(e: BaseException) -> str:
    errno_ = getattr(e, "errno", None)
    return (os.strerror(errno_) if errno_ else str(e) or type(e).__name__).lower()


def _dial_error(sock: str, e: BaseException) -> StatusError:
    reason = _reason(e)
    return StatusError(500, "", f"error dialing backend: dial unix {sock}: connect: {reason}")


def agent_session(sock: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=sock),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )


async def _until_disconnected(request: web.Request) -> None:
    # aiohttp does not cancel a handler whose client left; a stream that is idle (a quiet
    # `logs -f`) would otherwise never notice.
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------------------- SPDY over an upgraded connection


class Feeder:
    """What aiohttp's protocol calls with the bytes of an upgraded connection (its ``set_parser``)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


async def _reader_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(64 * 1024):
        yield data


async def _ws_chunks(ws: web.WebSocketResponse) -> AsyncIterator[bytes]:
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            yield msg.data


class _SpdyConnection:
    """A client connection switched to SPDY/3.1: the session, and how to end it."""

    def __init__(self, session: SpdySession, serving: asyncio.Task[None], close: Callable[[], Awaitable[None]]) -> None:
        self.session = session
        self.serving = serving
        self._close = close

    @classmethod
    async def upgrade(cls, request: web.Request, protocol: str) -> tuple[_SpdyConnection, web.StreamResponse]:
        assert request.transport is not None
        reader = asyncio.StreamReader(limit=1 << 20)
        reader.set_transport(request.transport)
        # Installed before the 101 goes out: the client sends frames only after reading it,
        # and from then on aiohttp must hand the bytes over instead of parsing HTTP.
        request.protocol.set_parser(Feeder(reader))  # type: ignore[arg-type]
        headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
        if protocol:
            headers["X-Stream-Protocol-Version"] = protocol
        resp = web.StreamResponse(status=101, headers=headers)
        await resp.prepare(request)
        session = SpdySession(resp.write)
        serving = asyncio.ensure_future(session.serve(_reader_chunks(reader)))

        async def close() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write_eof()
            if request.transport is not None:
                request.transport.close()

        return cls(session, serving, close), resp

    @classmethod
    async def tunnel(cls, request: web.Request, subprotocol: str) -> tuple[_SpdyConnection, web.StreamResponse]:
        ws = web.WebSocketResponse(protocols=(subprotocol,), max_msg_size=0)
        await ws.prepare(request)
        session = SpdySession(ws.send_bytes)
        serving = asyncio.ensure_future(session.serve(_ws_chunks(ws)))

        async def close() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()

        return cls(session, serving, close), ws

    async def finish(self) -> None:
        """GOAWAY, give the client a moment to hang up itself, then close."""
        await self.session.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.serving), FINISH_TIMEOUT)
        self.serving.cancel()
        await self._close()


# ---------------------------------------------------------------------------- the handlers


class StreamingProxy:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        rt = lookup("", "v1", plural)
        assert rt is not None
        try:
            return await self.registry.get_object(rt, namespace, name)
        except StatusError as e:
            if e.code == 404:
                return None
            raise

    async def _pod(self, request: web.Request) -> dict[str, Any]:
        namespace, name = _pod_ref(request)
        pod = await self.get("pods", namespace, name)
        if pod is None:
            raise errors.not_found_error("pods", name)
        return pod

    async def agent_socket(self, node_name: str) -> str:
        node = await self.get("nodes", None, node_name)
        if node is None:
            raise errors.not_found_error("nodes", node_name)
        sock = (node["metadata"].get("annotations") or {}).get(SOCKET_ANNOTATION)
        if not sock:
            # kube-apiserver's words for a node it has no address to reach the kubelet at.
            raise StatusError(500, "", "no preferred addresses found; known addresses: []")
        return str(sock)

    async def pod_agent_socket(self, pod: dict[str, Any]) -> str:
        node_name = pod.get("spec", {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        return await self.agent_socket(node_name)

    # -- log

    async def log(self, request: web.Request) -> web.StreamResponse:
        ns, name = _pod_ref(request)
        params = log_params(request.query, name)
        pod = await self._pod(request)
        container = validate_container(pod, request.query.get("container", ""))
        if not pod.get("spec", {}).get("nodeName"):
            return web.Response(body=b"", content_type="text/plain")  # kube-apiserver: an empty log
        sock = await self.pod_agent_socket(pod)
        path = f"/containerLogs/{ns}/{name}/{container}"
        async with agent_session(sock) as http:
            try:
                upstream = await http.get(AGENT + path, params=params)
            except (aiohttp.ClientError, OSError) as e:
                raise StatusError(
                    500, "", f'Get "https://{pod["spec"]["nodeName"]}:10250{path}": dial unix {sock}: connect: {_reason(e)}'
                ) from None
            async with upstream:
                if upstream.status != 200:
                    text = (await upstream.read()).decode(errors="replace").strip()
                    if upstream.status == 400:
                        raise errors.bad_request(text)
                    if upstream.status == 500:
                        raise errors.internal_error(text)
                    raise StatusError(upstream.status, "NotFound" if upstream.status == 404 else "", text,
                                      {"name": name, "kind": "pods/log"})
                if _upgrade(request) == "websocket":
                    return await _websocket_log(request, upstream)
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)

                async def copy() -> None:
                    async for chunk in upstream.content.iter_any():
                        await resp.write(chunk)

                copying = spawn(copy())
                watching = asyncio.ensure_future(_until_disconnected(request))
                try:
                    await asyncio.wait({copying, watching}, return_when=asyncio.FIRST_COMPLETED)
                    if copying.done():
                        await resp.write_eof()
                except ConnectionError:
                    pass
                finally:
                    copying.cancel()
                    watching.cancel()
                return resp

    # -- exec and attach

    async def exec(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, "exec")

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, "attach")

    async def _remote_command(self, request: web.Request, op: str) -> web.StreamResponse:
        q = request.query
        pod = await self._pod(request)
        container = validate_container(pod, q.get("container", ""))
        sock = await self.pod_agent_socket(pod)
        flags = {k: _flag(q, k) for k in ("stdin", "stdout", "stderr", "tty")}
        if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        kind = _upgrade(request)
        if not kind:
            raise errors.bad_request("Upgrade request required")
        params: list[tuple[str, str]] = [(k, "1") for k, v in flags.items() if v]
        if op == "exec":
            params += [("command", c) for c in q.getall("command", [])]
        url = f"{AGENT}/{op}/{_pod_ref(request)[0]}/{pod['metadata']['name']}/{container}"
        async with agent_session(sock) as http:
            try:
                agent = await http.ws_connect(url, params=params, protocols=(wsstream.V5,), max_msg_size=0)
            except (aiohttp.ClientError, OSError) as e:
                raise _dial_error(sock, e) from None
            async with agent:
                if kind == "websocket":
                    return await self._websocket_command(request, agent)
                return await self._spdy_command(request, agent, flags)

    async def _websocket_command(
        self, request: web.Request, agent: aiohttp.ClientWebSocketResponse
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=wsstream.WEBSOCKET_PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        ver = wsstream.version(ws.ws_protocol)
        b64 = wsstream.is_base64(ws.ws_protocol)

        async def send(channel: int, data: bytes) -> None:
            frame = wsstream.write_frame(channel, data, b64)
            await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))

        async def to_agent() -> None:
            async for msg in ws:
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    continue
                frame = wsstream.read_frame(msg.data, b64)
                if frame is None:
                    continue
                channel, data = frame
                if channel == wsstream.CLOSE:
                    if ver >= 5 and data:  # before v5 channel 255 is just no channel: ignored
                        await agent.send_bytes(bytes((wsstream.CLOSE, data[0])))
                    continue
                if channel <= wsstream.RESIZE:
                    await agent.send_bytes(wsstream.message(channel, data))

        async def to_client() -> None:
            async for msg in agent:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = wsstream.split(msg.data)
                if channel == wsstream.CLOSE and ver < 5:
                    continue
                if channel == wsstream.ERROR and ver < 4:
                    data = _error_payload(data, ver)
                    if not data:
                        continue
                await send(channel, data)

        up, down = spawn(to_agent()), spawn(to_client())
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        except ConnectionError:
            pass
        finally:
            # The command finished (close the client's side cleanly: it waits for that to
            # know it has all the output) or the client left (stop the command).
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await agent.close()
            up.cancel()
            down.cancel()
        return ws

    async def _spdy_command(
        self, request: web.Request, agent: aiohttp.ClientWebSocketResponse, flags: dict[str, bool]
    ) -> web.StreamResponse:
        offered = wsstream.offered_protocols(request.headers.getall("X-Stream-Protocol-Version", []))
        protocol = wsstream.negotiate(offered)
        if offered and protocol is None:
            raise StatusError(
                403, "Forbidden",
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server supports {list(wsstream.PROTOCOLS)}",
            )
        ver = wsstream.version(protocol)
        conn, resp = await _SpdyConnection.upgrade(request, protocol or "")
        try:
            streams = await _expect_streams(conn.session, flags, ver)
            if streams is not None:
                await _relay_spdy(streams, agent, ver)
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await agent.close()
            await conn.finish()
        return resp

    # -- port-forward

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = await self._pod(request)
        sock = await self.pod_agent_socket(pod)
        kind = _upgrade(request)
        tunnel = TUNNEL_PREFIX + PORT_FORWARD
        if kind == "websocket" and tunnel in _offered_subprotocols(request):
            conn, resp = await _SpdyConnection.tunnel(request, tunnel)
        elif kind == "websocket":
            return await self._websocket_port_forward(request, pod, sock)
        elif kind == "spdy":
            offered = wsstream.offered_protocols(request.headers.getall("X-Stream-Protocol-Version", []))
            if offered and PORT_FORWARD not in offered:
                raise StatusError(
                    403, "Forbidden",
                    f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                    f"server supports [{PORT_FORWARD}]",
                )
            conn, resp = await _SpdyConnection.upgrade(request, PORT_FORWARD)
        else:
            raise errors.bad_request("Upgrade request required")
        url = f"{AGENT}/portForward/{_pod_ref(request)[0]}/{pod['metadata']['name']}"
        pending: dict[str, dict[str, SpdyStream]] = {}
        forwards: set[asyncio.Future[None]] = set()
        try:
            async with agent_session(sock) as http:
                while (stream := await conn.session.accept()) is not None:
                    stream_type = stream.header("streamType")
                    if stream_type not in ("data", "error"):
                        await stream.reset()
                        continue
                    if stream_type == "error":
                        stream.abandon()  # the client never writes on it
                    request_id = stream.header("requestID") or str(stream.id)
                    pair = pending.setdefault(request_id, {})
                    pair[stream_type] = stream
                    if len(pair) == 2:
                        del pending[request_id]
                        task = spawn(_forward(http, url, sock, pair["data"], pair["error"]))
                        forwards.add(task)
                        task.add_done_callback(forwards.discard)
                for task in list(forwards):
                    task.cancel()
        finally:
            await conn.finish()
        return resp


    async def _websocket_port_forward(self, request: web.Request, pod: dict[str, Any], sock: str) -> web.StreamResponse:
        """The kubelet's websocket port-forward: one TCP connection per requested port.

        Port i has the data channel 2i and the error channel 2i+1; the first frame on each
        is the port (2 bytes, little-endian), then the data channel carries the bytes both
        ways and the error channel a failure's message. The session ends when every
        connection has (or when the client hangs up). Clients of the official Python
        client and of the JS one speak this; kubectl tunnels SPDY instead.
        """
        ports = _websocket_ports(request.query.getall("ports", []))
        offered = _offered_subprotocols(request)
        if offered and not set(offered) & set(WS_PORT_FORWARD_PROTOCOLS):
            # The kubelet's websocket handshake refuses it: a bare 403, no Status.
            return web.Response(status=403)
        ws = web.WebSocketResponse(protocols=WS_PORT_FORWARD_PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        b64 = wsstream.is_base64(ws.ws_protocol)
        ns, name = _pod_ref(request)
        url = f"{AGENT}/portForward/{ns}/{pod['metadata']['name']}"

        async def send(channel: int, data: bytes) -> None:
            frame = wsstream.write_frame(channel, data, b64)
            await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))

        inputs: list[asyncio.Queue[bytes | None]] = [asyncio.Queue() for _ in ports]
        for i, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await send(2 * i, prefix)
            await send(2 * i + 1, prefix)

        async def forward(http: aiohttp.ClientSession, i: int, port: int) -> None:
            try:
                agent = await http.ws_connect(url, params={"port": str(port)}, max_msg_size=0)
            except (aiohttp.ClientError, OSError) as e:
                await send(2 * i + 1, f"error forwarding port {port} to pod {ns}/{name}, uid : "
                                      f"{_dial_error(sock, e).message}".encode())
                return

            async def up() -> None:
                while (chunk := await inputs[i].get()) is not None:
                    await agent.send_bytes(chunk)

            sending = spawn(up())
            try:
                async for msg in agent:
                    if msg.type == WSMsgType.BINARY:
                        if not msg.data:
                            break  # the pod's side is done: so is this connection
                        await send(2 * i, msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        await send(2 * i + 1, msg.data.encode())
                        break
            finally:
                sending.cancel()
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await agent.close()

        async def from_client() -> None:
            async for msg in ws:
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    continue
                frame = wsstream.read_frame(msg.data, b64)
                if frame is None:
                    continue
                channel, data = frame
                # Only data channels are read; writes to an error channel are dropped.
                if channel % 2 == 0 and channel // 2 < len(ports) and data:
                    inputs[channel // 2].put_nowait(data)

        async with agent_session(sock) as http:
            async def forward_all() -> None:
                await asyncio.gather(*(spawn(forward(http, i, port)) for i, port in enumerate(ports)))

            forwards = spawn(forward_all())
            reading = spawn(from_client())
            try:
                await asyncio.wait({forwards, reading}, return_when=asyncio.FIRST_COMPLETED)
            except ConnectionError:
                pass
            finally:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
                forwards.cancel()
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwards
        return ws


WS_PORT_FORWARD_PROTOCOLS = (wsstream.V4, wsstream.V4_BASE64)


def _websocket_ports(values: list[str]) -> list[int]:
    """PodPortForwardOptions' ``ports`` as the kubelet's websocket handler requires them.

    The apiserver parses each value as an int32 (a Status on failure) and passes them on as
    the kubelet's ``port`` parameter, which refuses none, 0 and > 65535 in its own words
    (a plain-text 400 relayed as is).
    """
    ports: list[int] = []
    for raw in values:
        for part in raw.split(","):
            try:
                port = int(part)
            except ValueError:
                raise errors.bad_request(f'strconv.ParseInt: parsing "{part}": invalid syntax') from None
            ports.append(port)
    if not ports:
        raise web.HTTPBadRequest(text='query parameter "port" is required')
    for port in ports:
        if port < 1 or port > 65535:
            raise web.HTTPBadRequest(text=f'port "{port}" must be > 0' if port < 1 else
                                     f'unable to parse "{port}" as a port: strconv.ParseUint: parsing "{port}": '
                                     "value out of range")
    return ports


LOG_PROTOCOLS = ("binary.k8s.io", "base64.binary.k8s.io")


async def _websocket_log(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """A log over a websocket, as the apiserver streams any stream resource to one.

    Each chunk of the log is one message with no channel byte: binary, or base64 text for
    ``base64.binary.k8s.io``; the server closes the websocket at the end of the log.
    """
    offered = _offered_subprotocols(request)
    if offered and not set(offered) & set(LOG_PROTOCOLS):
        return web.Response(status=403)  # wsstream's handshake refusal: a bare 403
    ws = web.WebSocketResponse(protocols=LOG_PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    b64 = ws.ws_protocol == "base64.binary.k8s.io"

    async def copy() -> None:
        async for chunk in upstream.content.iter_any():
            await (ws.send_str(base64.b64encode(chunk).decode()) if b64 else ws.send_bytes(chunk))

    async def drain() -> None:
        async for _ in ws:  # the client says nothing; reading notices it hang up
            pass

    copying, draining = spawn(copy()), spawn(drain())
    try:
        await asyncio.wait({copying, draining}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        copying.cancel()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()
        draining.cancel()
    return ws


def _error_payload(data: bytes, ver: int) -> bytes:
    try:
        status = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return wsstream.error_payload(status, ver) if isinstance(status, dict) else data


async def _expect_streams(session: SpdySession, flags: dict[str, bool], ver: int) -> dict[str, SpdyStream] | None:
    """The streams a client of this protocol version opens for these options (None: it did not)."""
    want = {"error"} | {k for k in ("stdin", "stdout", "stderr") if flags[k]}
    if flags["tty"] and ver >= 3:
        want.add("resize")
    streams: dict[str, SpdyStream] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_CREATION_TIMEOUT
    while not want <= streams.keys():
        try:
            stream = await asyncio.wait_for(session.accept(), deadline - loop.time())
        except TimeoutError:
            return None
        if stream is None:
            return None
        kind = stream.header("streamType")
        if kind in streams or kind not in wsstream.STREAM_TYPES:
            await stream.reset()
            continue
        streams[kind] = stream
    return streams


async def _relay_spdy(streams: dict[str, SpdyStream], agent: aiohttp.ClientWebSocketResponse, ver: int) -> None:
    """Shuttle one exec/attach between the client's SPDY streams and the agent's v5 websocket."""

    async def stdin() -> None:
        stream = streams.get("stdin")
        if stream is None:
            return
        while data := await stream.read():
            await agent.send_bytes(wsstream.message(wsstream.STDIN, data))
        await agent.send_bytes(bytes((wsstream.CLOSE, wsstream.STDIN)))

    async def resize() -> None:
        stream = streams.get("resize")
        if stream is None:
            return
        decoder = wsstream.JSONStream()
        while data := await stream.read():
            for size in decoder.feed(data):
                await agent.send_bytes(wsstream.message(wsstream.RESIZE, orjson.dumps(size)))

    async def output() -> None:
        targets = {wsstream.STDOUT: streams.get("stdout"), wsstream.STDERR: streams.get("stderr"),
                   wsstream.ERROR: streams["error"]}
        async for msg in agent:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, data = wsstream.split(msg.data)
            target = targets.get(channel)
            if target is None:
                continue
            if channel == wsstream.ERROR:
                data = _error_payload(data, ver)
            await target.write(data)

    session = streams["error"].session
    inputs = [spawn(stdin()), spawn(resize())]
    out = spawn(output())
    gone: asyncio.Future[Any] = asyncio.ensure_future(session.closed.wait())
    try:
        await asyncio.wait({out, gone}, return_when=asyncio.FIRST_COMPLETED)
        if out.done():
            for stream in streams.values():
                await stream.close()
    except ConnectionError:
        pass
    finally:
        for task in (*inputs, out, gone):
            task.cancel()


async def _forward(
    http: aiohttp.ClientSession, url: str, sock: str, data: SpdyStream, error: SpdyStream
) -> None:
    """One forwarded connection: the client's data stream <-> the agent's socket in the pod."""
    port = data.header("port")
    try:
        agent = await http.ws_connect(url, params={"port": port}, max_msg_size=0)
    except (aiohttp.ClientError, OSError) as e:
        await error.write(f"error forwarding port {port}: {_dial_error(sock, e).message}".encode())
        await data.close()
        await error.close()
        return

    async def up() -> None:
        while chunk := await data.read():
            await agent.send_bytes(chunk)
        await agent.send_bytes(b"")  # the client is done sending: half-close toward the pod

    async def down() -> None:
        async for msg in agent:
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    await data.write(msg.data)
                else:
                    await data.close()
            elif msg.type == WSMsgType.TEXT:
                await error.write(msg.data.encode())

    sending = spawn(up())
    try:
        await down()
    except (ConnectionError, aiohttp.ClientError):
        pass
    finally:
        sending.cancel()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await agent.close()
        await data.close()
        await error.close()
