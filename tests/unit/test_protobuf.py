"""Decoding of Kubernetes protobuf request bodies (kubelite.api.protobuf).

The fixtures under fixtures/protobuf/ are bodies kubectl 1.33 really sent (``kubectl create
configmap|secret|namespace|serviceaccount|service|deployment|token``, ``auth can-i``, ``auth
whoami``), each next to what ``kubectl create ... --dry-run=client -o json`` printed for the
same command, minus ``creationTimestamp: null`` (kubelite leaves zero timestamps out). Token
and review requests have no client dry-run: their expected JSON was checked by hand against
the wire bytes.
"""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

import pytest

from kubelite.api.protobuf import ProtobufError, _tables, decode_envelope, encode_envelope

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "protobuf"
BODIES = sorted(FIXTURES.glob("*.pb"))


@pytest.mark.parametrize("body", BODIES, ids=[b.stem for b in BODIES])
def test_kubectl_bodies_decode_to_the_json_kubectl_would_send(body: pathlib.Path) -> None:
    expected = json.loads(body.with_suffix(".json").read_text())
    assert decode_envelope(body.read_bytes()) == expected


def test_the_example_configmap_from_the_brief() -> None:
    body = bytes.fromhex(
        "6b387300 0a0f0a02 76311209 436f6e66 69674d61 70121d0a 130a0366 6f6f1200 1a002200"
        " 2a003200 38004200 12060a01 61120162 1a002200".replace(" ", "")
    )
    assert decode_envelope(body) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "foo"},
        "data": {"a": "b"},
    }


# A small encoder, so that fields kubectl's create commands never send are exercised too.
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _v(num: int, n: int) -> bytes:
    return _varint(num << 3) + _varint(n)


def _b(num: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _entry(num: int, key: str, value: bytes | str) -> bytes:
    return _b(num, _b(1, key) + _b(2, value))


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + _b(1, _b(1, api_version) + _b(2, kind)) + _b(2, raw) + _b(3, "") + _b(4, "")


def _pod(spec: bytes, meta: bytes = _b(1, "p")) -> bytes:
    return _envelope("v1", "Pod", _b(1, meta) + _b(2, spec))


def test_pointer_zeros_are_kept_and_plain_zeros_dropped() -> None:
    spec = (
        _b(2, _b(1, "c") + _b(2, "busybox") + _v(16, 0))  # stdin=false: plain bool, dropped
        + _v(4, 0)  # terminationGracePeriodSeconds=0: *int64, kept
        + _v(21, 0)  # automountServiceAccountToken=false: *bool, kept
        + _v(11, 0)  # hostNetwork=false: plain bool, dropped
        + _b(6, "")  # dnsPolicy="": dropped
        + _v(25, 0)  # priority=0: *int32, kept
    )
    obj = decode_envelope(_pod(spec))
    assert obj["spec"] == {
        "containers": [{"name": "c", "image": "busybox"}],
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "priority": 0,
    }


def test_fields_without_omitempty_keep_their_zero() -> None:
    # ContainerPort.containerPort is `json:"containerPort"`: Go's JSON writes 0.
    container = _b(1, "c") + _b(6, _v(3, 0) + _v(2, 0))
    obj = decode_envelope(_pod(_b(2, container)))
    assert obj["spec"]["containers"][0]["ports"] == [{"containerPort": 0}]


def test_negative_numbers() -> None:
    spec = _v(5, -5) + _b(2, _b(1, "c") + _b(10, _b(1, _b(1, _b(1, "true"))) + _v(2, -1)))
    obj = decode_envelope(_pod(spec))
    assert obj["spec"]["activeDeadlineSeconds"] == -5
    assert obj["spec"]["containers"][0]["livenessProbe"]["initialDelaySeconds"] == -1


def test_inlined_structs_volumes_probes_env_and_resources() -> None:
    probe = _b(1, _b(2, _b(1, "/healthz") + _b(2, _v(1, 1) + _b(3, "http")))) + _v(4, 5)
    tcp_probe = _b(1, _b(3, _b(1, _v(2, 8080))))
    env = [
        _b(1, "A") + _b(2, "1"),
        _b(1, "B") + _b(3, _b(3, _b(1, _b(1, "cm")) + _b(2, "k") + _v(3, 0))),
        _b(1, "C") + _b(3, _b(1, _b(2, "metadata.name"))),
    ]
    resources = _entry(1, "cpu", _b(1, "500m")) + _entry(2, "memory", _b(1, "64Mi"))
    container = (
        _b(1, "web")
        + _b(2, "nginx")
        + b"".join(_b(7, e) for e in env)
        + _b(8, resources)
        + _b(9, _b(1, "data") + _v(2, 1) + _b(3, "/data"))
        + _b(10, probe)
        + _b(11, tcp_probe)
        + _b(15, _v(4, 0) + _b(1, _b(2, "ALL")))
    )
    volumes = [
        _b(1, "data") + _b(2, _b(2, _b(2, _b(1, "1Gi")))),
        _b(1, "empty") + _b(2, _b(2, b"")),
        _b(1, "cfg")
        + _b(2, _b(19, _b(1, _b(1, "cm")) + _b(2, _b(1, "k") + _b(2, "p") + _v(3, 0o400)) + _v(3, 420))),
        _b(1, "tok") + _b(2, _b(26, _b(1, _b(4, _b(1, "token") + _v(2, 3600) + _b(3, "token"))))),
    ]
    spec = b"".join(_b(1, v) for v in volumes) + _b(2, container)
    obj = decode_envelope(_pod(spec))
    c = obj["spec"]["containers"][0]
    assert c["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": False}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    assert c["resources"] == {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}}
    assert c["volumeMounts"] == [{"name": "data", "readOnly": True, "mountPath": "/data"}]
    assert c["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5}
    assert c["readinessProbe"] == {"tcpSocket": {"port": 8080}}
    assert c["securityContext"] == {"runAsUser": 0, "capabilities": {"drop": ["ALL"]}}
    assert obj["spec"]["volumes"] == [
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "empty", "emptyDir": {}},
        {
            "name": "cfg",
            "configMap": {
                "name": "cm",
                "items": [{"key": "k", "path": "p", "mode": 256}],
                "defaultMode": 420,
            },
        },
        {
            "name": "tok",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"audience": "token", "expirationSeconds": 3600, "path": "token"}}
                ]
            },
        },
    ]


