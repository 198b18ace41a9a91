"""The node agent's streaming server: container logs, exec, attach and port-forward.

The kubelet serves these on its port 10250 and kube-apiserver proxies ``pods/{name}/log``,
``exec``, ``attach`` and ``portforward`` to it. kubelite's agent serves the same paths on a
unix socket (``<state-dir>/kubelet.sock``, named in the Node's ``kubelite.io/kubelet-socket``
annotation): nothing listens on a TCP port and only root reaches it.

Trade-off: the agent speaks one protocol per operation and the API server translates for
every kubectl version (websocket v1..v5, SPDY/3.1, SPDY tunnelled in a websocket). Doing the
translation once, in the API server, keeps the agent small and the zoo of wire formats in one
place; the price is that a stream crosses two hops that both understand it. The protocols:

- ``GET /containerLogs/{ns}/{pod}/{container}?follow&previous&tailLines&sinceSeconds&sinceTime&
  timestamps&limitBytes``: the log as text/plain, streamed while following. Errors are a 4xx
  or 5xx status with the message as plain text, as the kubelet answers.
- ``GET /exec/{ns}/{pod}/{container}?command=..&stdin&stdout&stderr&tty`` and ``/attach/..``:
  a websocket speaking ``v5.channel.k8s.io`` (the channel byte, then data; CLOSE on 255; the
  final Status on channel 3, then a normal close).
- ``GET /portForward/{ns}/{pod}?port=N``: a websocket per forwarded TCP connection. Binary
  messages carry bytes both ways; an empty binary message means "no more data from me"
  (half-close); a text message from the agent is an error, after which it closes. The agent
  connects to localhost:N inside the pod's network namespace, as containerd does, so servers
  bound to 127.0.0.1 in the pod are reachable as in Kubernetes.
- ``GET /dial/{ns}/{pod}?port=N``: the same tunnel, to the pod's IP instead of localhost: how
  the API server reaches a pod for ``pods/{name}/proxy`` and ``services/{name}/proxy`` (it
  runs in the host's namespace, where the pod network is not routed). On failure the text
  message is Go's dial error (``dial tcp 10.244.0.5:80: connect: connection refused``).
- ``GET /healthz``: ``ok``, as the kubelet answers (``nodes/{name}/proxy/healthz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import os
import pathlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson
from aiohttp import WSMsgType, web

from kubelite.api import timeutil
from kubelite.linux.netns import open_connection_in

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
FOLLOW_POLL = 0.1  # seconds between looks at a followed log file
READ_CHUNK = 32 * 1024
CONNECT_TIMEOUT = 10.0


# ---------------------------------------------------------------------------- what the agent provides


class StreamingError(Exception):
    """A request the agent cannot serve; ``message`` is shown to the user as is.

    The kubelet's texts, for reference: ``pod "web" not found`` (404), ``container "app"
    in pod "web" is waiting to start: ContainerCreating`` (400), ``previous terminated
    container "app" in pod "web" not found`` (400).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ContainerRef(NamedTuple):
    """Where a container's streams are. Fields that do not apply are None."""

    container_id: str | None  # None when the container is not running (no exec, no attach)
    log_path: pathlib.Path | None  # the current (or last) instance's CRI-format log
    previous_log_path: pathlib.Path | None  # the instance before it, for --previous
    netns_path: str  # the pod's network namespace, for port-forward
    pod_ip: str


class ExecProcess(Protocol):
    """A process started by :meth:`RuntimeLike.exec` (kubelite.node.runtime.ExecProcess).

    Reads return b"" at EOF; with a tty all output comes from ``read_stdout``.
    """

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def read_stdout(self, n: int = ...) -> bytes: ...

    async def read_stderr(self, n: int = ...) -> bytes: ...

    def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int: ...  # the exit code, 128+N when killed by signal N

    def kill(self) -> None: ...

    def close(self) -> None: ...


class ContainerStatusLike(Protocol):
    @property
    def state(self) -> str: ...  # "running" | "exited"


class ContainerStdinLike(Protocol):
    """An attach session's writer to a container's stdin (kubelite.node.runtime.ContainerStdin)."""

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...  # the session's stdin ended (stdinOnce closes the container's)

    async def resize(self, width: int, height: int) -> None: ...

    def close(self) -> None: ...


