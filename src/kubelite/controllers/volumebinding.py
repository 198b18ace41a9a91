"""kube-scheduler's VolumeBinding plugin: a pod's claims decide where (and when) it may run.

PreFilter refuses a pod whose claim is missing, being deleted, or unbound in an ``Immediate``
class (the PV controller binds those on its own; the pod waits for it). Filter keeps the nodes
a bound claim's volume may be used on (its node affinity: a ``local`` volume lives on one
node), and for an unbound ``WaitForFirstConsumer`` claim the nodes where a free volume fits or
the class can provision one. PreBind binds a fitting existing volume to the claim (its
``claimRef``), or else writes the chosen node to the claim
(``volume.kubernetes.io/selected-node``) for its provisioner; the PV controller completes the
binding, and the pod is bound to the node once every claim is (kube-scheduler waits the same
way in PreBind; here the pod goes back to the queue and claim events bring it back).
"""

from __future__ import annotations

from typing import Any

from kubelite.api import storage
from kubelite.api.types import EventType, Obj
from kubelite.client import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    STORAGECLASSES,
    ApiError,
    Informer,
)
from kubelite.controllers.base import Context
from kubelite.controllers.persistentvolume import claim_ref

UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NODE_CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUMES = "node(s) didn't find available persistent volumes to bind"


def prefilter_error(pod: Obj, num_nodes: int, reason: str) -> str:
    """The FitError of a PreFilter rejection (no per-node histogram), with DefaultPreemption's verdict."""
    msg = f"0/{num_nodes} nodes are available: {reason}."
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return msg + " preemption: not eligible due to preemptionPolicy=Never."
    return msg + f" preemption: 0/{num_nodes} nodes are available: {num_nodes} Preemption is not helpful for scheduling."


def pod_claims(pod: Obj) -> list[str]:
    return [str(v["persistentVolumeClaim"].get("claimName", ""))
            for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")]


class VolumeBinding:
    def __init__(self, ctx: Context) -> None:
        self.client = ctx.client
        self.claims: Informer = ctx.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes: Informer = ctx.informer(PERSISTENTVOLUMES)
        self.classes: Informer = ctx.informer(STORAGECLASSES)
        self.nodes: Informer = ctx.informer(NODES)

    def on_claim(self, handler: Any) -> None:
        """Call ``handler(namespace, name)`` when a claim changes (pods waiting for it retry)."""
        def relay(kind: EventType, pvc: Obj, old: Obj | None) -> None:
            meta = pvc.get("metadata") or {}
            handler(meta.get("namespace", ""), meta.get("name", ""))
        self.claims.add_handler(relay)

    def _claim(self, pod: Obj, name: str) -> Obj | None:
        return self.claims.get(f"{(pod.get('metadata') or {}).get('namespace', '')}/{name}")

    def _delayed(self, pvc: Obj) -> bool:
        sc = self.classes.get(storage.claim_class(pvc)) if storage.claim_class(pvc) else None
        return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"

    def prefilter(self, pod: Obj) -> str | None:
        for name in pod_claims(pod):
            pvc = self._claim(pod, name)
            if pvc is None:
                return f'persistentvolumeclaim "{name}" not found'
            if (pvc.get("metadata") or {}).get("deletionTimestamp"):
                return f'persistentvolumeclaim "{name}" is being deleted'
            if not (pvc.get("spec") or {}).get("volumeName") and not self._delayed(pvc):
                return UNBOUND_IMMEDIATE
        return None

    def filter(self, pod: Obj, node: Obj) -> str | None:
        for name in pod_claims(pod):
            pvc = self._claim(pod, name)
            if pvc is None:
                continue
            volume_name = (pvc.get("spec") or {}).get("volumeName")
            if volume_name:
                pv = self.volumes.get(volume_name)
                if pv is not None and not storage.node_affinity_allows(pv, node):
                    return NODE_CONFLICT
                continue
            selected = ((pvc.get("metadata") or {}).get("annotations") or {}).get(storage.SELECTED_NODE)
            if selected and selected != (node.get("metadata") or {}).get("name"):
                return NO_VOLUMES  # already promised to another node
            if storage.find_matching_volume(pvc, self.volumes.list(), node) is not None:
                continue
            sc = self.classes.get(storage.claim_class(pvc))
            if sc is None or sc.get("provisioner") == storage.NO_PROVISIONER:
                return NO_VOLUMES
        return None

    async def prebind(self, pod: Obj, node: str) -> bool:
        """Hand the unbound delayed claims to ``node``; True once every claim of the pod is bound."""
        ready = True
        for name in pod_claims(pod):
            pvc = self._claim(pod, name)
            if pvc is None:
                return False
            if (pvc.get("spec") or {}).get("volumeName") and (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            ready = False
            meta = pvc.get("metadata") or {}
            if (pvc.get("spec") or {}).get("volumeName") or \
                    (meta.get("annotations") or {}).get(storage.SELECTED_NODE) == node:
                continue
            node_obj = self.nodes.get(node)
            match = storage.find_matching_volume(pvc, self.volumes.list(), node_obj) if node_obj else None
            try:
                if match is not None and not (match.get("spec") or {}).get("claimRef"):
                    # bindAPIUpdate: an existing volume is bound to the claim here; the PV
                    # controller completes the claim's side.
                    await self.client.patch(PERSISTENTVOLUMES, match["metadata"]["name"], {
                        "metadata": {"annotations": {storage.BOUND_BY_CONTROLLER: "yes"},
                                     "resourceVersion": match["metadata"].get("resourceVersion")},
                        "spec": {"claimRef": claim_ref(pvc)}})
                elif match is None:
                    # Nothing to bind: the claim's provisioner makes a volume on this node.
                    await self.client.patch(PERSISTENTVOLUMECLAIMS, meta["name"], {
                        "metadata": {"annotations": {storage.SELECTED_NODE: node}}}, meta["namespace"])
            except ApiError as e:
                if not (e.not_found or e.conflict):
                    raise
        return ready
