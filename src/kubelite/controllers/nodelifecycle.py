"""The node lifecycle controller, reduced to what a one-node cluster needs: noticing a dead kubelet.

The agent renews its Lease in ``kube-node-lease`` every 10 s. When a Lease is older than
the grace period (40 s), nobody is looking after the node's pods any more: as
kube-controller-manager's node-lifecycle-controller does, this marks the node's conditions
``Unknown`` (reason ``NodeStatusUnknown``) and the pods on it not Ready, so that Services
stop sending them traffic. A live agent sets its conditions and pod statuses back itself.
Taints and evictions are left out: with one node there is nowhere to move pods to.
"""

from __future__ import annotations

import logging

from kubelite.api import timeutil
from kubelite.api.types import EventType, Obj
from kubelite.client import LEASES, NODES, PODS, ApiError
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
GRACE_PERIOD = 40.0
NODE_INDEX = "nodelifecycle/node"


def unknown_conditions(node: Obj, now: str) -> list[Obj] | None:
    """The node's conditions marked Unknown, or None when they already are."""
    conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    if not any(c.get("type") == "Ready" for c in conditions):
        conditions.append({"type": "Ready", "reason": "NodeStatusNeverUpdated",
                           "message": "Kubelet never posted node status.", "status": "Unknown",
                           "lastHeartbeatTime": (node.get("metadata") or {}).get("creationTimestamp"),
                           "lastTransitionTime": now})
        return conditions
    changed = False
    for c in conditions:
        if c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                     lastTransitionTime=now)
            changed = True
    return conditions if changed else None


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    service_account = "node-controller"
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.nodes = ctx.informer(NODES)
        self.leases = ctx.informer(LEASES)
        self.pods = ctx.informer(PODS, indexers={NODE_INDEX: lambda p: [(p.get("spec") or {}).get("nodeName") or ""]})
        self.nodes.add_handler(lambda kind, node, old: self.enqueue(node) if kind != "DELETED" else None)
        self.leases.add_handler(self._on_lease)

    def _on_lease(self, kind: EventType, lease: Obj, old: Obj | None) -> None:
        meta = lease.get("metadata") or {}
        if meta.get("namespace") == LEASE_NAMESPACE and kind != "DELETED":
            self.queue.add(str(meta.get("name", "")))

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{key}")
        renewed = timeutil.parse_time(((lease or {}).get("spec") or {}).get("renewTime")) if lease else None
        last = renewed or timeutil.parse_time((node.get("metadata") or {}).get("creationTimestamp")) or timeutil.now()
        age = (timeutil.now() - last).total_seconds()
        if age < GRACE_PERIOD:
            self.queue.add_after(key, GRACE_PERIOD - age + 0.5)
            return
        now = timeutil.now_rfc3339()
        conditions = unknown_conditions(node, now)
        if conditions is not None:
            log.info("node %s: lease not renewed for %.0fs; marking it Unknown", key, age)
            try:
                await self.client.patch(NODES, key, {"status": {"conditions": conditions}}, subresource="status")
            except ApiError as e:
                if e.not_found:
                    return
                raise
        for pod in self.pods.by_index(NODE_INDEX, key):
            await self._mark_not_ready(pod, now)
        self.queue.add_after(key, GRACE_PERIOD / 4)

    async def _mark_not_ready(self, pod: Obj, now: str) -> None:
        """MarkPodsNotReady: the Ready condition of a pod on a lost node goes False."""
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        conditions = [dict(c) for c in status.get("conditions") or []]
        changed = False
        for c in conditions:
            if c.get("type") == "Ready" and c.get("status") == "True":
                c.update(status="False", lastTransitionTime=now)
                changed = True
        if not changed:
            return
        meta = pod["metadata"]
        try:
            await self.client.patch(PODS, meta["name"], {"status": {"conditions": conditions}}, meta["namespace"],
                                    subresource="status")
        except ApiError as e:
            if not e.not_found:
                raise
