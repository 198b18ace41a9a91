"""Polling for a condition that real processes make true, shared by the tests.

Integration and end-to-end tests wait on clusters, pods and kernels that run on their own
clock, so they poll; unit tests use the fake loop clock instead (``looptime``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """``check()``'s first truthy result; AssertionError naming ``what`` and the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def eventually(check: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Returns once ``check()`` holds; AssertionError(``what``) if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(what)
