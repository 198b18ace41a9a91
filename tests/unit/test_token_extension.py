"""Extended expiration of the kubelet's projected tokens (kube-apiserver's
``--service-account-extend-token-expiration``), with a real signer and a fixed clock: which
TokenRequests TokenREST.Create extends, what the token and the answer say, and that the token
outlives its requested expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubelite.api.registry import ResourceType, lookup
from kubelite.api.timeutil import format_epoch
from kubelite.apiserver.auth import TokenAuthenticator, TokenSigner, User, _unb64
from kubelite.apiserver.pki import _key, _pem_key
from kubelite.apiserver.registry import Registry, Target
from kubelite.store import SqliteStore

NOW = 1_800_000_000
YEAR = 365 * 24 * 3600


def rt(plural: str) -> ResourceType:
    found = lookup("", "v1", plural)
    assert found is not None
    return found


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    try:
        reg = Registry(store, tokens=TokenSigner(_pem_key(_key()), clock=lambda: NOW))
        for target, obj in (
            (Target(rt("namespaces"), None, None, None), {"kind": "Namespace", "metadata": {"name": "ns"}}),
            (Target(rt("serviceaccounts"), "ns", None, None), {"kind": "ServiceAccount", "metadata": {"name": "app"}}),
            (Target(rt("secrets"), "ns", None, None), {"kind": "Secret", "metadata": {"name": "s"}}),
            (Target(rt("pods"), "ns", None, None), {"kind": "Pod", "metadata": {"name": "p"}, "spec": {
                "serviceAccountName": "app", "containers": [{"name": "c", "image": "busybox"}]}}),
        ):
            await reg.create(target, {"apiVersion": "v1", **obj}, manager="test")
        yield reg
    finally:
        await store.close()


def claims(token: str) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(_unb64(token.split(".")[1]))
    return out


async def request(registry: Registry, seconds: int, bound: str = "Pod", audiences: list[str] | None = None
                  ) -> dict[str, Any]:
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if bound:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": bound, "name": "p" if bound == "Pod" else "s"}
    if audiences:
        spec["audiences"] = audiences
    return await registry.create_token(Target(rt("serviceaccounts"), "ns", "app", "token"), {"spec": spec})


async def test_the_kubelets_3607_seconds_pod_token_lasts_a_year_and_warns_after_its_hour(registry: Registry) -> None:
    answer = await request(registry, 3607)
    token = claims(answer["status"]["token"])
    assert token["exp"] - token["iat"] == YEAR and token["iat"] == NOW
    assert token["kubernetes.io"]["warnafter"] == NOW + 3607
    assert answer["spec"]["expirationSeconds"] == 3607
    assert answer["status"]["expirationTimestamp"] == format_epoch(NOW + 3607)


@pytest.mark.parametrize(("seconds", "bound", "audiences"), [
    (3600, "Pod", None),  # another lifetime
    (3608, "Pod", None),
    (3607, "Secret", None),  # not bound to a pod
    (3607, "", None),
    (3607, "Pod", ["vault"]),  # not (only) the API server's audience
    (3607, "Pod", ["https://kubernetes.default.svc.cluster.local", "vault"]),
])
async def test_other_requests_get_what_they_ask(registry: Registry, seconds: int, bound: str,
                                                audiences: list[str] | None) -> None:
    answer = await request(registry, seconds, bound, audiences)
    token = claims(answer["status"]["token"])
    assert token["exp"] - token["iat"] == seconds and "warnafter" not in token["kubernetes.io"]
    assert answer["status"]["expirationTimestamp"] == format_epoch(NOW + seconds)


async def test_the_flag_turns_it_off(registry: Registry) -> None:
    registry.extend_token_expiration = False
    token = claims((await request(registry, 3607))["status"]["token"])
    assert token["exp"] - token["iat"] == 3607 and "warnafter" not in token["kubernetes.io"]


class Objects:
    async def service_account(self, namespace: str, name: str) -> tuple[str, str] | None:
        return ("sa-uid", "")

    async def pod(self, namespace: str, name: str) -> tuple[str, str] | None:
        return ("pod-uid", "")

    async def secret(self, namespace: str, name: str) -> tuple[str, str] | None:
        return None

    async def node(self, name: str) -> tuple[str, str] | None:
        return None

    def version(self) -> int:
        return 0  # nothing here ever changes


def test_an_extended_token_authenticates_after_its_requested_expiry() -> None:
    now = [float(NOW)]
    signer = TokenSigner(_pem_key(_key()), clock=lambda: now[0])
    authn = TokenAuthenticator(signer, Objects(), clock=lambda: now[0])
    extended, _ = signer.issue("ns", "app", "sa-uid", expiration_seconds=YEAR, pod=("p", "pod-uid"), warn_after=3607)
    plain, _ = signer.issue("ns", "app", "sa-uid", expiration_seconds=3607, pod=("p", "pod-uid"))
    now[0] = NOW + 3607 + 3600  # an hour past the requested expiry (and go-jose's minute of leeway)
    assert isinstance(asyncio.run(authn.authenticate(extended)), User)
    assert asyncio.run(authn.authenticate(plain)) is None
    now[0] = NOW + YEAR + 61
    assert asyncio.run(authn.authenticate(extended)) is None


def test_a_stale_extended_token_is_noted_in_the_requests_audit_annotations() -> None:
    """kube-apiserver's ``authentication.k8s.io/stale-token``: each use after ``warnafter``,
    remembered verdict or not, says whose token it is and how long past the threshold."""
    from kubelite.apiserver import requestcontext

    now = [float(NOW)]
    signer = TokenSigner(_pem_key(_key()), clock=lambda: now[0])
    authn = TokenAuthenticator(signer, Objects(), clock=lambda: now[0])
    extended, _ = signer.issue("ns", "app", "sa-uid", expiration_seconds=YEAR, pod=("p", "pod-uid"), warn_after=3607)

    def annotations() -> dict[str, str]:
        ctx, token = requestcontext.open_context()
        try:
            assert isinstance(asyncio.run(authn.authenticate(extended)), User)
            return ctx.annotations
        finally:
            requestcontext.close_context(token)

    assert annotations() == {}  # within the hour it was asked for
    now[0] = NOW + 3607 + 125
    expected = {"authentication.k8s.io/stale-token":
                "subject: system:serviceaccount:ns:app, seconds after warning threshold: 125"}
    assert annotations() == expected
    assert annotations() == expected  # the remembered verdict too
