"""One store, served to several API server processes over a unix socket.

Why: a Python process serves about one core's worth of API requests (TLS, HTTP, decoding,
validation, encoding), and on a 2-core machine that core is the limit long before the store
is. kube-apiserver spreads its requests over goroutines on every core; kubelite spreads them
over processes. The `up` process owns the store and serves it here; API server *workers*
open it with ``RemoteStore`` and share the listening port (SO_REUSEPORT), exactly as several
kube-apiserver instances share one etcd.

What it trades, and why it stays correct:

* **No replica in the workers.** Every get, list and write is a round trip to the owner
  (about 30 µs of its time, against several hundred for serving the HTTP request the
  worker took off its hands). Reads are therefore as consistent as the owner's own: a write
  acknowledged to anyone is visible to every later read in any process, and a worker costs
  little memory, since it holds no objects.
* **Ordered, pipelined calls.** A worker sends its calls on one connection without waiting
  for the answers; the owner starts them in the order they arrive, so compare-and-swap
  decisions and revision numbers come out exactly as with one process (a read never waits:
  the owner's reads are served from memory).
* **One connection per watch**, written with backpressure: a worker that stops reading
  makes its watch fall behind in the owner's history, and the owner ends it ("too slow")
  as for a local watcher, instead of buffering without bound. A watch the worker closes
  is dropped at once.
* **Errors cross intact**: KeyExists, KeyNotFound, Conflict (with the current value),
  Compacted (with both revisions) and StoreError arrive as the same exceptions.
* ``revision`` and ``compacted_revision`` are the newest the worker has seen (every reply
  carries them). A watch "from now" (revision 0) starts after the newest revision this
  worker has seen, which is what "now" can mean to a client of a remote store.
* If the connection to the owner breaks, every call fails with StoreError and ``lost`` is
  set: the worker exits and its supervisor starts it again.

Frames are a 4-byte big-endian length and a msgpack body (msgspec, with the store's own
structs encoded as arrays): a create is one frame each way, about 250 bytes.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import msgspec

from kubelite.store._protocol import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
    StoreError,
    StoreHealth,
    WatchBatch,
    WatchEvent,
)
from kubelite.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
MAX_FRAME = 1 << 30


class Request(msgspec.Struct, array_like=True):
    id: int
    op: str
    key: str = ""
    value: bytes = b""
    # expected_mod_revision (update, delete), limit (list), from_revision (watch), revision (compact)
    n: int = 0
    start_after: str = ""


class Reply(msgspec.Struct, array_like=True):
    id: int
    revision: int
    compacted: int
    kv: KeyValue | None = None
    kvs: builtins.list[KeyValue] | None = None
    # count (count), the list's revision (list)
    n: int = 0
    more: bool = False
    # "" when the call succeeded, else the exception's name (see _raise)
    error: str = ""
    message: str = ""
    requested: int = 0
    # health: the file's size, bytes in use and free pages (-1: unknown)
    sizes: builtins.list[int] | None = None


class WatchFrame(msgspec.Struct, array_like=True):
    events: builtins.list[WatchEvent]
    revision: int = 0
    error: str = ""
    message: str = ""
    requested: int = 0
    compacted: int = 0


def _frame(encoder: msgspec.msgpack.Encoder, msg: Any) -> bytes:
    body = encoder.encode(msg)
    return _LEN.pack(len(body)) + body


class _Corked:
    """Frames written in one loop iteration leave in one send: under load a worker sends
    tens of calls, and the owner answers tens, per iteration; a syscall each would cost
    more than the calls themselves."""

    def __init__(self) -> None:
        self._out: builtins.list[bytes] = []
        self._transport: asyncio.WriteTransport | None = None

    def send(self, transport: asyncio.WriteTransport, frame: bytes) -> None:
        if not self._out:
            self._transport = transport
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))


class _Frames:
    """Cuts a byte stream into frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> builtins.list[bytes]:
        buf = self._buf
        buf += data
        out: builtins.list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > MAX_FRAME:
                raise StoreError(f"store frame of {size} bytes is too large")
            if end - pos - 4 < size:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out


