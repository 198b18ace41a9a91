"""kube-scheduler's counterpart: bind each unscheduled pod to a node, or say why it fits nowhere.

A real scheduler is a pipeline of plugins; kubelite keeps the filters that decide *whether*
a pod may go to a node, in kube-scheduler's order and with its messages (NodeUnschedulable,
TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit), and replaces scoring by one
rule: the node with the fewest pods. Pod (anti-)affinity and topology spread are not
considered. A pod that fits nowhere may preempt pods of lower priority
(:mod:`kubelite.controllers.defaultpreemption`).

Kubernetes' node lifecycle controller turns a node that is not Ready into a
``node.kubernetes.io/not-ready`` (or ``unreachable``) NoSchedule taint, and the scheduler
only looks at taints. kubelite has no such controller, so the scheduler adds the same taint
virtually while it filters: users see the same ``had untolerated taint`` message, and pods
that tolerate the taint still schedule.

Binding goes through ``pods/<name>/binding`` exactly as kube-scheduler does. Pods just
bound are remembered ("assumed") until the informer shows them on their node, so that
pods created together spread over nodes instead of all counting the same stale numbers.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api import timeutil
from kubelite.api.types import EventType, Obj
from kubelite.client import NODES, PODS, ApiError, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers import defaultpreemption, nodeports, noderesources
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.volumebinding import VolumeBinding, prefilter_error

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

# kube-scheduler's filter reasons (pkg/scheduler/framework/plugins/...).
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NO_NODES = "no nodes available to schedule pods"

# kube-scheduler re-tries unschedulable pods at least this often even without a cluster event.
UNSCHEDULABLE_RETRY_SECONDS = 300.0
# ... and after a cluster event that may make them fit, no sooner than this (podInitialBackoff).
RETRY_BACKOFF_SECONDS = 1.0


# ---------------------------------------------------------------------- pure filters


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(taints: list[Obj], tolerations: list[Obj]) -> Obj | None:
    """The first NoSchedule/NoExecute taint no toleration covers (FindMatchingUntoleratedTaint)."""
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def node_taints(node: Obj) -> list[Obj]:
    """The node's taints plus the not-ready/unreachable taint its Ready condition stands for."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    status = (ready or {}).get("status", "Unknown")
    if status != "True":
        key = TAINT_NOT_READY if status == "False" else TAINT_UNREACHABLE
        if not any(t.get("key") == key for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def _requirement_matches(req: Obj, labels: dict[str, str]) -> bool:
    key, op, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_matches(term: Obj, node: Obj) -> bool:
    """A NodeSelectorTerm: all its requirements hold; an empty term matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    name_fields = {"metadata.name": meta.get("name", "")}
    return all(_requirement_matches(r, labels) for r in exprs) and all(
        r.get("key") in name_fields and _requirement_matches(r, name_fields) for r in fields
    )


def matches_node_affinity(pod: Obj, node: Obj) -> bool:
    """spec.nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def filter_node(pod: Obj, node: Obj) -> str | None:
    """Why ``pod`` cannot go to ``node`` (the first failing filter's reason), or None if it fits."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not any(
        tolerates(t, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}) for t in tolerations
    ):
        return REASON_UNSCHEDULABLE
    taint = untolerated_taint(node_taints(node), tolerations)
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
    if not matches_node_affinity(pod, node):
        return REASON_NODE_AFFINITY
    return None


def resolvable_reasons(pod: Obj, node: Obj, pods: list[Obj]) -> list[str]:
    """The filters preemption can help with (NodePorts, then NodeResourcesFit), given the
    pods that hold the node's ports and resources; empty when the pod fits."""
    wanted = nodeports.host_ports(pod)
    if wanted and nodeports.conflicts(wanted, (hp for p in pods for hp in nodeports.host_ports(p))):
        return [nodeports.REASON]
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return noderesources.insufficient(noderesources.pod_requests(pod), allocatable,
                                      noderesources.held(pods), len(pods))


def _histogram(num_nodes: int, reasons: list[str]) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    histogram = ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))
    return f"0/{num_nodes} nodes are available: {histogram}."


NOT_HELPFUL = defaultpreemption.NOT_HELPFUL


def fit_error(pod: Obj, num_nodes: int, reasons: list[str], preemption: list[str] | None = None) -> str:
    """kube-scheduler's FitError text, with the DefaultPreemption post-filter's verdict.

    ``reasons`` are every failing filter's reasons over all nodes; ``preemption`` the
    post-filter's reason per node (see :func:`defaultpreemption.select_victims`); None means
    no node's filter failure could be resolved by preemption.
    """
    msg = _histogram(num_nodes, reasons)
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return f"{msg} preemption: {defaultpreemption.NEVER}"
    if preemption is None:
        preemption = [NOT_HELPFUL] * num_nodes
    return msg + " preemption: " + _histogram(num_nodes, preemption)