class RuntimeLike(Protocol):
    async def exec(self, container_id: str, argv: list[str], *, tty: bool, stdin: bool) -> ExecProcess: ...

    async def attach_stdin(self, container_id: str) -> ContainerStdinLike | None: ...

    async def status(self, container_id: str) -> ContainerStatusLike: ...


class AgentLike(Protocol):
    """What the streaming server needs from the agent core."""

    @property
    def runtime(self) -> RuntimeLike: ...

    def find_container(self, namespace: str, pod: str, container: str) -> ContainerRef:
        """The container's streams; ``container`` "" asks for the pod only (port-forward).

        Raises :class:`StreamingError` for a pod or container this node does not run.
        """
        ...


# ---------------------------------------------------------------------------- CRI log files

_CRI_LINE = re.compile(rb"^(\S+) (stdout|stderr) ([FP]) ?(.*?)\n?$", re.S)


class LogEntry(NamedTuple):
    timestamp: str
    stream: str
    partial: bool
    content: bytes


def parse_cri_line(line: bytes) -> LogEntry | None:
    """``<RFC3339Nano> stdout|stderr F|P <content>``; None for a line in another format."""
    m = _CRI_LINE.match(line)
    if m is None:
        return None
    return LogEntry(m.group(1).decode(), m.group(2).decode(), m.group(3) == b"P", m.group(4))


def render(entry: LogEntry, timestamps: bool) -> bytes:
    """What ``kubectl logs`` prints for one entry: partial lines continue without a newline."""
    body = entry.content if entry.partial else entry.content + b"\n"
    if timestamps:
        return timeutil.trim_nano(entry.timestamp).encode() + b" " + body
    return body


def tail_offset(data: bytes, lines: int) -> int:
    """Where the last ``lines`` complete lines of ``data`` start (a line still being written
    after the last newline does not count)."""
    end = data.rfind(b"\n")
    if end < 0 or lines <= 0:
        return end + 1
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: dt.datetime | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: Any, now: dt.datetime | None = None) -> LogOptions:
        def number(name: str) -> int | None:
            raw = query.get(name)
            if raw is None or raw == "":
                return None
            try:
                return int(raw)
            except ValueError:
                raise StreamingError(400, f"invalid {name} value {raw!r}") from None

        since = None
        seconds = number("sinceSeconds")
        if seconds is not None:
            since = (now or timeutil.now()) - dt.timedelta(seconds=seconds)
        elif query.get("sinceTime"):
            since = timeutil.parse_time(query["sinceTime"])
            if since is None:
                raise StreamingError(400, f"invalid sinceTime value {query['sinceTime']!r}")
        return cls(
            follow=_flag(query, "follow"),
            previous=_flag(query, "previous"),
            timestamps=_flag(query, "timestamps"),
            tail_lines=number("tailLines"),
            since=since,
            limit_bytes=number("limitBytes"),
        )


class _LogReader:
    """Blocking reads of one log file, run in a worker thread; renders whole lines only."""

    def __init__(self, path: pathlib.Path, opts: LogOptions) -> None:
        self.path = path
        self.opts = opts
        self._file: io.BufferedReader | None = None
        self._pending = b""
        self._left = opts.limit_bytes

    def open(self, at_end: bool = False) -> None:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            return
        if at_end:
            self._file.seek(0, io.SEEK_END)
        elif self.opts.tail_lines is not None and self.opts.tail_lines >= 0:
            # Logs are small enough on one machine to find the tail by reading them.
            data = self._file.read()
            self._file.seek(tail_offset(data, self.opts.tail_lines))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    @property
    def exhausted(self) -> bool:
        return self._left is not None and self._left <= 0

    def read(self) -> bytes:
        """Render what was appended since the last call (b"" when nothing was)."""
        if self._file is None:
            self.open()
            if self._file is None:
                return b""
        data = self._pending + self._file.read()
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        out = []
        for line in data[:cut].splitlines(keepends=True):
            entry = parse_cri_line(line)
            if entry is None:
                continue
            if self.opts.since is not None:
                when = timeutil.parse_time(entry.timestamp)
                if when is not None and when < self.opts.since:
                    continue
            out.append(render(entry, self.opts.timestamps))
        rendered = b"".join(out)
        if self._left is not None:
            rendered = rendered[: self._left]
            self._left -= len(rendered)
        return rendered

    def entries(self) -> list[LogEntry]:
        """Parsed entries appended since the last call (for attach, which splits the streams)."""
        if self._file is None:
            self.open()
            if self._file is None:
                return []
        data = self._pending + self._file.read()
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        return [e for e in map(parse_cri_line, data[:cut].splitlines(keepends=True)) if e is not None]