def _error_reply(reply: Reply, exc: BaseException) -> None:
    reply.error = type(exc).__name__
    reply.message = str(exc)
    if isinstance(exc, ConflictError):
        reply.kv = exc.current
    elif isinstance(exc, CompactedError):
        reply.requested = exc.requested
        reply.n = exc.compacted


def _raise(error: str, message: str, key: str, kv: KeyValue | None, requested: int, compacted: int) -> None:
    if error == "KeyExistsError":
        raise KeyExistsError(key)
    if error == "KeyNotFoundError":
        raise KeyNotFoundError(key)
    if error == "ConflictError" and kv is not None:
        raise ConflictError(key, kv)
    if error == "CompactedError":
        raise CompactedError(requested, compacted)
    raise StoreError(message or error)


# ------------------------------------------------------------------------------ owner side


class StoreServer:
    """Serves ``store`` on a unix socket that only this user can open (mode 0600)."""

    def __init__(self, store: Store, path: str) -> None:
        self.store = store
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._encoder = msgspec.msgpack.Encoder()
        self._requests = msgspec.msgpack.Decoder(Request)
        # Notes clients send about themselves ("serving": an API server worker listens).
        self.notes: builtins.list[str] = []
        self.noted = asyncio.Event()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a crashed run's socket
        old = os.umask(0o177)
        try:
            self._server = await asyncio.get_running_loop().create_unix_server(
                lambda: _ServerConnection(self), self.path, backlog=128
            )
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def read_now(self, req: Request) -> Reply | None:
        """The reply to a read, at once, when the store answers reads from memory."""
        store = self.store
        if not isinstance(store, SqliteStore) or req.op not in ("get", "list", "count"):
            return None
        reply = Reply(req.id, 0, 0)
        try:
            if req.op == "get":
                reply.kv = store.get_now(req.key)
            elif req.op == "list":
                reply.kvs, reply.n, reply.more = store.list_now(req.key, start_after=req.start_after, limit=req.n)
            else:
                reply.n = store.count_now(req.key)
        except StoreError as e:
            _error_reply(reply, e)
        reply.revision = store.revision
        reply.compacted = store.compacted_revision
        return reply

    async def call(self, req: Request) -> Reply:
        store = self.store
        reply = Reply(req.id, 0, 0)
        try:
            op = req.op
            if op == "get":
                reply.kv = await store.get(req.key)
            elif op == "create":
                reply.kv = await store.create(req.key, req.value)
            elif op == "update":
                reply.kv = await store.update(req.key, req.value, req.n)
            elif op == "delete":
                reply.kv = await store.delete(req.key, req.n)
            elif op == "list":
                reply.kvs, reply.n, reply.more = await store.list(req.key, start_after=req.start_after, limit=req.n)
            elif op == "count":
                reply.n = await store.count(req.key)
            elif op == "compact":
                await store.compact(req.n)
            elif op == "health":
                health = await store.health()
                if health.error is not None:
                    raise StoreError(health.error)
                reply.message = health.compaction_error or ""
                reply.sizes = [-1 if v is None else v
                               for v in (health.size_bytes, health.in_use_bytes, health.free_pages)]
            elif op == "note":
                self.notes.append(req.key)
                self.noted.set()
            elif op != "hello":
                raise StoreError(f"unknown store operation {op!r}")
        except StoreError as e:
            _error_reply(reply, e)
        except Exception as e:  # a bug on this side: the worker gets a StoreError, we keep serving
            log.exception("store call %s %s failed", req.op, req.key)
            _error_reply(reply, StoreError(f"{type(e).__name__}: {e}"))
        reply.revision = store.revision
        reply.compacted = store.compacted_revision
        return reply

    async def watch(self, conn: _ServerConnection, req: Request) -> None:
        store, enc = self.store, self._encoder
        try:
            async with contextlib.aclosing(store.watch_batches(req.key, req.n)) as batches:
                async for batch in batches:
                    conn.transport.write(_frame(enc, WatchFrame(batch.events, batch.revision)))
                    await conn.drained()
        except (CompactedError, StoreError) as e:
            frame = WatchFrame([], store.revision, type(e).__name__, str(e))
            if isinstance(e, CompactedError):
                frame.requested, frame.compacted = e.requested, e.compacted
            conn.transport.write(_frame(enc, frame))
        except ConnectionError:
            pass
        conn.transport.close()


