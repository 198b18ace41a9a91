"""Patches that would grow an object past what a request may carry, and patches of the scale
subresource, answered as kube-apiserver answers them (issue 20)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from tests.integration.cluster import Cluster, Raw

pytestmark = pytest.mark.integration

JSON_PATCH = "application/json-patch+json"
MIB = 1024 * 1024


def configmap(raw: Raw, data: dict[str, str]) -> str:
    name = f"pl-{uuid.uuid4().hex[:6]}"
    status, body = raw.json("POST", "/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    assert status == 201, body
    return name


def patch(raw: Raw, path: str, body: Any, ctype: str) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return raw.request("PATCH", path, data, ctype)


def test_json_patch_copies_are_bounded_while_applying(cluster: Cluster) -> None:
    """Fourteen doublings of 1 KiB would be 16 MiB; the copy that passes 3 MiB is refused with
    json-patch's error and nothing is stored (before: all copies made, then a 413; a dozen more
    operations and the API server ran out of memory)."""
    raw = Raw(cluster)
    name = configmap(raw, {"s": "x" * 1024})
    path = f"/api/v1/namespaces/default/configmaps/{name}"
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {}}]
    ops += [{"op": "copy", "from": "/data", "path": "/metadata/annotations/c0"}]
    ops += [{"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/c{i}"}
            for i in range(1, 14)]
    status, body = patch(raw, path, ops, JSON_PATCH)
    assert status == 422, body
    assert body["kind"] == "Status" and body["reason"] == "Invalid", body
    assert "Unable to complete the copy, the accumulated size increase of copy is " in body["message"], body
    assert body["message"].endswith(", exceeding the limit 3145728"), body
    status, stored = raw.request("GET", path)
    assert status == 200 and "annotations" not in stored["metadata"], stored


def test_json_patch_of_more_than_10000_operations_is_413(cluster: Cluster) -> None:
    raw = Raw(cluster)
    name = configmap(raw, {"a": "b"})
    path = f"/api/v1/namespaces/default/configmaps/{name}"
    op = {"op": "test", "path": "/data/a", "value": "b"}
    status, body = patch(raw, path, [op] * 10001, JSON_PATCH)
    assert status == 413, body
    assert body["reason"] == "RequestEntityTooLarge", body
    assert body["message"] == (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    )
    status, body = patch(raw, path, [op] * 10000, JSON_PATCH)
    assert status == 200, body


@pytest.mark.parametrize("ctype", [
    JSON_PATCH, "application/merge-patch+json", "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
])
def test_every_patch_type_bounds_its_result(cluster: Cluster, ctype: str) -> None:
    """A 2 MiB object patched with another 2 MiB is within the limit on each side and over it
    merged: a 413 on every patch path (before: server-side apply went on with 4 MiB, to a 422 on
    the annotations' size here, to the store for fields without a limit of their own). A PodTemplate,
    whose env values have no size limit of their own (a ConfigMap's data stops at 1 MiB)."""
    raw = Raw(cluster)
    name = f"pl-{uuid.uuid4().hex[:6]}"
    container = {"name": "c", "image": "registry.k8s.io/pause:3.10", "env": [{"name": "A", "value": "x" * (2 * MIB)}]}
    status, created = raw.json("POST", "/api/v1/namespaces/default/podtemplates", {
        "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
        "template": {"spec": {"containers": [container]}},
    })
    assert status == 201, str(created)[:300]
    path = f"/api/v1/namespaces/default/podtemplates/{name}"
    annotations = {"b": "y" * (2 * MIB)}
    body: Any
    if ctype == JSON_PATCH:
        body = [{"op": "add", "path": "/metadata/annotations", "value": annotations}]
    elif ctype == "application/apply-patch+yaml":
        path += "?fieldManager=second"
        body = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name, "annotations": annotations}}
    else:
        body = {"metadata": {"annotations": annotations}}
    status, resp = patch(raw, path, body, ctype)
    assert status == 413, (status, str(resp)[:300])
    assert resp["reason"] == "RequestEntityTooLarge" and resp["message"] == "Request entity too large: limit is 3145728"
    status, stored = raw.request("GET", path.partition("?")[0])
    assert status == 200 and "annotations" not in stored["metadata"]


@pytest.mark.parametrize(("body", "code", "message"), [
    ([{"op": "remove", "path": "/nope"}], 422,
     "the server rejected our request due to an error in our request: can't remove a non-existent object 'nope'"),
    ([{"op": "bogus", "path": "/spec"}], 422,
     "the server rejected our request due to an error in our request: Unknown operation 'bogus'"),
    ([5], 400, "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
    ({"spec": {"replicas": 2}}, 400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
])
def test_scale_json_patch_errors_are_4xx(cluster: Cluster, body: Any, code: int, message: str) -> None:
    """The scale subresource applied JSON patches without the main patch path's error mapping:
    each of these was a 500 (JsonPatchConflict, InvalidJsonPatch, TypeError)."""
    name = f"pl-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "deployment", name, "--image=registry.k8s.io/pause:3.10", check=True)
    raw = Raw(cluster)
    status, resp = patch(raw, f"/apis/apps/v1/namespaces/default/deployments/{name}/scale", body, JSON_PATCH)
    assert (status, resp.get("kind"), resp.get("code"), resp.get("message")) == (code, "Status", code, message), resp
    status, resp = patch(raw, f"/apis/apps/v1/namespaces/default/deployments/{name}/scale",
                         [{"op": "replace", "path": "/spec/replicas", "value": 3}], JSON_PATCH)
    assert status == 200 and resp["spec"]["replicas"] == 3, resp
    cluster.kubectl("delete", "deployment", name, "--wait=false")


@pytest.mark.parametrize(("body", "message"), [
    ({"spec": {"containers": [{"image": "x"}]}}, "does not contain declared merge key: name"),
    ({"spec": {"$patch": 5}}, "unknown patch type: %!s(int64=5) in map: map[$patch:5]"),
    ({"spec": {"$setElementOrder/containers": 5}}, "expected a []interface {}, but received a int64"),
])
def test_strategic_merge_patch_errors_are_400(cluster: Cluster, body: Any, message: str) -> None:
    """kube-apiserver answers these with a bare 500 (a plain error from the patch library); they
    are the client's mistake, so a 400 with the same text here (before: 500)."""
    raw = Raw(cluster)
    name = f"pl-{uuid.uuid4().hex[:6]}"
    status, created = raw.json("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    })
    assert status == 201, created
    status, resp = patch(raw, f"/api/v1/namespaces/default/pods/{name}", body,
                         "application/strategic-merge-patch+json")
    assert (status, resp.get("kind"), resp.get("reason")) == (400, "Status", "BadRequest"), resp
    assert message in resp["message"], resp
    raw.request("DELETE", f"/api/v1/namespaces/default/pods/{name}")
