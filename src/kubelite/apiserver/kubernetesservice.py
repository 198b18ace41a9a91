"""The `kubernetes` Service, kept by the API server itself: kube-apiserver's bootstrap controller.

Pods reach the API server at ``kubernetes.default.svc``: a Service without a selector at the
first address of the service CIDR, whose Endpoints and EndpointSlice point at the address
the API server advertises. kube-apiserver owns these objects (pkg/controlplane/controller/
kubernetesservice and the endpoint reconciler of pkg/controlplane/reconcilers): it writes
them at start and then again on a timer, so that a Service deleted by mistake comes back
within one interval, at the same ClusterIP, and endpoints someone edited are put back.

Here the same loop runs in the primary API server process (the one that owns the store and
bootstraps the cluster), writing through the API server's own registry: the same create and
update paths as any client's, with the ClusterIP allocation and validation they carry, but
without HTTP or a client library. The interval is kube-apiserver's default
(``--endpoint-reconciler`` lease interval, EndpointInterval: 10 s).

One deliberate difference: kube-apiserver 1.33 resets a Service's ports and type only when
it creates the Service (its update path has not run since 1.17); here every pass repairs
them too, with the same comparison kube-apiserver would use (``checkServiceFormat``),
because a `kubernetes` Service whose port no longer leads to the API server breaks every
in-cluster client and nothing else would ever mend it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.registry import ResourceType, lookup
from kubelite.apiserver.ipalloc import ServiceCIDR
from kubelite.apiserver.registry import Registry, Target, decode_kv

log = logging.getLogger(__name__)

NAME = "kubernetes"
NAMESPACE = "default"
MANAGER = "kube-apiserver"
# kube-apiserver's EndpointInterval default (pkg/controlplane/apiserver/options).
INTERVAL = 10.0

SERVICES = lookup("", "v1", "services")
SERVICECIDRS = lookup("networking.k8s.io", "v1", "servicecidrs")
ENDPOINTS = lookup("", "v1", "endpoints")
ENDPOINTSLICES = lookup("discovery.k8s.io", "v1", "endpointslices")


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind", "status")}


class KubernetesService:
    """Creates and repairs `default/kubernetes`, its ServiceCIDR, Endpoints and EndpointSlice."""

    def __init__(self, registry: Registry, cidr: ServiceCIDR, address: str, port: int,
                 interval: float = INTERVAL) -> None:
        self.registry = registry
        self.cidr = cidr
        self.address = address
        self.port = port
        self.interval = interval
        self.passes = 0  # completed reconcile passes (the readiness check and tests read it)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ desired state

    def service_ports(self) -> list[dict[str, Any]]:
        """createPortAndServiceSpec: 443/TCP named https, to the port the API server serves on."""
        return [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": self.port}]

    def endpoint_ports(self) -> list[dict[str, Any]]:
        return [{"name": "https", "port": self.port, "protocol": "TCP"}]

    # ------------------------------------------------------------------ one pass

    async def reconcile(self) -> None:
        """UpdateKubernetesService: the Service first, then its endpoints (a pass is idempotent:
        nothing is written when everything is as it should be)."""
        assert SERVICECIDRS and ENDPOINTS and ENDPOINTSLICES
        await self._put(SERVICECIDRS, None, {
            "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": NAME}, "spec": {"cidrs": [str(self.cidr.network)]},
        })
        await self._service()
        await self._put(ENDPOINTS, NAMESPACE, {
            "apiVersion": "v1", "kind": "Endpoints",
            # The endpoints are written here, never mirrored from a selector (setSkipMirrorTrue).
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": self.address}], "ports": self.endpoint_ports()}],
        })
        await self._put(ENDPOINTSLICES, NAMESPACE, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": NAME,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}],
            "ports": self.endpoint_ports(),
        })
        self.passes += 1

    async def _service(self) -> None:
        """CreateOrUpdateMasterServiceIfNeeded, with the ports and type repaired on every pass."""
        assert SERVICES is not None
        ports = self.service_ports()
        for _ in range(3):
            kv = await self.registry.store.get(SERVICES.key(NAMESPACE, NAME))
            if kv is None:
                first = self.cidr.nth(1)
                svc = {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": NAME, "namespace": NAMESPACE,
                                 "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"type": "ClusterIP", "clusterIP": first, "clusterIPs": [first],
                             "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "ports": ports},
                }
                try:
                    await self.registry.create_object(SERVICES, NAMESPACE, svc, manager=MANAGER)
                    log.info("created the %s/%s Service at %s", NAMESPACE, NAME, first)
                    return
                except StatusError as e:
                    if e.code != 409:  # created meanwhile: look again
                        raise
                    continue
            spec = decode_kv(kv).get("spec") or {}
            if spec.get("type") == "ClusterIP" and spec.get("ports") == ports:  # checkServiceFormat
                return

            def repair(old: dict[str, Any]) -> dict[str, Any]:
                old["spec"]["ports"] = copy.deepcopy(ports)
                old["spec"]["type"] = "ClusterIP"
                return old

            log.warning("resetting the ports and type of the %s/%s Service", NAMESPACE, NAME)
            await self.registry.guaranteed_update(Target(SERVICES, NAMESPACE, NAME, None), repair, manager=MANAGER)
            return

    async def _put(self, rt: ResourceType, namespace: str | None, obj: dict[str, Any]) -> None:
        """Create ``obj``, or put back its content and labels when they differ from what is stored."""
        name = obj["metadata"]["name"]
        want = _content(obj)
        labels = obj["metadata"].get("labels") or {}
        kv = await self.registry.store.get(rt.key(namespace, name))
        if kv is None:
            try:
                await self.registry.create_object(rt, namespace, copy.deepcopy(obj), manager=MANAGER)
            except StatusError as e:
                if e.code != 409:
                    raise
            return
        current = decode_kv(kv)
        have_labels = current["metadata"].get("labels") or {}
        if _content(current) == want and all(have_labels.get(k) == v for k, v in labels.items()):
            return

        def compute(old: dict[str, Any]) -> dict[str, Any]:
            for k in set(_content(old)) - set(want):
                del old[k]
            old.update(copy.deepcopy(want))
            old["metadata"].setdefault("labels", {}).update(labels)
            return old

        await self.registry.guaranteed_update(Target(rt, namespace, name, None), compute, manager=MANAGER)

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        """Run a pass every interval (the first one is the caller's, at bootstrap)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kubernetes-service")

    @property
    def stopped(self) -> bool:
        """Started, and ended since (it only ends on a bug: every error is logged and retried)."""
        return self._task is not None and self._task.done()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            # wait.NonSlidingUntil: the period counts from each pass's start, not its end.
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = loop.time() + self.interval
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # runtime.HandleError: log, try again next interval
                log.warning("unable to sync kubernetes service: %s", e)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
