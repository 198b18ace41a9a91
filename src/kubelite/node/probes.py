"""Container probes (readiness, liveness, startup), as the kubelet's prober runs them.

One :class:`ProbeWorker` per container and probe kind runs the probe every ``periodSeconds``
after ``initialDelaySeconds`` and turns raw results into a settled result only after
``successThreshold`` successes or ``failureThreshold`` failures in a row, exactly like the
kubelet's ``worker.doProbe``. The handlers themselves (httpGet, tcpSocket, exec, grpc) are
plain coroutines. Network probes connect from inside the node's network namespace to the
pod IP, as the kubelet does from the host of a real node: the pod sees the node's gateway
address as the source, and a pod that refuses traffic from it fails its probes too.

Failure texts mimic Go's net/http and net errors (``dial tcp 10.244.0.5:8080: connect:
connection refused``) because they end up in ``kubectl describe`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kubelite.api.types import Obj

log = logging.getLogger(__name__)

Result = Literal["success", "warning", "failure", "unknown"]
USER_AGENT = "kube-probe/1.33"

# (container id, argv, timeout seconds) → (exit code, combined output); raises TimeoutError.
ExecFn = Callable[[str, list[str], float], Awaitable[tuple[int, bytes]]]


@dataclass
class Target:
    """Where a container's probes go."""

    pod_ip: str
    container: Obj
    container_id: str
    netns_path: str | None  # the namespace to connect from; None: the agent's own (tests)
    exec_fn: ExecFn | None = None


# ---------------------------------------------------------------------------------- connections


def errno_text(e: OSError) -> str:
    texts = {
        errno.ECONNREFUSED: "connect: connection refused",
        errno.EHOSTUNREACH: "connect: no route to host",
        errno.ENETUNREACH: "connect: network is unreachable",
        errno.ECONNRESET: "read: connection reset by peer",
    }
    return texts.get(e.errno or 0, str(e.strerror or e))


async def _connect(target: Target, host: str, port: int, seconds: float,
                   tls: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if target.netns_path:
        from kubelite.linux.netns import socket_in

        sock = socket_in(target.netns_path, family)
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), seconds)
        ctx: ssl.SSLContext | None = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the kubelet's probes skip verification too
        return await asyncio.wait_for(
            asyncio.open_connection(sock=sock, ssl=ctx, server_hostname=host if tls else None), seconds
        )
    except BaseException:
        sock.close()
        raise


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_port(port: Any, container: Obj) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port: {port} in {container.get('name', '')}")


# ---------------------------------------------------------------------------------- handlers


MAX_BODY = 10 * 1024  # the kubelet reads at most this much of a probe's response body
MAX_REDIRECTS = 10


class MalformedResponse(Exception):
    """No HTTP status line came back."""


@dataclass
class _Response:
    code: int
    headers: dict[str, str]  # lower-case names
    body: bytes


async def exchange(target: Target, scheme: str, host: str, port: int, path: str, headers: dict[str, str],
                    deadline: float) -> _Response:
    """One GET on its own connection (``Connection: close``, as the prober's keep-alive-less
    transport): status, headers and, for a redirect, at most :data:`MAX_BODY` of the body,
    before ``deadline``."""
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request += "Connection: close\r\n\r\n"
    writer: asyncio.StreamWriter | None = None

    def left() -> float:
        return max(0.001, deadline - time.monotonic())

    try:
        reader, writer = await _connect(target, host, port, left(), tls=scheme == "https")
        writer.write(request.encode("latin-1"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), left())
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise MalformedResponse(status_line[:40])
        code = int(parts[1])
        got: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), left())
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            got[name.strip().lower()] = value.strip()
        body = b""
        if 300 <= code < 400:  # only a redirect's body is ever shown (a warning); others are not read
            try:
                body = await asyncio.wait_for(_read_body(reader, got), left())
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                pass  # the status decides; a body cut short only shortens the warning's text
        return _Response(code, got, body)
    finally:
        if writer is not None:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while len(body) < MAX_BODY:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return body[:MAX_BODY]
    if "content-length" in headers:
        return await reader.readexactly(min(int(headers["content-length"]), MAX_BODY))
    body = b""
    while len(body) < MAX_BODY and (chunk := await reader.read(MAX_BODY - len(body))):
        body += chunk
    return body


