"""The API server relay's byte pipe (kubelite.node.relay): one direction ending, or the peer
gone, ends that direction quietly, whichever exception the event loop's transport raises."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.node.relay import _pipe


class Writer:
    def __init__(self, eof_error: Exception | None = None) -> None:
        self.data = b""
        self.eof = False
        self.eof_error = eof_error

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.eof_error is not None:
            raise self.eof_error
        self.eof = True


@pytest.mark.parametrize("error", [None, BrokenPipeError(), RuntimeError("unable to perform operation on "
                                                                          "<TCPTransport closed=True>; the handler is closed")])
def test_pipe_copies_then_half_closes_and_tolerates_a_closed_peer(error: Exception | None) -> None:
    async def run() -> Writer:
        reader = asyncio.StreamReader()
        reader.feed_data(b"hello ")
        reader.feed_data(b"world")
        reader.feed_eof()
        writer = Writer(error)
        await _pipe(reader, writer)  # type: ignore[arg-type]
        return writer

    writer = asyncio.run(run())
    assert writer.data == b"hello world"
    assert writer.eof is (error is None)
