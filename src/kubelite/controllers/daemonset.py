"""The DaemonSet controller (kube-controller-manager's pkg/controller/daemon).

One pod per eligible node. A node is eligible when the pod template, with the DaemonSet's
default tolerations added, fits it: nodeSelector, required node affinity and taints, judged
by the scheduler's own filters (:mod:`kubelite.controllers.scheduler`). Since Kubernetes 1.12
the controller does not bind pods itself: each pod carries a required node affinity on
``metadata.name`` (matchFields) that pins it to its node, and the scheduler binds it.

The decisions of one sync are a pure function, :func:`plan`, over the eligible nodes and the
pods per node: create where a pod is missing, delete failed pods, duplicates and pods on
nodes no longer eligible, then the rolling update (old pods deleted up to maxUnavailable
unavailable nodes; with maxSurge, a new pod started beside the old one, which goes once the
new one is available). Pods are created with generated names, so creations and deletions
are tracked with the ReplicaSet controller's expectations until the informer shows them.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from dataclasses import dataclass, field

from kubelite.api import timeutil
from kubelite.api.labels import Selector, SelectorError, selector_from_label_selector
from kubelite.api.types import EventType, Obj
from kubelite.client import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS, ApiError, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers import history, podutil, scheduler
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.podcontrol import PodControl
from kubelite.controllers.replicaset import Expectations

log = logging.getLogger(__name__)

TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

# util.AddOrUpdateDaemonPodTolerations, in its order.
DEFAULT_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE_TOLERATION: Obj = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                                       "effect": "NoSchedule"}


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


# ---------------------------------------------------------------------------------- pods


def with_default_tolerations(pod_spec: Obj) -> list[Obj]:
    """The template's tolerations plus the DaemonSet's (AddOrUpdateTolerationInPodSpec: a
    toleration already present is not added twice)."""
    tolerations = [dict(t) for t in pod_spec.get("tolerations") or []]
    extra = list(DEFAULT_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        extra.append(NETWORK_UNAVAILABLE_TOLERATION)
    for t in extra:
        if not any(all(have.get(k) == t.get(k) for k in ("key", "operator", "effect", "value")) for have in tolerations):
            tolerations.append(dict(t))
    return tolerations


def node_name_affinity(affinity: Obj | None, node: str) -> Obj:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity becomes one term
    matching the node's name (the controller has already checked the original terms)."""
    out = copy.deepcopy(affinity or {})
    node_affinity = out.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
    }
    return out


def template_generation(ds: Obj) -> str | None:
    return (_meta(ds).get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)


def new_pod(ds: Obj, node: str, hash_: str) -> Obj:
    """CreatePodTemplate + the node affinity: the pod the DaemonSet runs on ``node``."""
    template = _spec(ds).get("template") or {}
    ref = podutil.new_controller_ref(ds, "apps/v1", "DaemonSet")
    pod = podutil.pod_from_template(template, ds, ref)
    labels = pod["metadata"].setdefault("labels", {})
    generation = template_generation(ds)
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = generation
    labels[history.REVISION_LABEL] = hash_
    spec = pod["spec"]
    spec["tolerations"] = with_default_tolerations(spec)
    spec["affinity"] = node_name_affinity(spec.get("affinity"), node)
    return pod


