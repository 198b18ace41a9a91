"""A create's managedFields entry comes from a cache keyed on the object's skeleton; it must
be exactly what the full comparison computes, for every shape the served kinds take."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from kubelite.api import managedfields, schema
from kubelite.api.registry import for_kind

EXAMPLES = pathlib.Path(__file__).parents[2] / "examples"


def _objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": None},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "x"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": None},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": "junk"},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a/b"]},
         "spec": {"containers": [{"name": "c", "image": "busybox", "env": [{"name": "A", "value": "1"}],
                                  "ports": [{"containerPort": 80}]}], "nodeName": None}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": None}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}},
    ]
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        objs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind")]
    return objs


@pytest.mark.parametrize("obj", _objects(), ids=lambda o: f"{o['kind']}-{o['metadata'].get('name')}")
@pytest.mark.parametrize("subresource", ["", "status"])
def test_create_entry_is_the_full_comparison(
    obj: dict[str, Any], subresource: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, _, version = obj["apiVersion"].rpartition("/")
    rt = for_kind(obj["apiVersion"], obj["kind"])
    sch = schema.schema_for(group, version, obj["kind"]) if rt else None

    def record(o: dict[str, Any]) -> Any:
        managedfields.update_managed_fields(
            None, o, manager="m", api_version=obj["apiVersion"], now="t", schema=sch, subresource=subresource
        )
        return o["metadata"].get("managedFields")

    cold, cached = record(copy.deepcopy(obj)), record(copy.deepcopy(obj))
    with monkeypatch.context() as m:
        m.setattr(managedfields, "_created_entry", lambda *a: None)  # the general path
        general = record(copy.deepcopy(obj))
    assert cold == cached == general


def test_objects_of_one_shape_share_an_entry_but_not_its_dicts() -> None:
    sch = schema.schema_for("", "v1", "ConfigMap")
    a: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}}
    b: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "2"}}
    for o in (a, b):
        managedfields.update_managed_fields(None, o, manager="m", api_version="v1", now="t", schema=sch)
    assert a["metadata"]["managedFields"] == b["metadata"]["managedFields"]
    a["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:x"] = {}
    assert "f:x" not in b["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]
