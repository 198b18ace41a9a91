"""What every controller shares: the client, one informer per resource, the event recorder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import ResourceType
from kubelite.client import ApiError, Client, Informer, WorkQueue, key_of, run_workers
from kubelite.client.events import EventRecorder
from kubelite.controllers.clientbuilder import ServiceAccountClientBuilder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """kube-controller-manager's flags that some controllers read (the rest have no options)."""

    # --cluster-signing-cert-file / --cluster-signing-key-file: the CA the csrsigning
    # controller signs approved CertificateSigningRequests with; unset, it signs nothing.
    cluster_signing_cert_file: str = ""
    cluster_signing_key_file: str = ""
    # --cluster-signing-duration (default 8760h): the longest certificate it issues.
    cluster_signing_duration: float = 365 * 24 * 3600.0
    # --resource-quota-sync-period: how often every quota is recounted in full.
    resource_quota_sync_period: float = 300.0
    # Where the local-path provisioner makes its volume directories (k3s's
    # --default-local-storage-path); unset, it provisions nothing.
    local_path_dir: str = ""
    # --use-service-account-credentials: each controller writes as its own service account
    # (kube-system/<controller>), not as system:kube-controller-manager.
    use_service_account_credentials: bool = False


class Context:
    """Shared informers: every controller asking for pods gets the same cache and watch."""

    def __init__(self, client: Client, component: str = "kube-controller-manager",
                 options: Options | None = None) -> None:
        self.client = client
        self.options = options or Options()
        self.recorder = EventRecorder(client, component)
        self.credentials: ServiceAccountClientBuilder | None = (
            ServiceAccountClientBuilder(client) if self.options.use_service_account_credentials else None)
        self._informers: dict[tuple[ResourceType, str], Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def client_for(self, service_account: str) -> Client:
        """The client a controller writes with: its own service account's under
        --use-service-account-credentials, else the controller manager's."""
        if self.credentials is None or not service_account:
            return self.client
        return self.credentials.client_for(service_account)

    def informer(self, rt: ResourceType, indexers: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
                 field_selector: str = "") -> Informer:
        """The shared informer of ``rt`` (one per field selector: a controller that needs one
        object per namespace watches only those, not every write of the kind)."""
        inf = self._informers.get((rt, field_selector))
        if inf is None:
            inf = self._informers[(rt, field_selector)] = Informer(self.client, rt, field_selector=field_selector)
        for name, fn in (indexers or {}).items():
            if name not in inf.indexers:
                inf.indexers[name] = fn
                inf._indices[name] = {}
                for key, obj in inf.cache.items():
                    inf._index(key, obj, None)
        return inf

    def start(self) -> None:
        for inf in self._informers.values():
            self._tasks.append(asyncio.create_task(inf.run(), name=f"informer-{inf.rt.plural}"))

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Controller:
    """A work queue of keys and a reconcile function; subclasses wire informers to the queue."""

    name = "controller"
    workers = 2
    # The service account it acts as under --use-service-account-credentials (kube-system/NAME,
    # bound to system:controller:NAME by the bootstrap policy).
    service_account = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.client = ctx.client_for(self.service_account)
        self.queue = WorkQueue()

    def enqueue(self, obj: dict[str, Any]) -> None:
        self.queue.add(key_of(obj))

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await run_workers(self.queue, self.reconcile, self.workers, self.name)


def merge_patched(obj: Any, patch: Any) -> Any:
    """``obj`` with a JSON merge patch (RFC 7386) applied: objects merge, null removes, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patched(out.get(key), value)
    return out


async def update_by_merge(client: Client, rt: ResourceType, name: str, patch: dict[str, Any],
                          namespace: str | None = None, *, subresource: str | None = None) -> dict[str, Any]:
    """Write ``patch`` with get and update. The roles Kubernetes gives the volume controllers
    grant ``update``, not ``patch`` (their Go code updates): a merge patch is applied here and
    written whole. A resourceVersion in the patch pins the update to it (a conflict is the
    caller's); without one a lost race is tried again on the new state."""
    pinned = bool((patch.get("metadata") or {}).get("resourceVersion"))
    for attempt in range(5):
        current = await client.get(rt, name, namespace)
        try:
            out: dict[str, Any] = await client.update(rt, merge_patched(current, patch), subresource=subresource)
            return out
        except ApiError as e:
            if pinned or not e.conflict or attempt == 4:
                raise
    raise AssertionError("unreachable")
