"""SPDY/3.1 framing and the server session, driven by a client built from the same codec."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator

import pytest

from kubelite.apiserver import spdy
from kubelite.apiserver.spdy import Codec, Frame, SpdySession


def test_dictionary_is_spdy3s() -> None:
    # The dictionary id Go's zlib writer puts in the first header block (FDICT).
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_first_header_block_names_the_dictionary() -> None:
    frame = Codec().syn_reply(1, {"a": ["b"]})
    block = frame[12:]
    assert block[0] == 0x78 and block[1] & 0x20  # zlib header with FDICT set
    assert struct.unpack(">I", block[2:6])[0] == 0xE3C6A7C2


def test_control_frame_layout() -> None:
    c = Codec()
    assert c.ping(7) == bytes.fromhex("80030006 00000004 00000007")
    assert c.goaway(5, 0) == bytes.fromhex("80030007 00000008 00000005 00000000")
    assert c.rst_stream(3, spdy.CANCEL) == bytes.fromhex("80030003 00000008 00000003 00000005")
    assert c.window_update(1, 1000) == bytes.fromhex("80030009 00000008 00000001 000003e8")
    assert c.data(3, b"hi", fin=True) == bytes.fromhex("00000003 01000002 6869")


def test_roundtrip_keeps_the_zlib_context_across_frames() -> None:
    client, server = Codec(), Codec()
    wire = b"".join([
        client.syn_stream(1, {"streamtype": ["error"]}),
        client.syn_stream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}, fin=True),
        client.data(3, b"payload"),
        client.syn_stream(5, {"multi": ["a", "b"]}),
    ])
    frames = server.feed(wire)
    assert [(f.kind, f.stream_id) for f in frames] == [(spdy.SYN_STREAM, 1), (spdy.SYN_STREAM, 3),
                                                        (spdy.DATA, 3), (spdy.SYN_STREAM, 5)]
    assert frames[0].headers == {"streamtype": ["error"]}
    assert frames[1].headers == {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}
    assert frames[1].fin
    assert frames[2].data == b"payload"
    assert frames[3].headers == {"multi": ["a", "b"]}  # several values travel NUL-joined


def test_frames_split_anywhere() -> None:
    client, server = Codec(), Codec()
    wire = client.syn_stream(1, {"streamtype": ["stdin"]}) + client.data(1, b"x" * 1000) + client.ping(9)
    frames: list[Frame] = []
    for i in range(0, len(wire), 7):
        frames += server.feed(wire[i : i + 7])
    assert [f.kind for f in frames] == [spdy.SYN_STREAM, spdy.DATA, spdy.PING]
    assert frames[1].data == b"x" * 1000
    assert frames[2].stream_id == 9


def test_header_names_are_lowercased() -> None:
    assert spdy.decode_header_block(spdy.encode_header_block({"StreamType": ["x"]})) == {"streamtype": ["x"]}


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(spdy.ProtocolError):
        Codec().feed(bytes.fromhex("80020001 00000004 00000001"))  # SPDY/2
    with pytest.raises(spdy.ProtocolError):
        Codec().feed(bytes.fromhex("80030002 00000008 00000001") + b"notzlib!")


# ---------------------------------------------------------------------------- the session


class Peer:
    """A client end: what it sends goes to the session, what the session writes is decoded."""

    def __init__(self) -> None:
        self.codec = Codec()
        self.decoder = Codec()
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.received: list[Frame] = []
        self.session = SpdySession(self._from_server)
        self.task = asyncio.ensure_future(self.session.serve(self._incoming()))

    async def _from_server(self, data: bytes) -> None:
        self.received += self.decoder.feed(data)

    async def _incoming(self) -> AsyncIterator[bytes]:
        while (data := await self.inbox.get()) is not None:
            yield data

    def send(self, data: bytes) -> None:
        self.inbox.put_nowait(data)

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)


async def test_streams_are_replied_and_carry_data_both_ways() -> None:
    peer = Peer()
    peer.send(peer.codec.syn_stream(1, {"streamtype": ["stdin"]}))
    stream = await peer.session.accept()
    assert stream is not None and stream.id == 1 and stream.header("streamType") == "stdin"
    await peer.settle()
    assert [(f.kind, f.stream_id) for f in peer.received] == [(spdy.SYN_REPLY, 1)]
    peer.send(peer.codec.data(1, b"abc") + peer.codec.data(1, b"def", fin=True))
    assert await stream.read() == b"abc"
    assert await stream.read() == b"def"
    assert await stream.read() == b""
    assert await stream.read() == b""  # EOF sticks
    await stream.write(b"out")
    await stream.close()
    await stream.write(b"ignored after close")
    assert [(f.kind, f.data, f.fin) for f in peer.received[1:]] == [(spdy.DATA, b"out", False), (spdy.DATA, b"", True)]
    peer.send(b"")
    peer.inbox.put_nowait(None)
    await peer.task


async def test_pings_are_echoed_and_even_streams_refused() -> None:
    peer = Peer()
    peer.send(peer.codec.ping(3) + peer.codec.syn_stream(2, {}))
    await peer.settle()
    assert [(f.kind, f.stream_id) for f in peer.received] == [(spdy.PING, 3), (spdy.RST_STREAM, 2)]
    assert peer.received[1].value == spdy.PROTOCOL_ERROR
    peer.inbox.put_nowait(None)
    await peer.task


async def test_reset_and_disconnect_end_the_streams() -> None:
    peer = Peer()
    peer.send(peer.codec.syn_stream(1, {}) + peer.codec.syn_stream(3, {}))
    one, three = await peer.session.accept(), await peer.session.accept()
    assert one is not None and three is not None
    peer.send(peer.codec.rst_stream(1, spdy.CANCEL))
    assert await one.read() == b""
    peer.inbox.put_nowait(None)  # the connection drops
    await peer.task
    assert await three.read() == b""
    assert await peer.session.accept() is None
    assert peer.session.closed.is_set()


async def test_a_slow_reader_holds_the_connection_not_the_memory() -> None:
    peer = Peer()
    peer.send(peer.codec.syn_stream(1, {}))
    stream = await peer.session.accept()
    assert stream is not None
    for i in range(200):
        peer.send(peer.codec.data(1, bytes([i])))
    await peer.settle()
    assert stream._queue.qsize() <= 64  # the rest waits in the transport, unread
    got = b""
    while len(got) < 200:
        got += await stream.read()
    assert got == bytes(range(200))
    peer.inbox.put_nowait(None)
    await peer.task
