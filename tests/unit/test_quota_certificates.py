"""Pure logic behind LimitRanger, ResourceQuota and the certificates API: quantities as Go prints
them, quota pricing, the admission checks' texts, CSR validation and the signers' rules."""

from __future__ import annotations

import base64
import datetime as dt
import pathlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.api import quota as apiquota
from kubelite.api.errors import StatusError
from kubelite.api.registry import lookup
from kubelite.api.resource import format_quantity, parse_quantity, quantity_format
from kubelite.api.validation import validate
from kubelite.api.validation.certificates import validate_csr
from kubelite.apiserver.admission import Admission, limit_ranger_mutate, limit_ranger_validate
from kubelite.controllers import certificates as signer
from kubelite.store.sqlite import SqliteStore

Obj = dict[str, Any]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("1", "1"), ("2000m", "2"), ("1000", "1k"), ("1500m", "1500m"), ("0.5", "500m"), ("1Gi", "1Gi"),
     ("1536Mi", "1536Mi"), ("2048Mi", "2Gi"), ("512", "512"), ("1e3", "1e3"), ("0", "0"), ("100n", "100n")],
)
def test_quantity_string(text: str, canonical: str) -> None:
    assert format_quantity(parse_quantity(text), quantity_format(text)) == canonical


def test_quota_sums_keep_the_first_format() -> None:
    assert apiquota.add({"cpu": "500m"}, {"cpu": "500m"}) == {"cpu": "1"}
    assert apiquota.add({"requests.memory": "0"}, {"requests.memory": "128Mi"}) == {"requests.memory": "128Mi"}
    assert apiquota.add({"m": "128Mi"}, {"m": "128Mi", "pods": "1"}) == {"m": "256Mi", "pods": "1"}
    assert apiquota.pretty({"pods": "1", "limits.cpu": "2000m"}) == "limits.cpu=2,pods=1"


def _pod(*containers: Obj, init: list[Obj] | None = None, phase: str = "Pending") -> Obj:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), "initContainers": init or []},
            "status": {"phase": phase}}


def test_pod_usage_sums_containers_and_takes_the_largest_init_container() -> None:
    a = {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}}
    b = {"name": "b", "resources": {"requests": {"cpu": "300m"}}}
    init = [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]
    assert apiquota.pod_usage(_pod(a, b, init=init)) == {
        "count/pods": "1", "pods": "1", "cpu": "1", "requests.cpu": "1", "memory": "64Mi",
        "requests.memory": "64Mi", "limits.cpu": "200m",
    }
    assert apiquota.pod_usage(_pod(a, phase="Succeeded")) == {"count/pods": "1"}  # a finished pod holds nothing


def test_missing_constraints_text() -> None:
    pod = _pod({"name": "c"}, {"name": "d", "resources": {"limits": {"cpu": "1"}}})
    assert apiquota.missing_constraints(["limits.cpu", "pods", "requests.memory"], pod) == (
        "must specify limits.cpu for: c; requests.memory for: c,d"
    )
    assert apiquota.missing_constraints(["pods"], pod) is None


def test_limit_ranger_defaults_and_annotation() -> None:
    lr = {"spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "500m"}}]}}
    pod = _pod({"name": "c", "resources": {"limits": {"cpu": "2"}}}, {"name": "d"})
    limit_ranger_mutate(pod, lr)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "2"}, "requests": {"cpu": "500m"}}
    assert pod["spec"]["containers"][1]["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu request for container c; cpu request for container d; cpu limit for container d"
    )


def test_limit_ranger_messages() -> None:
    lr = {"spec": {"limits": [
        {"type": "Container", "min": {"memory": "64Mi"}, "max": {"cpu": "1"}},
        {"type": "Pod", "max": {"cpu": "1500m"}},
    ]}}
    pod = _pod({"name": "c", "resources": {"limits": {"cpu": "1200m"}}},
               {"name": "d", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "32Mi"}}})
    assert limit_ranger_validate(pod, lr) == [
        "minimum memory usage per Container is 64Mi.  No request is specified",
        "maximum cpu usage per Container is 1, but limit is 1200m",
        "minimum memory usage per Container is 64Mi, but request is 32Mi",
        "maximum cpu usage per Pod is 1500m, but limit is 2200m",
    ]


