"""The ReplicationController manager (kube-controller-manager's pkg/controller/replication).

Kubernetes does not write this controller twice: its ReplicationManager is the ReplicaSet
controller run over ReplicationControllers, through an adapter that presents an RC as a
ReplicaSet (its plain selector map as a LabelSelector's ``matchLabels``) and names the
owner kind ``v1 ReplicationController`` in the pods' controller references. kubelite does
the same: this class is :class:`~kubelite.controllers.replicaset.ReplicaSetController`
given the RC kind, its event source and that selector adapter. Scaling (``kubectl scale rc``
writes ``replicationcontrollers/scale``), pod creation and deletion, adoption, status and
expectations are all the ReplicaSet controller's.
"""

from __future__ import annotations

from kubelite.api.types import Obj
from kubelite.client import REPLICATIONCONTROLLERS, ResourceType
from kubelite.controllers.replicaset import ReplicaSetController


class ReplicationManager(ReplicaSetController):
    name = "replicationcontroller"
    service_account = "replication-controller"
    resource: ResourceType = REPLICATIONCONTROLLERS
    event_source = "replication-controller"

    def label_selector(self, rc: Obj) -> Obj | None:
        """An RC's selector is a label map: as a LabelSelector it is matchLabels only."""
        selector = (rc.get("spec") or {}).get("selector")
        if selector is None:
            return None
        return {"matchLabels": dict(selector)}
