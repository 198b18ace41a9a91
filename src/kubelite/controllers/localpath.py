"""Rancher's local-path provisioner (the one k3s ships), run by the controller-manager process.

The provisioner makes a volume for every claim the PV controller has handed to
``rancher.io/local-path`` (the ``volume.kubernetes.io/storage-provisioner`` annotation): a
directory ``pvc-<uid>_<namespace>_<name>`` under the data dir's ``storage/`` and a PersistentVolume
``pvc-<uid>`` pre-bound to the claim, with the request as its capacity and node affinity to the
node the scheduler chose. It writes the events external-provisioner writes (Provisioning,
ProvisioningSucceeded, ProvisioningFailed). A Released volume it made whose reclaim policy is
Delete loses its directory and then its object. It also stands in for external-resizer: a
bound claim whose request grew past its volume's capacity gets the new capacity (a directory
has no size to grow), with the events and ``allocatedResources`` the resizer writes.

The volumes are ``local`` volumes by default (local-path's ``volumeType: local``), so that the
kubelet applies ``fsGroup`` to them as it does to local volumes; a class with the parameter
``volumeType: hostPath`` gets ``hostPath`` volumes like k3s's default. kubelite has one machine,
so the directory is made here rather than by a helper pod on the node as local-path does.

It acts as local-path's own identity, as k3s deploys it (manifests/local-storage.yaml): the
service account ``kube-system/local-path-provisioner-service-account`` bound by the
ClusterRoleBinding ``local-path-provisioner-bind`` to the ClusterRole
``local-path-provisioner-role`` (:func:`addon_objects`, created with the default class), which
may read nodes, claims, configmaps and classes, do anything to volumes, pods and endpoints, and
create events, and nothing else: no Secrets, no claim status. The resizer's part acts as
kube-controller-manager's in-tree resizer, ``kube-system/expand-controller``
(``system:controller:expand-controller``): external-resizer, which it stands in for, is no part
of local-path, and only that role writes a claim's status capacity.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import shutil
from typing import Any

from kubelite.api import storage
from kubelite.api.types import EventType, Obj
from kubelite.client import NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES, ApiError, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers.base import Context, Controller, update_by_merge
from kubelite.controllers.persistentvolume import as_claim, claim_ref

log = logging.getLogger(__name__)

PROVISIONER = "rancher.io/local-path"
DEFAULT_CLASS_NAME = "local-path"
HOSTNAME_LABEL = "kubernetes.io/hostname"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "local-path-provisioner-service-account"
CLUSTER_ROLE = "local-path-provisioner-role"
CLUSTER_ROLE_BINDING = "local-path-provisioner-bind"
RESIZER_SERVICE_ACCOUNT = "expand-controller"


def default_storage_class() -> dict[str, Any]:
    """The cluster's default class, as k3s's local-storage addon creates it."""
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS_NAME, "annotations": {storage.DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def addon_objects() -> list[dict[str, Any]]:
    """k3s's local-storage addon: the provisioner's identity (service account, ClusterRole with
    k3s's rules, ClusterRoleBinding) and the default class."""
    def rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
        return {"apiGroups": groups, "resources": resources, "verbs": verbs}

    rbac = "rbac.authorization.k8s.io"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": {"name": CLUSTER_ROLE}, "rules": [
            rule([""], ["nodes", "persistentvolumeclaims", "configmaps", "pods/log"], ["get", "list", "watch"]),
            rule([""], ["endpoints", "persistentvolumes", "pods"], ["*"]),
            rule([""], ["events"], ["create", "patch"]),
            rule(["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch"]),
        ]},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": CLUSTER_ROLE_BINDING},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": CLUSTER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]},
        default_storage_class(),
    ]


def volume_name(pvc: Obj) -> str:
    return "pvc-" + str((pvc.get("metadata") or {}).get("uid", ""))


def volume_dir(root: pathlib.Path, pvc: Obj) -> pathlib.Path:
    meta = pvc.get("metadata") or {}
    return root / f"{volume_name(pvc)}_{meta.get('namespace', '')}_{meta.get('name', '')}"


def persistent_volume(pvc: Obj, sc: Obj, path: pathlib.Path, node: Obj | None) -> dict[str, Any]:
    """The volume object for ``pvc`` (external-provisioner's fields plus local-path's spec)."""
    spec = pvc.get("spec") or {}
    params = sc.get("parameters") or {}
    pv_spec: dict[str, Any] = {
        "accessModes": list(spec.get("accessModes") or []),
        "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")},
        "claimRef": claim_ref(pvc),
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": (sc.get("metadata") or {}).get("name", ""),
        "volumeMode": spec.get("volumeMode") or "Filesystem",
    }
    # A local volume must name its node; without one (no node yet, an Immediate class on a
    # cluster without nodes) the volume is a hostPath one, usable anywhere on this machine.
    if params.get("volumeType", "local").lower() == "hostpath" or node is None:
        pv_spec["hostPath"] = {"path": str(path), "type": "DirectoryOrCreate"}
    else:
        pv_spec["local"] = {"path": str(path)}
    if node is not None:
        node_meta = node.get("metadata") or {}
        hostname = (node_meta.get("labels") or {}).get(HOSTNAME_LABEL) or node_meta.get("name", "")
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}]}}
    annotations = {storage.PROVISIONED_BY: PROVISIONER}
    if node is not None:
        annotations["local.path.provisioner/selected-node"] = (node.get("metadata") or {}).get("name", "")
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": volume_name(pvc), "annotations": annotations}, "spec": pv_spec}


