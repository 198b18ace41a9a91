"""What ``kubelite up`` tells its user while it starts: one line per step, and what it waits for.

A start normally takes a second or two, so each step prints one line when it is done, with
the time since the start. A step that takes longer says what it is waiting for: on a
terminal at once (rewritten in place when done), otherwise after a few seconds, so that
logs of a slow or stuck start show where it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import TextIO


class Progress:
    def __init__(self, out: TextIO | None = None, *, patience: float = 3.0) -> None:
        self.out = out or sys.stdout
        self.started = time.perf_counter()
        self.tty = self.out.isatty()
        self.patience = patience
        encoding = (getattr(self.out, "encoding", None) or "").lower().replace("-", "")
        self.done_mark, self.wait_mark, self.warn_mark = ("✓", "…", "!") if encoding == "utf8" else ("+", "~", "!")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def done(self, what: str) -> None:
        self.line(f" {self.done_mark} {what} ({self.elapsed():.2f}s)")

    def warn(self, what: str) -> None:
        self.line(f" {self.warn_mark} {what}")

    @contextlib.asynccontextmanager
    async def waiting(self, waiting_for: str, done: str) -> AsyncIterator[Step]:
        """Say ``waiting_for`` while the block runs (if it takes a while), then ``done``
        (or the warning the block gave its step)."""
        step = Step()
        note: asyncio.TimerHandle | None = None
        if self.tty:
            self.out.write(f" {self.wait_mark} waiting for {waiting_for}")
            self.out.flush()
        else:
            note = asyncio.get_running_loop().call_later(
                self.patience, self.line, f" {self.wait_mark} still waiting for {waiting_for}")
        try:
            yield step
        finally:
            if note is not None:
                note.cancel()
            if self.tty:
                self.out.write("\r\x1b[K")  # erase the "waiting" line: "done" takes its place
        if step.warning is None:
            self.done(done)
        else:
            self.warn(step.warning)


class Step:
    """What a step's block can say about how it ended."""

    warning: str | None = None
