"""Strict decoding: kube-apiserver's unknown/duplicate field reports and JSON type errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kubelite.api.decoding import (
    DecodeResult,
    StrictError,
    bounded,
    check,
    check_path_segments,
    decode,
    enforce,
    enforce_body,
    enforce_patched,
    may_have_duplicate_keys,
    resource_version,
    strict_decoding_error,
)
from kubelite.api.errors import StatusError

# Kubernetes' own fixture (test/integration/apiserver/field_validation_test.go, invalidBodyJSON)
# and the error kube-apiserver answers it with.
K8S_INVALID_BODY = b"""
{
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "dupename",
        "name": "deployment",
        "labels": {"app": "nginx"},
        "unknownMeta": "metaVal"
    },
    "spec": {
        "unknown1": "val1",
        "unknownDupe": "valDupe",
        "unknownDupe": "valDupe2",
        "paused": true,
        "paused": false,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {
                "containers": [{
                    "name":  "nginx",
                    "image": "nginx:latest",
                    "unknownNested": "val1",
                    "imagePullPolicy": "Always",
                    "imagePullPolicy": "Never"
                }]
            }
        }
    }
}
"""
K8S_STRICT_ERROR = (
    'strict decoding error: duplicate field "metadata.name", unknown field "metadata.unknownMeta", '
    'unknown field "spec.unknown1", unknown field "spec.unknownDupe", duplicate field "spec.paused", '
    'unknown field "spec.template.spec.containers[0].unknownNested", '
    'duplicate field "spec.template.spec.containers[0].imagePullPolicy"'
)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
    }


def service_ports(*ports: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": list(ports)}}


# --- unknown fields ---------------------------------------------------------------------


def test_valid_object_has_nothing_to_report() -> None:
    assert check("", "v1", "Pod", pod(restartPolicy="Always")) == DecodeResult()


def test_unknown_fields_at_every_depth_in_document_order() -> None:
    obj = pod(notAField=1)
    obj["metadata"]["bogus"] = "x"
    obj["extra"] = True
    obj["spec"]["containers"].append(
        {"name": "d", "image": "i", "foo": 1, "ports": [{"containerPort": 80, "bar": 2}]}
    )
    obj["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"port": 80, "nope": 1}}
    result = check("", "v1", "Pod", obj)
    assert result.unknown_fields == [
        "metadata.bogus",
        "spec.containers[0].livenessProbe.httpGet.nope",
        "spec.containers[1].foo",
        "spec.containers[1].ports[0].bar",
        "spec.notAField",
        "extra",
    ]
    assert result.type_error is None


def test_strict_error_text_is_go_quoted() -> None:
    assert str(StrictError("unknown", "spec.containers[0].foo")) == 'unknown field "spec.containers[0].foo"'
    assert str(StrictError("unknown", 'a"b')) == 'unknown field "a\\"b"'


def test_top_level_api_version_and_kind_are_known_but_not_nested_ones() -> None:
    obj = pod()
    obj["spec"]["apiVersion"] = "v1"
    assert check("", "v1", "Pod", obj).unknown_fields == ["spec.apiVersion"]


def test_keys_are_case_sensitive() -> None:
    obj = pod()
    obj["metadata"]["Name"] = "x"
    assert check("", "v1", "Pod", obj).unknown_fields == ["metadata.Name"]


def test_free_form_maps_accept_any_key() -> None:
    obj = pod(nodeSelector={"anything.example.com/x": "y"})
    obj["metadata"]["labels"] = {"a": "b", "c.d/e": "f"}
    obj["metadata"]["annotations"] = {"k": "v"}
    obj["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "example.com/gpu": 2}}
    assert check("", "v1", "Pod", obj) == DecodeResult()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"any key": "v"}}
    assert check("", "v1", "ConfigMap", cm) == DecodeResult()


def test_raw_json_fields_accept_anything() -> None:
    obj = pod()
    obj["metadata"]["managedFields"] = [
        {"manager": "m", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:x": {}}}}
    ]
    assert check("", "v1", "Pod", obj) == DecodeResult()


def test_null_is_accepted_for_every_field_type() -> None:
    obj = pod(nodeSelector=None, priority=None, hostNetwork=None, affinity=None, tolerations=None)
    obj["metadata"]["creationTimestamp"] = None
    assert check("", "v1", "Pod", obj) == DecodeResult()


def test_unknown_fields_are_reported_once_and_at_most_one_hundred() -> None:
    obj = pod(**{f"f{i}": i for i in range(150)})
    result = check("", "v1", "Pod", obj)
    assert len(result.strict_errors) == 100
    assert result.unknown_fields[0] == "spec.f0"


def test_unknown_kind_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        check("example.com", "v1", "Widget", {})


# --- duplicates ---------------------------------------------------------------------------


def test_kubernetes_fixture_reports_unknown_and_duplicate_fields_interleaved() -> None:
    obj, result = decode("apps", "v1", "Deployment", K8S_INVALID_BODY)
    assert strict_decoding_error(result.strict_errors) == K8S_STRICT_ERROR
    assert result.duplicate_fields == [
        "metadata.name",
        "spec.paused",
        "spec.template.spec.containers[0].imagePullPolicy",
    ]
    # The object itself is what Go decodes: the last of repeated keys wins.
    assert obj["metadata"]["name"] == "deployment"
    assert obj["spec"]["paused"] is False


def test_duplicate_map_keys_are_reported_with_their_path() -> None:
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1","a":"2"}}'
    obj, result = decode("", "v1", "ConfigMap", body)
    assert [str(e) for e in result.strict_errors] == ['duplicate field "data.a"']
    assert obj["data"] == {"a": "2"}


def test_decode_without_duplicates_equals_check() -> None:
    obj = pod(bogus=1)
    parsed, result = decode("", "v1", "Pod", orjson.dumps(obj))
    assert parsed == obj
    assert result == check("", "v1", "Pod", obj)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1,"b":{"c":2}}', False),
        (b'{"a":1,"a":2}', True),
        (b'{"a": 1, "b": {"a": 2}}', False),
        (b'{"a" : 1, "b": 2, "b": 3}', True),
        (b'{"a":"x\\":y","b":"\\":"}', False),
    ],
)
def test_duplicate_key_detection(body: bytes, expected: bool) -> None:
    assert may_have_duplicate_keys(body, orjson.loads(body)) is expected


def test_malformed_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        decode("", "v1", "Pod", b'{"a":')


# --- type errors ---------------------------------------------------------------------------


def test_string_for_an_integer_names_the_go_struct_field() -> None:
    result = check("", "v1", "Service", service_ports({"port": "80"}))
    assert (
        result.type_error
        == "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"
    )


@pytest.mark.parametrize("target", [8080, "http"])
def test_int_or_string_accepts_both(target: Any) -> None:
    assert check("", "v1", "Service", service_ports({"port": 80, "targetPort": target})) == DecodeResult()


@pytest.mark.parametrize(
    ("target", "what"),
    [(True, "bool"), (1.5, "number 1.5"), (3000000000, "number 3000000000"), ([1], "array"), ({}, "object")],
)
def test_int_or_string_rejects_other_values_as_int32(target: Any, what: str) -> None:
    result = check("", "v1", "Service", service_ports({"port": 80, "targetPort": target}))
    assert (
        result.type_error
        == f"json: cannot unmarshal {what} into Go struct field ServicePort.spec.ports.targetPort of type int32"
    )


def test_integer_range_and_fractions() -> None:
    dep = {"spec": {"replicas": 1.5}}
    assert check("apps", "v1", "Deployment", dep).type_error == (
        "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    dep = {"spec": {"replicas": 1 << 31}}
    assert check("apps", "v1", "Deployment", dep).type_error == (
        "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    assert check("apps", "v1", "Deployment", {"spec": {"replicas": 1 << 40, "minReadySeconds": 3}}).type_error
    assert check("", "v1", "Pod", pod(activeDeadlineSeconds=1 << 40)) == DecodeResult()  # int64


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"hostNetwork": "yes"},
            "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool",
        ),
        (
            {"hostname": 5},
            "json: cannot unmarshal number into Go struct field PodSpec.spec.hostname of type string",
        ),
        (
            {"containers": {"name": "c"}},
            "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
        ),
        (
            {"nodeSelector": ["a"]},
            "json: cannot unmarshal array into Go struct field PodSpec.spec.nodeSelector of type map[string]string",
        ),
        (
            {"nodeSelector": {"a": True}},
            "json: cannot unmarshal bool into Go struct field PodSpec.spec.nodeSelector of type string",
        ),
        (
            {"affinity": "x"},
            "json: cannot unmarshal string into Go struct field PodSpec.spec.affinity of type v1.Affinity",
        ),
        (
            {"containers": [{"name": "c", "args": [1]}]},
            "json: cannot unmarshal number into Go struct field Container.spec.containers.args of type string",
        ),
    ],
)
def test_type_errors_of_every_json_shape(spec: dict[str, Any], message: str) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "spec": spec}
    assert check("", "v1", "Pod", obj).type_error == message


def test_map_values_keep_the_struct_field_path() -> None:
    obj = pod()
    obj["metadata"]["labels"] = {"version": 1}
    assert check("", "v1", "Pod", obj).type_error == (
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"
    )


def test_whole_struct_of_the_wrong_type() -> None:
    assert check("", "v1", "Pod", {"spec": "x"}).type_error == (
        "json: cannot unmarshal string into Go struct field Pod.spec of type v1.PodSpec"
    )


def test_first_type_error_wins_but_a_custom_unmarshaller_failure_stops_at_once() -> None:
    ports = service_ports({"port": "a"}, {"port": "b"})
    assert "spec.ports.port" in (check("", "v1", "Service", ports).type_error or "")
    ports = service_ports({"port": "a"}, {"port": 80, "targetPort": True})
    assert "targetPort" in (check("", "v1", "Service", ports).type_error or "")


def test_quantities() -> None:
    def limits(value: Any) -> DecodeResult:
        obj = pod()
        obj["spec"]["containers"][0]["resources"] = {"limits": {"memory": value}}
        return check("", "v1", "Pod", obj)

    for good in ("128Mi", "1G", "500m", "0", "1e3", "1.5", 2, 0.5, "+1Ki"):
        assert limits(good) == DecodeResult(), good
    fmt = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    for bad in ("512MB", "1.2.3", "", "Mi", True, ["1"]):
        assert limits(bad).type_error == fmt, bad
    assert limits("2K").type_error == "unable to parse quantity's suffix"


def test_base64_data() -> None:
    def secret(value: Any) -> DecodeResult:
        return check("", "v1", "Secret", {"kind": "Secret", "data": {"k": value}})

    assert secret("aGVsbG8=") == DecodeResult()
    assert secret("").type_error is None
    assert secret("hello world").type_error == "illegal base64 data at input byte 5"
    assert secret("YQ").type_error == "illegal base64 data at input byte 0"
    assert secret("YQ==x").type_error == "illegal base64 data at input byte 4"
    assert (
        secret(5).type_error
        == "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"
    )


def test_timestamps_must_be_strings() -> None:
    obj = pod()
    obj["metadata"]["creationTimestamp"] = 5
    assert check("", "v1", "Pod", obj).type_error == "invalid syntax"
    obj["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    assert check("", "v1", "Pod", obj) == DecodeResult()


# --- fieldValidation -----------------------------------------------------------------------


def deployment_result() -> DecodeResult:
    return decode("apps", "v1", "Deployment", K8S_INVALID_BODY)[1]


def test_strict_is_a_bad_request_naming_the_kind() -> None:
    with pytest.raises(StatusError) as err:
        enforce(deployment_result(), "Strict", body_kind="Deployment", body_version="v1", kind="Deployment")
    assert err.value.code == 400
    assert err.value.reason == "BadRequest"
    assert (
        err.value.message
        == 'Deployment in version "v1" cannot be handled as a Deployment: ' + K8S_STRICT_ERROR
    )


def test_warn_returns_one_warning_per_field() -> None:
    warnings = enforce(
        deployment_result(), "Warn", body_kind="Deployment", body_version="v1", kind="Deployment"
    )
    assert warnings[:2] == ['duplicate field "metadata.name"', 'unknown field "metadata.unknownMeta"']
    assert len(warnings) == 7


def test_ignore_says_nothing() -> None:
    assert (
        enforce(deployment_result(), "Ignore", body_kind="Deployment", body_version="v1", kind="Deployment")
        == []
    )


@pytest.mark.parametrize("directive", ["Strict", "Warn", "Ignore"])
def test_type_errors_fail_whatever_the_directive(directive: str) -> None:
    result = check("", "v1", "Service", service_ports({"port": "80", "bogus": 1}))
    with pytest.raises(StatusError) as err:
        enforce(result, directive, body_kind="Service", body_version="v1", kind="Service")
    assert err.value.code == 400
    assert err.value.message == (
        'Service in version "v1" cannot be handled as a Service: json: cannot unmarshal string into Go struct '
        "field ServicePort.spec.ports.port of type int32"
    )


def test_patched_objects() -> None:
    unknown = check("", "v1", "ConfigMap", {"data": {}, "dta": {}})
    with pytest.raises(StatusError) as err:
        enforce_patched(unknown, "Strict", {"data": {}, "dta": {}})
    assert (err.value.code, err.value.message) == (400, 'strict decoding error: unknown field "dta"')
    assert enforce_patched(unknown, "Warn", {}) == ['unknown field "dta"']
    bad = check("", "v1", "ConfigMap", {"data": {"a": 1}})
    with pytest.raises(StatusError) as err:
        enforce_patched(bad, "Ignore", {"data": {"a": 1}})
    assert err.value.code == 422
    assert err.value.message == (
        ' "" is invalid: patch: Invalid value: "{\\"data\\":{\\"a\\":1}}": json: cannot unmarshal number '
        "into Go struct field ConfigMap.data of type string"
    )


# --- unknown fields are dropped; subresource bodies; parameters (issue 20) -----------------


@pytest.mark.parametrize("directive", ["Warn", "Ignore"])
def test_unknown_fields_are_dropped_unless_refused(directive: str) -> None:
    pod = {"metadata": {"name": "p", "x": 1}, "foo": {"bar": 1},
           "spec": {"containers": [{"name": "c", "image": "i", "bogus": True}], "nodeSelector": {"keep": "me"}}}
    warnings = enforce(check("", "v1", "Pod", pod), directive, body_kind="Pod", body_version="v1", kind="Pod")
    assert pod == {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"keep": "me"}}}
    expected = ['unknown field "metadata.x"', 'unknown field "foo"', 'unknown field "spec.containers[0].bogus"']
    assert sorted(warnings) == (sorted(expected) if directive == "Warn" else [])


def test_strict_keeps_the_body_and_refuses() -> None:
    cm = {"metadata": {"name": "c"}, "foo": 1}
    with pytest.raises(StatusError):
        enforce(check("", "v1", "ConfigMap", cm), "Strict", body_kind="ConfigMap", body_version="v1", kind="ConfigMap")
    assert cm == {"metadata": {"name": "c"}, "foo": 1}


def test_raw_fields_keep_what_they_hold() -> None:
    cm: dict[str, Any] = {"metadata": {"name": "c", "managedFields": [{"fieldsV1": {"f:anything": {}}, "manager": "m"}]}}
    assert enforce(check("", "v1", "ConfigMap", cm), "Warn", body_kind="ConfigMap", body_version="v1", kind="ConfigMap") == []
    assert cm["metadata"]["managedFields"][0]["fieldsV1"] == {"f:anything": {}}


def test_decode_with_duplicates_drops_unknown_fields_of_the_parsed_object() -> None:
    obj, result = decode("", "v1", "ConfigMap", b'{"metadata": {"name": "a", "name": "b"}, "foo": 1, "foo": 2}')
    assert result.duplicate_fields == ["metadata.name"] and result.unknown_fields == ["foo"]
    enforce(result, "Warn", body_kind="ConfigMap", body_version="v1", kind="ConfigMap")
    assert obj == {"metadata": {"name": "b"}}


def test_patched_objects_lose_unknown_fields_and_are_bounded() -> None:
    patched: dict[str, Any] = {"data": {}, "dta": {}}
    assert enforce_patched(check("", "v1", "ConfigMap", patched), "Warn", patched) == ['unknown field "dta"']
    assert patched == {"data": {}}
    big = {"data": {f"k{i}": "v" * 1000 for i in range(4000)}}
    with pytest.raises(StatusError) as err:
        enforce_patched(check("", "v1", "ConfigMap", big), "Warn", big)
    assert (err.value.code, err.value.reason) == (413, "RequestEntityTooLarge")


def test_bounded() -> None:
    shared = ["v" * 1000] * 1000
    assert bounded({"a": shared}) == {"a": shared}
    with pytest.raises(StatusError) as err:
        bounded({"a": [shared] * 4})  # 4 MB once serialized, a few kB in memory
    assert err.value.code == 413
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(StatusError) as err:
        bounded(deep)
    assert err.value.code == 400
    assert bounded({1: "yaml allows non-string keys"}) == {1: "yaml allows non-string keys"}


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (("", "v1", "Binding"), {"target": {"kind": "Node", "name": ["a"]}},
         'Binding in version "v1" cannot be handled as a Binding: json: cannot unmarshal array into Go struct '
         "field ObjectReference.target.name of type string"),
        (("", "v1", "Binding"), {"apiVersion": "v1", "kind": "Binding", "target": {"name": 5}},
         'Binding in version "v1" cannot be handled as a Binding: json: cannot unmarshal number into Go struct '
         "field ObjectReference.target.name of type string"),
        (("policy", "v1", "Eviction"), {"apiVersion": "policy/v1beta1", "kind": "Eviction", "deleteOptions": []},
         'Eviction in version "v1beta1" cannot be handled as a Eviction: json: cannot unmarshal array into Go '
         "struct field Eviction.deleteOptions of type v1.DeleteOptions"),
        (("autoscaling", "v1", "Scale"), {"spec": {"replicas": 1.5}},
         'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal number 1.5 into Go struct '
         "field ScaleSpec.spec.replicas of type int32"),
        (("", "v1", "DeleteOptions"), {"propagationPolicy": {}},
         'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: json: cannot unmarshal object into '
         "Go struct field DeleteOptions.propagationPolicy of type string"),
    ],
)
def test_subresource_bodies_are_type_checked(kind: tuple[str, str, str], body: Any, message: str) -> None:
    with pytest.raises(StatusError) as err:
        enforce_body(*kind, body)
    assert (err.value.code, err.value.message) == (400, message)


def test_subresource_bodies_lose_unknown_fields() -> None:
    body = {"target": {"kind": "Node", "name": "n", "extra": 1}, "other": 2}
    assert enforce_body("", "v1", "Binding", body) == ['unknown field "target.extra"', 'unknown field "other"']
    assert body == {"target": {"kind": "Node", "name": "n"}}
    assert enforce_body("", "v1", "Binding", ["not", "an", "object"]) == []


@pytest.mark.parametrize(
    ("value", "expected"), [("", 0), ("0", 0), ("17", 17), ("007", 7), (str((1 << 64) - 1), (1 << 64) - 1)]
)
def test_resource_versions(value: str, expected: int) -> None:
    assert resource_version(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"), [("abc", "invalid syntax"), ("-1", "invalid syntax"), ("+1", "invalid syntax"),
                          ("\uff11", "invalid syntax"), (str(1 << 64), "value out of range")]
)
def test_bad_resource_versions(value: str, reason: str) -> None:
    with pytest.raises(StatusError) as err:
        resource_version(value)
    quoted = orjson.dumps(value).decode()
    assert (err.value.code, err.value.reason, err.value.message) == (
        400, "BadRequest", f"resourceVersion: Invalid value: {quoted}: strconv.ParseUint: parsing {quoted}: {reason}")


def test_path_segments() -> None:
    check_path_segments(None, "default", "a.b-c", "ünïcode")
    for bad in ("\x00\x00", "a\nb", "\x7f"):
        with pytest.raises(StatusError) as err:
            check_path_segments("default", bad)
        assert err.value.code == 400


def test_json_nested_deeper_than_the_store_writes_is_a_400() -> None:
    body = b'{"metadata":{"name":"x","managedFields":[{"fieldsV1":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}]}}"
    with pytest.raises(StatusError) as err:
        decode("", "v1", "ConfigMap", body)
    assert err.value.code == 400


def test_nulls_decode_into_go_zero_values() -> None:
    """Found by the fuzz run (issue 20): a null where the schema has a type reached the code
    after decoding as None, and was a 500 (labels, finalizers, list items, quantities...)."""
    obj = pod(tolerations=None, nodeSelector={"a": None}, imagePullSecrets=[None])
    obj["metadata"].update(labels={"a": None}, finalizers=[None], creationTimestamp=None)
    container = obj["spec"]["containers"][0]
    container.update(ports=[None], command=[None], resources={"limits": {"cpu": None}}, readinessProbe=None)
    obj["status"] = None
    assert enforce(check("", "v1", "Pod", obj), "Strict", body_kind="Pod", body_version="v1", kind="Pod") == []
    assert "tolerations" not in obj["spec"] and "readinessProbe" not in container  # nil pointers, nil slices
    assert obj["spec"]["nodeSelector"] == {"a": ""} and obj["metadata"]["labels"] == {"a": ""}
    assert obj["metadata"]["finalizers"] == [""] and container["command"] == [""]
    assert obj["spec"]["imagePullSecrets"] == [{}] and container["ports"] == [{}]
    assert container["resources"] == {"limits": {"cpu": "0"}}
    assert obj["metadata"]["creationTimestamp"] is None  # metav1.Time's zero value is null
    assert obj["status"] == {}  # a struct value, not a pointer
    raw_obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": None, "data": {"a": None}}
    assert enforce(check("", "v1", "ConfigMap", raw_obj), "Warn", body_kind="ConfigMap", body_version="v1",
                   kind="ConfigMap") == []
    assert raw_obj == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"a": ""}}


def test_nulls_in_a_patched_object_decode_into_zero_values() -> None:
    patched = pod(nodeSelector={"a": None})
    enforce_patched(check("", "v1", "Pod", patched), "Strict", patched)
    assert patched["spec"]["nodeSelector"] == {"a": ""}
