"""Authentication: who is calling. Client certificates from the cluster CA, or bearer tokens.

Like kube-apiserver, a request is authenticated by the first authenticator that recognises
it; one with no credentials is refused (401) except on ``/livez``, ``/readyz`` and
``/healthz``, which stay open for probes. What an identity may then do is RBAC's
(:mod:`kubelite.apiserver.authorization`).

Service-account tokens are JWTs signed with the cluster's ES256 key (``pki/sa.key``), with
the claims kube-apiserver puts in them, so in-cluster clients can present them and the
official ``load_incluster_config()`` works.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ISSUER = "https://kubernetes.default.svc.cluster.local"
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/version"})
CACHE_SIZE = 4096
CACHE_TTL = 10.0


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def user_from_peercert(peercert: dict[str, Any] | None) -> User | None:
    """The identity of a TLS client certificate the handshake already verified against the CA."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return User(cn, (*orgs, "system:authenticated"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies service-account JWTs (ES256)."""

    def __init__(self, pem_key: bytes) -> None:
        key = serialization.load_pem_private_key(pem_key, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("service-account key must be an EC P-256 key")
        self._key = key
        self._pub = key.public_key()
        # Verified tokens, as kube-apiserver's token cache: an ECDSA verification costs more
        # than serving a whole request, and clients send the same token on every call.
        self._cache: dict[str, tuple[User, float]] = {}

    def issue(
        self,
        namespace: str,
        service_account: str,
        sa_uid: str,
        *,
        expiration_seconds: int = 3607,
        pod: tuple[str, str] | None = None,
        audiences: list[str] | None = None,
    ) -> tuple[str, int]:
        now = int(time.time())
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": sa_uid}}
        if pod:
            k8s["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {
            "aud": audiences or [ISSUER],
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        header = _b64(orjson.dumps({"alg": "ES256", "typ": "JWT"}))
        payload = _b64(orjson.dumps(claims))
        der = self._key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", exp

    def verify(self, token: str) -> User | None:
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        user, exp = self._verify(token)
        if user is not None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = (user, min(exp, now + CACHE_TTL))
        return user

    def _verify(self, token: str) -> tuple[User | None, float]:
        try:
            header, payload, sig = token.split(".")
            raw = _unb64(sig)
            if len(raw) != 64:
                return None, 0.0
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            self._pub.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = orjson.loads(_unb64(payload))
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None, 0.0
        exp = claims.get("exp", 0)
        if claims.get("iss") != ISSUER or not isinstance(exp, (int, float)) or exp < time.time():
            return None, 0.0
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        user = User(
            claims.get("sub", ""),
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
            uid=(k8s.get("serviceaccount") or {}).get("uid", ""),
        )
        return user, float(exp)
