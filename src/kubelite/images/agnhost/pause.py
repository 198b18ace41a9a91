"""``agnhost pause``: print "Paused" and wait; SIGINT exits 1, SIGTERM exits 2 (as agnhost)."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from kubelite.images.agnhost import common

_EXIT_CODES = {signal.SIGINT: 1, signal.SIGTERM: 2}


def _exit(signum: int, _frame: FrameType | None) -> None:
    os._exit(_EXIT_CODES[signal.Signals(signum)])


def main(args: list[str]) -> None:
    _, positional = common.parse_flags("pause", [], args)
    if positional:
        common.usage_error("pause", [], f"accepts at most 0 arg(s), received {len(positional)}")
    for sig in _EXIT_CODES:
        signal.signal(sig, _exit)
    sys.stdout.write("Paused\n")
    sys.stdout.flush()
    while True:
        signal.pause()
