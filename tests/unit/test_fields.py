"""Field selectors: syntax, escaping, per-kind labels and the fields objects expose."""

from __future__ import annotations

import pytest

from kubelite.api.fields import object_fields, parse_field_selector
from kubelite.api.labels import SelectorError


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("spec.nodeName=n1", "spec.nodeName=n1"),
        ("status.phase!=Running,spec.nodeName==n1", "spec.nodeName=n1,status.phase!=Running"),
        (r"metadata.name=a\,b\=c\\d", r"metadata.name=a\,b\=c\\d"),
        ("a=b,,", "a=b"),
        ("=", ""),  # a bare "=" term selects everything, as in Kubernetes
    ],
)
def test_parse_canonical(text: str, canonical: str) -> None:
    assert str(parse_field_selector(text)) == canonical


def test_escaped_value_is_unescaped() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b")
    assert sel.requires_exact_match("metadata.name") == "a,b"
    assert sel.matches({"metadata.name": "a,b"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescapedRune character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse_field_selector(text)
    assert str(e.value) == message


def test_matching_missing_field_is_empty() -> None:
    assert parse_field_selector("spec.nodeName=").matches({})
    assert parse_field_selector("spec.nodeName!=n1").matches({})
    assert not parse_field_selector("spec.nodeName=n1").matches({"spec.nodeName": "n2"})


@pytest.mark.parametrize(
    ("group", "kind", "text", "message"),
    [
        ("", "Pod", "spec.foo=x", "field label not supported: spec.foo"),
        ("", "Node", "metadata.namespace=x", "field label not supported: metadata.namespace"),
        ("", "Namespace", "metadata.namespace=x", "field label not supported: metadata.namespace"),
        ("apps", "ReplicaSet", "status.replicas=0",
         '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
        ("", "ConfigMap", "data.x=1",
         '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'),
        ("events.k8s.io", "Event", "involvedObject.name=x", "field label not supported: involvedObject.name"),
    ],
)
def test_unsupported_labels(group: str, kind: str, text: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse_field_selector(text).validate_for(group, kind)
    assert str(e.value) == message


def test_labels_are_converted_to_internal_names() -> None:
    assert str(parse_field_selector("spec.host=n1").validate_for("", "Pod")) == "spec.nodeName=n1"
    sel = parse_field_selector("regarding.name=p,reportingController=kubelet").validate_for("events.k8s.io", "Event")
    assert str(sel) == "involvedObject.name=p,reportingComponent=kubelet"


def test_pod_fields() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": True},
        "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]},
    }
    fields = object_fields("", "Pod", pod)
    assert fields["spec.hostNetwork"] == "true"
    assert fields["status.podIP"] == "10.0.0.9"
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Pending,metadata.namespace=ns").validate_for("", "Pod")
    assert sel.matches(fields)
    assert object_fields("", "Pod", {"metadata": {"name": "q"}})["spec.hostNetwork"] == "false"


def test_event_fields_both_apis_agree() -> None:
    core = {
        "metadata": {"name": "e", "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "Started", "type": "Normal", "reportingComponent": "kubelet",
    }
    events = {
        "metadata": {"name": "e", "namespace": "ns"},
        "regarding": {"kind": "Pod", "name": "p"},
        "reason": "Started", "type": "Normal", "reportingController": "kubelet",
    }
    assert object_fields("", "Event", core) == object_fields("events.k8s.io", "Event", events)
    assert object_fields("", "Event", core)["source"] == "kubelet"


def test_other_kinds() -> None:
    assert object_fields("", "Secret", {"metadata": {"name": "s"}, "type": "Opaque"})["type"] == "Opaque"
    assert object_fields("", "Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}) == {
        "metadata.name": "n", "metadata.namespace": "", "spec.unschedulable": "true",
    }
    svc = object_fields("", "Service", {"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP"}})
    assert svc["spec.clusterIP"] == "10.96.0.1" and svc["spec.type"] == "ClusterIP"


def test_certificate_signing_requests_select_by_signer() -> None:
    sel = parse_field_selector("spec.signerName=example.com/x").validate_for("certificates.k8s.io",
                                                                                 "CertificateSigningRequest")
    csr = {"metadata": {"name": "c"}, "spec": {"signerName": "example.com/x"}}
    assert sel.matches(object_fields("certificates.k8s.io", "CertificateSigningRequest", csr))
    assert not sel.matches(object_fields("certificates.k8s.io", "CertificateSigningRequest",
                                         {"metadata": {"name": "d"}, "spec": {"signerName": "kubernetes.io/y"}}))
    with pytest.raises(SelectorError):  # cluster-scoped: no metadata.namespace
        parse_field_selector("metadata.namespace=x").validate_for("certificates.k8s.io", "CertificateSigningRequest")
