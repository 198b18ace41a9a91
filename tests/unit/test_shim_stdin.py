"""The shim's stdin pump: framed input from the attach FIFO into a container's stdin.

Plain pipes stand in for the FIFO and the container's stdin; no namespaces needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kubelite.node.shim import STDIN_DATA, STDIN_EOF, STDIN_FRAME_MAX, STDIN_RESIZE, _StdinPump, stdin_frame


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    fifo_r, fifo_w = os.pipe()
    target_r, target_w = os.pipe()
    for fd in (fifo_r, target_w):
        os.set_blocking(fd, False)
    yield fifo_r, fifo_w, target_r, target_w
    for fd in (fifo_r, fifo_w, target_r, target_w):
        try:
            os.close(fd)
        except OSError:
            pass


def pump_all(pump: _StdinPump) -> None:
    pump.readable()
    while pump.pending and not pump.closed:
        pump.writable()


def test_data_frames_reach_stdin_even_when_split_across_reads(pipes: tuple[int, int, int, int]) -> None:
    fifo_r, fifo_w, target_r, target_w = pipes
    pump = _StdinPump(fifo_r, target_w, tty=False, once=True)
    frames = stdin_frame(STDIN_DATA, b"hello ") + stdin_frame(STDIN_DATA, b"world\n")
    os.write(fifo_w, frames[:5])  # half a frame: nothing yet
    pump_all(pump)
    os.write(fifo_w, frames[5:])
    pump_all(pump)
    assert os.read(target_r, 100) == b"hello world\n"
    assert not pump.closed


def test_end_of_stdin_closes_the_container_stdin_with_stdin_once(pipes: tuple[int, int, int, int]) -> None:
    fifo_r, fifo_w, target_r, target_w = pipes
    pump = _StdinPump(fifo_r, target_w, tty=False, once=True)
    os.write(fifo_w, stdin_frame(STDIN_DATA, b"last") + stdin_frame(STDIN_EOF))
    pump_all(pump)
    assert pump.closed
    assert os.read(target_r, 100) == b"last"
    assert os.read(target_r, 100) == b""  # EOF: the write end is closed
    os.write(fifo_w, stdin_frame(STDIN_DATA, b"dropped"))  # a later session: read and dropped
    pump_all(pump)


def test_without_stdin_once_an_end_of_stdin_leaves_it_open(pipes: tuple[int, int, int, int]) -> None:
    fifo_r, fifo_w, target_r, target_w = pipes
    pump = _StdinPump(fifo_r, target_w, tty=False, once=False)
    os.write(fifo_w, stdin_frame(STDIN_DATA, b"one") + stdin_frame(STDIN_EOF) + stdin_frame(STDIN_DATA, b"two"))
    pump_all(pump)
    assert not pump.closed
    assert os.read(target_r, 100) == b"onetwo"


def test_a_container_that_does_not_read_never_blocks_the_shim(pipes: tuple[int, int, int, int]) -> None:
    fifo_r, fifo_w, target_r, target_w = pipes
    pump = _StdinPump(fifo_r, target_w, tty=False, once=False)
    chunk = b"x" * STDIN_FRAME_MAX
    for _ in range(40):  # more than a pipe holds
        os.write(fifo_w, stdin_frame(STDIN_DATA, chunk))
        pump.readable()
        pump.writable()
    assert pump.pending  # kept, not lost, until the container reads
    received = b""
    while pump.pending or len(received) < 40 * len(chunk):
        received += os.read(target_r, 1 << 20)
        pump.writable()
    assert received == chunk * 40


def test_resize_frames_are_ignored_without_a_terminal(pipes: tuple[int, int, int, int]) -> None:
    fifo_r, fifo_w, target_r, target_w = pipes
    pump = _StdinPump(fifo_r, target_w, tty=False, once=False)
    os.write(fifo_w, stdin_frame(STDIN_RESIZE, b"\x00\x50\x00\x18") + stdin_frame(STDIN_DATA, b"ok"))
    pump_all(pump)
    assert os.read(target_r, 100) == b"ok"
