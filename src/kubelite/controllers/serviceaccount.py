"""Every namespace's ``default`` ServiceAccount and ``kube-root-ca.crt`` ConfigMap.

Two small Kubernetes controllers in one, because they reconcile the same key (a namespace)
from the same events: the serviceaccounts-controller (a ``default`` ServiceAccount in every
active namespace, recreated when deleted) and the root-ca-cert-publisher (a
``kube-root-ca.crt`` ConfigMap holding the cluster CA under ``ca.crt``, put back when
deleted or edited). Pods mount both through their projected service-account volume.

The CA is the one this controller trusts to reach the API server (the kubeconfig's), as
kube-controller-manager does without ``--root-ca-file``. Terminating namespaces are left
alone: the API server refuses new content there anyway.
"""

from __future__ import annotations

import logging

from kubelite.api.types import EventType, Obj
from kubelite.client import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS, ApiError, ResourceType
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters."
)


def _terminating_refusal(e: ApiError) -> bool:
    """The namespace is gone or terminating: nothing to create there, and no point retrying."""
    return e.not_found or e.namespace_terminating


class ServiceAccountController(Controller):
    name = "serviceaccount"
    service_account = "service-account-controller"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.root_ca = (self.client.config.ca_data or b"").decode()
        # Two of Kubernetes' controllers in one: the ConfigMaps are the root-ca-cert-publisher's to write.
        self.ca_client = ctx.client_for("root-ca-cert-publisher")
        self.namespaces = ctx.informer(NAMESPACES)
        # Only the objects this controller keeps: not every ConfigMap and ServiceAccount write
        # of the cluster (each one decoded here cost CPU the API server's writes shared).
        self.service_accounts = ctx.informer(SERVICEACCOUNTS, field_selector=f"metadata.name={DEFAULT_SERVICE_ACCOUNT}")
        self.configmaps = ctx.informer(CONFIGMAPS, field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        self.namespaces.add_handler(self._on_namespace)
        self.service_accounts.add_handler(self._on_service_account)
        self.configmaps.add_handler(self._on_configmap)

    def _on_namespace(self, kind: EventType, ns: Obj, old: Obj | None) -> None:
        if kind != "DELETED":
            self.enqueue(ns)

    def _on_service_account(self, kind: EventType, sa: Obj, old: Obj | None) -> None:
        meta = sa.get("metadata") or {}
        if kind == "DELETED" and meta.get("name") == DEFAULT_SERVICE_ACCOUNT:
            self.queue.add(meta["namespace"])

    def _on_configmap(self, kind: EventType, cm: Obj, old: Obj | None) -> None:
        meta = cm.get("metadata") or {}
        if kind != "ADDED" and meta.get("name") == ROOT_CA_CONFIGMAP:
            self.queue.add(meta["namespace"])

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        await self._ensure_service_account(key)
        await self._publish_root_ca(key)

    async def _create(self, rt: ResourceType, obj: Obj, ns: str) -> None:
        client = self.ca_client if rt is CONFIGMAPS else self.client
        try:
            await client.create(rt, obj, ns)
        except ApiError as e:
            if not (e.already_exists or _terminating_refusal(e)):
                raise

    async def _ensure_service_account(self, ns: str) -> None:
        if self.service_accounts.get(f"{ns}/{DEFAULT_SERVICE_ACCOUNT}") is None:
            sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}
            await self._create(SERVICEACCOUNTS, sa, ns)

    async def _publish_root_ca(self, ns: str) -> None:
        data = {"ca.crt": self.root_ca}
        cm = self.configmaps.get(f"{ns}/{ROOT_CA_CONFIGMAP}")
        if cm is None:
            await self._create(CONFIGMAPS, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                "data": data,
            }, ns)
            return
        annotations = cm["metadata"].get("annotations") or {}
        if cm.get("data") == data and annotations.get(DESCRIPTION_ANNOTATION):
            return
        fixed = {**cm, "data": data, "metadata": {**cm["metadata"],
                                                   "annotations": {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}}}
        await self.ca_client.update(CONFIGMAPS, fixed)
