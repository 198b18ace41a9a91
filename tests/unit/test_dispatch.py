"""The subresource table is what the API server dispatches, discovery lists and OpenAPI describes."""

from __future__ import annotations

import asyncio
import pathlib

import orjson

from kubelite.api import openapi
from kubelite.api.registry import RESOURCES, SUBRESOURCES
from kubelite.apiserver import discovery
from kubelite.apiserver.handlers import RestHandlers
from kubelite.apiserver.registry import Registry, parse_path
from kubelite.store import SqliteStore


def test_every_subresource_of_a_resource_has_a_handler_and_a_route(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        handlers = RestHandlers(Registry(SqliteStore(str(tmp_path / "state.db"))))
        assert handlers.served_subresources() == set(SUBRESOURCES)
        for r in RESOURCES:
            base = f"/api/{r.version}" if not r.group else f"/apis/{r.group}/{r.version}"
            ns = "/namespaces/default" if r.namespaced else ""
            for sub in r.subresources:
                assert sub in SUBRESOURCES, (r.plural, sub)
                target = parse_path(f"{base}{ns}/{r.plural}/x/{sub}")
                assert target is not None and target.subresource == sub, (r.plural, sub)

    asyncio.run(main())


def test_discovery_and_openapi_list_the_table_and_nothing_else() -> None:
    advertised = set()
    for r in RESOURCES:
        doc = discovery.api_resource_list(r.group_version)
        assert doc is not None
        for item in orjson.loads(doc)["resources"]:
            plural, _, sub = item["name"].partition("/")
            if sub and plural == r.plural:
                assert tuple(item["verbs"]) == SUBRESOURCES[sub].verbs
                advertised.add((r.plural, sub))
    assert advertised == {(r.plural, s) for r in RESOURCES for s in r.subresources}
    assert ("pods", "ephemeralcontainers") not in advertised and ("pods", "eviction") in advertised
    paths = orjson.loads(openapi.v3_document("api/v1")[0])["paths"]  # type: ignore[index]
    assert not [p for p in paths if p.endswith("/ephemeralcontainers")]
    # The proxy subresources are served (issue 15): connect operations for every HTTP method, with and without a path.
    assert ("pods", "proxy") in advertised and ("services", "proxy") in advertised and ("nodes", "proxy") in advertised
    for path in ("/api/v1/namespaces/{namespace}/services/{name}/proxy", "/api/v1/nodes/{name}/proxy/{path}"):
        assert sorted(m for m in paths[path] if m != "parameters") == [
            "delete", "get", "head", "options", "patch", "post", "put"]
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/proxy"]["get"]["operationId"] == "connectCoreV1GetNamespacedPodProxy"


def test_proxy_paths_parse_with_the_backend_path() -> None:
    target = parse_path("/api/v1/namespaces/ns/services/https:web:8443/proxy/a/b/")
    assert target is not None and (target.rt.plural, target.name, target.subresource) == ("services", "https:web:8443", "proxy")
    assert parse_path("/api/v1/namespaces/ns/pods/web/log/extra") is None
