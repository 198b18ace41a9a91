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
