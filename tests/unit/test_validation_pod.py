"""Pod validation: each rule's exact text, as kube-apiserver prints it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.defaults import admit_pod_create, apply_defaults
from kubelite.api.validation.pod import validate_pod


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": list(containers) or [{"name": "web", "image": "nginx"}], **spec},
    }


def errors(p: dict[str, Any]) -> list[str]:
    apply_defaults("", "Pod", p)
    admit_pod_create(p)
    return [str(e) for e in validate_pod(p, None)]


def test_valid_pod() -> None:
    assert errors(pod()) == []


def test_containers_required() -> None:
    p = pod()
    p["spec"]["containers"] = []
    assert errors(p) == ["spec.containers: Required value"]


def test_container_name_and_image_required() -> None:
    assert errors(pod({"image": "nginx"}, {"name": "b"})) == [
        "spec.containers[0].name: Required value",
        "spec.containers[1].image: Required value",
    ]


def test_duplicate_container_names_across_init_containers() -> None:
    p = pod({"name": "web", "image": "nginx"}, {"name": "web", "image": "nginx"},
            initContainers=[{"name": "web", "image": "busybox"}])
    assert errors(p) == [
        'spec.containers[1].name: Duplicate value: "web"',
        'spec.initContainers[0].name: Duplicate value: "web"',
    ]


def test_container_port_range_and_protocol() -> None:
    p = pod({"name": "web", "image": "nginx", "ports": [{"containerPort": 70000, "protocol": "ICMP"}]})
    assert errors(p) == [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
    ]


def test_container_port_required() -> None:
    p = pod({"name": "web", "image": "nginx", "ports": [{"name": "http"}]})
    assert errors(p) == ["spec.containers[0].ports[0].containerPort: Required value"]


def test_container_port_names() -> None:
    p = pod({"name": "web", "image": "nginx", "ports": [
        {"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}, {"name": "Web", "containerPort": 82}]})
    assert errors(p) == [
        'spec.containers[0].ports[1].name: Duplicate value: "http"',
        'spec.containers[0].ports[2].name: Invalid value: "Web": '
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    ]


def test_host_port_conflict() -> None:
    p = pod({"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]},
            {"name": "b", "image": "nginx", "ports": [{"containerPort": 81, "hostPort": 8080}]})
    assert errors(p) == ['spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080"']


def test_env_var_name() -> None:
    p = pod({"name": "web", "image": "nginx", "env": [{"name": "A=B", "value": "x"}, {"value": "y"}]})
    assert errors(p) == [
        'spec.containers[0].env[0].name: Invalid value: "A=B": '
        "a valid environment variable name must consist only of printable ASCII characters other than '='",
        "spec.containers[0].env[1].name: Required value",
    ]


def test_env_value_from_needs_exactly_one_source() -> None:
    p = pod({"name": "web", "image": "nginx", "env": [
        {"name": "A", "valueFrom": {}},
        {"name": "B", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}}},
    ]})
    assert errors(p) == [
        'spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: '
        "`fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        'spec.containers[0].env[1].valueFrom: Invalid value: "": may not be specified when `value` is not empty',
        'spec.containers[0].env[2].valueFrom: Invalid value: "": may not have more than one field specified at a time',
    ]


def test_env_field_path_supported() -> None:
    p = pod({"name": "web", "image": "nginx", "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]})
    assert errors(p) == [
        'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.hostname": supported values: '
        '"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", '
        '"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"'
    ]


def test_probe_needs_one_handler() -> None:
    p = pod({"name": "web", "image": "nginx",
             "livenessProbe": {"httpGet": {"port": 80}, "tcpSocket": {"port": 80}},
             "readinessProbe": {"periodSeconds": 5}})
    assert errors(p) == [
        "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        "spec.containers[0].readinessProbe: Required value: must specify a handler type",
    ]


def test_probe_port_and_numbers() -> None:
    p = pod({"name": "web", "image": "nginx",
             "readinessProbe": {"tcpSocket": {"port": "no_such"}, "initialDelaySeconds": -1}})
    assert errors(p) == [
        'spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: "no_such": '
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
    ]


def test_liveness_success_threshold_must_be_one() -> None:
    p = pod({"name": "web", "image": "nginx", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 3}})
    assert errors(p) == ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 3: must be 1"]


def test_readiness_success_threshold_may_be_more() -> None:
    p = pod({"name": "web", "image": "nginx", "readinessProbe": {"exec": {"command": ["true"]}, "successThreshold": 3}})
    assert errors(p) == []


def test_restart_and_dns_policy_values() -> None:
    p = pod(restartPolicy="Sometimes", dnsPolicy="Cluster")
    assert errors(p) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Cluster": supported values: '
        '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"',
    ]


def test_volume_mount_must_name_a_volume() -> None:
    p = pod({"name": "web", "image": "nginx", "volumeMounts": [{"name": "x", "mountPath": "/data"}]})
    assert errors(p) == ['spec.containers[0].volumeMounts[0].name: Not found: "x"']


def test_volumes_unique_and_one_source() -> None:
    p = pod(volumes=[
        {"name": "data", "emptyDir": {}},
        {"name": "data", "emptyDir": {}},
        {"name": "both", "emptyDir": {}, "configMap": {"name": "c"}},
    ])
    assert errors(p) == [
        'spec.volumes[1].name: Duplicate value: "data"',
        "spec.volumes[2].configMap: Forbidden: may not specify more than 1 volume type",
    ]


def test_volume_source_fields() -> None:
    p = pod(volumes=[{"name": "s", "secret": {"defaultMode": 1000}}])
    assert errors(p) == [
        "spec.volumes[0].secret.secretName: Required value",
        "spec.volumes[0].secret.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
    ]


def test_termination_grace_period_required_when_null() -> None:
    p = pod()
    apply_defaults("", "Pod", p)
    admit_pod_create(p)
    p["spec"]["terminationGracePeriodSeconds"] = None
    assert [str(e) for e in validate_pod(p, None)] == ["spec.terminationGracePeriodSeconds: Required value"]


def test_node_selector_hostname_subdomain() -> None:
    p = pod(nodeSelector={"disk": "fast ssd"}, hostname="Web", subdomain="a.b")
    assert errors(p) == [
        'spec.nodeSelector: Invalid value: "fast ssd": a valid label must be an empty string or consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        'spec.hostname: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric '
        "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
        "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        'spec.subdomain: Invalid value: "a.b": a lowercase RFC 1123 label must consist of lower case alphanumeric '
        "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
        "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ]


def test_pod_name_is_a_subdomain() -> None:
    p = pod()
    p["metadata"]["name"] = "Web"
    assert errors(p) == [
        'metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
        "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
        "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]


def stored_pod() -> dict[str, Any]:
    p = pod({"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]})
    apply_defaults("", "Pod", p)
    admit_pod_create(p)
    p["metadata"].update(resourceVersion="3", uid="0c9f6a0e-8e1b-4f7e-9a55-3b6f0b8d2a11")
    return p


def updated(old: dict[str, Any], change: Any) -> list[str]:
    new = copy.deepcopy(old)
    change(new["spec"])
    apply_defaults("", "Pod", new)
    return [str(e) for e in validate_pod(new, old)]


def test_image_may_change() -> None:
    old = stored_pod()
    assert updated(old, lambda s: s["containers"][0].update(image="nginx:1.27")) == []


def test_tolerations_may_only_be_added() -> None:
    old = stored_pod()
    extra = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert updated(old, lambda s: s["tolerations"].append(extra)) == []
    assert updated(old, lambda s: s["tolerations"].pop()) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    ]


def test_other_spec_fields_are_immutable() -> None:
    old = stored_pod()
    errs = updated(old, lambda s: s["containers"][0]["ports"][0].update(containerPort=8080))
    assert len(errs) == 1
    assert errs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n"
    )


def test_containers_may_not_be_added() -> None:
    old = stored_pod()
    assert updated(old, lambda s: s["containers"].append({"name": "side", "image": "busybox"})) == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"
    ]


@pytest.mark.parametrize(("old_value", "new_value", "message"), [
    (None, 30, None),
    (30, 60, "spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"),
    (30, None, "spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"),
])
def test_active_deadline_updates(old_value: int | None, new_value: int | None, message: str | None) -> None:
    old = stored_pod()
    if old_value is not None:
        old["spec"]["activeDeadlineSeconds"] = old_value

    def change(spec: dict[str, Any]) -> None:
        spec.pop("activeDeadlineSeconds", None)
        if new_value is not None:
            spec["activeDeadlineSeconds"] = new_value

    assert updated(old, change) == ([message] if message else [])
