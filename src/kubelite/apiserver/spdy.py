"""SPDY/3.1 framing and a server-side session: the wire kubectl speaks for streams before 1.30.

kubectl 1.27-1.29 run ``exec``/``attach``/``cp`` and ``port-forward`` over an HTTP connection
upgraded to SPDY/3.1 (one SPDY stream per stdio channel or per forwarded connection), and
kubectl 1.31+ still tunnels SPDY frames inside a websocket for ``port-forward``. Go's peer is
moby/spdystream, which shapes what is implemented here:

- frames are parsed from an arbitrary byte stream (a tunnel splits frames across websocket
  messages at will), header blocks share one zlib context per direction, primed with SPDY's
  dictionary and sync-flushed after each block, exactly as Go's framer writes them;
- spdystream ignores SETTINGS and WINDOW_UPDATE (it does no flow control), so neither does
  this session; back-pressure comes from not reading the connection while a stream's queue
  is full instead, at the price of head-of-line blocking between the streams of a session;
- spdystream drops DATA for a stream it has not seen a reply for, so a stream is replied to
  (SYN_REPLY) before anything is written on it.

The session is transport-agnostic: it reads bytes from an async iterator and writes through
an async callable, so the same code serves a raw upgraded connection and a websocket tunnel.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9
DATA = 0  # not a control frame type: how this module tags data frames

FLAG_FIN = 0x01

# RST_STREAM status codes this session sends
PROTOCOL_ERROR = 1
CANCEL = 5

MAX_DATA = 0xFFFFFF

# The zlib dictionary of SPDY/3 header compression (draft 3, section 2.6.10.1), 1423 bytes.
DICTIONARY = (
    b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put"
    b"\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-charset"
    b"\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\raccept-ranges"
    b"\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\rauthorization\x00\x00\x00\rcache-control"
    b"\x00\x00\x00\nconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10content-encoding"
    b"\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location"
    b"\x00\x00\x00\x0bcontent-md5\x00\x00\x00\rcontent-range\x00\x00\x00\x0ccontent-type"
    b"\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires"
    b"\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since"
    b"\x00\x00\x00\rif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmodified-since"
    b"\x00\x00\x00\rlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forwards"
    b"\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorization"
    b"\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server"
    b"\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade"
    b"\x00\x00\x00\nuser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07warning"
    b"\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\x00\x00\x06status"
    b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url"
    b"\x00\x00\x00\x06public\x00\x00\x00\nset-cookie\x00\x00\x00\nkeep-alive\x00\x00\x00\x06origin"
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    b"401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    b"503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00"
    b" Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer sent bytes that are not SPDY/3.1; the session cannot continue."""


@dataclass
class Frame:
    """One decoded frame. ``kind`` is a control frame type, or ``DATA``."""

    kind: int
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""
    headers: Headers = field(default_factory=dict)
    # RST_STREAM/GOAWAY: status; PING: id in stream_id; GOAWAY: last good stream in
    # stream_id; WINDOW_UPDATE: delta in value. (A SYN_STREAM's associated stream and
    # priority are not kept: Kubernetes' streams are independent, and no prioritisation here.)
    value: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: lower-case names, several values joined by NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = b"\x00".join(x.encode() for x in values)
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    view = memoryview(block)

    def take(n: int) -> bytes:
        nonlocal view
        if n > len(view):
            raise ProtocolError("truncated header block")
        chunk, view = bytes(view[:n]), view[n:]
        return chunk

    def length() -> int:
        return int.from_bytes(take(4), "big")

    headers: Headers = {}
    for _ in range(length()):
        name = take(length()).decode("latin-1").lower()
        headers.setdefault(name, []).extend(take(length()).decode("latin-1").split("\x00"))
    return headers


class Codec:
    """Frames to bytes and back for one connection (each direction keeps its zlib context)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    # -- decoding

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes from the peer; return the frames they complete."""
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head = bytes(self._buf[:8])
            body = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frames.append(self._decode(head, body))
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        return decode_header_block(raw)

    def _decode(self, head: bytes, body: bytes) -> Frame:
        first, flags = struct.unpack(">I", head[:4])[0], head[4]
        if not first & 0x80000000:
            return Frame(DATA, flags, first & 0x7FFFFFFF, body)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")

        def word(i: int) -> int:
            if len(body) < 4 * (i + 1):
                raise ProtocolError(f"short control frame of type {kind}")
            return int(struct.unpack(">I", body[4 * i : 4 * i + 4])[0])

        if kind == SYN_STREAM:
            if len(body) < 10:
                raise ProtocolError("short SYN_STREAM")
            return Frame(kind, flags, word(0) & 0x7FFFFFFF, headers=self._headers(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(kind, flags, word(0) & 0x7FFFFFFF, headers=self._headers(body[4:]))
        if kind in (RST_STREAM, GOAWAY, WINDOW_UPDATE):
            return Frame(kind, flags, word(0) & 0x7FFFFFFF, value=word(1))
        if kind == PING:
            return Frame(kind, flags, word(0))
        # SETTINGS and anything newer: nothing this session acts on.
        return Frame(kind, flags, data=body)

    # -- encoding

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def syn_stream(self, stream_id: int, headers: Headers, *, fin: bool = False, priority: int = 0) -> bytes:
        body = struct.pack(">IIBB", stream_id, 0, (priority & 7) << 5, 0) + self._compress(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    def syn_reply(self, stream_id: int, headers: Headers | None = None, *, fin: bool = False) -> bytes:
        body = struct.pack(">I", stream_id) + self._compress(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    @staticmethod
    def data(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
        """One or more DATA frames carrying ``data`` (FIN on the last)."""
        out = []
        view = memoryview(data)
        while True:
            chunk, view = view[:MAX_DATA], view[MAX_DATA:]
            last = not view
            flags = FLAG_FIN if (fin and last) else 0
            out.append(struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(chunk)) + bytes(chunk))
            if last:
                return b"".join(out)

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_good_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_good_id, status))

    def window_update(self, stream_id: int, delta: int) -> bytes:
        return self._control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))


