"""``/metrics``' store gauges, written as kube-apiserver and etcd write them (issue 20, point 4)."""

from __future__ import annotations

import asyncio
import pathlib
import re

import orjson

from kubelite.api import bootstrappolicy
from kubelite.api.registry import lookup
from kubelite.apiserver import authorization
from kubelite.apiserver.metrics import go_float, render
from kubelite.store import SqliteStore, StoreHealth
from tests.unit.test_healthz import _client


def test_values_are_written_as_gos_prometheus_client_writes_them() -> None:
    assert [go_float(v) for v in (0, 28672, 999999, 1e6, 4636672, 1e9, 0.5, 1.25e-5)] == [
        "0", "28672", "999999", "1e+06", "4.636672e+06", "1e+09", "0.5", "1.25e-05",
    ]


def test_the_store_gauges() -> None:
    text = render(StoreHealth(size_bytes=4636672, in_use_bytes=28672, free_pages=1125))
    assert text == (
        "# HELP apiserver_storage_size_bytes [STABLE] Size of the storage database file physically"
        " allocated in bytes.\n"
        "# TYPE apiserver_storage_size_bytes gauge\n"
        'apiserver_storage_size_bytes{storage_cluster_id="etcd-0"} 4.636672e+06\n'
        "# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated"
        " in bytes.\n"
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge\n"
        "etcd_mvcc_db_total_size_in_bytes 4.636672e+06\n"
        "# HELP etcd_mvcc_db_total_size_in_use_in_bytes Total size of the underlying database logically in use"
        " in bytes.\n"
        "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge\n"
        "etcd_mvcc_db_total_size_in_use_in_bytes 28672\n"
    )
    # A store that cannot tell its size (closed, or unreachable) has no gauges.
    assert render(StoreHealth(error="closed")) == ""


def test_metrics_are_served_to_authenticated_clients_from_the_real_store(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        store = SqliteStore(str(tmp_path / "state.db"))
        await store.start()
        try:
            async with _client(tmp_path, store) as (api, client):
                resp = await client.get("/metrics")
                assert resp.status == 401  # as kube-apiserver: /metrics needs credentials
                # A bound token holds while its service account exists with the UID in its claims.
                sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "scraper", "namespace": "default", "uid": "uid-1"}}
                await store.create("/registry/core/serviceaccounts/default/scraper", orjson.dumps(sa))
                token, _ = api.signer.issue("default", "scraper", "uid-1", expiration_seconds=600)
                resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                # Issue 18: a service account holds nothing until a role is bound to it.
                assert resp.status == 403
                assert (await resp.json())["message"] == (
                    'forbidden: User "system:serviceaccount:default:scraper" cannot get path "/metrics"')
                await api.authorizer.start()
                try:
                    await authorization.bootstrap(api.registry)
                    rt = lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
                    assert rt is not None
                    await api.registry.create_object(rt, None, bootstrappolicy.binding(
                        "scraper", "system:monitoring", [bootstrappolicy.service_account("default", "scraper")]),
                        manager="test")
                    for _ in range(200):  # the authorizer's cache follows the store's watch
                        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                        if resp.status != 403:
                            break
                        await asyncio.sleep(0.01)
                finally:
                    await api.authorizer.stop()
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                text = await resp.text()
                health = await store.health()
                assert health.size_bytes is not None and health.size_bytes > 0
                # The file's size as the scrape saw it: the store's background work (a checkpoint
                # after the authorizer's writes) may have moved it by a page since.
                scraped = re.search(r"^etcd_mvcc_db_total_size_in_bytes (\S+)$", text, re.M)
                assert scraped is not None and float(scraped.group(1)) > 0
                assert 'apiserver_storage_size_bytes{storage_cluster_id="etcd-0"} ' in text
                assert "etcd_mvcc_db_total_size_in_use_in_bytes " in text
        finally:
            await store.close()

    asyncio.run(main())
