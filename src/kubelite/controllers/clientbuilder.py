"""Each controller's own identity: ``--use-service-account-credentials``, as kubeadm runs
kube-controller-manager.

The controller manager authenticates as ``system:kube-controller-manager``, whose bootstrap
role lets it list and watch everything (its shared informers) and create service accounts and
their tokens, but not write workloads. Each controller writes as the service account
``kube-system/<controller>``, bound by the bootstrap policy to ``system:controller:<controller>``
(the deployment controller may write ReplicaSets, not Secrets). This is the controller
manager's ``DynamicControllerClientBuilder``: it makes the service account when missing, asks
the TokenRequest API for a token of an hour (bound to the account only: deleting the account
revokes it) and asks again at 80 % of its life, or at once when the API server refuses the
one it has (the account was deleted and made again), as client-go's token source resets on a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from kubelite.api.types import Obj
from kubelite.client import SERVICEACCOUNTS, ApiError, Client, Config

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
EXPIRATION_SECONDS = 3600
REFRESH_FRACTION = 0.8
RETRY_SECONDS = 1.0


@dataclass
class _Token:
    value: str = ""
    refresh_at: float = 0.0


class ServiceAccountClientBuilder:
    """Clients that act as ``kube-system/<name>`` service accounts, tokens kept fresh."""

    def __init__(self, root: Client) -> None:
        self.root = root
        self._tokens: dict[str, _Token] = {}
        self._clients: dict[str, Client] = {}
        self._task: asyncio.Task[None] | None = None
        self._due = asyncio.Event()

    def client_for(self, name: str) -> Client:
        """The client of service account ``name``; usable once :meth:`start` returned."""
        client = self._clients.get(name)
        if client is None:
            token = self._tokens[name] = _Token()
            # No client certificate: over a connection that presents one, the API server would
            # authenticate the certificate, not the token.
            config = Config(server=self.root.config.server, ca_data=self.root.config.ca_data)
            client = self._clients[name] = Client(config, user_agent=f"{self.root.user_agent}/{name}",
                                                  token_source=lambda: token.value,
                                                  on_unauthorized=lambda: self._expire(token))
        return client

    def _expire(self, token: _Token) -> None:
        """The API server refused the token (its account was deleted, say): get a new one now."""
        token.refresh_at = 0.0
        self._due.set()

    async def start(self) -> None:
        """Every account made and its first token in hand, then the refresher runs."""
        await asyncio.gather(*(self._refresh(name) for name in self._tokens))
        self._task = asyncio.create_task(self._keep_fresh(), name="controller-tokens")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(c.close() for c in self._clients.values()))

    async def _ensure_account(self, name: str) -> None:
        try:
            await self.root.get(SERVICEACCOUNTS, name, NAMESPACE)
        except ApiError as e:
            if not e.not_found:
                raise
            sa: Obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}}
            try:
                await self.root.create(SERVICEACCOUNTS, sa, NAMESPACE)
            except ApiError as e2:
                if not e2.already_exists:
                    raise

    async def _refresh(self, name: str) -> None:
        while True:
            try:
                await self._ensure_account(name)
                body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": EXPIRATION_SECONDS}}
                out = await self.root.create(SERVICEACCOUNTS, body, NAMESPACE, subresource="token", name=name)
            except (ApiError, OSError) as e:
                log.warning("token for controller %s: %s; retrying", name, e)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            token = self._tokens[name]
            token.value = str(out["status"]["token"])
            token.refresh_at = time.monotonic() + REFRESH_FRACTION * EXPIRATION_SECONDS
            return

    async def _keep_fresh(self) -> None:
        while True:
            now = time.monotonic()
            due = [n for n, t in self._tokens.items() if t.refresh_at <= now]
            for name in due:
                await self._refresh(name)
            soonest = min((t.refresh_at for t in self._tokens.values()), default=now + 60)
            self._due.clear()
            with contextlib.suppress(TimeoutError):
                # At most once a second, even when refused tokens keep coming back.
                await asyncio.wait_for(self._due.wait(), max(1.0, soonest - time.monotonic()))
                await asyncio.sleep(1.0)
