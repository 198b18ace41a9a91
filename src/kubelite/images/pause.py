"""The pause image (``registry.k8s.io/pause``, ``kubelite/pause``): sleep until told to stop.

Like Kubernetes' pause.c it exits 0 on SIGINT or SIGTERM (so it also stops promptly as PID
1 of its container) and reaps the zombies of any children that get reparented to it.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _shutdown(signum: int, _frame: FrameType | None) -> None:
    sys.stderr.write(f"Shutting down, got signal: {signal.strsignal(signum)}\n")
    sys.stderr.flush()
    os._exit(0)


def _reap(_signum: int, _frame: FrameType | None) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def main() -> None:
    signal.signal(signal.SIGINT, _shutdown)
    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
