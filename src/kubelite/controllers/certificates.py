"""The csrsigning controller: approved CertificateSigningRequests get a certificate from the cluster CA.

kube-controller-manager's ``pkg/controller/certificates/signer``. Signing runs here, in the
controllers process, with the CA handed over by ``kubelite up`` as kube-controller-manager is
handed ``--cluster-signing-cert-file``/``--cluster-signing-key-file``: the API server only
stores requests and verdicts, and a cluster whose controllers run elsewhere (or without the
key) still serves the API, its requests simply staying unsigned. It signs for the built-in
signers whose rules it knows:

- ``kubernetes.io/kube-apiserver-client``: client certificates the API server accepts (the
  subject's CN becomes the user name, its O the groups); usages ``client auth``, optionally
  ``digital signature`` and ``key encipherment``, nothing else;
- ``kubernetes.io/kube-apiserver-client-kubelet``: a kubelet's client certificate
  (``O=system:nodes``, ``CN=system:node:<name>``, no SANs);
- ``kubernetes.io/kubelet-serving``: a kubelet's serving certificate (``O=system:nodes``,
  ``CN=system:node:<name>``, DNS or IP SANs only, ``server auth`` + ``digital signature``
  [+ ``key encipherment``]).

A request that breaks its signer's rules gets a ``Failed`` condition saying why; requests of
other signers (``kubernetes.io/legacy-unknown`` included) are never signed here. The
certificate lives ``min(expirationSeconds, --cluster-signing-duration)``, backdated five
minutes for clock skew (not its end, for short-lived ones).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import pathlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.api.registry import lookup
from kubelite.api.types import EventType, Obj
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

CSRS = lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
SIGNERS = (KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING)
BACKDATE = dt.timedelta(minutes=5)
SHORT = dt.timedelta(hours=8)

_KEY_USAGES = {
    "signing": "digital_signature", "digital signature": "digital_signature",
    "content commitment": "content_commitment", "key encipherment": "key_encipherment",
    "key agreement": "key_agreement", "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
    "crl sign": "crl_sign", "encipher only": "encipher_only", "decipher only": "decipher_only",
}
_EXT_USAGES = {
    "any": x509.ObjectIdentifier("2.5.29.37.0"), "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION, "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"), "timing": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
}

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


class SignerError(Exception):
    """The request breaks its signer's rules: the text goes into the Failed condition."""


def _attrs(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def check_kube_apiserver_client(req: x509.CertificateSigningRequest, usages: list[str]) -> None:
    """validAPIServerClientUsages: client auth required; digital signature, key encipherment optional."""
    for u in usages:
        if u not in ("digital signature", "key encipherment", "client auth"):
            raise SignerError(f"invalid usage for client certificate: {u}")
    if "client auth" not in usages:
        raise SignerError("missing required usage for client certificate: client auth")


def check_kubelet_client(req: x509.CertificateSigningRequest, usages: list[str]) -> None:
    """ValidateKubeletClientCSR."""
    if _attrs(req.subject, NameOID.ORGANIZATION_NAME) != ["system:nodes"]:
        raise SignerError("subject organization is not system:nodes")
    sans = _sans(req)
    if sans is not None:
        if sans.get_values_for_type(x509.DNSName):
            raise SignerError("DNS subjectAltNames are not allowed")
        if sans.get_values_for_type(x509.RFC822Name):
            raise SignerError("Email subjectAltNames are not allowed")
        if sans.get_values_for_type(x509.IPAddress):
            raise SignerError("IP subjectAltNames are not allowed")
        if sans.get_values_for_type(x509.UniformResourceIdentifier):
            raise SignerError("URI subjectAltNames are not allowed")
    if not any(c.startswith("system:node:") for c in _attrs(req.subject, NameOID.COMMON_NAME)):
        raise SignerError("subject common name does not begin with system:node:")
    if set(usages) not in ({"digital signature", "key encipherment", "client auth"}, {"digital signature", "client auth"}) \
            or len(set(usages)) != len(usages):
        raise SignerError("usages did not match [client auth digital signature key encipherment]")


def check_kubelet_serving(req: x509.CertificateSigningRequest, usages: list[str]) -> None:
    """ValidateKubeletServingCSR."""
    if _attrs(req.subject, NameOID.ORGANIZATION_NAME) != ["system:nodes"]:
        raise SignerError("subject organization is not system:nodes")
    sans = _sans(req)
    dns = sans.get_values_for_type(x509.DNSName) if sans else []
    ips = sans.get_values_for_type(x509.IPAddress) if sans else []
    if not dns and not ips:
        raise SignerError("DNS or IP subjectAltName is required")
    if sans is not None and sans.get_values_for_type(x509.RFC822Name):
        raise SignerError("Email subjectAltNames are not allowed")
    if sans is not None and sans.get_values_for_type(x509.UniformResourceIdentifier):
        raise SignerError("URI subjectAltNames are not allowed")
    if set(usages) not in ({"digital signature", "key encipherment", "server auth"}, {"digital signature", "server auth"}) \
            or len(set(usages)) != len(usages):
        raise SignerError("usages did not match [digital signature key encipherment server auth]")
    if not any(c.startswith("system:node:") for c in _attrs(req.subject, NameOID.COMMON_NAME)):
        raise SignerError("subject common name does not begin with system:node:")


CHECKS = {
    KUBE_APISERVER_CLIENT: check_kube_apiserver_client,
    KUBE_APISERVER_CLIENT_KUBELET: check_kubelet_client,
    KUBELET_SERVING: check_kubelet_serving,
}


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    return x509.load_pem_x509_csr(pem)


def sign(
    req: x509.CertificateSigningRequest, usages: list[str], expiration_seconds: int | None, *,
    ca_cert: x509.Certificate, ca_key: SigningKey, max_duration: dt.timedelta, now: dt.datetime | None = None,
) -> bytes:
    """The PEM certificate for an approved request (PermissiveSigningPolicy + the signer's template)."""
    now = now or dt.datetime.now(dt.UTC)
    ttl = max_duration
    if expiration_seconds is not None:
        ttl = min(ttl, dt.timedelta(seconds=expiration_seconds))
    not_after = now + ttl if ttl < SHORT else now + ttl - BACKDATE
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    flags = {v: False for v in _KEY_USAGES.values()}
    for u in usages:
        if u in _KEY_USAGES:
            flags[_KEY_USAGES[u]] = True
    if not flags["key_agreement"]:
        flags["encipher_only"] = flags["decipher_only"] = False
    ext = [_EXT_USAGES[u] for u in usages if u in _EXT_USAGES]
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca_cert.subject)
        .public_key(req.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if any(flags.values()):  # Go's x509 writes no KeyUsage extension without a bit (an empty one is invalid)
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(dict.fromkeys(ext))), critical=False)
    sans = _sans(req)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    cert = builder.sign(ca_key, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM)