def needs_scheduling(pod: Obj) -> bool:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and not meta.get("deletionTimestamp")
        and not spec.get("schedulingGates")
        and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )


def _schedulability(node: Obj) -> tuple[Any, ...]:
    """What of a node the filters read: a change here may make pending pods fit."""
    return (
        (node.get("metadata") or {}).get("labels"),
        (node.get("spec") or {}).get("unschedulable"),
        node_taints(node),
        (node.get("status") or {}).get("allocatable"),
    )


def nominated_to(node: str, pod: Obj, pending: list[Obj]) -> list[Obj]:
    """The pods a preemption nominated to ``node`` (``status.nominatedNodeName``, not bound
    yet) whose priority is at least ``pod``'s: kube-scheduler filters a node as if they were
    already running there (RunFilterPluginsWithNominatedPods), so that the room a preemption
    made is not taken by a pod of lower priority, which the nominated one would then evict."""
    own = (pod.get("metadata") or {}).get("uid")
    floor = defaultpreemption.priority(pod)
    return [p for p in pending
            if (p.get("status") or {}).get("nominatedNodeName") == node and not (p.get("spec") or {}).get("nodeName")
            and (p.get("metadata") or {}).get("uid") != own and not (p.get("metadata") or {}).get("deletionTimestamp")
            and defaultpreemption.priority(p) >= floor]


def _holds_node(pod: Obj) -> bool:
    """A bound pod that still holds its node's ports and resources (not yet finished)."""
    return bool((pod.get("spec") or {}).get("nodeName")) and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


# ---------------------------------------------------------------------- the controller


