"""Fixtures for end-to-end tests with real network namespaces (run as root).

Each test gets its own cluster name, so tests never see each other's namespaces and
whatever a failing test leaves behind is found by prefix and removed here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import require

NETNS_DIR = "/run/netns"


def require_root_netns() -> None:
    """Skip (fail on CI) unless we are root with ``ip netns`` and pyroute2 available."""
    require(os.geteuid() == 0, "needs root to create network namespaces")
    has_ip = shutil.which("ip") is not None
    require(
        has_ip and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0,
        "needs iproute2 with `ip netns`",
    )
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        require(False, "pyroute2 is not installed")


def netns_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


@pytest.fixture
def cluster_name() -> Iterator[str]:
    """A unique cluster name ``kle2e-<6 hex>``; its namespaces are deleted after the test."""
    name = f"kle2e-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        for ns in netns_names():
            if ns == name or ns.startswith(f"{name}-"):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