def test_metadata_times_owner_references_and_managed_fields() -> None:
    owner = _b(5, "apps/v1") + _b(1, "ReplicaSet") + _b(3, "rs") + _b(4, "u1") + _v(6, 1) + _v(7, 0)
    managed = (
        _b(1, "kubectl")
        + _b(2, "Update")
        + _b(4, _v(1, 1700000000))
        + _b(6, "FieldsV1")
        + _b(7, _b(1, b'{"f:data":{}}'))
    )
    meta = (
        _b(1, "p")
        + _b(8, _v(1, 1700000000) + _v(2, 5))
        + _b(9, b"")
        + _entry(11, "app", "web")
        + _entry(12, "note", "")
        + _b(13, owner)
        + _b(17, managed)
        + _v(10, 0)
    )
    obj = decode_envelope(_pod(b"", meta))
    assert obj["metadata"] == {
        "name": "p",
        "creationTimestamp": "2023-11-14T22:13:20Z",
        "labels": {"app": "web"},
        "annotations": {"note": ""},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "u1",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ],
        "managedFields": [
            {
                "manager": "kubectl",
                "operation": "Update",
                "time": "2023-11-14T22:13:20Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {}},
            }
        ],
        "deletionGracePeriodSeconds": 0,
    }
    assert obj["spec"] == {}


def test_microtime_binary_data_and_other_groups() -> None:
    lease = _b(2, _b(1, "holder") + _b(4, _v(1, 1700000000) + _v(2, 123456789)) + _v(2, 0))
    assert decode_envelope(_envelope("coordination.k8s.io/v1", "Lease", lease))["spec"] == {
        "holderIdentity": "holder",
        "renewTime": "2023-11-14T22:13:20.123456Z",
        "leaseDurationSeconds": 0,
    }
    cm = _entry(3, "bin", b"\x00\xff") + _v(4, 1)
    assert decode_envelope(_envelope("v1", "ConfigMap", cm)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "binaryData": {"bin": "AP8="},
        "immutable": True,
    }
    eviction = _b(1, _b(1, "p")) + _b(2, _v(1, 0) + _b(2, _b(1, "u")))
    assert decode_envelope(_envelope("policy/v1", "Eviction", eviction))["deleteOptions"] == {
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u"},
    }
    scale = _b(2, _v(1, 0)) + _b(3, _v(1, 0) + _b(2, ""))
    assert decode_envelope(_envelope("autoscaling/v1", "Scale", scale)) == {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "spec": {},  # ScaleSpec.replicas is a plain int32 with omitempty, as in Go's JSON
        "status": {"replicas": 0},
    }
    delete = _v(1, 5) + _b(4, "Foreground")
    assert decode_envelope(_envelope("apps/v1", "DeleteOptions", delete)) == {
        "apiVersion": "apps/v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 5,
        "propagationPolicy": "Foreground",
    }