class Scheduler(Controller):
    name = "scheduler"
    # One worker: each decision sees the previous one's binding (via the assumed map)
    # without a lock around the node counts.
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.pods = ctx.informer(PODS, indexers={"scheduler-node": _node_of})
        self.nodes = ctx.informer(NODES)
        self.recorder = EventRecorder(self.client, SCHEDULER_NAME)
        self._assumed: dict[str, str] = {}  # pod key -> node it was bound to, until the cache shows it
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self.volume_binding = VolumeBinding(ctx)
        self.volume_binding.on_claim(self._on_claim)

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        key = key_of(pod)
        if kind == "DELETED" or (pod.get("spec") or {}).get("nodeName"):
            self._assumed.pop(key, None)
        was = pod if kind == "DELETED" else old
        if was is not None and _holds_node(was) and (kind == "DELETED" or not _holds_node(pod)):
            # A pod gone from its node (deleted, or finished) frees ports and resources:
            # pods waiting for them may fit now (kube-scheduler's AssignedPodDelete event).
            self._requeue_pending()
        if kind == "DELETED" or not needs_scheduling(pod):
            return
        # Our own status writes (the PodScheduled condition) must not bring a pod straight back.
        if old is None or _spec_and_meta(old) != _spec_and_meta(pod):
            self.queue.add(key)

    def _on_node(self, kind: EventType, node: Obj, old: Obj | None) -> None:
        if kind == "DELETED" or (old is not None and _schedulability(old) == _schedulability(node)):
            return
        self._requeue_pending()

    def _requeue_pending(self) -> None:
        # After kube-scheduler's initial pod backoff: a burst of deletions (a Deployment
        # scaled down) makes one more attempt per waiting pod, not one per deletion.
        for pod in self.pods.by_index("scheduler-node", ""):
            if needs_scheduling(pod) and key_of(pod) not in self._assumed:
                self.queue.add_after(key_of(pod), RETRY_BACKOFF_SECONDS)

    def _pods_on(self, node: str) -> list[Obj]:
        """The pods that hold ``node``: bound and not finished, or bound by us a moment ago."""
        bound = [p for p in self.pods.by_index("scheduler-node", node) if _holds_node(p)]
        for key, n in self._assumed.items():
            assumed = self.pods.get(key) if n == node else None
            if assumed is not None and not (assumed.get("spec") or {}).get("nodeName"):
                bound.append(assumed)
        return bound

    def _on_claim(self, namespace: str, name: str) -> None:
        # A claim created, bound or handed to a node may let a waiting pod go on.
        for pod in self.pods.by_index("scheduler-node", ""):
            if (pod.get("metadata") or {}).get("namespace") == namespace and needs_scheduling(pod) and \
                    any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                        for v in (pod.get("spec") or {}).get("volumes") or []):
                self.queue.add(key_of(pod))

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not needs_scheduling(pod) or key in self._assumed:
            return
        nodes = self.nodes.list()
        if not nodes:
            await self._unschedulable(pod, NO_NODES)
            return
        unresolvable = self.volume_binding.prefilter(pod)
        if unresolvable is not None:
            await self._unschedulable(pod, prefilter_error(pod, len(nodes), unresolvable))
            return
        feasible: list[tuple[int, str]] = []
        reasons: list[str] = []
        resolvable: list[Obj] = []  # nodes where preemption might help
        for node in nodes:
            name = node["metadata"]["name"]
            reason = filter_node(pod, node) or self.volume_binding.filter(pod, node)
            if reason is not None:
                reasons.append(reason)
                continue
            held = self._pods_on(name)
            failed = resolvable_reasons(pod, node, held + nominated_to(name, pod, self.pods.by_index("scheduler-node", "")))
            if not failed:
                feasible.append((len(held), name))
                continue
            reasons += failed
            resolvable.append(node)
        if feasible:
            target = min(feasible)[1]
            if not await self.volume_binding.prebind(pod, target):
                self.queue.add_after(key, 1.0)  # its claims are being bound (claim events bring it back sooner)
                return
            await self._bind(pod, target)
            return
        await self._unschedulable(pod, await self._post_filter(pod, nodes, reasons, resolvable))

    async def _post_filter(self, pod: Obj, nodes: list[Obj], reasons: list[str], resolvable: list[Obj]) -> str:
        """DefaultPreemption: evict lower-priority pods if that makes room; the FitError message."""
        fits = _histogram(len(nodes), reasons)
        nominated = (pod.get("status") or {}).get("nominatedNodeName") or ""
        resolvable_names = {n["metadata"]["name"] for n in resolvable}
        why_not = defaultpreemption.ineligible(
            pod, self._pods_on(nominated) if nominated else None,
            nominated_unresolvable=bool(nominated) and nominated not in resolvable_names)
        if why_not is not None:
            return f"{fits} preemption: {why_not}"
        verdicts = [NOT_HELPFUL] * (len(nodes) - len(resolvable))
        candidates = []
        for node in resolvable:
            name = node["metadata"]["name"]
            victims, failed = defaultpreemption.select_victims(pod, node, self._pods_on(name), resolvable_reasons)
            if victims is None:
                verdicts += failed
            else:
                candidates.append(defaultpreemption.Candidate(name, victims))
        chosen = defaultpreemption.pick(candidates)
        if chosen is None:
            return f"{fits} preemption: {_histogram(len(nodes), verdicts)}"
        await self._preempt(pod, chosen)
        return fits  # preemption worked: the pod waits for the room, nothing more to say

    async def _preempt(self, pod: Obj, chosen: defaultpreemption.Candidate) -> None:
        meta = pod["metadata"]
        for victim in chosen.victims:
            vmeta = victim["metadata"]
            if defaultpreemption.terminating_by_preemption(victim):
                continue
            cond = defaultpreemption.disruption_condition(SCHEDULER_NAME, timeutil.now_rfc3339())
            try:
                await self.client.patch(PODS, vmeta["name"], {"status": {"conditions": [cond]}}, vmeta["namespace"],
                                        type="strategic", subresource="status")
                await self.client.delete(PODS, vmeta["name"], vmeta["namespace"],
                                         preconditions={"uid": vmeta.get("uid", "")})
            except ApiError as e:
                if not (e.not_found or e.code == 409):
                    raise
                continue
            await self.recorder.event(victim, "Normal", "Preempted",
                                      f"Preempted by pod {meta.get('uid', '')} on node {chosen.node}")
        if (pod.get("status") or {}).get("nominatedNodeName") != chosen.node:
            try:
                await self.client.patch(PODS, meta["name"], {"status": {"nominatedNodeName": chosen.node}},
                                        meta["namespace"], type="strategic", subresource="status")
            except ApiError as e:
                if not e.not_found:
                    raise

    async def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid", "")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        key = key_of(pod)
        self._assumed[key] = node
        try:
            await self.client.create(PODS, binding, meta["namespace"], subresource="binding", name=meta["name"])
        except ApiError as e:
            self._assumed.pop(key, None)
            if e.not_found or e.code == 409:  # gone, being deleted, or bound by someone else
                return
            raise
        await self.recorder.event(pod, "Normal", "Scheduled",
                                  f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")

    async def _unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), None)
        wanted = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        if current is None or any(current.get(k) != v for k, v in wanted.items()):
            since = current.get("lastTransitionTime") if current and current.get("status") == "False" else None
            cond = {**wanted, "lastProbeTime": None, "lastTransitionTime": since or timeutil.now_rfc3339()}
            try:
                await self.client.patch(PODS, meta["name"], {"status": {"conditions": [cond]}}, meta["namespace"],
                                        type="strategic", subresource="status")
            except ApiError as e:
                if not e.not_found:
                    raise
                return
        await self.recorder.event(pod, "Warning", "FailedScheduling", message)
        self.queue.add_after(key_of(pod), UNSCHEDULABLE_RETRY_SECONDS)


def _spec_and_meta(pod: Obj) -> tuple[Any, ...]:
    meta = {k: v for k, v in (pod.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields", "generation")}
    return meta, pod.get("spec")


def _node_of(pod: Obj) -> list[str]:
    return [str((pod.get("spec") or {}).get("nodeName") or "")]