async def stream_log(
    path: pathlib.Path, opts: LogOptions, alive: Callable[[], Awaitable[bool]]
) -> AsyncIterator[bytes]:
    """The rendered log; when following, until ``alive`` says the container has stopped."""
    reader = _LogReader(path, opts)
    await asyncio.to_thread(reader.open)
    try:
        while True:
            chunk = await asyncio.to_thread(reader.read)
            if chunk:
                yield chunk
            if reader.exhausted or not opts.follow:
                return
            if not chunk:
                if not await alive():
                    # One last look: the container may have written just before it stopped.
                    chunk = await asyncio.to_thread(reader.read)
                    if chunk:
                        yield chunk
                    return
                await asyncio.sleep(FOLLOW_POLL)
    finally:
        reader.close()


# ---------------------------------------------------------------------------- statuses


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int) -> dict[str, Any]:
    """How a non-zero exit code reaches kubectl, which exits with the same code."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: command terminated with exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error_status(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("1", "true")


# ---------------------------------------------------------------------------- the server


class _Channels:
    """Writing v5 channel messages from several tasks; a vanished client makes writes no-ops."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()
        self.gone = False

    async def send(self, channel: int, data: bytes) -> None:
        if self.gone:
            return
        async with self._lock:
            try:
                await self.ws.send_bytes(bytes((channel,)) + data)
            except (ConnectionError, RuntimeError):
                self.gone = True

    async def finish(self, status: dict[str, Any]) -> None:
        await self.send(ERROR, orjson.dumps(status))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()


