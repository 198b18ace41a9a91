"""Server-side apply and managedFields: the kubectl flows, checked against Kubernetes' encodings."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubelite.api.apply import LAST_APPLIED, ApplyConflict, server_side_apply
from kubelite.api.errors import StatusError
from kubelite.api.managedfields import (
    default_manager,
    fields_of,
    from_fields_v1,
    path_string,
    to_fields_v1,
    update_managed_fields,
)
from kubelite.api.schema import schema_for

DEPLOYMENT = schema_for("apps", "v1", "Deployment")
POD = schema_for("", "v1", "Pod")
SERVICE = schema_for("", "v1", "Service")
T0, T1, T2, T3 = (f"2025-01-0{i}T00:00:00Z" for i in range(1, 5))


def deployment(replicas: int = 2, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": containers
                    if containers is not None
                    else [{"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }


def apply(
    live: dict[str, Any] | None,
    cfg: dict[str, Any],
    *,
    manager: str = "kubectl",
    force: bool = False,
    now: str = T0,
    schema: Any = DEPLOYMENT,
    version: str = "apps/v1",
) -> dict[str, Any]:
    out = server_side_apply(
        live, cfg, manager=manager, force=force, schema=schema, api_version=version, now=now
    )
    if live is None:
        out["metadata"].update(uid="uid-1", resourceVersion="1", creationTimestamp=T0)
    return out


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def test_create_via_apply_records_the_applied_fields() -> None:
    obj = apply(None, deployment())
    assert obj["spec"]["replicas"] == 2
    [entry] = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert entry["apiVersion"] == "apps/v1" and entry["time"] == T0 and entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"nginx"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}
                            },
                        }
                    }
                },
            },
        },
    }
    assert list(entry["fieldsV1"]["f:spec"]) == ["f:replicas", "f:selector", "f:template"]


def test_reapply_unchanged_changes_nothing() -> None:
    obj = apply(None, deployment())
    assert apply(obj, deployment(), now=T1) == obj


def test_apply_removing_an_owned_field_removes_it() -> None:
    obj = apply(None, deployment())
    cfg = deployment()
    del cfg["spec"]["replicas"]
    del cfg["metadata"]["labels"]
    out = apply(obj, cfg, now=T1)
    assert "replicas" not in out["spec"]
    assert "labels" not in out["metadata"]
    assert "f:replicas" not in entries(out)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert entries(out)[("kubectl", "Apply")]["time"] == T1


def test_field_owned_by_another_manager_survives_removal_from_the_config() -> None:
    obj = apply(None, deployment())
    obj2 = apply(obj, deployment(), manager="other")
    cfg = deployment()
    del cfg["spec"]["replicas"]
    out = apply(obj2, cfg, now=T1)
    assert out["spec"]["replicas"] == 2


def test_conflict_with_another_manager_has_kubernetes_message_and_causes() -> None:
    obj = apply(None, deployment())
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 5
    update_managed_fields(
        obj, scaled, manager="kubectl-client-side-apply", api_version="apps/v1", now=T1, schema=DEPLOYMENT
    )
    with pytest.raises(ApplyConflict) as err:
        apply(scaled, deployment(replicas=3), now=T2)
    e = err.value
    assert isinstance(e, StatusError) and e.code == 409 and e.reason == "Conflict"
    assert (
        e.message
        == 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert e.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }
    assert e.conflicts == [("kubectl-client-side-apply", ".spec.replicas")]


def test_several_conflicts_use_the_plural_form() -> None:
    obj = apply(None, deployment())
    edited = copy.deepcopy(obj)
    edited["spec"]["replicas"] = 5
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    update_managed_fields(
        obj, edited, manager="kubectl-edit", api_version="apps/v1", now=T1, schema=DEPLOYMENT
    )
    cfg = deployment(
        replicas=3, containers=[{"name": "nginx", "image": "nginx:3", "ports": [{"containerPort": 80}]}]
    )
    with pytest.raises(ApplyConflict) as err:
        apply(edited, cfg, now=T2)
    assert err.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image'
    )


def test_force_takes_ownership() -> None:
    obj = apply(None, deployment())
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 5
    update_managed_fields(
        obj, scaled, manager="kubectl-scale", api_version="apps/v1", now=T1, schema=DEPLOYMENT
    )
    out = apply(scaled, deployment(replicas=3), force=True, now=T2)
    assert out["spec"]["replicas"] == 3
    assert ("kubectl-scale", "Update") not in entries(out)
    assert "f:replicas" in entries(out)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]


def test_same_value_is_shared_not_a_conflict() -> None:
    obj = apply(None, deployment())
    out = apply(obj, deployment(), manager="someone-else", now=T1)
    assert out["spec"] == obj["spec"]
    assert ("someone-else", "Apply") in entries(out) and ("kubectl", "Apply") in entries(out)


def test_update_by_another_manager_moves_ownership() -> None:
    obj = apply(None, deployment())
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 7
    scaled["metadata"]["labels"]["team"] = "a"
    update_managed_fields(
        obj, scaled, manager="kubectl-edit", api_version="apps/v1", now=T1, schema=DEPLOYMENT
    )
    got = entries(scaled)
    assert got[("kubectl-edit", "Update")]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:team": {}}},
        "f:spec": {"f:replicas": {}},
    }
    assert got[("kubectl-edit", "Update")]["time"] == T1
    assert "f:replicas" not in got[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert [e["operation"] for e in scaled["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_update_that_changes_nothing_keeps_entries_and_time() -> None:
    obj = apply(None, deployment())
    same = copy.deepcopy(obj)
    update_managed_fields(obj, same, manager="kubectl-edit", api_version="apps/v1", now=T1, schema=DEPLOYMENT)
    assert same["metadata"]["managedFields"] == obj["metadata"]["managedFields"]


def test_create_records_everything_set_with_kubernetes_markers() -> None:
    p: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"run": "p"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
            ],
            "dnsPolicy": "ClusterFirst",
        },
        "status": {"phase": "Pending"},
    }
    update_managed_fields(None, p, manager="kubectl-create", api_version="v1", now=T0, schema=POD)
    [entry] = p["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create" and entry["operation"] == "Update"
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:run": {}}},
        "f:spec": {
            "f:containers": {
                'k:{"name":"c"}': {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {
                        ".": {},
                        'k:{"containerPort":80,"protocol":"TCP"}': {
                            ".": {},
                            "f:containerPort": {},
                            "f:protocol": {},
                        },
                    },
                }
            },
            "f:dnsPolicy": {},
        },
    }


def test_reset_and_untracked_objects() -> None:
    obj = apply(None, deployment())
    cleared = copy.deepcopy(obj)
    cleared["metadata"]["managedFields"] = [{}]
    update_managed_fields(obj, cleared, manager="m", api_version="apps/v1", now=T1, schema=DEPLOYMENT)
    assert "managedFields" not in cleared["metadata"]
    later = copy.deepcopy(cleared)
    later["spec"]["replicas"] = 9
    update_managed_fields(cleared, later, manager="m", api_version="apps/v1", now=T2, schema=DEPLOYMENT)
    assert "managedFields" not in later["metadata"]


def test_container_list_map_merge_and_removal() -> None:
    obj = apply(None, deployment())
    two: list[dict[str, Any]] = [
        {"name": "side", "image": "busybox"},
        {
            "name": "nginx",
            "image": "nginx:1",
            "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
        },
    ]
    out = apply(obj, deployment(containers=two), now=T1)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["side", "nginx"]
    assert cs[1]["ports"] == [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]
    fields = entries(out)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(fields) == {'k:{"name":"nginx"}', 'k:{"name":"side"}'}
    assert 'k:{"containerPort":53,"protocol":"UDP"}' in fields['k:{"name":"nginx"}']["f:ports"]
    back = apply(out, deployment(containers=[{"name": "nginx", "image": "nginx:1"}]), now=T2)
    assert back["spec"]["template"]["spec"]["containers"] == [{"name": "nginx", "image": "nginx:1"}]


def test_apply_keeps_items_other_managers_added() -> None:
    obj = apply(None, deployment())
    extra = copy.deepcopy(obj)
    extra["spec"]["template"]["spec"]["containers"].append({"name": "injected", "image": "proxy"})
    update_managed_fields(obj, extra, manager="injector", api_version="apps/v1", now=T1, schema=DEPLOYMENT)
    out = apply(extra, deployment(), now=T2)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx", "injected"]


def test_service_ports_keyed_by_port_and_protocol() -> None:
    cfg: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    obj = apply(None, cfg, schema=SERVICE, version="v1")
    ports = entries(obj)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]["f:ports"]
    assert list(ports) == ['k:{"port":80,"protocol":"TCP"}']
    cfg["spec"]["ports"].append({"port": 53, "protocol": "UDP"})
    out = apply(obj, cfg, schema=SERVICE, version="v1", now=T1)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]


def test_labels_map_is_granular_between_managers() -> None:
    obj = apply(None, deployment())
    labeled = copy.deepcopy(obj)
    labeled["metadata"]["labels"]["env"] = "prod"
    update_managed_fields(
        obj, labeled, manager="kubectl-label", api_version="apps/v1", now=T1, schema=DEPLOYMENT
    )
    out = apply(labeled, deployment(), now=T2)
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}


def test_status_is_not_applied_to_the_main_resource() -> None:
    cfg = deployment()
    cfg["status"] = {"replicas": 4}
    obj = apply(None, cfg)
    assert "status" not in obj
    assert "f:status" not in obj["metadata"]["managedFields"][0]["fieldsV1"]


def test_kubectl_takes_over_from_client_side_apply() -> None:
    cfg = deployment()
    live = copy.deepcopy(cfg)
    live["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(cfg)}
    update_managed_fields(
        None, live, manager="kubectl-client-side-apply", api_version="apps/v1", now=T0, schema=DEPLOYMENT
    )
    live["metadata"].update(uid="u", resourceVersion="3")
    out = apply(live, deployment(replicas=4), now=T1)
    assert out["spec"]["replicas"] == 4
    assert json.loads(out["metadata"]["annotations"][LAST_APPLIED])["spec"]["replicas"] == 4
    with pytest.raises(ApplyConflict):
        apply(live, deployment(replicas=4), manager="another-tool", now=T1)


def test_managed_fields_in_the_configuration_are_refused() -> None:
    cfg = deployment()
    cfg["metadata"]["managedFields"] = []
    with pytest.raises(StatusError) as err:
        apply(None, cfg)
    assert err.value.code == 400 and err.value.message == "metadata.managedFields must be nil"


def test_fields_v1_round_trip_and_paths() -> None:
    s = fields_of(deployment(), DEPLOYMENT)
    assert from_fields_v1(to_fields_v1(s)) == s
    port = (
        "f:spec",
        "f:template",
        "f:spec",
        "f:containers",
        'k:{"name":"nginx"}',
        "f:ports",
        'k:{"containerPort":80,"protocol":"TCP"}',
        "f:containerPort",
    )
    assert port in s
    assert (
        path_string(port)
        == '.spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"].containerPort'
    )
    assert path_string(("f:metadata", "f:finalizers", 'v:"a/b"')) == '.metadata.finalizers[="a/b"]'


def test_default_manager_from_user_agent() -> None:
    assert default_manager("kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef") == "kubectl"
    assert (
        default_manager("kube-controller-manager/v1.33.0 (linux/amd64) kubernetes/x/system:serviceaccount")
        == "kube-controller-manager"
    )
    assert default_manager("curl") == "curl"
