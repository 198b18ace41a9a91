"""Test-wide rules: a missing prerequisite skips locally but fails on CI.

CI runs with ``CI=true`` on a machine that is meant to have everything; a test that skips
there would hide a broken install step, so :func:`require` turns the skip into a failure
that names what is missing.
"""

from __future__ import annotations

import os

import pytest

ON_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if ON_CI:
        pytest.fail(f"prerequisite missing on CI: {reason}", pytrace=False)
    pytest.skip(reason)