class _ServerConnection(asyncio.Protocol):
    """One worker connection: calls, or (if its first frame is a watch) one watch stream."""

    def __init__(self, server: StoreServer) -> None:
        self.server = server
        self.transport: asyncio.WriteTransport
        self.frames = _Frames()
        self.watch: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        self._out = _Corked()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only alike.
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        server = self.server
        try:
            frames = self.frames.feed(data)
            for raw in frames:
                req = server._requests.decode(raw)
                if req.op == "watch":
                    if self.watch is None:
                        self.watch = server._spawn(server.watch(self, req))
                    continue
                reply = server.read_now(req)
                if reply is not None:
                    self._out.send(self.transport, _frame(server._encoder, reply))
                    continue
                # Calls start in arrival order: each runs until its first real wait (a
                # write's commit) before the next is looked at, as if made locally.
                server._spawn(self._call(req))
        except (msgspec.DecodeError, StoreError) as e:
            log.warning("closing a store connection that sent garbage: %s", e)
            self.transport.close()

    async def _call(self, req: Request) -> None:
        reply = await self.server.call(req)
        if not self._closed:
            self._out.send(self.transport, _frame(self.server._encoder, reply))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def drained(self) -> None:
        if self._closed:
            raise ConnectionResetError("store connection closed")
        await self._writable.wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._writable.set()
        if self.watch is not None:
            self.watch.cancel()


# ------------------------------------------------------------------------------ worker side