async def http_get(target: Target, action: Obj, seconds: float) -> tuple[Result, str]:
    """An httpGet probe as the kubelet's prober runs it (pkg/probe/http).

    200 <= status < 400 succeeds. Redirects are followed (at most 10) while they stay on the
    probed host; one to another host is not followed, and its 3xx answer is a success with a
    warning (the kubelet's ProbeWarning event). The whole exchange, redirects and body
    included, has ``seconds`` (Go's ``Client.Timeout``)."""
    scheme = (action.get("scheme") or "HTTP").lower()
    host = action.get("host") or target.pod_ip
    try:
        port = resolve_port(action.get("port"), target.container)
    except ValueError as e:
        return "unknown", str(e)
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"Host": _hostport(host, port), "User-Agent": USER_AGENT, "Accept": "*/*"}
    custom_host = False
    for h in action.get("httpHeaders") or []:
        # A header given in the probe replaces the default of the same name (Host included).
        for k in [k for k in headers if k.lower() == str(h.get("name", "")).lower()]:
            del headers[k]
        headers[str(h.get("name", ""))] = str(h.get("value", ""))
        custom_host |= str(h.get("name", "")).lower() == "host"
    deadline = time.monotonic() + seconds
    first_host = host
    url = f"{scheme}://{_hostport(host, port)}{path}"
    hops = 0
    while True:
        try:
            response = await exchange(target, scheme, host, port, path, headers, deadline)
        except TimeoutError:
            return "failure", f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        except MalformedResponse as e:
            return "failure", f'Get "{url}": malformed HTTP response {e.args[0]!r}'
        except OSError as e:
            return "failure", f'Get "{url}": dial tcp {_hostport(host, port)}: {errno_text(e)}'
        location = response.headers.get("location", "")
        if not (300 <= response.code < 400 and response.code not in (304, 305, 306) and location):
            break
        target_url = urllib.parse.urljoin(url, location)
        parts = urllib.parse.urlsplit(target_url)
        if parts.hostname != first_host.strip("[]") or parts.scheme not in ("http", "https"):
            break  # not followed: this 3xx is the answer (http.ErrUseLastResponse)
        hops += 1
        if hops > MAX_REDIRECTS:
            return "failure", f'Get "{target_url}": stopped after {MAX_REDIRECTS} redirects'
        relative = not urllib.parse.urlsplit(location).scheme
        scheme, host = parts.scheme, parts.hostname or host
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        url = target_url
        if not (custom_host and relative):  # Go keeps a custom Host only through a relative redirect
            for k in [k for k in headers if k.lower() == "host"]:
                del headers[k]
            headers = {"Host": _hostport(host, port), **headers}
    code = response.code
    if 200 <= code < 400:
        if code >= 300:
            body = response.body.decode(errors="replace")
            return "warning", f"Probe terminated redirects, Response body: {body}"
        return "success", ""
    return "failure", f"HTTP probe failed with statuscode: {code}"


async def tcp_socket(target: Target, action: Obj, seconds: float) -> tuple[Result, str]:
    host = action.get("host") or target.pod_ip
    try:
        port = resolve_port(action.get("port"), target.container)
    except ValueError as e:
        return "unknown", str(e)
    try:
        _, writer = await _connect(target, host, port, seconds)
    except TimeoutError:
        return "failure", f"dial tcp {_hostport(host, port)}: i/o timeout"
    except OSError as e:
        return "failure", f"dial tcp {_hostport(host, port)}: {errno_text(e)}"
    writer.close()
    return "success", ""


async def exec_action(target: Target, action: Obj, seconds: float) -> tuple[Result, str]:
    argv = [str(a) for a in action.get("command") or []]
    if target.exec_fn is None:
        return "unknown", "exec probes need a container runtime"
    try:
        code, output = await target.exec_fn(target.container_id, argv, seconds)
    except TimeoutError:
        # The runtime's ExecSync deadline error, as the kubelet (ExecProbeTimeout, 1.20+) reports it.
        return "failure", f"command {_go_quote(' '.join(argv))} timed out"
    except Exception as e:
        return "unknown", str(e)
    text = output.decode(errors="replace")
    return ("success" if code == 0 else "failure"), text


def _go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote), as the kubelet's messages quote commands."""
    return json.dumps(text, ensure_ascii=False)


