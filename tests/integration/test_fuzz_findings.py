"""What the fuzz runs of issue 20 found, each as the request that found it (made minimal)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.cluster import Cluster, Raw

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("path", [
    "/api/v1/namespaces/default/configmaps",
    "/apis/events.k8s.io/v1/namespaces/default/events",  # where the fuzzer found it
])
@pytest.mark.parametrize("entry", [{"manager": None}, None])
def test_null_in_managed_fields_is_a_422_not_a_500(cluster: Cluster, path: str, entry: Any) -> None:
    """JSON null in a managedFields entry decodes into Go's zero values (kube-apiserver then
    refuses the empty operation); it was a 500 (AttributeError on None)."""
    raw = Raw(cluster)
    status, body = raw.json("POST", path, {"metadata": {"generateName": "fz-", "managedFields": [entry]}})
    assert (status, body.get("kind"), body.get("reason")) == (422, "Status", "Invalid"), body
    causes = body["details"]["causes"]
    assert {"reason": "FieldValueInvalid", "message": 'Invalid value: "": must be `Apply` or `Update`',
            "field": "metadata.managedFields[0].operation"} in causes, causes


def test_nulls_in_typed_fields_decode_into_zero_values(cluster: Cluster) -> None:
    """Each of these nulls was a 500 (AttributeError or TypeError on None in validation or
    defaulting): Go's decoder leaves a zero value there, or nothing for a pointer."""
    raw = Raw(cluster)
    status, pod = raw.json("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "fz-", "labels": {"a": None}, "annotations": {"b": None}, "finalizers": None},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "env": [{"name": "E", "value": None}],
                            "resources": {"requests": None, "limits": {"cpu": None}}, "ports": None}],
            "tolerations": None, "nodeSelector": {"n": None}, "volumes": None, "dnsConfig": {"nameservers": None},
        },
    })
    assert status == 201, pod
    assert pod["metadata"]["labels"] == {"a": ""} and pod["metadata"]["annotations"] == {"b": ""}
    assert pod["spec"]["nodeSelector"] == {"n": ""}
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "0"}, "requests": {"cpu": "0"}}  # defaulted
    raw.request("DELETE", f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}?gracePeriodSeconds=0")
    for path, body in [
        ("/api/v1/namespaces/default/configmaps", {"metadata": {"generateName": "fz-", "finalizers": [None]}}),
        ("/api/v1/namespaces/default/services", {"metadata": {"generateName": "fz-"},
                                                 "spec": {"ports": [None], "externalIPs": [None]}}),
        ("/apis/apps/v1/namespaces/default/deployments", {"metadata": {"generateName": "fz-"}, "spec": {
            "selector": {"matchExpressions": [None]}, "strategy": {"rollingUpdate": {"maxSurge": None}},
            "template": {"metadata": {"labels": {"a": None}}, "spec": {"containers": [None]}}}}),
    ]:
        status, resp = raw.json("POST", path + "?dryRun=All", body)
        assert status == 422 and resp["kind"] == "Status" and resp["reason"] == "Invalid", (path, resp)