def test_int_or_string_zero_is_a_value() -> None:
    rolling = _b(1, _v(2, 0)) + _b(2, _v(1, 1) + _b(3, "25%"))  # maxUnavailable: 0, maxSurge: "25%"
    spec = _b(4, _b(1, "RollingUpdate") + _b(2, rolling))
    obj = decode_envelope(_envelope("apps/v1", "Deployment", _b(2, spec)))
    assert obj["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
    }


def test_unknown_fields_are_skipped_and_last_value_wins() -> None:
    raw = (
        _b(1, _b(1, "a") + _b(99, "future") + _v(98, 7) + _b(1, "b"))
        + _b(50, b"\x01\x02")
        + _varint(51 << 3 | 5)
        + b"abcd"
    )
    assert decode_envelope(_envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "b"},
    }


def test_packed_repeated_integers() -> None:
    psc = _b(4, _varint(1000) + _varint(2000))
    assert decode_envelope(_pod(_b(14, psc)))["spec"]["securityContext"] == {
        "supplementalGroups": [1000, 2000]
    }


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "magic"),
        (b'{"kind":"ConfigMap"}', "magic"),
        (_envelope("v1", "Widget", b""), 'no kind "Widget" is registered for version "v1"'),
        (_envelope("v2", "ConfigMap", b""), 'no kind "ConfigMap" is registered for version "v2"'),
        (
            b"k8s\x00" + _b(1, _b(1, "v1") + _b(2, "ConfigMap")) + _b(2, b"") + _b(3, "gzip"),
            "content encoding",
        ),
        (_envelope("v1", "ConfigMap", b"\x0a\x05ab"), "past the end"),
        (_envelope("v1", "ConfigMap", b"\x0a"), "truncated varint"),
        (_envelope("v1", "ConfigMap", _v(1, 3)), "wrong wire type 0 for field metadata"),
        (_envelope("v1", "ConfigMap", _b(4, "yes")), "wrong wire type 2 for field immutable"),
        (_envelope("v1", "ConfigMap", b"\x00"), "illegal field number 0"),
        (_envelope("v1", "ConfigMap", b"\x0b\x0c"), "wire type 3"),
        (_envelope("v1", "ConfigMap", b"\xff" * 11), "varint"),
        (_envelope("v1", "ConfigMap", _b(1, _b(8, _v(1, 1 << 62)))), "timestamp out of range"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode_envelope(body)


def test_message_graph_has_no_cycles() -> None:
    # Nesting depth is bounded by the type graph, so hostile bodies cannot recurse deeply.
    messages = _tables()[1]

    def depth(name: str, seen: tuple[str, ...]) -> int:
        assert name not in seen, f"cycle through {name}"
        children = [f.type for f in messages[name].values() if f.type in messages]
        return 1 + max((depth(c, (*seen, name)) for c in children), default=0)

    assert max(depth(m, ()) for m in messages) < 20


def test_fuzz_never_raises_anything_but_protobuf_error() -> None:
    rng = random.Random(1234)
    valid = [b.read_bytes() for b in BODIES]
    samples: list[bytes] = []
    for body in valid:
        samples += [body[:n] for n in range(len(body))]  # every truncation
        for _ in range(50):
            mutated = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)
            samples.append(bytes(mutated))
    samples += [b"k8s\x00" + rng.randbytes(rng.randint(0, 64)) for _ in range(500)]
    samples += [_envelope("apps/v1", "Deployment", rng.randbytes(rng.randint(0, 200))) for _ in range(500)]
    for sample in samples:
        try:
            result = decode_envelope(sample)
        except ProtobufError:
            continue
        json.dumps(result)  # whatever decodes is plain JSON