def test_quota_admission_charges_and_refuses(tmp_path: pathlib.Path) -> None:
    admission = Admission(SqliteStore(str(tmp_path / "s.db")))
    pods = lookup("", "v1", "pods")
    assert pods is not None
    quota: Obj = {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1"}},
             "status": {"hard": {"pods": "2", "requests.cpu": "1"}, "used": {"pods": "1", "requests.cpu": "800m"}}}
    pod = _pod({"name": "c", "resources": {"requests": {"cpu": "100m"}}})
    charged = admission._charge(pods, pod, [(quota, 7, "/k")])
    assert charged[0][0]["status"]["used"] == {"pods": "2", "requests.cpu": "900m"}
    big = _pod({"name": "c", "resources": {"requests": {"cpu": "300m"}}})
    with pytest.raises(StatusError) as e:
        admission._charge(pods, big, [(quota, 7, "/k")])
    assert e.value.code == 403
    assert e.value.message == (
        'pods "p" is forbidden: exceeded quota: q, requested: requests.cpu=300m, used: requests.cpu=800m, '
        "limited: requests.cpu=1"
    )
    unknown = {**quota, "status": {"hard": quota["status"]["hard"]}}
    with pytest.raises(StatusError) as e:
        admission._charge(pods, pod, [(unknown, 7, "/k")])
    assert e.value.message == 'pods "p" is forbidden: status unknown for quota: q, resources: pods,requests.cpu'
    # A quota the controller has not seen yet (no status.hard) is not enforced.
    assert admission._charge(pods, big, [({**quota, "status": {}}, 7, "/k")]) == []


# ---------------------------------------------------------------------------- certificates


def _request(cn: str, org: str | None = None, dns: list[str] | None = None) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return key, b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _csr(request: bytes, **spec: Any) -> Obj:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "x"},
            "spec": {"request": base64.b64encode(request).decode(), "signerName": "example.com/s",
                     "usages": ["client auth"], **spec}}


def test_csr_validation() -> None:
    _, request = _request("a")
    assert validate("certificates.k8s.io", "CertificateSigningRequest", _csr(request)) == []
    errs = [str(e) for e in validate("certificates.k8s.io", "CertificateSigningRequest",
                                     _csr(request, signerName="nodomain", usages=["bogus"], expirationSeconds=10))]
    assert errs[0].startswith('spec.usages[0]: Unsupported value: "bogus": supported values: "any", "cert sign"')
    assert errs[1:] == [
        "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form "
        "'example.com/signer-name'",
        "spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 600 seconds (10 minutes)",
    ]
    old = _csr(request)
    old["metadata"]["resourceVersion"] = "5"
    old["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    new = _csr(request)
    new["metadata"]["resourceVersion"] = "5"
    new["status"] = {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}
    assert [str(e) for e in validate_csr(new, old, allow_setting_approval=True)] == [
        'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually exclusive'
    ]
    assert 'status.conditions: Forbidden: updates may not add a condition of type "Denied"' in [
        str(e) for e in validate_csr(new, old)
    ]


def test_signer_rules_and_certificate(tmp_path: pathlib.Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _, pem = _request("alice", "devs")
    req = signer.parse_request(pem)
    signer.check_kube_apiserver_client(req, ["client auth", "digital signature"])
    with pytest.raises(signer.SignerError, match="missing required usage for client certificate: client auth"):
        signer.check_kube_apiserver_client(req, ["digital signature"])
    with pytest.raises(signer.SignerError, match="subject organization is not system:nodes"):
        signer.check_kubelet_serving(req, ["digital signature", "server auth"])
    _, node_pem = _request("system:node:n", "system:nodes")
    with pytest.raises(signer.SignerError, match="DNS or IP subjectAltName is required"):
        signer.check_kubelet_serving(signer.parse_request(node_pem), ["digital signature", "server auth"])

    cert = x509.load_pem_x509_certificate(signer.sign(
        req, ["client auth", "digital signature"], 86400, ca_cert=ca, ca_key=ca_key,
        max_duration=dt.timedelta(days=365), now=now,
    ))
    assert cert.issuer == ca.subject
    assert cert.not_valid_before_utc == (now - dt.timedelta(minutes=5)).replace(microsecond=0)
    # Not short-lived (over 8h): the end is backdated as well.
    assert cert.not_valid_after_utc == (now + dt.timedelta(days=1) - dt.timedelta(minutes=5)).replace(microsecond=0)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    capped = x509.load_pem_x509_certificate(signer.sign(
        req, ["client auth"], None, ca_cert=ca, ca_key=ca_key, max_duration=dt.timedelta(hours=1), now=now,
    ))
    assert capped.not_valid_after_utc == (now + dt.timedelta(hours=1)).replace(microsecond=0)
    with pytest.raises(x509.ExtensionNotFound):  # no usage bit: no (invalid, empty) KeyUsage extension
        capped.extensions.get_extension_for_class(x509.KeyUsage)