class _ClientConnection(asyncio.Protocol):
    def __init__(self, store: RemoteStore) -> None:
        self.store = store
        self.frames = _Frames()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only alike.
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        store = self.store
        try:
            for raw in self.frames.feed(data):
                store._reply(store._replies.decode(raw))
        except (msgspec.DecodeError, StoreError) as e:
            store._lose(StoreError(f"store connection: bad reply: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.store._lose(StoreError(f"connection to the store at {self.store.path} lost" + (f": {exc}" if exc else "")))


class _WatchConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.frames = _Frames()
        self.queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except StoreError as e:
            self.queue.put_nowait(e)
            return
        for raw in frames:
            self.queue.put_nowait(raw)
        # Backpressure towards the owner: stop reading while the consumer is behind.
        if self.queue.qsize() > 64 and self.transport is not None:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(StoreError("watch connection to the store closed"))

    def taken(self) -> None:
        if self.queue.qsize() < 16 and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class RemoteStore:
    """The Store protocol, served by a ``StoreServer`` in another process."""

    def __init__(self, path: str, *, connect_timeout: float = 30.0) -> None:
        self.path = path
        self._connect_timeout = connect_timeout
        self._conn: _ClientConnection | None = None
        self._pending: dict[int, tuple[asyncio.Future[Reply], str]] = {}
        self._next_id = 0
        self._revision = 0
        self._compacted = 0
        self._failure: StoreError | None = None
        self._encoder = msgspec.msgpack.Encoder()
        self._replies = msgspec.msgpack.Decoder(Reply)
        self._frames_decoder = msgspec.msgpack.Decoder(WatchFrame)
        self._watches: set[asyncio.Transport] = set()
        self._out = _Corked()
        self.lost = asyncio.Event()

    async def start(self) -> None:
        """Connects, waiting up to ``connect_timeout`` for the owner to start serving."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        while True:
            try:
                _, conn = await loop.create_unix_connection(lambda: _ClientConnection(self), self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if loop.time() > deadline:
                    raise StoreError(f"no store serving at {self.path}: {e}") from None
                await asyncio.sleep(0.02)
        self._conn = conn
        await self._call(Request(0, "hello"))

    async def close(self) -> None:
        for transport in list(self._watches):
            transport.close()
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._lose(StoreError("store closed"), quiet=True)

    def _lose(self, error: StoreError, quiet: bool = False) -> None:
        if self._failure is None:
            self._failure = error
            if not quiet:
                log.error("%s", error)
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(self._failure)
        self.lost.set()

    def _seen(self, revision: int, compacted: int) -> None:
        if revision > self._revision:
            self._revision = revision
        if compacted > self._compacted:
            self._compacted = compacted

    def _reply(self, reply: Reply) -> None:
        self._seen(reply.revision, reply.compacted)
        entry = self._pending.pop(reply.id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(reply)

    async def _call(self, req: Request) -> Reply:
        if self._failure is not None:
            raise self._failure
        conn = self._conn
        if conn is None or conn.transport is None:
            raise StoreError("store not started")
        self._next_id += 1
        req.id = self._next_id
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[req.id] = (fut, req.key)
        self._out.send(conn.transport, _frame(self._encoder, req))
        # A caller that gives up leaves the call running on the owner: a write that was
        # sent commits anyway, as with etcd; its reply is then dropped.
        reply = await fut
        if reply.error:
            _raise(reply.error, reply.message, req.key, reply.kv, reply.requested, reply.n)
        return reply

    # -- the Store protocol ------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return (await self._call(Request(0, "get", key))).kv

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0
    ) -> tuple[builtins.list[KeyValue], int, bool]:
        reply = await self._call(Request(0, "list", prefix, n=limit, start_after=start_after))
        return reply.kvs or [], reply.n, reply.more

    async def count(self, prefix: str) -> int:
        return (await self._call(Request(0, "count", prefix))).n

    async def create(self, key: str, value: bytes) -> KeyValue:
        kv = (await self._call(Request(0, "create", key, value))).kv
        assert kv is not None
        return kv

    async def update(self, key: str, value: bytes, expected_mod_revision: int = 0) -> KeyValue:
        kv = (await self._call(Request(0, "update", key, value, expected_mod_revision))).kv
        assert kv is not None
        return kv

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        kv = (await self._call(Request(0, "delete", key, n=expected_mod_revision))).kv
        assert kv is not None
        return kv

    async def compact(self, revision: int) -> None:
        await self._call(Request(0, "compact", n=revision))

    async def health(self) -> StoreHealth:
        """The owner's store as the owner sees it, or why this worker cannot reach it."""
        if self._failure is not None:
            return StoreHealth(error=f"connection to the store lost: {self._failure}")
        try:
            reply = await self._call(Request(0, "health"))
        except (StoreError, ConnectionError) as e:
            return StoreHealth(error=str(e))
        size, in_use, free = (None if v < 0 else v for v in (reply.sizes or [-1, -1, -1]))
        return StoreHealth(compaction_error=reply.message or None, size_bytes=size, in_use_bytes=in_use,
                           free_pages=free)

    async def note(self, text: str) -> None:
        """Tell the owner something about this client (StoreServer.notes)."""
        await self._call(Request(0, "note", text))

    def watch(self, prefix: str, from_revision: int = 0) -> AsyncIterator[WatchEvent]:
        return self._events(self.watch_batches(prefix, from_revision))

    @staticmethod
    async def _events(batches: AsyncGenerator[WatchBatch, None]) -> AsyncIterator[WatchEvent]:
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for ev in batch.events:
                    yield ev

    def watch_batches(self, prefix: str, from_revision: int = 0) -> AsyncGenerator[WatchBatch, None]:
        # "From now" is the newest revision this process has seen, fixed at the call.
        return self._watch(prefix, from_revision, from_revision or self._revision)

    async def _watch(
        self, prefix: str, requested: int, start: int
    ) -> AsyncGenerator[WatchBatch, None]:
        if self._failure is not None:
            raise self._failure
        if requested and requested < self._compacted:
            raise CompactedError(requested, self._compacted)
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await loop.create_unix_connection(_WatchConnection, self.path)
        except OSError as e:
            raise StoreError(f"cannot watch: store at {self.path}: {e}") from None
        self._watches.add(transport)
        try:
            transport.write(_frame(self._encoder, Request(0, "watch", prefix, n=start)))
            while True:
                item = await conn.queue.get()
                conn.taken()
                if isinstance(item, BaseException):
                    raise item
                frame = self._frames_decoder.decode(item)
                self._seen(frame.revision, frame.compacted)
                if frame.error:
                    _raise(frame.error, frame.message, prefix, None, frame.requested, frame.compacted)
                yield WatchBatch(frame.events, frame.revision)
        finally:
            self._watches.discard(transport)
            transport.close()
