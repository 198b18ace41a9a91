"""kube-controller-manager's persistent-volume binder and the two protection controllers.

The binder (``pkg/controller/volume/persistentvolume``) is level-triggered on claims and
volumes: an unbound claim gets the smallest Available volume that fits it
(:func:`kubelite.api.storage.find_matching_volume`), or, when its class has a provisioner,
the ``volume.kubernetes.io/storage-provisioner`` annotation that tells that provisioner to make
one (the provisioner pre-binds the new volume to the claim; the binder then completes the
bind). A class with ``WaitForFirstConsumer`` binds nothing until the scheduler has picked a
node and written it to the claim (``volume.kubernetes.io/selected-node``). A claim without a
class is given the default class once one exists (retroactive default StorageClass
assignment). A volume whose claim is gone is Released, and then kept (Retain) or left to its
provisioner to delete (Delete); a Delete volume nobody can delete fails, as one without a
deleter plugin does in Kubernetes.

The protection controllers remove ``kubernetes.io/pvc-protection`` from a deleted claim once
no pod that is not terminated uses it, and ``kubernetes.io/pv-protection`` from a deleted
volume once it is not Bound.

The binder here writes the claim's final state in two requests (spec+annotations, then status)
as Kubernetes does, but does not keep Kubernetes' in-memory "assumed" caches: a conflict sends
the key back to the queue and the next sync reads the informer again.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api import storage
from kubelite.api.types import EventType, Obj
from kubelite.client import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
    ApiError,
    key_of,
)
from kubelite.client.events import EventRecorder
from kubelite.controllers.base import Context, Controller, update_by_merge

log = logging.getLogger(__name__)

# How often an unbound claim or a released volume is looked at again without an event
# (the PV controller's --pvclaimbinder-sync-period).
SYNC_PERIOD = 15.0

WAIT_FOR_CONSUMER = "waiting for first consumer to be created before binding"
NO_VOLUMES_NO_CLASS = "no persistent volumes available for this claim and no storage class is set"
CLAIM_LOST = "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
CLAIM_MISBOUND = "Two claims are bound to the same volume, this one is bound incorrectly"


def external_provisioning(provisioner: str) -> str:
    return (f"Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually "
            "by the system administrator. If volume creation is delayed, please verify that the provisioner is "
            "running and correctly registered.")


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def claim_ref(pvc: Obj) -> dict[str, Any]:
    meta = _meta(pvc)
    return {
        "kind": "PersistentVolumeClaim", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
        "uid": meta.get("uid", ""), "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", ""),
    }


def as_claim(pvc: Obj) -> Obj:
    return {**pvc, "kind": "PersistentVolumeClaim", "apiVersion": "v1"}


def as_volume(pv: Obj) -> Obj:
    return {**pv, "kind": "PersistentVolume", "apiVersion": "v1"}


def claim_names_of_pod(pod: Obj) -> list[str]:
    return [str(v["persistentVolumeClaim"].get("claimName", ""))
            for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")]


def pod_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def claim_in_use(claim: Obj, pods: list[Obj]) -> bool:
    """pvc-protection: some pod that has not terminated names the claim (scheduled or not)."""
    name = _meta(claim).get("name")
    return any(name in claim_names_of_pod(p) and not pod_terminated(p) for p in pods)


class PersistentVolumeController(Controller):
    """The binder: keys are ``claim/NS/NAME`` and ``volume/NAME``."""

    name = "persistentvolume-binder"
    service_account = "persistent-volume-binder"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.claims = ctx.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informer(PERSISTENTVOLUMES, indexers={"claim": _volume_claim_key})
        self.classes = ctx.informer(STORAGECLASSES)
        self.nodes = ctx.informer(NODES)
        self.recorder = EventRecorder(self.client, "persistentvolume-controller")
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.classes.add_handler(self._on_class)

    def _on_claim(self, kind: EventType, pvc: Obj, old: Obj | None) -> None:
        key = key_of(pvc)
        self.queue.add("claim/" + key)
        # The volumes bound (or pre-bound) to this claim: a deleted claim releases them.
        for pv in self.volumes.by_index("claim", key):
            self.queue.add("volume/" + key_of(pv))

    def _on_volume(self, kind: EventType, pv: Obj, old: Obj | None) -> None:
        self.queue.add("volume/" + key_of(pv))
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            self.queue.add(f"claim/{ref.get('namespace', '')}/{ref.get('name', '')}")
        elif kind != "DELETED":
            # A volume that became Available may satisfy a waiting claim, or be the one a
            # claim was pre-bound to by name.
            for pvc in self.claims.list():
                if (pvc.get("spec") or {}).get("volumeName") in (None, "", key_of(pv)):
                    self.queue.add("claim/" + key_of(pvc))

    def _on_class(self, kind: EventType, sc: Obj, old: Obj | None) -> None:
        for pvc in self.claims.list():
            if not (pvc.get("spec") or {}).get("volumeName"):
                self.queue.add("claim/" + key_of(pvc))

    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        try:
            if kind == "claim":
                await self.sync_claim(rest)
            else:
                await self.sync_volume(rest)
        except ApiError as e:
            if e.conflict or e.not_found:
                self.queue.add_after(key, 0.2)  # the informer has not caught up: try again on it
                return
            raise

    # -- claims

    async def sync_claim(self, key: str) -> None:
        pvc = self.claims.get(key)
        if pvc is None:
            return
        spec = pvc.get("spec") or {}
        if not spec.get("volumeName"):
            await self._sync_unbound_claim(pvc)
            return
        pv = self.volumes.get(spec["volumeName"])
        if pv is None or (_claim_ref_of(pv) and not storage.claim_ref_matches(pv, pvc)):
            if (pvc.get("status") or {}).get("phase") == "Bound" or pv is not None:
                await self._set_claim_phase(pvc, "Lost")
                await self.recorder.event(as_claim(pvc), "Warning", "ClaimLost" if pv is None else "ClaimMisbound",
                                          CLAIM_LOST if pv is None else CLAIM_MISBOUND)
            else:
                # Pre-bound by name to a volume that does not exist (yet): look again later.
                self.queue.add_after("claim/" + key, SYNC_PERIOD)
            return
        if not _claim_ref_of(pv):
            # Pre-bound by the user to a free volume: the volume side of the bind is ours.
            if not storage.volume_fits(pv, pvc):
                return
            pv = await self._bind_volume(pv, pvc)
        await self._complete_claim(pvc, pv)

    async def _sync_unbound_claim(self, pvc: Obj) -> None:
        key = key_of(pvc)
        if _meta(pvc).get("deletionTimestamp"):
            return
        if storage.class_unset(pvc):
            default = storage.default_class(self.classes.list())
            if default is not None:
                # Retroactive default StorageClass assignment (GA in 1.28).
                await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, _meta(pvc)["name"],
                                        {"spec": {"storageClassName": (default.get("metadata") or {})["name"]}}, _meta(pvc)["namespace"])
                return
        class_name = storage.claim_class(pvc)
        sc = self.classes.get(class_name) if class_name else None
        annotations = _meta(pvc).get("annotations") or {}
        selected = annotations.get(storage.SELECTED_NODE)
        delay = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
        if delay and not selected:
            # Only a volume already bound to the claim (by the scheduler's PreBind) is taken now.
            prebound = next((v for v in self.volumes.list()
                             if storage.claim_ref_matches(v, pvc) and storage.volume_fits(v, pvc)), None)
            if prebound is not None:
                if not _claim_ref_of(prebound).get("uid"):
                    prebound = await self._bind_volume(prebound, pvc)
                await self._complete_claim(pvc, prebound, by_controller=True)
                return
            await self.recorder.event(as_claim(pvc), "Normal", "WaitForFirstConsumer", WAIT_FOR_CONSUMER)
            return
        node = self.nodes.get(selected) if selected else None
        match = storage.find_matching_volume(pvc, self.volumes.list(), node)
        if match is not None:
            pv = dict(match)
            if not _claim_ref_of(pv).get("uid"):
                # Free, or pre-bound by name only: the claimRef gets the claim's uid.
                pv = await self._bind_volume(pv, pvc)
            await self._complete_claim(pvc, pv, by_controller=True)
            return
        self.queue.add_after("claim/" + key, SYNC_PERIOD)
        if not class_name:
            await self.recorder.event(as_claim(pvc), "Normal", "FailedBinding", NO_VOLUMES_NO_CLASS)
            return
        if sc is None:
            await self.recorder.event(as_claim(pvc), "Warning", "ProvisioningFailed",
                                      f'storageclass.storage.k8s.io "{class_name}" not found')
            return
        provisioner = str(sc.get("provisioner") or "")
        if annotations.get(storage.STORAGE_PROVISIONER) != provisioner:
            await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, _meta(pvc)["name"], {"metadata": {"annotations": {
                storage.STORAGE_PROVISIONER: provisioner, storage.BETA_STORAGE_PROVISIONER: provisioner,
            }}}, _meta(pvc)["namespace"])
        await self.recorder.event(as_claim(pvc), "Normal", "ExternalProvisioning", external_provisioning(provisioner))

    async def _bind_volume(self, pv: Obj, pvc: Obj) -> Obj:
        """bindVolumeToClaim: the volume's claimRef, marked as the controller's doing unless an
        administrator had pre-bound the volume to the claim."""
        meta = _meta(pv)
        body: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                                "spec": {"claimRef": claim_ref(pvc)}}
        if not _claim_ref_of(pv):
            body["metadata"]["annotations"] = {storage.BOUND_BY_CONTROLLER: "yes"}
        out: Obj = await update_by_merge(self.client, PERSISTENTVOLUMES, meta["name"], body)
        return out

    async def _complete_claim(self, pvc: Obj, pv: Obj, by_controller: bool = False) -> None:
        """bindClaimToVolume + updateClaimStatus + the volume's phase: all idempotent."""
        meta = _meta(pvc)
        pv_name = _meta(pv)["name"]
        annotations = meta.get("annotations") or {}
        wanted_ann = {storage.BIND_COMPLETED: "yes"}
        if by_controller or annotations.get(storage.BOUND_BY_CONTROLLER) == "yes":
            wanted_ann[storage.BOUND_BY_CONTROLLER] = "yes"
        if (pvc.get("spec") or {}).get("volumeName") != pv_name or any(annotations.get(k) != v for k, v in wanted_ann.items()):
            pvc = await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, meta["name"], {
                "metadata": {"annotations": wanted_ann, "resourceVersion": meta.get("resourceVersion")},
                "spec": {"volumeName": pv_name},
            }, meta["namespace"])
        pv_spec = pv.get("spec") or {}
        status = pvc.get("status") or {}
        wanted = {"phase": "Bound", "accessModes": pv_spec.get("accessModes") or [],
                  "capacity": pv_spec.get("capacity") or {}}
        if any(status.get(k) != v for k, v in wanted.items()):
            await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, meta["name"], {"status": wanted}, meta["namespace"],
                                    subresource="status")
        if (pv.get("status") or {}).get("phase") != "Bound":
            await self._set_volume_phase(pv, "Bound")

    async def _set_claim_phase(self, pvc: Obj, phase: str) -> None:
        if (pvc.get("status") or {}).get("phase") != phase:
            meta = _meta(pvc)
            await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, meta["name"], {"status": {"phase": phase}},
                                    meta["namespace"], subresource="status")

    async def _set_volume_phase(self, pv: Obj, phase: str, message: str | None = None) -> None:
        status = pv.get("status") or {}
        if status.get("phase") == phase and (message is None or status.get("message") == message):
            return
        body: dict[str, Any] = {"phase": phase, "message": message, "reason": None}
        await update_by_merge(self.client, PERSISTENTVOLUMES, _meta(pv)["name"], {"status": body}, subresource="status")

    # -- volumes

    async def sync_volume(self, name: str) -> None:
        pv = self.volumes.get(name)
        if pv is None:
            return
        ref = _claim_ref_of(pv)
        if not ref:
            if _meta(pv).get("deletionTimestamp") is None:
                await self._set_volume_phase(pv, "Available")
            return
        pvc = self.claims.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
        if pvc is not None and (not ref.get("uid") or ref.get("uid") == _meta(pvc).get("uid")):
            if (pvc.get("spec") or {}).get("volumeName") == name:
                if (pv.get("status") or {}).get("phase") != "Bound":
                    await self._set_volume_phase(pv, "Bound")
            elif (pvc.get("spec") or {}).get("volumeName"):
                # The claim went to another volume: give this one back if we bound it.
                if (_meta(pv).get("annotations") or {}).get(storage.BOUND_BY_CONTROLLER) == "yes":
                    await self._unbind_volume(pv)
            elif (pv.get("status") or {}).get("phase") in (None, "", "Pending"):
                await self._set_volume_phase(pv, "Available")
            return
        if not ref.get("uid"):
            # Pre-bound to a claim that does not exist yet: it waits for it.
            await self._set_volume_phase(pv, "Available")
            return
        phase = (pv.get("status") or {}).get("phase")
        if phase not in ("Released", "Failed"):
            await self._set_volume_phase(pv, "Released")
            return
        if phase == "Failed":
            return
        await self._reclaim(pv)

    async def _unbind_volume(self, pv: Obj) -> None:
        meta = _meta(pv)
        await update_by_merge(self.client, PERSISTENTVOLUMES, meta["name"], {
            "metadata": {"annotations": {storage.BOUND_BY_CONTROLLER: None}, "resourceVersion": meta.get("resourceVersion")},
            "spec": {"claimRef": None},
        })

    async def _reclaim(self, pv: Obj) -> None:
        """reclaimVolume: Retain keeps it Released; Delete is the provisioner's (or fails)."""
        spec = pv.get("spec") or {}
        policy = spec.get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            return
        if policy == "Delete" and (_meta(pv).get("annotations") or {}).get(storage.PROVISIONED_BY):
            # The external provisioner that made it deletes it (and its data).
            return
        name = _meta(pv)["name"]
        if policy == "Delete":
            message = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
            reason = "VolumeFailedDelete"
        else:
            message = f'No recycler plugin found for the volume "{name}"'
            reason = "VolumeFailedRecycle"
        await self.recorder.event(as_volume(pv), "Warning", reason, message)
        await self._set_volume_phase(pv, "Failed", message)


