"""The API server's /livez and /readyz over a real store: a failing compaction shows, in
Kubernetes' healthz format, as do a store that is gone and the per-check paths."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from kubelite.apiserver.pki import ensure_pki
from kubelite.apiserver.server import APIServer, ServerConfig
from kubelite.store import SqliteStore


@contextlib.asynccontextmanager
async def _client(tmp_path: pathlib.Path, store: SqliteStore) -> AsyncIterator[tuple[APIServer, TestClient[Any, Any]]]:
    pki = ensure_pki(tmp_path / "pki", cluster_name="health", service_ip="10.96.0.1")
    api = APIServer(store, pki, ServerConfig(port=0))
    async with TestClient(TestServer(api.app)) as client:
        yield api, client


async def _get(client: TestClient[Any, Any], path: str) -> tuple[int, str]:
    resp = await client.get(path)
    return resp.status, await resp.text()


def test_readyz_reports_a_failing_compaction(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0.01)
        await store.start()
        try:
            async with _client(tmp_path, store) as (api, client):
                api.ready = True
                assert await _get(client, "/readyz") == (200, "ok")
                assert await _get(client, "/readyz?verbose") == (200, (
                    "[+]ping ok\n[+]etcd ok\n[+]etcd-compaction ok\n[+]poststarthook/bootstrap-controller ok\n"
                    "readyz check passed\n"))
                assert await _get(client, "/livez?verbose") == (200, "[+]ping ok\n[+]etcd ok\nlivez check passed\n")

                def broken(revision: int) -> None:
                    raise OSError("disk I/O error")

                # The test hook: the disk side of compaction fails, as a full disk would make it.
                store._compact_disk = broken  # type: ignore[method-assign]
                for _ in range(500):
                    if store.last_compaction_error:
                        break
                    await asyncio.sleep(0.01)
                assert store.last_compaction_error == "OSError: disk I/O error"
                failed = ("[+]ping ok\n[+]etcd ok\n[-]etcd-compaction failed: reason withheld\n"
                          "[+]poststarthook/bootstrap-controller ok\nreadyz check failed\n")
                assert await _get(client, "/readyz") == (500, failed)
                assert await _get(client, "/readyz?verbose") == (500, failed)
                assert await _get(client, "/readyz/etcd-compaction") == (
                    500, "internal server error: OSError: disk I/O error\n")
                assert await _get(client, "/readyz/etcd") == (200, "ok")
                # Liveness does not hang on compaction: a restart would not mend it.
                assert await _get(client, "/livez") == (200, "ok")
                status, text = await _get(client, "/readyz?exclude=etcd-compaction&exclude=nope")
                assert status == 200 and text == "ok"
                status, text = await _get(client, "/readyz?verbose&exclude=etcd-compaction&exclude=nope")
                assert text == ("[+]ping ok\n[+]etcd ok\n[+]etcd-compaction excluded: ok\n"
                                "[+]poststarthook/bootstrap-controller ok\n"
                                'warn: some health checks cannot be excluded: no matches for "nope"\n'
                                "readyz check passed\n")
                status, _ = await _get(client, "/readyz/no-such-check")
                assert status == 404

                await store.close()
                status, text = await _get(client, "/livez")
                assert (status, text) == (500, "[+]ping ok\n[-]etcd failed: reason withheld\nlivez check failed\n")
        finally:
            await store.close()

    asyncio.run(main())


def test_readyz_before_bootstrap(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        store = SqliteStore(str(tmp_path / "state.db"))
        await store.start()
        try:
            async with _client(tmp_path, store) as (_api, client):
                status, text = await _get(client, "/readyz")
                assert status == 500
                assert text.endswith("[-]poststarthook/bootstrap-controller failed: reason withheld\n"
                                     "readyz check failed\n")
        finally:
            await store.close()

    asyncio.run(main())

