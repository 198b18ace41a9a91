"""Validation of certificates.k8s.io/v1 CertificateSigningRequests, in Kubernetes' words.

The counterpart of ``pkg/apis/certificates/validation``: the request must be one PEM
``CERTIFICATE REQUEST`` whose signature verifies (a CSR signed by another key than the one it
carries would let anyone obtain a certificate for someone else's key), usages must be known
and not repeated, the signer named, ``expirationSeconds`` at least ten minutes, Approved and
Denied mutually exclusive, and an update may not take a verdict back. Which conditions an
update may add, and whether it may set ``status.certificate``, depends on the path it took
(``/approval`` adds verdicts, ``/status`` sets the certificate): the strategy passes that in.

The request and certificate are base64 in JSON (Go ``[]byte``); a bad request is reported
with the bytes as Go's ``%#v`` prints them, as kube-apiserver does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kubelite.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from kubelite.api.validation import core
from kubelite.api.validation.names import is_dns1123_label, name_is_dns_subdomain

Obj = Mapping[str, Any]

LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"
KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"

VALID_USAGES = (
    "any", "cert sign", "client auth", "code signing", "content commitment", "crl sign", "data encipherment",
    "decipher only", "digital signature", "email protection", "encipher only", "ipsec end system",
    "ipsec tunnel", "ipsec user", "key agreement", "key encipherment", "microsoft sgc", "netscape sgc",
    "ocsp signing", "s/mime", "server auth", "signing", "timing",
)
_TRUE_ONLY = ("Approved", "Denied", "Failed")
_ALL_STATUSES = ("False", "True", "Unknown")


def _bytes(value: Any) -> bytes:
    """A Go []byte field from its JSON (base64) form; what does not decode counts as empty."""
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _pem_blocks(data: bytes) -> list[tuple[str, bool, bytes]]:
    """(type, has headers, DER) of each PEM block, as encoding/pem.Decode finds them in turn."""
    blocks = []
    text = data.decode("latin-1")
    pos = 0
    while True:
        start = text.find("-----BEGIN ", pos)
        if start < 0:
            break
        head_end = text.find("-----", start + 11)
        if head_end < 0:
            break
        kind = text[start + 11 : head_end]
        end_marker = f"-----END {kind}-----"
        end = text.find(end_marker, head_end)
        if end < 0:
            break
        body = text[head_end + 5 : end].strip("\r\n")
        headers = any(":" in line for line in body.splitlines())
        lines = [line for line in body.splitlines() if ":" not in line]
        try:
            der = base64.b64decode("".join(lines).strip(), validate=False)
        except (binascii.Error, ValueError):
            der = b""
        blocks.append((kind, headers, der))
        pos = end + len(end_marker)
    return blocks


def parse_csr(request: bytes) -> x509.CertificateSigningRequest:
    """certificates.ParseCSR: the first PEM block must be a CERTIFICATE REQUEST that parses."""
    blocks = _pem_blocks(request)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        return x509.load_der_x509_csr(blocks[0][2])
    except ValueError:
        raise ValueError("x509: malformed certificate request") from None


def _check_request(request: bytes) -> str | None:
    try:
        csr = parse_csr(request)
    except ValueError as e:
        return str(e)
    try:
        if not csr.is_signature_valid:
            return "x509: ECDSA verification failure" if "EC" in type(csr.public_key()).__name__ else \
                "crypto/rsa: verification error"
    except (InvalidSignature, ValueError, TypeError) as e:
        return f"x509: {e}"
    return None


def _check_certificate(pem: bytes) -> str | None:
    """validateCertificate: only CERTIFICATE blocks, no headers, each parsing, at least one."""
    if not pem:
        return None
    blocks = _pem_blocks(pem)
    for kind, headers, der in blocks:
        if kind != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{kind}"'
        if headers:
            return "no PEM block headers are permitted"
        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            return "x509: malformed certificate"
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    return None


def validate_signer_name(path: str, name: Any) -> list[FieldError]:
    """ValidateSignerName: ``example.com/signer-name``, the domain of DNS labels."""
    if not name:
        return [required(path, "")]
    segments = str(name).split("/")
    if len(segments) != 2:
        return [invalid(path, name, "must be a fully qualified domain and path of the form 'example.com/signer-name'")]
    errs: list[FieldError] = []
    domain, signer = segments
    if len(domain) > 253:
        errs.append(invalid(path, domain, "must be no more than 253 characters"))
    labels = domain.split(".")
    if len(labels) < 2:
        errs.append(invalid(path, domain, "should be a domain with at least two segments separated by dots"))
    for label in labels:
        for msg in is_dns1123_label(label):
            errs.append(invalid(path, label, msg))
    if not signer:
        errs.append(invalid(path, name, "validating path: must not be empty"))
    return errs


def _find(obj: Obj, type_: str) -> list[Obj]:
    return [c for c in ((obj.get("status") or {}).get("conditions") or []) if c.get("type") == type_]


def validate_csr(
    obj: Obj, old: Obj | None, *, allow_setting_approval: bool = False, allow_setting_certificate: bool = False
) -> list[FieldError]:
    """validateCertificateSigningRequest[Create|Update|StatusUpdate|ApprovalUpdate]."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if old is None:
        errs = core.object_meta(meta, namespaced=False, name_validator=name_is_dns_subdomain)
    else:
        errs = core.object_meta_update(meta, old.get("metadata") or {})
    old_spec = (old or {}).get("spec") or {}
    old_status = (old or {}).get("status") or {}
    request_text = spec.get("request")
    request = _bytes(request_text)
    problem = _check_request(request)
    if problem is not None:
        errs.append(invalid("spec.request", request, problem))
    usages = spec.get("usages") or []
    if not usages:
        errs.append(required("spec.usages", ""))
    old_usages = old_spec.get("usages") or []
    if not any(u not in VALID_USAGES for u in old_usages):  # compatibility with stored data
        for i, usage in enumerate(usages):
            if usage not in VALID_USAGES:
                errs.append(not_supported(f"spec.usages[{i}]", usage, VALID_USAGES))
    if len(set(old_usages)) == len(old_usages):
        seen: set[str] = set()
        for i, usage in enumerate(usages):
            if usage in seen:
                errs.append(duplicate(f"spec.usages[{i}]", usage))
            seen.add(usage)
    signer = spec.get("signerName")
    if signer == LEGACY_UNKNOWN_SIGNER and old_spec.get("signerName") != LEGACY_UNKNOWN_SIGNER:
        errs.append(invalid("spec.signerName", signer, "the legacy signerName is not allowed via this API version"))
    elif signer != LEGACY_UNKNOWN_SIGNER:
        errs.extend(validate_signer_name("spec.signerName", signer))
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, int) and seconds < 600:
        errs.append(invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 600 seconds (10 minutes)"))
    errs.extend(_validate_conditions(status.get("conditions") or [], old_status.get("conditions") or []))
    certificate = _bytes(status.get("certificate"))
    old_certificate = _bytes(old_status.get("certificate"))
    if old is None or certificate != old_certificate:
        problem = _check_certificate(certificate)
        if problem is not None:
            errs.append(invalid("status.certificate", "<certificate data>", problem))
    if old is None:
        return errs
    for t in ("Approved", "Denied", "Failed"):
        if len(_find(obj, t)) < len(_find(old, t)):
            errs.append(forbidden("status.conditions", f'updates may not remove a condition of type "{t}"'))
    if not allow_setting_approval:
        for t in ("Approved", "Denied"):
            new_c, old_c = _find(obj, t), _find(old, t)
            if len(new_c) > len(old_c):
                errs.append(forbidden("status.conditions", f'updates may not add a condition of type "{t}"'))
            elif len(new_c) == len(old_c) and new_c != old_c:
                errs.append(forbidden("status.conditions", f'updates may not modify a condition of type "{t}"'))
    if certificate != old_certificate:
        if not allow_setting_certificate:
            errs.append(forbidden("status.certificate", "updates may not set certificate content"))
        elif old_certificate:
            errs.append(forbidden("status.certificate", "updates may not modify existing certificate content"))
    return errs


def _validate_conditions(conditions: list[Obj], old_conditions: list[Obj]) -> list[FieldError]:
    errs: list[FieldError] = []
    old_types = [c.get("type") for c in old_conditions]
    tolerate_both = "Approved" in old_types and "Denied" in old_types
    tolerate_duplicates = len(set(old_types)) != len(old_types)
    seen: set[str] = set()
    approved = denied = False
    for i, c in enumerate(conditions):
        path = f"status.conditions[{i}]"
        type_ = c.get("type") or ""
        if not type_ and "" not in old_types:
            errs.append(required(f"{path}.type", ""))
        allowed = ("True",) if type_ in _TRUE_ONLY else _ALL_STATUSES
        if not c.get("status"):
            errs.append(required(f"{path}.status", ""))
        elif c["status"] not in allowed:
            errs.append(not_supported(f"{path}.status", c["status"], allowed))
        if not tolerate_both:
            if type_ == "Approved":
                approved = True
                if denied:
                    errs.append(invalid(f"{path}.type", type_, "Approved and Denied conditions are mutually exclusive"))
            elif type_ == "Denied":
                denied = True
                if approved:
                    errs.append(invalid(f"{path}.type", type_, "Approved and Denied conditions are mutually exclusive"))
        if not tolerate_duplicates:
            if type_ in seen:
                errs.append(duplicate(f"{path}.type", type_))
            seen.add(type_)
    return errs


def validate_certificate_signing_request(obj: Obj, old: Obj | None) -> list[FieldError]:
    """The main resource's create and update (no verdicts, no certificate)."""
    return validate_csr(obj, old)


VALIDATORS = {("certificates.k8s.io", "CertificateSigningRequest"): validate_certificate_signing_request}
