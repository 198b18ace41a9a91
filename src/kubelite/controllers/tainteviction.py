"""The taint-eviction controller: pods on a node with a NoExecute taint they do not tolerate go.

kube-controller-manager's ``taint-eviction-controller`` (the NoExecuteTaintManager before
1.29). For each pod bound to a node: when one of the node's ``NoExecute`` taints has no
matching toleration, the pod is deleted at once; when every such taint is tolerated, the
pod is deleted after the smallest ``tolerationSeconds`` of the tolerations used (counted
from when the taints were first seen with the pod), or never when none of them has one. A
taint removed before then cancels the deletion. As in Kubernetes the pod first gets the
``DisruptionTarget`` condition (reason ``DeletionByTaintManager``), and events say
"Marking for deletion Pod ns/name" and "Cancelling deletion of Pod ns/name".

The not-ready/unreachable taints the node lifecycle controller would add are not here: a
one-node cluster has nowhere to move pods to (see kubelite.controllers.nodelifecycle).
"""

from __future__ import annotations

import logging
import time

from kubelite.api import timeutil
from kubelite.api.types import EventType, Obj
from kubelite.client import NODES, PODS, ApiError, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.scheduler import tolerates

log = logging.getLogger(__name__)

NODE_INDEX = "tainteviction/node"


def eviction_delay(pod: Obj, taints: list[Obj]) -> float | None:
    """Seconds until ``pod`` must go from a node with ``taints``: 0 at once, None never
    (processPodOnNode: no NoExecute taint, or tolerated forever)."""
    no_execute = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_execute:
        return None
    tolerations = list((pod.get("spec") or {}).get("tolerations") or [])
    used: list[Obj] = []
    for taint in no_execute:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        used += matching
    seconds = [int(t["tolerationSeconds"]) for t in used if t.get("tolerationSeconds") is not None]
    if not seconds:
        return None
    return float(max(0, min(seconds)))


class TaintEvictionController(Controller):
    name = "taint-eviction"
    service_account = "taint-eviction-controller"
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.nodes = ctx.informer(NODES)
        self.pods = ctx.informer(PODS, indexers={NODE_INDEX: lambda p: [(p.get("spec") or {}).get("nodeName") or ""]})
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)
        self._due: dict[str, float] = {}  # pod key -> monotonic time its deletion is due
        self.recorder = EventRecorder(self.client, "taint-eviction-controller")

    def _on_node(self, kind: EventType, node: Obj, old: Obj | None) -> None:
        if old is not None and kind != "DELETED" and \
                (old.get("spec") or {}).get("taints") == (node.get("spec") or {}).get("taints"):
            return
        for pod in self.pods.by_index(NODE_INDEX, (node.get("metadata") or {}).get("name") or ""):
            self.queue.add(key_of(pod))

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            self._due.pop(key_of(pod), None)
            return
        if (pod.get("spec") or {}).get("nodeName"):
            self.queue.add(key_of(pod))

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._due.pop(key, None)
            return
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        delay = eviction_delay(pod, list(((node or {}).get("spec") or {}).get("taints") or []))
        if delay is None:
            if self._due.pop(key, None) is not None:
                await self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Cancelling deletion of Pod {key}")
            return
        now = time.monotonic()
        due = self._due.setdefault(key, now + delay)
        if due > now:
            self.queue.add_after(key, due - now)
            return
        await self._evict(pod, key)

    async def _evict(self, pod: Obj, key: str) -> None:
        meta = pod["metadata"]
        await self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key}")
        condition = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                     "message": "Taint manager: deleting due to NoExecute taint",
                     "lastTransitionTime": timeutil.now_rfc3339()}
        try:
            await self.client.patch(PODS, meta["name"], {"status": {"conditions": [condition]}}, meta["namespace"],
                                    subresource="status")
            await self.client.delete(PODS, meta["name"], meta["namespace"])
        except ApiError as e:
            if not e.not_found:
                raise
        self._due.pop(key, None)
