"""kubelite.client's connection pools against a real API server: long-lived watches must
never starve the requests of the same client (the controller-manager holds 30+ watches)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import pytest

from kubelite.client import CONFIGMAPS, NAMESPACES, ApiError, Client
from tests.integration.cluster import Cluster


async def test_more_watches_than_pooled_connections_leave_requests_free(cluster: Cluster) -> None:
    async with Client.from_kubeconfig(cluster.kubeconfig, max_connections=2) as client:
        opened = asyncio.Event()
        count = 0

        async def watch() -> None:
            nonlocal count
            async for _ in client.watch(NAMESPACES, allow_bookmarks=False):
                count += 1  # the first namespace's ADDED: this watch holds its connection
                if count >= 5:
                    opened.set()
                await asyncio.sleep(3600)

        tasks = [asyncio.create_task(watch()) for _ in range(5)]
        try:
            async with asyncio.timeout(20):
                await opened.wait()
                # With 5 watches open and a pool of 2, a list still gets its answer.
                result = await client.list(CONFIGMAPS, "kube-system")
            assert result["kind"] == "ConfigMapList"
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def test_the_servers_warnings_are_logged_once_per_text(cluster: Cluster,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """client-go logs the API server's ``Warning`` headers (Pod Security's, unknown fields):
    kubelite's components do too, each text once per client rather than once per request."""
    caplog.set_level(logging.WARNING, logger="kubelite.client.rest")
    async with Client.from_kubeconfig(cluster.kubeconfig) as client:
        names = [f"warned-{uuid.uuid4().hex[:6]}" for _ in range(2)]
        try:
            for name in names:
                await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                                 "foo": 1}, "default")
        finally:
            for name in names:
                with contextlib.suppress(ApiError):
                    await client.delete(CONFIGMAPS, name, "default")
    warned = [r.getMessage() for r in caplog.records if r.name == "kubelite.client.rest"]
    assert warned == ['Warning: unknown field "foo"']