def pod_node(pod: Obj) -> str:
    """The node a daemon pod is on, or pinned to while it waits for the scheduler."""
    name = _spec(pod).get("nodeName")
    if name:
        return str(name)
    terms = (((_spec(pod).get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(req.get("values") or []) == 1:
                return str(req["values"][0])
    return ""


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should run, should continue running) on ``node``."""
    template = copy.deepcopy(_spec(ds).get("template") or {})
    spec = template.setdefault("spec", {})
    spec["tolerations"] = with_default_tolerations(spec)
    pod = {"spec": spec}
    node_name = spec.get("nodeName")
    if node_name and node_name != _meta(node).get("name"):
        return False, False
    if not scheduler.matches_node_affinity(pod, node):
        return False, False
    # The node's taints with the not-ready/unreachable NoSchedule taint its Ready condition stands
    # for, as the scheduler sees them (Kubernetes' node lifecycle controller writes that taint).
    taints = scheduler.node_taints(node)
    untolerated = scheduler.untolerated_taint(taints, spec["tolerations"])
    if untolerated is not None:
        # A NoSchedule taint keeps new pods off but lets a running one stay; NoExecute evicts.
        no_execute = any(t.get("effect") == "NoExecute" and not any(scheduler.tolerates(x, t) for x in spec["tolerations"])
                         for t in taints)
        return False, not no_execute
    return True, True


def pod_hash(pod: Obj) -> str:
    return str((_meta(pod).get("labels") or {}).get(history.REVISION_LABEL, ""))


def is_updated(ds: Obj, pod: Obj, hash_: str) -> bool:
    """IsPodUpdated: the pod carries the current hash, or the current template generation."""
    generation = template_generation(ds)
    labels = _meta(pod).get("labels") or {}
    return bool(hash_ and labels.get(history.REVISION_LABEL) == hash_) or (
        generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation)


# ---------------------------------------------------------------------------------- decisions


@dataclass
class Plan:
    create: list[str] = field(default_factory=list)  # node names
    delete: list[Obj] = field(default_factory=list)  # pods


def _int_or_percent(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        n = int(value[:-1]) * total
        return -(-n // 100) if round_up else n // 100
    return int(value)


def max_surge_and_unavailable(ds: Obj, desired: int) -> tuple[int, int]:
    """updatedDesiredNodeCounts: maxSurge rounds up, maxUnavailable down; at least one of them is 1."""
    rolling = (_spec(ds).get("updateStrategy") or {}).get("rollingUpdate") or {}
    surge = _int_or_percent(rolling.get("maxSurge", 0), desired, True)
    unavailable = _int_or_percent(rolling.get("maxUnavailable", 1), desired, False)
    if desired > 0 and surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def plan(ds: Obj, eligible: dict[str, tuple[bool, bool]], pods_by_node: dict[str, list[Obj]], hash_: str,
         now: dt.datetime) -> Plan:
    """manage + rollingUpdate of one sync."""
    out = Plan()
    min_ready = int(_spec(ds).get("minReadySeconds") or 0)
    live: dict[str, list[Obj]] = {}
    for node, (run, keep) in eligible.items():
        pods = sorted(pods_by_node.get(node, []), key=lambda p: (podutil.creation_time(p), _meta(p).get("name", "")))
        pods = [p for p in pods if not _meta(p).get("deletionTimestamp")]
        if run:
            failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
            out.delete += failed
            running = [p for p in pods if p not in failed]
            if not running:
                if not failed:
                    out.create.append(node)
                continue
            # More than one daemon pod on a node: keep the oldest (and, while surging, the newest).
            keep_pods = [running[0]]
            if len(running) > 1 and not is_updated(ds, running[0], hash_):
                newest = [p for p in running if is_updated(ds, p, hash_)]
                if newest and newest[-1] is not running[0]:
                    keep_pods.append(newest[-1])
            out.delete += [p for p in running if p not in keep_pods]
            live[node] = keep_pods
        elif not keep:
            out.delete += pods
    for node, pods in pods_by_node.items():
        if node not in eligible:
            out.delete += [p for p in pods if not _meta(p).get("deletionTimestamp")]
    strategy = _spec(ds).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or out.create or out.delete:
        return out
    desired = sum(1 for run, _ in eligible.values() if run)
    surge, max_unavailable = max_surge_and_unavailable(ds, desired)

    def available(p: Obj) -> bool:
        return podutil.is_pod_available(p, min_ready, now)

    if surge == 0:
        unavailable = sum(1 for node, (run, _) in eligible.items()
                          if run and not any(available(p) for p in live.get(node, [])))
        for node in sorted(live):
            old = [p for p in live[node] if not is_updated(ds, p, hash_)]
            if not old:
                continue
            if not any(available(p) for p in old):
                out.delete += old  # an unavailable old pod costs nothing to replace
                continue
            if unavailable < max_unavailable:
                out.delete += old
                unavailable += 1
        return out
    surging = sum(1 for pods in live.values() if len(pods) > 1)
    for node in sorted(live):
        old = [p for p in live[node] if not is_updated(ds, p, hash_)]
        new = [p for p in live[node] if is_updated(ds, p, hash_)]
        if not old:
            continue
        if new:
            if all(available(p) for p in new):
                out.delete += old
            continue
        if not any(available(p) for p in old):
            out.delete += old
        elif surging < surge:
            out.create.append(node)
            surging += 1
    return out


def compute_status(ds: Obj, eligible: dict[str, tuple[bool, bool]], pods_by_node: dict[str, list[Obj]],
                   hash_: str, now: dt.datetime) -> Obj:
    """updateDaemonSetStatus' counts."""
    min_ready = int(_spec(ds).get("minReadySeconds") or 0)
    desired = current = misscheduled = ready = updated = available = 0
    for node, (run, _) in eligible.items():
        pods = [p for p in pods_by_node.get(node, []) if not _meta(p).get("deletionTimestamp")]
        if run:
            desired += 1
            if pods:
                current += 1
                pod = sorted(pods, key=podutil.creation_time)[0]
                if podutil.is_pod_ready(pod):
                    ready += 1
                    if podutil.is_pod_available(pod, min_ready, now):
                        available += 1
                if any(is_updated(ds, p, hash_) for p in pods):
                    updated += 1
        elif pods:
            misscheduled += 1
    status: Obj = {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
                   "desiredNumberScheduled": desired, "numberReady": ready}
    generation = _meta(ds).get("generation")
    if generation:
        status["observedGeneration"] = generation
    for key, value in (("updatedNumberScheduled", updated), ("numberAvailable", available),
                       ("numberUnavailable", desired - available)):
        if value:
            status[key] = value
    collision = (ds.get("status") or {}).get("collisionCount")
    if collision is not None:
        status["collisionCount"] = collision
    return status


# ---------------------------------------------------------------------------------- controller


class DaemonSetController(Controller):
    name = "daemonset"
    service_account = "daemon-set-controller"
    workers = 2
    event_source = "daemonset-controller"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.recorder = EventRecorder(self.client, self.event_source)
        self.pod_control = PodControl(self.client, self.recorder)
        self.expectations = Expectations()
        self.ds_informer = ctx.informer(DAEMONSETS)
        self.pod_informer = ctx.informer(PODS, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.node_informer = ctx.informer(NODES)
        self.rev_informer = ctx.informer(CONTROLLERREVISIONS,
                                         indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.ds_informer.add_handler(self._on_ds)
        self.pod_informer.add_handler(self._on_pod)
        self.node_informer.add_handler(self._on_node)

    def _on_ds(self, kind: EventType, ds: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(ds))
        self.enqueue(ds)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = podutil.controller_ref(pod)
        if ref is None or ref.get("kind") != "DaemonSet" or not str(ref.get("apiVersion", "")).startswith("apps/"):
            return None
        key = f"{_meta(pod).get('namespace', '')}/{ref.get('name')}"
        ds = self.ds_informer.get(key)
        if ds is None or _meta(ds).get("uid") != ref.get("uid"):
            return None
        return key

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        key = self._owner_key(pod)
        if key is None:
            if kind != "DELETED" and podutil.controller_ref(pod) is None:
                for candidate in self.ds_informer.list(_meta(pod).get("namespace", "")):
                    try:
                        sel = selector_from_label_selector(_spec(candidate).get("selector"))
                    except SelectorError:
                        continue
                    if not sel.empty and sel.matches(_meta(pod).get("labels") or {}):
                        self.enqueue(candidate)
            return
        if kind == "DELETED" or (_meta(pod).get("deletionTimestamp") and not _meta(old).get("deletionTimestamp")):
            self.expectations.deletion_observed(key, key_of(pod))
        elif kind == "ADDED" or old is None:
            self.expectations.creation_observed(key)
        self.queue.add(key)
        ds = self.ds_informer.get(key)
        min_ready = int(_spec(ds or {}).get("minReadySeconds") or 0)
        if min_ready and old is not None and not podutil.is_pod_ready(old) and podutil.is_pod_ready(pod):
            self.queue.add_after(key, float(min_ready) + 1.0)

    def _on_node(self, kind: EventType, node: Obj, old: Obj | None) -> None:
        # Heartbeats change a node all the time; only what should_run reads matters.
        if old is not None and kind == "MODIFIED" and (
            _meta(node).get("labels") == _meta(old).get("labels")
            and scheduler.node_taints(node) == scheduler.node_taints(old)
        ):
            return
        for ds in self.ds_informer.list():
            self.enqueue(ds)

    # ------------------------------------------------------------------ sync

    async def reconcile(self, key: str) -> None:
        cached = self.ds_informer.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        ds = copy.deepcopy(cached)
        try:
            selector = selector_from_label_selector(_spec(ds).get("selector"))
        except SelectorError as e:
            log.warning("DaemonSet %s has an invalid selector: %s", key, e)
            return
        if selector.empty or _meta(ds).get("deletionTimestamp"):
            return
        ns, uid = _meta(ds)["namespace"], _meta(ds)["uid"]
        pods = [p for p in self.pod_informer.by_index(podutil.CONTROLLER_UID_INDEX, uid)
                if _meta(p).get("namespace") == ns and selector.matches(_meta(p).get("labels") or {})]
        pods += await self._adopt_orphans(ds, selector)
        hash_ = await self._revisions(ds)
        eligible = {str(_meta(n)["name"]): should_run(ds, n) for n in self.node_informer.list()}
        pods_by_node: dict[str, list[Obj]] = {}
        for p in pods:
            pods_by_node.setdefault(pod_node(p), []).append(p)
        now = timeutil.now()
        error: Exception | None = None
        if self.expectations.satisfied(key):
            decided = plan(ds, eligible, pods_by_node, hash_, now)
            try:
                await self._sync_nodes(key, ds, decided, hash_)
            except ApiError as e:
                error = e
        status = compute_status(ds, eligible, pods_by_node, hash_, now)
        await self._update_status(ds, status)
        min_ready = int(_spec(ds).get("minReadySeconds") or 0)
        if min_ready and status.get("numberAvailable", 0) != status.get("numberReady"):
            self.queue.add_after(key, float(min_ready))
        if error is not None:
            raise error

    async def _adopt_orphans(self, ds: Obj, selector: Selector) -> list[Obj]:
        """ClaimPods' adoption: living pods without a controller that the selector matches."""
        ns = _meta(ds)["namespace"]
        ref = podutil.new_controller_ref(ds, "apps/v1", "DaemonSet")
        adopted = []
        for pod in self.pod_informer.list(ns):
            if podutil.controller_ref(pod) is not None or _meta(pod).get("deletionTimestamp"):
                continue
            if not selector.matches(_meta(pod).get("labels") or {}):
                continue
            try:
                adopted.append(await self.client.patch(PODS, _meta(pod)["name"], podutil.adopt_patch(pod, ref), ns,
                                                       type="strategic"))
            except ApiError as e:
                if not e.not_found:
                    raise
        return adopted

    async def _revisions(self, ds: Obj) -> str:
        """constructHistory: the revision of the current template (created or renumbered) and its hash;
        older revisions beyond revisionHistoryLimit that no pod uses are deleted."""
        ns, uid = _meta(ds)["namespace"], _meta(ds)["uid"]
        collision_count = (ds.get("status") or {}).get("collisionCount")
        hash_ = podutil.compute_hash(_spec(ds).get("template") or {}, collision_count)
        revisions = history.sort_revisions(r for r in self.rev_informer.by_index(podutil.CONTROLLER_UID_INDEX, uid)
                                           if _meta(r).get("namespace") == ns)
        wanted = history.new_revision(ds, "apps/v1", "DaemonSet", history.next_revision(revisions),
                                      collision_count, name_hash=hash_)
        # The DaemonSet's snapshot(): template labels plus controller-revision-hash, no
        # controller.kubernetes.io/hash label (that one is history.NewControllerRevision's).
        labels = wanted["metadata"]["labels"]
        labels.pop(history.HASH_LABEL, None)
        labels[history.REVISION_LABEL] = hash_
        equal = history.find_equal(revisions, wanted)
        if equal:
            current = equal[-1]
            if current is not revisions[-1]:
                await self.client.patch(CONTROLLERREVISIONS, _meta(current)["name"],
                                        {"revision": wanted["revision"]}, ns, type="merge")
        else:
            try:
                await self.client.create(CONTROLLERREVISIONS, wanted, ns)
            except ApiError as e:
                if not e.already_exists:
                    raise
        live = {pod_hash(p) for p in self.pod_informer.by_index(podutil.CONTROLLER_UID_INDEX, uid)}
        live_names = {_meta(r)["name"] for r in revisions
                      if (_meta(r).get("labels") or {}).get(history.REVISION_LABEL) in live}
        live_names.add(str(wanted["metadata"]["name"]))
        limit = int(_spec(ds).get("revisionHistoryLimit", 10))
        for revision in history.revisions_to_drop(revisions, live_names, limit):
            try:
                await self.client.delete(CONTROLLERREVISIONS, _meta(revision)["name"], ns)
            except ApiError as e:
                if not e.not_found:
                    raise
        return hash_

    async def _sync_nodes(self, key: str, ds: Obj, decided: Plan, hash_: str) -> None:
        if decided.create:
            self.expectations.expect_creations(key, len(decided.create))
        elif decided.delete:
            self.expectations.expect_deletions(key, [key_of(p) for p in decided.delete])
        else:
            return
        results = await asyncio.gather(*(self._create(key, ds, node, hash_) for node in decided.create),
                                       *(self._delete(key, ds, pod) for pod in decided.delete
                                         if not decided.create),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        if decided.create and decided.delete:
            self.queue.add(key)  # deletions follow once the creations are observed

    async def _create(self, key: str, ds: Obj, node: str, hash_: str) -> None:
        try:
            await self.pod_control.create(ds, new_pod(ds, node, hash_))
        except ApiError as e:
            self.expectations.creation_observed(key)
            if not e.namespace_terminating:
                raise

    async def _delete(self, key: str, ds: Obj, pod: Obj) -> None:
        try:
            await self.pod_control.delete(ds, pod)
        except ApiError as e:
            self.expectations.deletion_observed(key, key_of(pod))
            if not e.not_found:
                raise

    async def _update_status(self, ds: Obj, status: Obj) -> None:
        for attempt in range(2):
            if (ds.get("status") or {}) == status:
                return
            try:
                await self.client.update_status(DAEMONSETS, {**ds, "status": status})
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict or attempt == 1:
                    raise
                self.queue.add(key_of(ds))
                return
