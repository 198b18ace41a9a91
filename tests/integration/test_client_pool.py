"""kubelite.client's connection pools against a real API server: long-lived watches must
never starve the requests of the same client (the controller-manager holds 30+ watches)."""

from __future__ import annotations

import asyncio
import contextlib

from kubelite.client import CONFIGMAPS, NAMESPACES, Client
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