def _parse_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a resize channel message, ``{"Width": W, "Height": H}``."""
    try:
        size = orjson.loads(data)
        return int(size.get("Width", 0)), int(size.get("Height", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None


def _resize(proc: ExecProcess, data: bytes) -> None:
    size = _parse_size(data)
    if size is not None:
        with contextlib.suppress(OSError):
            proc.resize(*size)


def _spawn(coro: Awaitable[None]) -> asyncio.Future[None]:
    """A copy task; the peer hanging up mid-copy ends it quietly (the other side notices)."""

    async def run() -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, OSError):
            await coro

    return asyncio.ensure_future(run())


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


class StreamingServer:
    """The handlers; ``make_app`` wires them to their paths."""

    def __init__(self, agent: AgentLike) -> None:
        self.agent = agent

    def _find(self, request: web.Request, container: str) -> ContainerRef:
        mi = request.match_info
        return self.agent.find_container(mi["namespace"], mi["pod"], container)

    async def _running(self, container_id: str | None) -> bool:
        if container_id is None:
            return False
        try:
            return (await self.agent.runtime.status(container_id)).state == "running"
        except Exception:  # a container the runtime no longer knows is not running
            return False

    # -- logs

    async def logs(self, request: web.Request) -> web.StreamResponse:
        mi = request.match_info
        try:
            opts = LogOptions.from_query(request.query)
            ref = self._find(request, mi["container"])
            if opts.previous:
                if ref.previous_log_path is None:
                    raise StreamingError(
                        400, f'previous terminated container "{mi["container"]}" in pod "{mi["pod"]}" not found'
                    )
                path, container_id = ref.previous_log_path, None
            else:
                if ref.log_path is None:
                    raise StreamingError(
                        400, f'container "{mi["container"]}" in pod "{mi["pod"]}" is waiting to start - no logs yet'
                    )
                path, container_id = ref.log_path, ref.container_id
        except StreamingError as e:
            return web.Response(status=e.code, text=e.message)

        async def alive() -> bool:
            return not _client_gone(request) and await self._running(container_id)

        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for chunk in stream_log(path, opts, alive):
                await resp.write(chunk)
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp

    # -- exec and attach

    async def exec(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        tty, want_stdin = _flag(q, "tty"), _flag(q, "stdin")
        ws = web.WebSocketResponse(protocols=(V5,), max_msg_size=0)
        await ws.prepare(request)
        channels = _Channels(ws)
        container = request.match_info["container"]
        try:
            ref = self._find(request, container)
            if ref.container_id is None:
                raise StreamingError(404, f'container not found ("{container}")')
            proc = await self.agent.runtime.exec(ref.container_id, list(q.getall("command", [])),
                                                 tty=tty, stdin=want_stdin)
        except StreamingError as e:
            await channels.finish(internal_error_status(f"unable to upgrade connection: {e.message}"))
            return ws
        except Exception as e:  # the runtime's reason, as containerd's reaches kubectl
            await channels.finish(internal_error_status(f"error executing command in container: {e}"))
            return ws
        await self._run_exec(ws, channels, proc, stdout=_flag(q, "stdout"), stderr=_flag(q, "stderr"))
        return ws

    async def _run_exec(
        self, ws: web.WebSocketResponse, channels: _Channels, proc: ExecProcess, *, stdout: bool, stderr: bool
    ) -> None:
        # Tell the client the streams are up (kube-apiserver does the same).
        await channels.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")

        async def pump(read: Callable[[int], Awaitable[bytes]], channel: int) -> None:
            while data := await read(READ_CHUNK):
                await channels.send(channel, data)

        async def feed() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                try:
                    if channel == STDIN and data:
                        await proc.write_stdin(data)
                    elif channel == RESIZE:
                        _resize(proc, data)
                    elif channel == CLOSE and data[:1] == bytes((STDIN,)):
                        await proc.close_stdin()  # kubectl cp's tar stream ends here
                except (ConnectionError, OSError, RuntimeError):
                    pass  # the process closed its stdin; keep serving its output

        pumps = asyncio.gather(pump(proc.read_stdout, STDOUT), pump(proc.read_stderr, STDERR))
        feeder = _spawn(feed())
        waiter: asyncio.Future[int] = asyncio.ensure_future(proc.wait())
        first: set[asyncio.Future[Any]] = {waiter, feeder}
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                # The client went away first: nobody is left to read the output.
                proc.kill()
                channels.gone = True
            code = await waiter
            if channels.gone:
                # Output nobody reads; a background child may hold the pipes open for ever.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pumps), 5.0)
                return
            await pumps
            await channels.finish(success_status() if code == 0 else exit_status(code))
        finally:
            pumps.cancel()
            feeder.cancel()
            proc.close()

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """Attach to the container's output as it is written (its log) and to its stdin.

        The runtime's shims own the containers' stdio: output is recorded in the log, which
        attach follows from now on (a line still being written shows up once complete or,
        in a container with stdin or a tty, after a short pause as a partial line); input
        goes to the shim's stdin FIFO when the container has ``stdin: true``, else it is
        read and dropped. The end of the session's stdin (the CLOSE channel) closes the
        container's stdin if it has ``stdinOnce``; terminal resizes reach its tty.
        """
        q = request.query
        tty = _flag(q, "tty")
        ws = web.WebSocketResponse(protocols=(V5,), max_msg_size=0)
        await ws.prepare(request)
        channels = _Channels(ws)
        container = request.match_info["container"]
        try:
            ref = self._find(request, container)
            if ref.container_id is None or ref.log_path is None:
                raise StreamingError(404, f'container not found ("{container}")')
        except StreamingError as e:
            await channels.finish(internal_error_status(f"unable to upgrade connection: {e.message}"))
            return ws
        want = {"stdout": _flag(q, "stdout"), "stderr": _flag(q, "stderr")}
        stdin = await self.agent.runtime.attach_stdin(ref.container_id) if _flag(q, "stdin") else None
        reader = _LogReader(ref.log_path, LogOptions())
        await asyncio.to_thread(reader.open, True)
        await channels.send(STDOUT if want["stdout"] else STDERR if want["stderr"] else ERROR, b"")

        async def feed() -> None:
            stdin_open = True
            async for msg in ws:
                if stdin is None or msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                try:
                    if channel == STDIN and data and stdin_open:
                        await stdin.write(data)
                    elif channel == RESIZE:
                        size = _parse_size(data)
                        if size is not None:
                            await stdin.resize(*size)
                    elif channel == CLOSE and data[:1] == bytes((STDIN,)) and stdin_open:
                        stdin_open = False
                        await stdin.close_stdin()
                except OSError:
                    pass  # the shim is gone: the container has stopped, which the loop below sees
            if stdin is not None and stdin_open:
                # The session ended without closing its stdin (the client went away): for
                # stdinOnce that ends the container's stdin all the same, as in the kubelet.
                with contextlib.suppress(OSError):
                    await stdin.close_stdin()

        feeder = _spawn(feed())
        try:
            while not feeder.done():
                running = await self._running(ref.container_id)
                for entry in await asyncio.to_thread(reader.entries):
                    stream = "stdout" if tty else entry.stream
                    if want[stream]:
                        await channels.send(STDOUT if stream == "stdout" else STDERR, render(entry, False))
                if not running:
                    await channels.finish(success_status())
                    break
                await asyncio.sleep(FOLLOW_POLL)
        finally:
            feeder.cancel()
            reader.close()
            if stdin is not None:
                stdin.close()
        return ws

    # -- port-forward

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        return await self._tunnel(request, to_pod_ip=False)

    async def dial(self, request: web.Request) -> web.StreamResponse:
        return await self._tunnel(request, to_pod_ip=True)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _tunnel(self, request: web.Request, *, to_pod_ip: bool) -> web.StreamResponse:
        mi = request.match_info
        raw = request.query.get("port", "")
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            return web.Response(status=400, text=f"invalid port {raw!r}")
        port = int(raw)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        prefix = f"error forwarding port {port} to pod {mi['namespace']}/{mi['pod']}, uid : "
        try:
            ref = self._find(request, "")
            if to_pod_ip and not ref.pod_ip:
                raise StreamingError(400, f'pod "{mi["pod"]}" has no IP address')
        except StreamingError as e:
            # Said on the connection (the API server relays it to kubectl's error stream).
            await ws.send_str(e.message if to_pod_ip else prefix + e.message)
            await ws.close()
            return ws
        host = ref.pod_ip if to_pod_ip else "127.0.0.1"
        try:
            reader, writer = await asyncio.wait_for(open_connection_in(ref.netns_path, host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            # asyncio words a refusal as "Connect call failed"; Go (and kubectl users) say "connection refused".
            reason = (os.strerror(e.errno) if isinstance(e, OSError) and e.errno else "i/o timeout").lower()
            if to_pod_ip:
                await ws.send_str(f"dial tcp {host}:{port}: connect: {reason}")
            else:
                await ws.send_str(
                    f'{prefix}failed to connect to localhost:{port} inside namespace "{ref.netns_path}", '
                    f"IPv4: dial tcp4 127.0.0.1:{port}: connect: {reason}"
                )
            await ws.close()
            return ws

        async def upstream() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                if not msg.data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    continue
                writer.write(msg.data)
                await writer.drain()

        async def downstream() -> None:
            while data := await reader.read(READ_CHUNK):
                await ws.send_bytes(data)
            await ws.send_bytes(b"")

        up, down = _spawn(upstream()), _spawn(downstream())
        try:
            # Done when the pod's side is (its EOF was passed on) or the client vanished.
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if up.done() and not down.done():
                down.cancel()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
            up.cancel()
            down.cancel()
        return ws


def make_app(agent: AgentLike) -> web.Application:
    """The agent's streaming API; serve it on ``<state-dir>/kubelet.sock`` (web.UnixSite)."""
    server = StreamingServer(agent)
    app = web.Application()
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", server.logs)
    app.router.add_get("/exec/{namespace}/{pod}/{container}", server.exec)
    app.router.add_get("/attach/{namespace}/{pod}/{container}", server.attach)
    app.router.add_get("/portForward/{namespace}/{pod}", server.port_forward)
    app.router.add_get("/dial/{namespace}/{pod}", server.dial)
    app.router.add_get("/healthz", server.healthz)
    return app
