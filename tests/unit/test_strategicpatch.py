"""Strategic merge patch: the classic cases of apimachinery's strategicpatch tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.schema import schema_for
from kubelite.api.strategicpatch import PatchError, apply_strategic_merge_patch, go_v

POD = schema_for("", "v1", "Pod")
SERVICE = schema_for("", "v1", "Service")
DEPLOYMENT = schema_for("apps", "v1", "Deployment")


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx:1",
                    "args": ["-x", "-y"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                },
                {"name": "sidecar", "image": "busybox"},
            ]
        },
    }


def smp(original: dict[str, Any], patch: dict[str, Any], schema: Any = POD) -> dict[str, Any]:
    return apply_strategic_merge_patch(original, patch, schema)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["containers"]
    return result


def test_containers_merge_by_name() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "sidecar", "image": "busybox:2"}]}})
    assert [c["name"] for c in containers(out)] == ["app", "sidecar"]
    assert containers(out)[1] == {"name": "sidecar", "image": "busybox:2"}
    assert containers(out)[0]["image"] == "nginx:1"


def test_new_container_lands_before_server_only_items_without_order_directive() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "new", "image": "redis"}]}})
    assert [c["name"] for c in containers(out)] == ["new", "app", "sidecar"]


def test_env_merges_by_name_inside_a_container() -> None:
    patch = {
        "spec": {
            "containers": [
                {"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}
            ]
        }
    }
    env = containers(smp(pod(), patch))[0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"A": "1", "B": "20", "C": "3"}


def test_ports_merge_by_container_port() -> None:
    patch = {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "http"}]}]}}
    assert containers(smp(pod(), patch))[0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"}
    ]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    out = smp(svc, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}, SERVICE)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]


def test_patch_delete_removes_a_container() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}})
    assert [c["name"] for c in containers(out)] == ["app"]


def test_patch_replace_on_a_list_and_on_a_map() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}})
    assert containers(out) == [{"name": "only", "image": "x"}]
    out = smp(pod(), {"metadata": {"labels": {"$patch": "replace", "new": "1"}}})
    assert out["metadata"]["labels"] == {"new": "1"}


def test_set_element_order_puts_the_list_in_the_given_order() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "app"}],
            "containers": [{"name": "new", "image": "redis"}],
        }
    }
    assert [c["name"] for c in containers(smp(pod(), patch))] == ["sidecar", "new", "app"]


def test_kubectl_apply_style_removal_with_set_element_order() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"$patch": "delete", "name": "sidecar"}],
        }
    }
    assert [c["name"] for c in containers(smp(pod(), patch))] == ["app"]


def test_null_deletes_a_label() -> None:
    out = smp(pod(), {"metadata": {"labels": {"tier": None}}})
    assert out["metadata"]["labels"] == {"app": "web"}


def test_finalizers_union_and_delete_from_primitive_list() -> None:
    out = smp(pod(), {"metadata": {"finalizers": ["b", "c"]}})
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c"]
    assert len(out["metadata"]["finalizers"]) == 3
    out = smp(pod(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_retain_keys_switches_deployment_strategy() -> None:
    dep = {
        "spec": {
            "replicas": 1,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        }
    }
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = smp(dep, patch, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["spec"]["replicas"] == 1


def test_retain_keys_must_list_every_patched_field() -> None:
    dep = {"spec": {"strategy": {"type": "RollingUpdate"}}}
    with pytest.raises(PatchError) as err:
        smp(dep, {"spec": {"strategy": {"$retainKeys": ["rollingUpdate"], "type": "Recreate"}}}, DEPLOYMENT)
    assert err.value.message == "invalid patch format of retainKeys"
    assert err.value.code == 400


def test_atomic_list_is_replaced() -> None:
    out = smp(pod(), {"spec": {"containers": [{"name": "app", "args": ["-z"]}]}})
    assert containers(out)[0]["args"] == ["-z"]


def test_fields_without_schema_merge_maps_and_replace_lists() -> None:
    original = {"data": {"a": "1"}, "things": [{"name": "x"}, {"name": "y"}], "nested": {"k": {"a": 1}}}
    out = apply_strategic_merge_patch(
        original, {"data": {"b": "2"}, "things": [{"name": "z"}], "nested": {"k": {"b": 2}}}, None
    )
    assert out == {"data": {"a": "1", "b": "2"}, "things": [{"name": "z"}], "nested": {"k": {"a": 1, "b": 2}}}


def test_inputs_are_not_mutated() -> None:
    original, patch = (
        pod(),
        {
            "metadata": {"labels": {"app": None}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]},
        },
    )
    before_original, before_patch = copy.deepcopy(original), copy.deepcopy(patch)
    out = smp(original, patch)
    out["spec"]["containers"][0]["image"] = "changed"
    assert original == before_original
    assert patch == before_patch


def test_directives_inside_new_values_are_dropped() -> None:
    out = smp({"spec": {}}, {"spec": {"securityContext": {"$patch": "delete"}, "hostname": "h"}})
    assert out == {"spec": {"hostname": "h"}}


def test_missing_merge_key_is_reported_like_kube_apiserver() -> None:
    with pytest.raises(PatchError) as err:
        smp(pod(), {"spec": {"containers": [{"image": "x"}]}})
    assert err.value.message == "map: map[image:x] does not contain declared merge key: name"
    assert err.value.code == 500


def test_unknown_patch_directive() -> None:
    with pytest.raises(PatchError) as err:
        smp(pod(), {"spec": {"$patch": "merge"}})
    assert err.value.message == "unknown patch type: merge in map: map[$patch:merge]"
    with pytest.raises(PatchError) as err:
        smp(pod(), {"spec": {"containers": [{"name": "app", "$patch": "merge"}]}})
    assert err.value.message == "merging lists cannot yet be specified in the patch"


def test_bad_directive_formats_are_bad_requests() -> None:
    with pytest.raises(PatchError) as err:
        smp(pod(), {"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})
    assert err.value.message == "invalid patch format of primitive list"
    assert err.value.status_error().code == 400
    with pytest.raises(PatchError) as err:
        smp(pod(), {"spec": {"$setElementOrder": []}})
    assert err.value.message == "invalid patch format of setElementOrder list"


def test_set_element_order_mismatch() -> None:
    patch = {"spec": {"$setElementOrder/containers": [{"name": "app"}], "containers": [{"name": "other"}]}}
    with pytest.raises(PatchError) as err:
        smp(pod(), patch)
    assert err.value.message.startswith(
        "The order in patch list:\n[map[name:other]]\n doesn't match $setElementOrder"
    )


def test_go_value_formatting() -> None:
    assert go_v({"b": [1, 2.5, None], "a": True}) == "map[a:true b:[1 2.5 <nil>]]"
    assert go_v(1e6) == "1e+06"
    assert go_v(123456.0) == "123456"


def test_patch_errors_kube_apiserver_answers_as_500_are_400_here() -> None:
    """A missing merge key or an unknown directive is the client's mistake: kube-apiserver's bare
    500 (issue 20: no input reaches a 500) becomes a 400 BadRequest with the same text."""
    for patch in ({"spec": {"containers": [{"image": "x"}]}}, {"spec": {"$patch": "merge"}}):
        with pytest.raises(PatchError) as err:
            smp(pod(), patch)
        assert err.value.code == 500  # what kube-apiserver answers
        status = err.value.status_error()
        assert (status.code, status.reason, status.message) == (400, "BadRequest", err.value.message)
