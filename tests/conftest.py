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


DESELECTED_FILE = os.path.join(os.path.dirname(__file__), "python_client_deselected.txt")


def _deselected() -> dict[str, str]:
    """The node ids listed in tests/python_client_deselected.txt, with their reasons."""
    out: dict[str, str] = {}
    with open(DESELECTED_FILE) as f:
        for line in f:
            node, _, reason = line.partition("#")
            if node.strip():
                out[node.strip()] = reason.strip()
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    listed = _deselected()
    if not listed:
        return
    keep = [item for item in items if item.nodeid not in listed]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in listed])
        items[:] = keep
