"""Quantities and the QoS class: one computation shared by the API server and the node agent."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.resource import pod_qos_class


def _pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "resources": r} for i, r in enumerate(init)]
    return spec


@pytest.mark.parametrize(("spec", "expected"), [
    (_pod({}), "BestEffort"),
    (_pod({"requests": {"ephemeral-storage": "1Gi"}}), "BestEffort"),
    (_pod({"requests": {"cpu": "0"}}), "BestEffort"),
    (_pod({"limits": {"cpu": "1", "memory": "1Gi"}}), "Guaranteed"),
    # The regression: equal by value, not by spelling. Stored Burstable, then reported Guaranteed.
    (_pod({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}), "Guaranteed"),
    (_pod({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}), "Burstable"),
    (_pod({"limits": {"cpu": "1"}}), "Burstable"),
    (_pod({"limits": {"cpu": "1", "memory": "1Gi"}}, {}), "Burstable"),
    (_pod({"limits": {"cpu": "1", "memory": "1Gi"}}, init=({"limits": {"cpu": "2", "memory": "1Gi"}},)), "Guaranteed"),
    (_pod({"requests": {"memory": "10Mi"}}), "Burstable"),
])
def test_pod_qos_class(spec: dict[str, Any], expected: str) -> None:
    assert pod_qos_class(spec) == expected