def _true(csr: Obj, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True"
               for c in (csr.get("status") or {}).get("conditions") or [])


class CSRSigningController(Controller):
    name = "csrsigning"
    service_account = "certificate-controller"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        assert CSRS is not None
        self.rt = CSRS
        opts = ctx.options
        self.ca: tuple[x509.Certificate, SigningKey] | None = None
        self.max_duration = dt.timedelta(seconds=opts.cluster_signing_duration)
        if opts.cluster_signing_cert_file and opts.cluster_signing_key_file:
            cert = x509.load_pem_x509_certificate(pathlib.Path(opts.cluster_signing_cert_file).read_bytes())
            key = serialization.load_pem_private_key(pathlib.Path(opts.cluster_signing_key_file).read_bytes(), None)
            if not isinstance(key, SigningKey):
                raise ValueError(f"{opts.cluster_signing_key_file}: not a key that can sign certificates")
            self.ca = (cert, key)
        else:
            log.info("csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file: signing nothing")
        self.csrs = ctx.informer(self.rt)
        self.csrs.add_handler(self._on_csr)

    def _on_csr(self, kind: EventType, csr: Obj, old: Obj | None) -> None:
        if kind != "DELETED" and self.ca is not None:
            self.enqueue(csr)

    async def reconcile(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or self.ca is None:
            return
        spec, status = csr.get("spec") or {}, csr.get("status") or {}
        check = CHECKS.get(spec.get("signerName") or "")
        if check is None or not _true(csr, "Approved") or status.get("certificate") or _true(csr, "Failed"):
            return
        usages = list(spec.get("usages") or [])
        try:
            req = parse_request(base64.b64decode(spec.get("request") or ""))
        except ValueError as e:
            log.info("csrsigning: unable to parse csr %q: %s", key, e)
            return
        try:
            check(req, usages)
        except SignerError as e:
            await self._fail(csr, str(e))
            return
        ca_cert, ca_key = self.ca
        seconds = spec.get("expirationSeconds")
        pem = sign(req, usages, seconds if isinstance(seconds, int) else None,
                   ca_cert=ca_cert, ca_key=ca_key, max_duration=self.max_duration)
        updated: dict[str, Any] = {**csr, "status": {**status, "certificate": base64.b64encode(pem).decode()}}
        await self.client.update_status(self.rt, updated)

    async def _fail(self, csr: Obj, message: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = dict(csr.get("status") or {})
        status["conditions"] = [*(status.get("conditions") or []), {
            "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now,
        }]
        await self.client.update_status(self.rt, {**csr, "status": status})