# ---------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("body", BODIES, ids=[b.stem for b in BODIES])
def test_responses_encode_back_to_the_same_object(body: pathlib.Path) -> None:
    expected = json.loads(body.with_suffix(".json").read_text())
    encoded = encode_envelope(expected)
    assert encoded.startswith(b"k8s\x00") and decode_envelope(encoded) == expected


def test_status_lists_times_and_int_or_strings_encode() -> None:
    status = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "x" not found', "reason": "NotFound",
        "details": {"name": "x", "kind": "configmaps", "causes": [{"reason": "R", "message": "m", "field": "f"}]},
        "code": 404,
    }
    assert decode_envelope(encode_envelope(status)) == status
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {"b": "2", "a": "1"}},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                                 "livenessProbe": {"httpGet": {"port": "http", "path": "/"}},
                                 "resources": {"limits": {"cpu": "500m"}}}]},
        "status": {"phase": "Running", "startTime": "2026-01-02T03:04:06Z"},
    }
    pods = [pod, {**pod, "metadata": {"name": "q"}}]
    items = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7", "continue": "c"},
             "items": pods}
    # Items carry no TypeMeta on the wire (the list's kind says what they are).
    bare = [{k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in pods]
    assert decode_envelope(encode_envelope(items)) == {**items, "items": bare}
    # gogo's order: map entries by key, IntOrString with all three fields.
    assert b"\n\x01a\x12\x011" in encode_envelope(pod).split(b"\n\x01b")[0]


def test_what_has_no_table_or_does_not_fit_is_refused() -> None:
    with pytest.raises(ProtobufError):
        encode_envelope({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}})
    with pytest.raises(ProtobufError):
        encode_envelope({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 5}})


def test_every_served_kind_and_its_list_has_a_wire_table() -> None:
    """client-go writes every built-in kind in protobuf and asks for protobuf back."""
    from kubelite.api.protobuf import message_for, response_message_for
    from kubelite.api.registry import RESOURCES

    for r in RESOURCES:
        assert message_for(r.api_version, r.kind), r.kind
        assert response_message_for(r.api_version, r.list_kind), r.list_kind


def test_the_added_kinds_round_trip_with_their_pointers_and_inlined_structs() -> None:
    """Tables added by ``gen_protobuf_fields.py --add`` for resa's kinds: zero pointers stay, embedded
    structs (a VolumeAttachment's inline PersistentVolumeSpec source) are inlined, the aggregator's
    package maps to its OpenAPI names (required int32s kept at 0)."""
    apiservice = {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1.apps"},
        "spec": {"group": "apps", "version": "v1", "groupPriorityMinimum": 0, "versionPriority": 15,
                 "service": {"namespace": "ns", "name": "svc", "port": 0}},
        "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local", "message": "Local APIServices are always available"}]},
    }
    attachment = {
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "va"},
        "spec": {"attacher": "csi.example.com", "nodeName": "n1",
                 "source": {"inlineVolumeSpec": {"csi": {"driver": "csi.example.com", "volumeHandle": "h"},
                                                 "volumeMode": ""}}},
        "status": {"attached": False},
    }
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
          "spec": {"replicas": 0, "selector": {"app": "a"}}, "status": {"replicas": 0}}
    plc = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
           "metadata": {"name": "exempt"},
           "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}, "status": {}}
    for obj in (apiservice, attachment, rc, plc):
        assert decode_envelope(encode_envelope(obj)) == obj, obj["kind"]


def test_extra_values_are_lists_both_ways() -> None:
    """A user's extra values are Go's ``[]string`` (ExtraValue): a JSON list, in protobuf a
    message of ``repeated string items``. `kubectl auth whoami` prints them from a
    SelfSubjectReview's ``status.userInfo.extra``; a SubjectAccessReview carries them in
    ``spec.extra``."""
    extra = {"authentication.kubernetes.io/pod-name": ["web-0"], "scopes": ["a", "b"]}
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
              "status": {"userInfo": {"username": "u", "groups": ["g"], "extra": extra}}}
    assert decode_envelope(encode_envelope(review))["status"]["userInfo"]["extra"] == extra
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
           "spec": {"user": "u", "extra": extra, "resourceAttributes": {"verb": "get", "resource": "pods"}},
           "status": {"allowed": False}}
    assert decode_envelope(encode_envelope(sar))["spec"]["extra"] == extra
    with pytest.raises(ProtobufError):
        encode_envelope({**sar, "spec": {"user": "u", "extra": {"k": "not-a-list"}}})