class LocalPathProvisioner(Controller):
    """Keys: ``claim/NS/NAME`` (provision, resize) and ``volume/NAME`` (delete)."""

    name = "local-path-provisioner"
    service_account = SERVICE_ACCOUNT
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        root = ctx.options.local_path_dir
        self.root = pathlib.Path(root) if root else None
        self.claims = ctx.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informer(PERSISTENTVOLUMES)
        self.classes = ctx.informer(STORAGECLASSES)
        self.nodes = ctx.informer(NODES)
        # external-provisioner reports as "<provisioner>_<its pod>_<uuid>", external-resizer by name.
        self.recorder = EventRecorder(self.client, f"{PROVISIONER}_local-path-provisioner")
        self.resizer_client = ctx.client_for(RESIZER_SERVICE_ACCOUNT)
        self.resizer = EventRecorder(self.resizer_client, f"external-resizer {PROVISIONER}")
        self.claims.add_handler(lambda kind, pvc, old: self._on("claim/", kind, pvc))
        self.volumes.add_handler(lambda kind, pv, old: self._on("volume/", kind, pv))

    def _on(self, prefix: str, kind: EventType, obj: Obj) -> None:
        if kind != "DELETED" and self.root is not None:
            self.queue.add(prefix + key_of(obj))

    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        try:
            if kind == "claim":
                await self.sync_claim(rest)
            else:
                await self.sync_volume(rest)
        except ApiError as e:
            if e.conflict:
                self.queue.add_after(key, 0.2)
                return
            if not e.not_found:
                raise

    def _our_class(self, pvc: Obj) -> Obj | None:
        sc = self.classes.get(storage.claim_class(pvc))
        return sc if sc is not None and sc.get("provisioner") == PROVISIONER else None

    async def sync_claim(self, key: str) -> None:
        pvc = self.claims.get(key)
        if pvc is None or self.root is None:
            return
        meta = pvc.get("metadata") or {}
        if (pvc.get("spec") or {}).get("volumeName"):
            await self._resize(pvc)
            return
        annotations = meta.get("annotations") or {}
        if meta.get("deletionTimestamp") or annotations.get(storage.STORAGE_PROVISIONER) != PROVISIONER:
            return
        sc = self._our_class(pvc)
        if sc is None or self.volumes.get(volume_name(pvc)) is not None:
            return
        selected = annotations.get(storage.SELECTED_NODE)
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not selected:
            return
        node = self.nodes.get(selected) if selected else None
        if node is None and not selected:
            nodes = self.nodes.list()
            node = nodes[0] if len(nodes) == 1 else None
        await self.recorder.event(as_claim(pvc), "Normal", "Provisioning",
                                  f'External provisioner is provisioning volume for claim "{key}"')
        path = volume_dir(self.root, pvc)
        try:
            await asyncio.to_thread(_make_dir, path)
        except OSError as e:
            await self.recorder.event(as_claim(pvc), "Warning", "ProvisioningFailed",
                                      f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": {e}')
            self.queue.add_after("claim/" + key, 15.0)
            return
        try:
            await self.client.create(PERSISTENTVOLUMES, persistent_volume(pvc, sc, path, node))
        except ApiError as e:
            if not e.already_exists:
                raise
            return
        await self.recorder.event(as_claim(pvc), "Normal", "ProvisioningSucceeded",
                                  f"Successfully provisioned volume {volume_name(pvc)}")

    async def _resize(self, pvc: Obj) -> None:
        """external-resizer for a directory: the new size is granted at once (nothing to grow)."""
        pv = self.volumes.get((pvc.get("spec") or {}).get("volumeName", ""))
        if pv is None or (pv.get("metadata", {}).get("annotations") or {}).get(storage.PROVISIONED_BY) != PROVISIONER:
            return
        if (pvc.get("status") or {}).get("phase") != "Bound":
            return
        want = storage.requested_storage(pvc)
        status_cap = storage._quantity(((pvc.get("status") or {}).get("capacity") or {}).get("storage"))
        if want <= storage.volume_capacity(pv) and want <= status_cap:
            return
        meta = pvc["metadata"]
        request = pvc["spec"]["resources"]["requests"]["storage"]
        await self.resizer.event(as_claim(pvc), "Normal", "Resizing",
                                  f"External resizer is resizing volume {pv['metadata']['name']}")
        if want > storage.volume_capacity(pv):
            await update_by_merge(self.resizer_client, PERSISTENTVOLUMES, pv["metadata"]["name"],
                                  {"spec": {"capacity": {"storage": request}}})
        await update_by_merge(self.resizer_client, PERSISTENTVOLUMECLAIMS, meta["name"], {"status": {
            "capacity": {"storage": request}, "allocatedResources": {"storage": request}, "conditions": None,
        }}, meta["namespace"], subresource="status")
        await self.resizer.event(as_claim(pvc), "Normal", "VolumeResizeSuccessful", "Resize volume succeeded")

    async def sync_volume(self, name: str) -> None:
        pv = self.volumes.get(name)
        if pv is None or self.root is None:
            return
        meta, spec = pv.get("metadata") or {}, pv.get("spec") or {}
        if (meta.get("annotations") or {}).get(storage.PROVISIONED_BY) != PROVISIONER:
            return
        if (pv.get("status") or {}).get("phase") != "Released" or spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        if meta.get("deletionTimestamp"):
            return
        path = pathlib.Path((spec.get("local") or spec.get("hostPath") or {}).get("path", ""))
        # Only ever a directory of our own root: a volume object edited to point elsewhere is left alone.
        if path.parent == self.root and path.name.startswith("pvc-"):
            await asyncio.to_thread(shutil.rmtree, path, True)
        else:
            log.warning("volume %s: not deleting %s, outside %s", name, path, self.root)
        await self.client.delete(PERSISTENTVOLUMES, name)


def _make_dir(path: pathlib.Path) -> None:
    # local-path makes the directory world-writable (mkdir -m 0777): any pod user can write.
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)
