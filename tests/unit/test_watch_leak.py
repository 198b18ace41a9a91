"""Watches whose clients went away leave nothing behind (issue 20, defect 8c).

aiohttp does not cancel a handler when its client disconnects, and a watch on a quiet key
writes nothing that would tell it: 1,000 watches closed by their clients stayed registered
(handler task, store watcher, connection buffers) until their timeout, and the API server's
memory with them. Here 1,000 watches of one name (kubectl's ``delete --wait`` watch) are
opened against a real API server on loopback, counted while open, and closed by the client;
the server must drop every one of them, from its handlers and from the store.
"""

from __future__ import annotations

import asyncio
import pathlib

import aiohttp
import orjson
from aiohttp import web

from kubelite.api import bootstrappolicy
from kubelite.api.registry import lookup
from kubelite.apiserver import authorization
from kubelite.apiserver.pki import ensure_pki
from kubelite.apiserver.server import APIServer, ServerConfig
from kubelite.store import SqliteStore

WATCHES = 1000
GAUGE = ('apiserver_longrunning_requests{component="apiserver",group="",resource="configmaps",scope="resource",'
         'subresource="",verb="WATCH",version="v1"}')


async def _until(condition: object, what: str, limit: float = 20.0) -> None:
    """Polls ``condition`` while the server's loop runs: a bound, not a timing assertion."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


def test_watches_closed_by_their_clients_are_unregistered(tmp_path: pathlib.Path) -> None:
    rbac_bindings = lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
    assert rbac_bindings is not None

    async def main() -> None:
        store = SqliteStore(str(tmp_path / "state.db"))
        await store.start()
        pki = ensure_pki(tmp_path / "pki", cluster_name="leak", service_ip="10.96.0.1")
        api = APIServer(store, pki, ServerConfig(port=0))
        # A bound token holds while its service account exists with the UID in its claims.
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "watcher", "namespace": "default", "uid": "watcher-uid"}}
        await store.create("/registry/core/serviceaccounts/default/watcher", orjson.dumps(sa))
        token, _ = api.signer.issue("default", "watcher", "watcher-uid", expiration_seconds=3600)
        headers = {"Authorization": f"Bearer {token}"}
        # Served as `kubelite up` serves it (aiohttp's TestServer would cancel handlers on
        # disconnect, which the production runner does not).
        runner = web.AppRunner(api.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]

        def make_url(path: str) -> str:
            return f"http://127.0.0.1:{port}{path}"

        await api.registry.start_caches()
        await api.authorizer.start()
        # The service account may do all this once bound to cluster-admin (issue 18: RBAC).
        await authorization.bootstrap(api.registry)
        await api.registry.create_object(rbac_bindings, None, bootstrappolicy.binding(
            "watcher", "cluster-admin", [bootstrappolicy.service_account("default", "watcher")]), manager="test")
        for _ in range(200):
            if api.authorizer.policy().cluster_role_bindings and any(
                    b["metadata"]["name"] == "watcher" for b in api.authorizer.policy().cluster_role_bindings):
                break
            await asyncio.sleep(0.01)
        try:
            url = make_url("/api/v1/namespaces/default/configmaps")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                async with session.post(make_url("/api/v1/namespaces"), json={"metadata": {"name": "default"}},
                                        headers=headers) as r:
                    assert r.status == 201, await r.text()
                async with session.post(url, json={"metadata": {"name": "watched"}}, headers=headers) as r:
                    assert r.status == 201, await r.text()
                base_store_watchers = len(store._watchers)  # the server's own caches, running by now

                async def open_watch() -> aiohttp.ClientResponse:
                    r = await session.get(url, params={"watch": "1", "fieldSelector": "metadata.name=watched"},
                                          headers=headers)
                    assert r.status == 200
                    assert b'"ADDED"' in await r.content.readline()  # served, not just accepted
                    return r

                responses = await asyncio.gather(*(open_watch() for _ in range(WATCHES)))
                assert len(api.rest.watchers) == WATCHES
                assert len(store._watchers) == base_store_watchers + WATCHES
                async with session.get(make_url("/metrics"), headers=headers) as r:
                    assert f"{GAUGE} {WATCHES}\n" in await r.text()

                for resp in responses:
                    resp.close()  # the client goes away; nothing is written to the watched key

                await _until(lambda: len(api.rest.watchers) == 0,
                             f"{len(api.rest.watchers)} watch handlers outlived their clients")
                await _until(lambda: len(store._watchers) == base_store_watchers,
                             f"{len(store._watchers) - base_store_watchers} store watchers outlived their clients")
                async with session.get(make_url("/metrics"), headers=headers) as r:
                    assert "apiserver_longrunning_requests{" not in await r.text()
        finally:
            await api.authorizer.stop()
            for task in list(api.rest.watchers):
                task.cancel()
            await api.registry.stop_caches()
            await runner.cleanup()
            await store.close()

    asyncio.run(main())