# gRPC health checking over HTTP/2 cleartext, just enough for grpc.health.v1.Health/Check: the
# client preface, SETTINGS, one HEADERS frame (HPACK literals, no Huffman) and one DATA frame.
def _hpack_literal(name: str, value: str) -> bytes:
    def string(s: str) -> bytes:
        raw = s.encode()
        if len(raw) < 127:
            return bytes([len(raw)]) + raw
        n, out = len(raw) - 127, bytearray([127])
        while n >= 128:
            out.append((n % 128) + 128)
            n //= 128
        out.append(n)
        return bytes(out) + raw

    return b"\x00" + string(name) + string(value)  # literal without indexing, new name


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


async def grpc_check(target: Target, action: Obj, seconds: float) -> tuple[Result, str]:
    host, port = target.pod_ip, int(action.get("port") or 0)
    service = str(action.get("service") or "")
    svc = service.encode()
    message = (b"\x0a" + bytes([len(svc)]) + svc) if svc else b""
    headers = b"".join(_hpack_literal(k, v) for k, v in (
        (":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
        (":authority", _hostport(host, port)), ("content-type", "application/grpc"), ("te", "trailers"),
        ("user-agent", USER_AGENT),
    ))
    request = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b"") + _frame(1, 4, 1, headers)
               + _frame(0, 1, 1, b"\x00" + struct.pack(">I", len(message)) + message))
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await _connect(target, host, port, seconds)
        writer.write(request)
        await writer.drain()
        data = b""
        async with asyncio.timeout(seconds):
            while True:
                head = await reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = await reader.readexactly(length)
                if kind == 4 and not flags & 1:
                    writer.write(_frame(4, 1, 0, b""))  # SETTINGS ack
                elif kind == 0 and stream == 1:
                    data += payload
                    if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[1:5], "big"):
                        break
                elif kind == 3 and stream == 1:  # RST_STREAM
                    return "failure", "rpc error: stream reset"
                elif kind == 1 and stream == 1 and flags & 1:  # trailers-only response: an error status
                    return "failure", f"rpc error: health rpc failed (service {service!r})"
                elif kind == 7:  # GOAWAY
                    return "failure", "rpc error: connection closed"
    except TimeoutError:
        return "failure", f"timeout: health rpc did not complete within {seconds:g}s"
    except (OSError, asyncio.IncompleteReadError) as e:
        reason = errno_text(e) if isinstance(e, OSError) else "connection closed"
        return "failure", f"failed to connect service {_hostport(host, port)!r} within {seconds:g}s: {reason}"
    finally:
        if writer is not None:
            writer.close()
    body = data[5:5 + int.from_bytes(data[1:5], "big")]
    status = body[1] if len(body) >= 2 and body[0] == 0x08 else 0
    if status == 1:  # SERVING
        return "success", ""
    names = {0: "UNKNOWN", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
    return "failure", f"service unhealthy (responded with {names.get(status, str(status))!r})"


async def run_handler(target: Target, handler: Obj, seconds: float) -> tuple[Result, str]:
    """One probe or lifecycle action: httpGet, tcpSocket, exec or grpc."""
    if handler.get("httpGet") is not None:
        return await http_get(target, handler["httpGet"], seconds)
    if handler.get("tcpSocket") is not None:
        return await tcp_socket(target, handler["tcpSocket"], seconds)
    if handler.get("exec") is not None:
        return await exec_action(target, handler["exec"], seconds)
    if handler.get("grpc") is not None:
        return await grpc_check(target, handler["grpc"], seconds)
    return "unknown", "missing probe handler"


# ---------------------------------------------------------------------------------- thresholds


@dataclass
class ProbeState:
    """Consecutive results → settled result, as the kubelet's worker keeps them."""

    success_threshold: int
    failure_threshold: int
    result: bool | None  # the settled result (None: not yet known)
    _last: Result | None = None
    _run: int = 0
    succeeded_once: bool = False

    def observe(self, raw: Result) -> bool:
        """Record one raw result; True when the settled result changed."""
        if raw == "unknown":
            return False
        if raw == "warning":  # e.g. a redirect not followed: the kubelet counts it a success
            raw = "success"
        self.succeeded_once |= raw == "success"
        if raw == self._last:
            self._run += 1
        else:
            self._last, self._run = raw, 1
        if (raw == "failure" and self._run < self.failure_threshold) or (
            raw == "success" and self._run < self.success_threshold
        ):
            return False
        new = raw == "success"
        changed = new != self.result
        self.result = new
        return changed


KIND_TITLE = {"readiness": "Readiness", "liveness": "Liveness", "startup": "Startup"}
WARM_UP_RETRY = 0.05  # seconds between readiness attempts of a container in its first period


@dataclass
class ProbeWorker:
    """Runs one probe of one container instance until cancelled.

    ``on_change(kind, result)`` is called when the settled result changes; ``on_failure(msg)``
    for every failed attempt (the kubelet's Unhealthy event), ``on_warning(msg)`` for a success
    with a warning (ProbeWarning: a redirect to another host). A liveness or startup failure
    stops the worker: the container is going to be killed and a new one gets new workers.
    ``gate()`` tells whether the container has started (liveness and readiness wait for it).
    """

    kind: str
    probe: Obj
    target: Target
    started_at: float  # when the container started, on ``clock``
    on_change: Callable[[str, bool], None]
    on_failure: Callable[[str, str], None]
    gate: Callable[[], bool] = lambda: True
    initial: bool | None = None
    on_warning: Callable[[str, str], None] | None = None
    clock: Callable[[], float] = time.monotonic  # tests pass a fake event loop's clock
    state: ProbeState = field(init=False)
    _kick: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.initial is None:
            self.initial = {"readiness": False, "liveness": True, "startup": None}.get(self.kind)
        success = int(self.probe.get("successThreshold") or 1)
        failure = int(self.probe.get("failureThreshold") or 3)
        self.state = ProbeState(success, failure, self.initial)

    @property
    def result(self) -> bool | None:
        return self.state.result

    def trigger(self) -> None:
        """Probe now instead of at the next period (the kubelet's manualTriggerCh: a readiness
        probe right after the startup probe has succeeded, not up to a period later)."""
        self._kick.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), max(0.0, seconds))

    async def run(self) -> None:
        period = max(1, int(self.probe.get("periodSeconds") or 10))
        timeout = max(1, int(self.probe.get("timeoutSeconds") or 1))
        delay = int(self.probe.get("initialDelaySeconds") or 0)
        await asyncio.sleep(max(0.0, self.started_at + delay - self.clock()))
        first_period_ends = self.clock() + period
        while True:
            # Attempts keep the period's cadence (the kubelet's ticker): a slow attempt (up to
            # timeoutSeconds) does not push the next one later.
            tick = self.clock()
            self._kick.clear()  # a trigger from now on (during this attempt too) means another
            if self.kind == "startup" or self.gate():
                raw, output = await run_handler(self.target, self.probe, timeout)
                if self.warming_up(raw, first_period_ends):
                    # A server needs a moment to listen after its process starts, and the first
                    # probe runs at once: instead of leaving the pod unready for a whole period
                    # (one second at best: CoreDNS, and so every cluster start), a not-yet-ready
                    # container is probed again soon during its first period. The failures are
                    # not counted or reported: a readiness result starts out as failed anyway.
                    await asyncio.sleep(WARM_UP_RETRY)
                    continue
                if raw == "failure":
                    self.on_failure(self.kind, f"{KIND_TITLE[self.kind]} probe failed: {output.strip()}")
                elif raw == "unknown":
                    self.on_failure(self.kind, f"{KIND_TITLE[self.kind]} probe errored: {output.strip()}")
                elif raw == "warning" and self.on_warning is not None:
                    self.on_warning(self.kind, f"{KIND_TITLE[self.kind]} probe warning: {output}")
                if self.state.observe(raw):
                    self.on_change(self.kind, bool(self.state.result))
                    if self.kind in ("liveness", "startup") and not self.state.result:
                        return
                    if self.kind == "startup" and self.state.result:
                        return  # started: the kubelet stops running the startup probe
            await self._sleep(tick + period - self.clock())

    def warming_up(self, raw: str, first_period_ends: float) -> bool:
        """Whether a failed readiness attempt falls in the container's start-up grace."""
        return (self.kind == "readiness" and raw in ("failure", "unknown") and not self.state.succeeded_once
                and "exec" not in self.probe  # a network probe is cheap to repeat; a process is not
                and self.clock() + WARM_UP_RETRY < first_period_ends)
