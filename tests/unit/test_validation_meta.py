"""Name formats, ObjectMeta and the small core kinds: errors must read as Kubernetes writes them.

Expected texts are written out in full (from Kubernetes' sources), so a drift in wording
fails here.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubelite.api.validation import name_validator_for, validate
from kubelite.api.validation.meta import validate_object_meta, validate_object_meta_update
from kubelite.api.validation.names import (
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    name_is_dns_label,
    name_is_dns_subdomain,
    path_segment_name,
)

SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
CONFIG_KEY = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


def strs(errs: list[Any]) -> list[str]:
    return [str(e) for e in errs]


# -- names --------------------------------------------------------------------------------


def test_name_formats() -> None:
    assert is_dns1123_subdomain("a.b-c") == []
    assert is_dns1123_subdomain("Foo") == [SUBDOMAIN]
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert is_dns1123_label("a.b") == [LABEL]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1035_label("1abc") == [DNS1035]
    assert is_dns1123_subdomain("abc\n") == [SUBDOMAIN]  # no trailing newline sneaks through


def test_qualified_names() -> None:
    assert is_qualified_name("example.com/My_Name.1") == []
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("Example.com/a") == ["prefix part " + SUBDOMAIN]
    assert is_qualified_name("a/") == ["name part must be non-empty", NAME_PART]
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 characters"]


def test_config_map_keys() -> None:
    assert is_config_map_key("app.properties") == []
    assert is_config_map_key("a b") == [CONFIG_KEY]
    assert is_config_map_key("..") == ["must not be '..'"]
    assert is_config_map_key("..data") == ["must not start with '..'"]


def test_name_validators_and_generate_name_prefix() -> None:
    assert name_is_dns_subdomain("web-", True) == []  # a generateName may end with '-'
    assert name_is_dns_subdomain("web-", False) == [SUBDOMAIN]
    assert name_is_dns_label("a.b-", True) == [LABEL]
    assert path_segment_name("..", False) == ["may not be '..'"]
    assert path_segment_name("a/b%c", False) == ["may not contain '/'", "may not contain '%'"]
    assert name_validator_for("", "Service") is not name_validator_for("", "Namespace")
    assert name_validator_for("", "Namespace")("a.b", False) == [LABEL]
    assert name_validator_for("", "Service")("web.x", False) == [DNS1035]
    assert name_validator_for("apps", "Deployment")("Web", False) == [SUBDOMAIN]


# -- ObjectMeta on create -------------------------------------------------------------------


def meta_errors(meta: dict[str, Any], namespaced: bool = True) -> list[str]:
    return strs(validate_object_meta(meta, namespaced=namespaced, name_validator=name_is_dns_subdomain))


def test_name_required_and_valid() -> None:
    assert meta_errors({"namespace": "default"}) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert meta_errors({"name": "Foo", "namespace": "default"}) == [f'metadata.name: Invalid value: "Foo": {SUBDOMAIN}']
    assert meta_errors({"name": "x", "generateName": "Web-", "namespace": "default"}) == [
        f'metadata.generateName: Invalid value: "Web-": {SUBDOMAIN}'
    ]


def test_namespace_scope() -> None:
    assert meta_errors({"name": "x"}) == ["metadata.namespace: Required value"]
    assert meta_errors({"name": "x", "namespace": "a.b"}) == [f'metadata.namespace: Invalid value: "a.b": {LABEL}']
    assert meta_errors({"name": "x", "namespace": "a"}, namespaced=False) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]


def test_labels_annotations_finalizers() -> None:
    errs = meta_errors({
        "name": "x", "namespace": "n",
        "labels": {"a_": "ok"},
        "annotations": {"Example.com/Key": "fine", "bad key": "v"},
        "finalizers": ["example.com/f", "a/b/c", "orphan", "foregroundDeletion"],
    })
    assert errs == [
        f'metadata.labels: Invalid value: "a_": {NAME_PART}',
        f'metadata.annotations: Invalid value: "bad key": {NAME_PART}',
        'metadata.finalizers: Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
        "or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional "
        "DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        'metadata.finalizers: Invalid value: []string{"example.com/f", "a/b/c", "orphan", "foregroundDeletion"}: '
        "finalizer orphan and foregroundDeletion cannot be both set",
    ]


def test_annotations_total_size() -> None:
    big = {"a": "x" * (262144 - 1)}
    assert meta_errors({"name": "x", "namespace": "n", "annotations": big}) == []
    big["a"] += "x"
    assert meta_errors({"name": "x", "namespace": "n", "annotations": big}) == [
        "metadata.annotations: Too long: must have at most 262144 bytes"
    ]


def test_owner_references() -> None:
    refs = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": True},
        {"apiVersion": "", "kind": "", "name": "", "uid": ""},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs2", "uid": "u2", "controller": True},
    ]
    errs = meta_errors({"name": "x", "namespace": "n", "ownerReferences": refs})
    assert errs[:4] == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
    ]
    assert errs[4].startswith("metadata.ownerReferences: Invalid value: [")
    assert errs[4].endswith(
        ': Only one reference can have Controller set to true. Found "true" in references for '
        "ReplicaSet/rs1 and ReplicaSet/rs2"
    )


# -- ObjectMeta on update -------------------------------------------------------------------


def test_identity_fields_are_immutable() -> None:
    old = {"name": "a", "namespace": "n", "uid": "u1", "resourceVersion": "5",
           "creationTimestamp": "2024-05-01T10:00:00Z"}
    new = {**old, "name": "b", "uid": "u2", "creationTimestamp": "2024-05-02T11:30:00Z"}
    assert strs(validate_object_meta_update(new, old)) == [
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        "metadata.creationTimestamp: Invalid value: 2024-05-02 11:30:00 +0000 UTC: field is immutable",
    ]


def test_update_rules() -> None:
    old = {"name": "a", "namespace": "n", "resourceVersion": "5", "generation": 3,
           "deletionTimestamp": "2024-05-01T10:00:00Z", "finalizers": ["a.io/x"]}
    new = {**old, "resourceVersion": "", "generation": 2, "finalizers": ["a.io/x", "b.io/y"],
           "labels": {"k": "v v"}}
    errs = strs(validate_object_meta_update(new, old))
    assert errs[:3] == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, '
        'found new finalizers []string{"b.io/y"}',
        'metadata.resourceVersion: Invalid value: "": must be specified for an update',
        "metadata.generation: Invalid value: 2: must not be decremented",
    ]
    assert errs[3].startswith('metadata.labels: Invalid value: "v v": a valid label must be an empty string')


# -- kinds, through the entry point ---------------------------------------------------------


def obj(kind_fields: dict[str, Any], name: str = "x", namespace: str | None = "default", **meta: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, **meta}
    if namespace is not None:
        m["namespace"] = namespace
    return {"metadata": m, **kind_fields}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_valid_objects_pass() -> None:
    assert validate("", "ConfigMap", obj({"data": {"a.txt": "x"}, "binaryData": {"b": b64(b"y")}})) == []
    assert validate("", "Secret", obj({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})) == []
    assert validate("", "Namespace", obj({}, name="team-a", namespace=None)) == []
    assert validate("", "ServiceAccount", obj({})) == []
    assert validate("", "Node", obj({}, name="n1", namespace=None)) == []
    assert validate("coordination.k8s.io", "Lease", obj({"spec": {"leaseDurationSeconds": 15}})) == []


def test_kinds_without_own_validator_get_their_name_format_and_core_finalizer_rule() -> None:
    svc = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "type": "ClusterIP",
                    "sessionAffinity": "None", "clusterIPs": ["10.96.0.5"], "clusterIP": "10.96.0.5",
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}}
    assert strs(validate("", "Service", obj(svc, name="web.x"))) == [
        f'metadata.name: Invalid value: "web.x": {DNS1035}'
    ]
    assert strs(validate("", "ConfigMap", obj({}, finalizers=["custom"]))) == [
        'metadata.finalizers[0]: Invalid value: "custom": name is neither a standard finalizer name nor is it '
        "fully qualified"
    ]
    assert strs(validate("", "Node", obj({}, name="n1", namespace="x"))) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]


def test_config_map() -> None:
    errs = strs(validate("", "ConfigMap", obj({"data": {"a/b": "1", "k": "2"}, "binaryData": {"k": b64(b"3")}})))
    assert errs == [
        f'data[a/b]: Invalid value: "a/b": {CONFIG_KEY}',
        'data[k]: Invalid value: "k": duplicate of key present in binaryData',
    ]
    big = {"data": {"a": "x" * (1024 * 1024)}, "binaryData": {"b": b64(b"y")}}
    # Kubernetes reports the size against the whole object, with an empty field path.
    assert strs(validate("", "ConfigMap", obj(big))) == [": Too long: must have at most 1048576 bytes"]


def test_immutable_config_map_and_secret() -> None:
    old = obj({"immutable": True, "data": {"a": "1"}}, resourceVersion="1")
    new = obj({"immutable": False, "data": {"a": "2"}}, resourceVersion="1")
    assert strs(validate("", "ConfigMap", new, old)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set",
        "data: Forbidden: field is immutable when `immutable` is set",
    ]
    old = obj({"immutable": True, "data": {"a": b64(b"1")}}, resourceVersion="1")
    new = obj({"immutable": True, "type": "kubernetes.io/tls", "data": {"a": b64(b"1")}}, resourceVersion="1")
    assert strs(validate("", "Secret", new, old)) == [
        'type: Invalid value: "kubernetes.io/tls": field is immutable',
        "data[tls.crt]: Required value",
        "data[tls.key]: Required value",
    ]


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"type": "kubernetes.io/service-account-token"},
         ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]),
        ({"type": "kubernetes.io/dockerconfigjson"}, ["data[.dockerconfigjson]: Required value"]),
        ({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "[]"}},
         ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '
          "json: cannot unmarshal array into Go value of type map[string]interface {}"]),
        ({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(b"")}},
         ['data[.dockercfg]: Invalid value: "<secret contents redacted>": unexpected end of JSON input']),
        ({"type": "kubernetes.io/basic-auth"}, ["data[username]: Required value", "data[password]: Required value"]),
        ({"type": "kubernetes.io/basic-auth", "stringData": {"username": ""}}, []),
        ({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": ""}}, ["data[ssh-privatekey]: Required value"]),
        ({"data": {"bad key": ""}}, [f'data[bad key]: Invalid value: "bad key": {CONFIG_KEY}']),
        ({"data": {"a": b64(b"x" * (1024 * 1024 + 1))}}, ["data: Too long: must have at most 1048576 bytes"]),
    ],
)
def test_secret(secret: dict[str, Any], expected: list[str]) -> None:
    assert strs(validate("", "Secret", obj(secret))) == expected


def test_namespace() -> None:
    assert strs(validate("", "Namespace", obj({"spec": {"finalizers": ["foo"]}}, name="a.b", namespace=None))) == [
        f'metadata.name: Invalid value: "a.b": {LABEL}',
        'spec.finalizers: Invalid value: "foo": name is neither a standard finalizer name nor is it fully qualified',
    ]


def test_core_event_legacy_rules_only() -> None:
    event = obj({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}, "reason": "Started"})
    assert strs(validate("", "Event", event)) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace'
    ]
    # With eventTime set, the reporting fields become required, even through core/v1.
    event = obj({"involvedObject": {"namespace": "default"}, "eventTime": "2024-05-01T10:00:00.000000Z"})
    assert strs(validate("", "Event", event)) == [
        "reportingController: Required value",
        'reportingController: Invalid value: "": name part must be non-empty',
        f'reportingController: Invalid value: "": {NAME_PART}',
        "reportingInstance: Required value",
        "action: Required value",
        "reason: Required value",
    ]
    # Names only need to be usable in a URL: core/v1 Events are not name-checked otherwise.
    assert validate("", "Event", obj({"involvedObject": {"namespace": "default"}}, name="Pod.Started_1")) == []


def test_events_k8s_io_strict_rules() -> None:
    event = obj({
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reportingController": "example.com/ctl", "reportingInstance": "i", "action": "Act",
        "reason": "Because", "type": "Odd", "deprecatedCount": 3,
    })
    assert strs(validate("events.k8s.io", "Event", event)) == [
        "eventTime: Required value",
        'type: Invalid value: "": has invalid value: Odd',
        'count: Invalid value: "": needs to be unset',
    ]


def test_lease() -> None:
    lease = obj({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "a"}},
                finalizers=["custom"])
    # No core finalizer rule for coordination.k8s.io, as in Kubernetes.
    assert strs(validate("coordination.k8s.io", "Lease", lease)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
    ]
    lease = obj({"spec": {"strategy": "Newest"}})
    assert strs(validate("coordination.k8s.io", "Lease", lease)) == [
        'spec.strategy.strategy: Unsupported value: "Newest": supported values: "OldestEmulationVersion"'
    ]


def test_generic_path_segment_check_runs_after_kind_validation() -> None:
    # A core/v1 Event passes its own rules, then the generic metadata check rejects the name.
    event = obj({"involvedObject": {"namespace": "default"}}, name="a%b")
    assert strs(validate("", "Event", event)) == ["metadata.name: Invalid value: \"a%b\": may not contain '%'"]


def test_update_through_entry_point() -> None:
    old = obj({"data": {"a": "1"}}, resourceVersion="3", uid="u")
    new = obj({"data": {"a": "2"}}, name="y", resourceVersion="3", uid="u")
    assert strs(validate("", "ConfigMap", new, old)) == ['metadata.name: Invalid value: "y": field is immutable']
    assert validate("", "ConfigMap", obj({"data": {"a": "2"}}, resourceVersion="3", uid="u"), old) == []


@pytest.mark.parametrize("entry", [None, {"manager": None}, {"operation": None}, {"fieldsType": None}])
def test_managed_fields_nulls_are_go_zero_values(entry: Any) -> None:
    """Found by the fuzz run (issue 20): a null manager was a 500 (AttributeError on None)."""
    from kubelite.api.validation.meta import validate_managed_fields

    errs = validate_managed_fields([entry], "metadata.managedFields")
    assert [(e.field, e.value) for e in errs] == [("metadata.managedFields[0].operation", "")]