def _claim_ref_of(pv: Obj) -> Obj:
    ref: Obj = (pv.get("spec") or {}).get("claimRef") or {}
    return ref


def _volume_claim_key(pv: Obj) -> list[str]:
    ref = _claim_ref_of(pv)
    return [f"{ref.get('namespace', '')}/{ref.get('name', '')}"] if ref else []


# ---------------------------------------------------------------------------- protection


class PVCProtectionController(Controller):
    """pkg/controller/volume/pvcprotection: the finalizer goes once no live pod uses the claim."""

    name = "pvc-protection"
    service_account = "pvc-protection-controller"
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.claims = ctx.informer(PERSISTENTVOLUMECLAIMS)
        self.pods = ctx.informer(PODS, indexers={"pvc-protection-claims": _pod_claim_keys})
        self.claims.add_handler(lambda kind, pvc, old: self._on_claim(kind, pvc))
        self.pods.add_handler(self._on_pod)

    def _on_claim(self, kind: EventType, pvc: Obj) -> None:
        if kind != "DELETED" and _meta(pvc).get("deletionTimestamp"):
            self.enqueue(pvc)

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        if kind == "DELETED" or pod_terminated(pod):
            for key in _pod_claim_keys(pod):
                self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        pvc = self.claims.get(key)
        if pvc is None or not _meta(pvc).get("deletionTimestamp"):
            return
        finalizers = list(_meta(pvc).get("finalizers") or [])
        if storage.PVC_PROTECTION not in finalizers:
            return
        if claim_in_use(pvc, self.pods.by_index("pvc-protection-claims", key)):
            return
        finalizers.remove(storage.PVC_PROTECTION)
        meta = _meta(pvc)
        try:
            await update_by_merge(self.client, PERSISTENTVOLUMECLAIMS, meta["name"], {"metadata": {
                "finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}, meta["namespace"])
        except ApiError as e:
            if e.conflict:
                self.queue.add_after(key, 0.2)
            elif not e.not_found:
                raise


def _pod_claim_keys(pod: Obj) -> list[str]:
    ns = _meta(pod).get("namespace", "")
    return [f"{ns}/{name}" for name in claim_names_of_pod(pod)]


class PVProtectionController(Controller):
    """pkg/controller/volume/pvprotection: the finalizer goes once the volume is not Bound."""

    name = "pv-protection"
    service_account = "pv-protection-controller"
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.volumes = ctx.informer(PERSISTENTVOLUMES)
        self.volumes.add_handler(lambda kind, pv, old: self.enqueue(pv) if kind != "DELETED" else None)

    async def reconcile(self, key: str) -> None:
        pv = self.volumes.get(key)
        if pv is None or not _meta(pv).get("deletionTimestamp"):
            return
        finalizers = list(_meta(pv).get("finalizers") or [])
        if storage.PV_PROTECTION not in finalizers or (pv.get("status") or {}).get("phase") == "Bound":
            return
        finalizers.remove(storage.PV_PROTECTION)
        try:
            await update_by_merge(self.client, PERSISTENTVOLUMES, key, {"metadata": {
                "finalizers": finalizers, "resourceVersion": _meta(pv).get("resourceVersion")}})
        except ApiError as e:
            if e.conflict:
                self.queue.add_after(key, 0.2)
            elif not e.not_found:
                raise
