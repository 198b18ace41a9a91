"""The cluster's PKI: a CA, the API server's serving certificate, and the client certificates.

Pods run processes as root on this machine, so an API port open to every local user would
hand out root. Like kubeadm, the first start creates a cluster CA and signs a serving
certificate (SANs: loopback, the ``kubernetes`` Service names and the first service IP) and
an admin client certificate (``O=system:masters``); the kubeconfig embeds them. Every key is
written with mode 0600 before any byte of it is. Later starts reuse the files, so a
kubeconfig handed out once keeps working. A service-account signing key is made too, so the
node agent can mount signed tokens into pods.

Each component then gets a client certificate of its own, as kubeadm issues them into
``controller-manager.conf``, ``scheduler.conf`` and ``kubelet.conf`` (and kube-up into
kube-proxy's kubeconfig): the subject is the identity the bootstrap RBAC policy and the Node
authorizer know (``CN=system:kube-controller-manager``, ``CN=system:kube-scheduler``,
``CN=system:node:<name>, O=system:nodes``, ``CN=system:kube-proxy``), so that each holds only
what its Kubernetes counterpart holds, never ``system:masters``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class PKI:
    dir: pathlib.Path

    @property
    def ca_cert(self) -> pathlib.Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> pathlib.Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> pathlib.Path:
        return self.dir / "apiserver.crt"

    @property
    def server_key(self) -> pathlib.Path:
        return self.dir / "apiserver.key"

    @property
    def admin_cert(self) -> pathlib.Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> pathlib.Path:
        return self.dir / "admin.key"

    @property
    def sa_key(self) -> pathlib.Path:
        return self.dir / "sa.key"

    def client_cert(self, base: str) -> pathlib.Path:
        return self.dir / f"{base}.crt"

    def client_key(self, base: str) -> pathlib.Path:
        return self.dir / f"{base}.key"


@dataclass(frozen=True)
class ClientIdentity:
    """A component's client certificate: its file name in pki/ and its subject."""

    base: str
    user: str
    groups: tuple[str, ...] = ()


CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
KUBE_PROXY = ClientIdentity("kube-proxy", "system:kube-proxy")
# The NetworkPolicy enforcement (kube-network-policies runs as a service account of its own).
NETWORK_POLICIES = ClientIdentity("kube-network-policies", "system:kube-network-policies")


def kubelet_identity(node_name: str) -> ClientIdentity:
    """The kubelet's identity: what the Node authorizer and NodeRestriction recognise."""
    return ClientIdentity("kubelet-client", f"system:node:{node_name}", ("system:nodes",))


def _write_private(path: pathlib.Path, data: bytes) -> None:
    # O_EXCL-free but created 0600 from the first byte: never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: as strong as RSA-3072 for our purpose, and ~100x faster to generate, which keeps
    # the first `kubelite up` well under a second.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, *orgs: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _subject(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return (cn[0] if cn else ""), orgs


def _ensure_client(pki: PKI, ident: ClientIdentity, ca_name: x509.Name, ca_key: ec.EllipticCurvePrivateKey) -> None:
    """The component's client certificate, made again when missing, for another subject (the
    node was renamed) or by another CA."""
    cert_path, key_path = pki.client_cert(ident.base), pki.client_key(ident.base)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if _subject(cert) == (ident.user, ident.groups) and cert.issuer == ca_name:
            return
    key = _key()
    cert = _sign(_name(ident.user, *ident.groups), key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(directory: pathlib.Path, *, cluster_name: str, service_ip: str,
               clients: tuple[ClientIdentity, ...] = ()) -> PKI:
    """Create whatever part of the PKI is missing; keep what exists."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    pki = PKI(directory)
    if pki.ca_cert.exists() and pki.ca_key.exists():
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_name = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()).subject
    else:
        ca_key = _key()
        ca_name = _name(f"kubelite-ca-{cluster_name}")
        ca = _sign(ca_name, ca_key, ca_name, ca_key, ca=True)
        _write_private(pki.ca_key, _pem_key(ca_key))
        pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for stale in (pki.server_cert, pki.admin_cert):  # signed by a CA that is gone
            stale.unlink(missing_ok=True)

    if not (pki.server_cert.exists() and pki.server_key.exists()):
        key = _key()
        dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", service_ip)]
        cert = _sign(
            _name("kube-apiserver"), key, ca_name, ca_key, sans=sans, usage=[ExtendedKeyUsageOID.SERVER_AUTH]
        )
        _write_private(pki.server_key, _pem_key(key))
        pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    if not (pki.admin_cert.exists() and pki.admin_key.exists()):
        key = _key()
        cert = _sign(
            _name("kubernetes-admin", "system:masters"),
            key,
            ca_name,
            ca_key,
            usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        _write_private(pki.admin_key, _pem_key(key))
        pki.admin_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    if not pki.sa_key.exists():
        _write_private(pki.sa_key, _pem_key(_key()))
    for ident in clients:
        _ensure_client(pki, ident, ca_name, ca_key)
    return pki
