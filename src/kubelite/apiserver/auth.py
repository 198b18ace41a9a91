"""Authentication: who is calling. Client certificates from the cluster CA, or bearer tokens.

Like kube-apiserver, a request is authenticated by the first authenticator that recognises
it; one with no credentials is refused (401) except on ``/livez``, ``/readyz`` and
``/healthz``, which stay open for probes. What an identity may then do is RBAC's
(:mod:`kubelite.apiserver.authorization`).

Service-account tokens are JWTs signed with the cluster's ES256 key (``pki/sa.key``), with
the claims kube-apiserver puts in them, so in-cluster clients can present them and the
official ``load_incluster_config()`` works. They are bound tokens, as the TokenRequest API
issues them: audience-scoped, expiring, and void once the service account or the pod (or
secret, or node) they are bound to is gone or was made again under another UID. There are no
legacy Secret-held tokens.
"""

from __future__ import annotations

import base64
import contextvars
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from kubelite.api import timeutil
from kubelite.apiserver import requestcontext

ISSUER = "https://kubernetes.default.svc.cluster.local"
# --api-audiences: kube-apiserver defaults them to the issuer; a token for another audience
# (a projected token for Vault, say) is not a credential for the API.
API_AUDIENCES = (ISSUER,)
# pkg/serviceaccount/claims.go: the kubelet's projected token lifetime that TokenRequest
# extends (see Registry.create_token), and what it extends it to.
WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS = 60 * 60 + 7
EXPIRATION_EXTENSION_SECONDS = 24 * 365 * 60 * 60
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/version"})
CACHE_SIZE = 4096
LEEWAY = 60.0  # go-jose's jwt.DefaultLeeway, which kube-apiserver's validation uses
Obj = dict[str, Any]


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# Who the request being served is (set by the API server's middleware, read by admission).
REQUEST_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar("request_user", default=None)


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
    """Issues service-account JWTs (ES256) with kube-apiserver's claims, and checks their
    signatures; what a token's claims still mean is :class:`TokenAuthenticator`'s to decide."""

    def __init__(self, pem_key: bytes, clock: Callable[[], float] = time.time) -> None:
        key = serialization.load_pem_private_key(pem_key, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("service-account key must be an EC P-256 key")
        self._key = key
        self._pub = key.public_key()
        self.clock = clock
        # Verified signatures: an ECDSA verification costs more than serving a whole request,
        # and clients send the same token on every call. Claims never change; whether they
        # still hold (expiry, the bound objects) is checked on every request.
        self._cache: dict[str, Obj] = {}

    def issue(
        self,
        namespace: str,
        service_account: str,
        sa_uid: str,
        *,
        expiration_seconds: int = 3600,
        audiences: list[str] | None = None,
        pod: tuple[str, str] | None = None,
        secret: tuple[str, str] | None = None,
        node: tuple[str, str] | None = None,
        warn_after: int = 0,
    ) -> tuple[str, int]:
        """A signed token and its expiry, with serviceaccount.Claims' claims: the ``kubernetes.io``
        claim names the namespace, the account and the object the token is bound to (a pod, with
        its node when known; a secret; or a node), ``warnafter`` (``warn_after`` seconds from
        now) when an extended token should have expired, ``jti`` a fresh credential ID."""
        now = int(self.clock())
        exp = now + expiration_seconds
        k8s: Obj = {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": sa_uid}}
        if pod:
            k8s["pod"] = {"name": pod[0], "uid": pod[1]}
        if secret:
            k8s["secret"] = {"name": secret[0], "uid": secret[1]}
        if node:
            k8s["node"] = {k: v for k, v in (("name", node[0]), ("uid", node[1])) if v}
        if warn_after:
            k8s["warnafter"] = now + warn_after
        claims = {
            "aud": audiences or list(API_AUDIENCES),
            "exp": exp,
            "iat": now,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        header = _b64(orjson.dumps({"alg": "ES256", "kid": self.key_id(), "typ": "JWT"}))
        payload = _b64(orjson.dumps(claims))
        der = self._key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", exp

    def key_id(self) -> str:
        """The key's ID as kube-apiserver derives it: the SHA-256 of its public key's DER."""
        der = self._pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        return _b64(digest.finalize())

    def claims(self, token: str) -> Obj | None:
        """The claims of a token this key signed (None: not one of ours)."""
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        try:
            header, payload, sig = token.split(".")
            raw = _unb64(sig)
            if len(raw) != 64:
                return None
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            self._pub.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = orjson.loads(_unb64(payload))
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = claims
        return claims


class ObjectGetter(Protocol):
    """What token validation looks up (kube-apiserver's ServiceAccountTokenGetter): each returns
    (uid, deletionTimestamp) of the object, or None when it does not exist."""

    async def service_account(self, namespace: str, name: str) -> tuple[str, str] | None: ...
    async def pod(self, namespace: str, name: str) -> tuple[str, str] | None: ...
    async def secret(self, namespace: str, name: str) -> tuple[str, str] | None: ...
    async def node(self, name: str) -> tuple[str, str] | None: ...

    def version(self) -> Hashable | None:
        """A value that changes whenever a service account or pod it reports may have been
        deleted or made again (None: it cannot tell, and nothing is remembered)."""


class TokenError(Exception):
    """Why a token of ours does not authenticate (a TokenReview's status.error; a request's 401)."""


def _deleted_before(timestamp: str, limit: float) -> bool:
    when = timeutil.parse_time(timestamp) if timestamp else None
    return when is not None and when.timestamp() < limit


class TokenAuthenticator:
    """Bearer service-account tokens, validated as kube-apiserver's JWT authenticator and
    serviceaccount validator do: the audience, expiry (with go-jose's minute of leeway), and the
    objects the token names: its service account and the pod, secret or node it is bound to must
    still exist with the UIDs in the claims (one deleted more than the leeway ago is gone)."""

    def __init__(self, signer: TokenSigner, getter: ObjectGetter, audiences: tuple[str, ...] = API_AUDIENCES,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.getter = getter
        self.audiences = audiences
        self.clock = clock
        # Verdicts of tokens bound to nothing but their service account, or to a pod: each
        # client sends its token with every request, and validating it again (claims, the
        # objects it names, the user it makes) was a few percent of a write's CPU. A verdict
        # holds while the getter's version stands (no service account or pod deleted or
        # recreated since) and its token has not expired, so a revoked token is refused at
        # once, not after kube-apiserver's ten seconds of cached authentication.
        self._verdicts: dict[tuple[str, tuple[str, ...] | None], tuple[User, float, float, Hashable, int]] = {}

    async def authenticate(self, token: str, audiences: tuple[str, ...] | None = None) -> User | None:
        try:
            return await self.review(token, audiences)
        except TokenError:
            return None

    async def review(self, token: str, audiences: tuple[str, ...] | None = None) -> User | None:
        """The token's user; None when it is not a token of ours; TokenError when it is one that
        does not (or no longer) hold."""
        version = self.getter.version()
        hit = self._verdicts.get((token, audiences))
        if hit is not None and version is not None and hit[3] == version:
            now = self.clock()
            if hit[2] - LEEWAY <= now <= hit[1] + LEEWAY:
                _note_stale(hit[0].name, hit[4], now)
                return hit[0]
        claims = self.signer.claims(token)
        if claims is None:
            return None
        wanted = audiences or self.audiences
        aud = claims.get("aud")
        token_auds = [aud] if isinstance(aud, str) else list(aud or [])
        if not set(token_auds) & set(wanted):
            raise TokenError(f"token audiences {_go_quote_list(token_auds)} is invalid for the target audiences "
                             f"{_go_quote_list(list(wanted))}")
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + LEEWAY:
            raise TokenError("service account token has expired")
        if isinstance(nbf, (int, float)) and now < nbf - LEEWAY:
            raise TokenError("service account token is not valid yet")
        k8s = claims.get("kubernetes.io") or {}
        ns = str(k8s.get("namespace") or "")
        sa = k8s.get("serviceaccount") or {}
        invalid_if_deleted_before = now - LEEWAY
        found = await self.getter.service_account(ns, str(sa.get("name") or ""))
        if found is None:
            raise TokenError(f'serviceaccounts "{sa.get("name") or ""}" not found')
        if found[0] != sa.get("uid"):
            raise TokenError(f"service account UID ({found[0]}) does not match claim ({sa.get('uid')})")
        if _deleted_before(found[1], invalid_if_deleted_before):
            raise TokenError(f"service account {ns}/{sa.get('name')} has been deleted")
        # Remembered only when every object checked is watched by the getter and none is
        # being deleted (whose verdict would turn with the clock, not with a change).
        cacheable = version is not None and not found[1] and not k8s.get("secret")
        extra: dict[str, list[str]] = {}
        for kind, what in (("secret", "secret"), ("pod", "pod")):
            ref = k8s.get(kind)
            if not ref:
                continue
            lookup = self.getter.secret if kind == "secret" else self.getter.pod
            obj = await lookup(ns, str(ref.get("name") or ""))
            if obj is None or _deleted_before(obj[1], invalid_if_deleted_before):
                raise TokenError("service account token has been invalidated")
            if obj[0] != ref.get("uid"):
                raise TokenError(f"{what} UID ({obj[0]}) does not match service account {what} ref claim "
                                 f"({ref.get('uid')})")
            cacheable = cacheable and not obj[1]
        pod, node = k8s.get("pod"), k8s.get("node")
        if pod:
            extra["authentication.kubernetes.io/pod-name"] = [str(pod.get("name") or "")]
            extra["authentication.kubernetes.io/pod-uid"] = [str(pod.get("uid") or "")]
        if node:
            if not pod:  # a node-bound token: the node must still be there
                cacheable = False
                found_node = await self.getter.node(str(node.get("name") or ""))
                if found_node is None or _deleted_before(found_node[1], invalid_if_deleted_before):
                    raise TokenError("service account token has been invalidated")
                if found_node[0] != node.get("uid"):
                    raise TokenError(f"node UID ({found_node[0]}) does not match service account node ref claim "
                                     f"({node.get('uid')})")
            extra["authentication.kubernetes.io/node-name"] = [str(node.get("name") or "")]
            if node.get("uid"):
                extra["authentication.kubernetes.io/node-uid"] = [str(node["uid"])]
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        user = User(
            str(claims.get("sub") or ""),
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
            uid=str(sa.get("uid") or ""),
            extra=dict(sorted(extra.items())),
        )
        warn_after = k8s.get("warnafter")
        warn_after = int(warn_after) if isinstance(warn_after, (int, float)) else 0
        _note_stale(user.name, warn_after, now)
        if cacheable:
            if len(self._verdicts) >= CACHE_SIZE:
                self._verdicts.clear()
            nbf_at = float(nbf) if isinstance(nbf, (int, float)) else float("-inf")
            self._verdicts[(token, audiences)] = (user, float(exp), nbf_at, version, warn_after)
        return user


def _note_stale(subject: str, warn_after: int, now: float) -> None:
    """An extended token used after its requested expiry (``warnafter``): the client never
    renewed it. kube-apiserver says so in the request's audit event, for finding the pods whose
    clients read their token once (\"subject: ..., seconds after warning threshold: N\")."""
    if warn_after and now > warn_after:
        requestcontext.add_annotation(
            "authentication.k8s.io/stale-token",
            f"subject: {subject}, seconds after warning threshold: {int(now) - warn_after}")


def _go_quote_list(values: list[str]) -> str:
    """A []string as Go's %q prints it: ["a" "b"]."""
    return "[" + " ".join(orjson.dumps(v).decode() for v in values) + "]"
