"""The /openapi/v3 documents: what kubectl explain and kubectl's field-validation check read."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from kubelite.api import openapi
from kubelite.api.registry import RESOURCES

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def doc(key: str) -> dict[str, Any]:
    found = openapi.v3_document(key)
    assert found is not None, key
    parsed: dict[str, Any] = orjson.loads(found[0])
    return parsed


def operations(d: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in d["paths"].items() for m, op in item.items() if m in METHODS]


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix("#/components/schemas/")} if "$ref" in node else set()
        for v in node.values():
            found |= refs(v)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def test_index_lists_every_document_with_its_sha512_hash() -> None:
    paths = openapi.v3_index()["paths"]
    assert {"api", "apis", "api/v1", "apis/apps", "apis/apps/v1", "apis/discovery.k8s.io/v1"} <= set(paths)
    for key, entry in paths.items():
        body, digest = openapi.v3_document(key) or (b"", "")
        assert digest == hashlib.sha512(body).hexdigest().upper()
        assert entry == {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}


def test_unknown_document_is_none() -> None:
    assert openapi.v3_document("apis/example.com/v1") is None
    assert openapi.v3_document("") is None


def test_document_header() -> None:
    d = doc("api/v1")
    assert d["openapi"] == "3.0.0"
    assert d["info"]["title"] == "Kubernetes"


@pytest.mark.parametrize("key", sorted(openapi.v3_index()["paths"]))
def test_schemas_are_closed_under_ref(key: str) -> None:
    d = doc(key)
    schemas = d["components"]["schemas"]
    assert refs(d["paths"]) <= set(schemas)
    assert refs(schemas) <= set(schemas)


def test_only_reachable_schemas_are_included() -> None:
    schemas = doc("apis/coordination.k8s.io/v1")["components"]["schemas"]
    assert "io.k8s.api.coordination.v1.LeaseSpec" in schemas
    assert "io.k8s.api.core.v1.PodSpec" not in schemas


def test_every_served_kind_is_described_in_its_group_version_document() -> None:
    for r in RESOURCES:
        key = f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"
        schemas = doc(key)["components"]["schemas"]
        gvks = [g for s in schemas.values() for g in s.get("x-kubernetes-group-version-kind", [])]
        assert {"group": r.group, "version": r.version, "kind": r.kind} in gvks, r.kind


def test_namespaced_resource_paths() -> None:
    paths = doc("api/v1")["paths"]
    pods = "/api/v1/namespaces/{namespace}/pods"
    assert set(paths[pods]) == {"parameters", "get", "post", "delete"}
    assert set(paths[pods + "/{name}"]) == {"parameters", "get", "put", "patch", "delete"}
    assert set(paths[pods + "/{name}/status"]) == {"parameters", "get", "put", "patch"}
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/watch/namespaces/{namespace}/pods"]["get"]["x-kubernetes-action"] == "watchlist"
    assert paths["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-action"] == "watch"
    assert [p["name"] for p in paths[pods + "/{name}"]["parameters"]] == ["name", "namespace", "pretty"]


def test_cluster_scoped_resource_paths() -> None:
    paths = doc("api/v1")["paths"]
    assert paths["/api/v1/nodes/{name}"]["get"]["operationId"] == "readCoreV1Node"
    assert paths["/api/v1/watch/nodes"]["get"]["operationId"] == "watchCoreV1NodeList"
    assert "/api/v1/namespaces/{namespace}/nodes" not in paths
    # Namespaces have no deletecollection in kube-apiserver.
    assert "delete" not in paths["/api/v1/namespaces"]


def test_operation_ids_and_actions_are_kubernetes_spellings() -> None:
    ops = {
        op["operationId"]: (path, method, op)
        for d in map(doc, ("api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1"))
        for path, method, op in operations(d)
    }
    expected = {
        "readCoreV1NamespacedPod": ("/api/v1/namespaces/{namespace}/pods/{name}", "get", "get"),
        "deleteCoreV1CollectionNamespacedPod": (
            "/api/v1/namespaces/{namespace}/pods",
            "delete",
            "deletecollection",
        ),
        "createCoreV1NamespacedPodEviction": (
            "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
            "post",
            "post",
        ),
        "connectCoreV1GetNamespacedPodExec": (
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            "get",
            "connect",
        ),
        "readCoreV1NamespacedPodLog": ("/api/v1/namespaces/{namespace}/pods/{name}/log", "get", "get"),
        "replaceCoreV1NamespaceFinalize": ("/api/v1/namespaces/{name}/finalize", "put", "put"),
        "patchAppsV1NamespacedDeploymentScale": (
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            "patch",
            "patch",
        ),
        "listCoordinationV1NamespacedLease": (
            "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            "get",
            "list",
        ),
        "getCoreV1APIResources": ("/api/v1/", "get", None),
    }
    for op_id, (path, method, action) in expected.items():
        got_path, got_method, op = ops[op_id]
        assert (got_path, got_method, op.get("x-kubernetes-action")) == (path, method, action), op_id


def test_operation_ids_are_unique() -> None:
    for key in openapi.v3_index()["paths"]:
        ids = [op["operationId"] for _, _, op in operations(doc(key))]
        assert len(ids) == len(set(ids)), key


@pytest.mark.parametrize("key", ["api/v1", "apis/apps/v1", "apis/networking.k8s.io/v1"])
def test_every_write_operation_offers_server_side_field_validation(key: str) -> None:
    # kubectl sends ?fieldValidation=Strict only if the kind's PATCH operation lists the parameter
    # among its own (not the path's) parameters; without it kubectl falls back to /openapi/v2.
    writes = [
        (p, m, op)
        for p, m, op in operations(doc(key))
        if m in ("post", "put", "patch") and op["x-kubernetes-action"] != "connect"
    ]
    assert writes
    for path, method, op in writes:
        names = {p["name"] for p in op["parameters"]}
        assert {"dryRun", "fieldManager", "fieldValidation"} <= names, (path, method)
        if method == "patch":
            assert "force" in names


def test_subresource_operations_carry_their_own_kind() -> None:
    paths = doc("apis/apps/v1")["paths"]
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
    }
    status = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert status["put"]["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    body = status["put"]["requestBody"]["content"]["*/*"]["schema"]
    assert body == {"$ref": "#/components/schemas/io.k8s.api.apps.v1.Deployment"}


def test_patch_body_lists_the_patch_media_types() -> None:
    patch = doc("api/v1")["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert set(patch["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    }


def test_root_documents() -> None:
    assert doc("api")["paths"]["/api/"]["get"]["operationId"] == "getCoreAPIVersions"
    assert doc("apis")["paths"]["/apis/"]["get"]["operationId"] == "getAPIVersions"
    group = doc("apis/discovery.k8s.io")["paths"]["/apis/discovery.k8s.io/"]["get"]
    assert group["operationId"] == "getDiscoveryAPIGroup"
