"""Fixtures for tests against a real ``kubelite up`` and the real kubectl."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster shared by a session's integration tests (each test uses its own names)."""
    require(kubectl_binary() is not None, "kubectl is not installed")
    base = tmp_path_factory.mktemp("clusters")
    c = new_cluster(base)
    c.start()
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.data_dir, ignore_errors=True)


@pytest.fixture
def fresh_cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    """A cluster of the test's own, for tests that stop or kill it."""
    require(kubectl_binary() is not None, "kubectl is not installed")
    c = new_cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
