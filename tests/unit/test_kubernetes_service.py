"""The `kubernetes` Service controller over a real store and registry: a deleted Service comes
back at the first address of the service CIDR, edited ports and endpoints are put back, and a
pass over objects that are as they should be writes nothing."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from kubelite.api.registry import lookup
from kubelite.apiserver.pki import ensure_pki
from kubelite.apiserver.registry import Target
from kubelite.apiserver.server import APIServer, ServerConfig
from kubelite.store import SqliteStore

SERVICES = lookup("", "v1", "services")
ENDPOINTS = lookup("", "v1", "endpoints")
ENDPOINTSLICES = lookup("discovery.k8s.io", "v1", "endpointslices")


def _run(tmp_path: pathlib.Path, body: Any, interval: float = 10.0) -> None:
    async def main() -> None:
        store = SqliteStore(str(tmp_path / "state.db"))
        await store.start()
        pki = ensure_pki(tmp_path / "pki", cluster_name="ksvc", service_ip="10.96.0.1")
        api = APIServer(store, pki, ServerConfig(port=16443, advertise_address="10.244.0.1",
                                                 kubernetes_service_interval=interval))
        try:
            await api.bootstrap()
            await body(api)
        finally:
            await api.kubernetes_service.stop()
            await store.close()

    asyncio.run(main())


async def _get(api: APIServer, rt: Any, name: str = "kubernetes") -> dict[str, Any]:
    return await api.registry.get_object(rt, "default", name)


def test_a_pass_over_correct_objects_writes_nothing(tmp_path: pathlib.Path) -> None:
    async def body(api: APIServer) -> None:
        svc = await _get(api, SERVICES)
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        assert svc["spec"]["ports"] == [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 16443}]
        ep = await _get(api, ENDPOINTS)
        assert ep["subsets"] == [{"addresses": [{"ip": "10.244.0.1"}],
                                  "ports": [{"name": "https", "port": 16443, "protocol": "TCP"}]}]
        rev = api.store.revision
        await api.kubernetes_service.reconcile()
        assert api.store.revision == rev

    _run(tmp_path, body)


def test_deleted_service_comes_back_with_its_cluster_ip(tmp_path: pathlib.Path) -> None:
    async def body(api: APIServer) -> None:
        assert SERVICES and ENDPOINTSLICES
        await api.registry.delete_named(SERVICES, "default", "kubernetes", {})
        await api.registry.delete_named(ENDPOINTSLICES, "default", "kubernetes", {})
        api.kubernetes_service.start()
        for _ in range(200):
            if api.kubernetes_service.passes >= 2:
                break
            await asyncio.sleep(0.01)
        svc = await _get(api, SERVICES)
        assert svc["spec"]["clusterIP"] == "10.96.0.1" and svc["spec"]["clusterIPs"] == ["10.96.0.1"]
        assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
        eps = await _get(api, ENDPOINTSLICES)
        assert eps["endpoints"][0]["addresses"] == ["10.244.0.1"]

    _run(tmp_path, body, interval=0.05)


def test_edited_ports_and_endpoints_are_put_back(tmp_path: pathlib.Path) -> None:
    async def body(api: APIServer) -> None:
        assert SERVICES and ENDPOINTS

        def ports(old: dict[str, Any]) -> dict[str, Any]:
            old["spec"]["ports"] = [{"name": "web", "protocol": "TCP", "port": 8080, "targetPort": 8080}]
            return old

        def addresses(old: dict[str, Any]) -> dict[str, Any]:
            old["subsets"][0]["addresses"] = [{"ip": "192.0.2.7"}]
            return old

        await api.registry.guaranteed_update(Target(SERVICES, "default", "kubernetes", None), ports, manager="t")
        await api.registry.guaranteed_update(Target(ENDPOINTS, "default", "kubernetes", None), addresses, manager="t")
        await api.kubernetes_service.reconcile()
        svc = await _get(api, SERVICES)
        assert svc["spec"]["ports"] == [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 16443}]
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        ep = await _get(api, ENDPOINTS)
        assert ep["subsets"][0]["addresses"] == [{"ip": "10.244.0.1"}]

    _run(tmp_path, body)