# ---------------------------------------------------------------------------- session

_QUEUE_CHUNKS = 64  # per stream: what may wait for a slow reader before the connection stops being read


class SpdyStream:
    """One stream the client opened. ``read`` returns b"" once the client is done sending."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers, remote_done: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_CHUNKS)
        self._remote_done = remote_done
        self._local_done = False
        self._abandoned = False
        if remote_done:
            self._queue.put_nowait(None)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    async def read(self) -> bytes:
        if self._abandoned:
            return b""
        chunk = await self._queue.get()
        if chunk is None:
            self._queue.put_nowait(None)  # stay at EOF for later reads
            return b""
        return chunk

    async def write(self, data: bytes) -> None:
        if self._local_done or not data:
            return
        await self.session._send(lambda c: c.data(self.id, data))

    async def close(self) -> None:
        """Half-close: tell the client nothing more will be written (DATA with FIN)."""
        if self._local_done:
            return
        self._local_done = True
        await self.session._send(lambda c: c.data(self.id, b"", fin=True))

    async def reset(self, status: int = CANCEL) -> None:
        self._local_done = True
        self.abandon()
        await self.session._send(lambda c: c.rst_stream(self.id, status))

    def abandon(self) -> None:
        """Nobody will read this stream any more: drop what arrives instead of queueing it."""
        self._abandoned = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def _deliver(self, data: bytes) -> None:
        if self._remote_done or self._abandoned:
            return
        await self._queue.put(data)

    def _finish(self) -> None:
        if self._remote_done:
            return
        self._remote_done = True
        if self._abandoned:
            return
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            # A full queue only drains through read(), which re-arms EOF once it sees None;
            # hand the marker over from a task so frame handling never blocks on it.
            asyncio.get_running_loop().create_task(self._queue.put(None))


class SpdySession:
    """The server end of a SPDY/3.1 connection: the client opens streams, the server replies.

    ``send`` writes bytes to the client. Run :meth:`serve` with the bytes the client sends;
    :meth:`accept` yields the streams the client opens (None once the connection is gone).
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = send
        self._codec = Codec()
        self._lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._new: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._last_id = 0
        self.closed = asyncio.Event()
        self._going_away = False

    async def _send(self, encode: Callable[[Codec], bytes]) -> None:
        # Encoding and writing under one lock: header blocks share a zlib context, so the
        # peer must receive them in the order they were compressed.
        if self.closed.is_set():
            return
        async with self._lock:
            try:
                await self._write(encode(self._codec))
            except (ConnectionError, RuntimeError):
                self._shutdown()

    async def accept(self) -> SpdyStream | None:
        stream = await self._new.get()
        if stream is None:
            self._new.put_nowait(None)
        return stream

    async def serve(self, incoming: AsyncIterator[bytes]) -> None:
        """Handle frames until the client closes the connection (or breaks the protocol)."""
        try:
            async for data in incoming:
                for frame in self._codec.feed(data):
                    await self._handle(frame)
        except ProtocolError:
            await self._send(lambda c: c.goaway(self._last_id, 1))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._shutdown()

    async def close(self) -> None:
        """Say goodbye (GOAWAY); the transport is closed by whoever owns it."""
        if not self._going_away:
            self._going_away = True
            await self._send(lambda c: c.goaway(self._last_id))

    def _shutdown(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for stream in self._streams.values():
            stream._finish()
        self._new.put_nowait(None)

    async def _handle(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == DATA:
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                if frame.data:
                    await stream._deliver(frame.data)
                if frame.fin:
                    stream._finish()
        elif kind == SYN_STREAM:
            sid = frame.stream_id
            if sid % 2 == 0 or sid <= self._last_id or self._going_away:
                await self._send(lambda c: c.rst_stream(sid, PROTOCOL_ERROR))
                return
            self._last_id = sid
            stream = SpdyStream(self, sid, frame.headers, frame.fin)
            self._streams[sid] = stream
            await self._send(lambda c: c.syn_reply(sid))
            self._new.put_nowait(stream)
        elif kind == RST_STREAM:
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream._local_done = True
                stream._finish()
        elif kind == PING:
            # Client pings carry odd ids and are echoed; an even id answers one of ours.
            if frame.stream_id % 2 == 1:
                ping_id = frame.stream_id
                await self._send(lambda c: c.ping(ping_id))
        elif kind == GOAWAY:
            self._going_away = True
