"""The Job controller (kube-controller-manager's pkg/controller/job, as of Kubernetes 1.33).

A Job runs pods to completion: up to ``parallelism`` at a time until ``completions`` of them
succeeded (in ``Indexed`` mode, one success per index ``0..completions-1``, each pod told its
index by the ``batch.kubernetes.io/job-completion-index`` annotation, label and
``JOB_COMPLETION_INDEX`` variable). Failures are retried with an exponential back-off (10 s,
doubling, at most 10 minutes: the code's ``MaxJobPodFailureBackOff``, where the docs still say
six) until ``backoffLimit`` is passed, ``activeDeadlineSeconds`` runs out, or a
``podFailurePolicy`` rule says otherwise.

Counting is exact even when pods vanish, as in Kubernetes since 1.26: every pod is created
with the ``batch.kubernetes.io/job-tracking`` finalizer, so a finished pod cannot disappear
before it is counted. A finished pod's UID is first written to
``status.uncountedTerminatedPods``, then its finalizer removed, then it is moved into
``succeeded``/``failed``: a controller restart between the steps neither loses nor doubles it.

Terminal conditions come in two steps, as 1.33 writes them: ``FailureTarget`` or
``SuccessCriteriaMet`` first (the remaining pods are then deleted), and ``Failed`` or
``Complete`` only once no pod of the Job is terminating any more; ``kubectl wait
--for=condition=complete`` waits for the second.

The decisions that depend only on the Job, its pods and the time (back-off, failure policy,
wanted pods, conditions) are plain functions taking ``now``, tested with a fake clock.
``KUBELITE_JOB_POD_FAILURE_BACKOFF`` (seconds) shortens the back-off base for tests.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from kubelite.api import timeutil
from kubelite.api.labels import SelectorError, selector_from_label_selector
from kubelite.api.types import EventType, Obj
from kubelite.client import JOBS, PODS, ApiError, key_of
from kubelite.client.events import EventRecorder
from kubelite.controllers import podutil
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.podcontrol import PodControl
from kubelite.controllers.replicaset import Expectations

log = logging.getLogger(__name__)

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
DEFAULT_POD_FAILURE_BACKOFF = 10.0  # DefaultJobPodFailureBackOff
MAX_POD_FAILURE_BACKOFF = 600.0  # MaxJobPodFailureBackOff
MAX_POD_CREATE_DELETE_PER_SYNC = 500
MAX_GENERATED_NAME_LENGTH = 58
JOB_CONTROLLER = "kubernetes.io/job-controller"

Clock = Callable[[], dt.datetime]


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(job: Obj) -> Obj:
    return job.get("spec") or {}


# ------------------------------------------------------------------------------ pure logic


def condition(job: Obj, type_: str) -> Obj | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def has_condition(job: Obj, type_: str) -> bool:
    c = condition(job, type_)
    return c is not None and c.get("status") == "True"


def is_finished(job: Obj) -> bool:
    """IsJobFinished: Complete or Failed is True."""
    return has_condition(job, "Complete") or has_condition(job, "Failed")


def new_condition(type_: str, reason: str, message: str, now: dt.datetime, status: str = "True") -> Obj:
    t = timeutil.format_time(now)
    return {"type": type_, "status": status, "lastProbeTime": t, "lastTransitionTime": t,
            "reason": reason, "message": message}


def only_replace_failed_pods(job: Obj) -> bool:
    spec = _spec(job)
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """isPodFailed: phase Failed, or (unless only failed pods are replaced) deleted before it succeeded."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    return bool(_meta(pod).get("deletionTimestamp")) and phase != "Succeeded"


def is_terminating(pod: Obj) -> bool:
    return bool(_meta(pod).get("deletionTimestamp")) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def finish_time(pod: Obj, now: dt.datetime) -> dt.datetime:
    """getFinishedTime: the last container's finishedAt, else the deletion time, else now."""
    latest: dt.datetime | None = None
    status = pod.get("status") or {}
    for cs in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]:
        t = timeutil.parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t is not None and (latest is None or t > latest):
            latest = t
    if latest is None:
        latest = timeutil.parse_time(_meta(pod).get("deletionTimestamp"))
    return latest or now


def backoff_delay(failures: int, base: float = DEFAULT_POD_FAILURE_BACKOFF, cap: float = MAX_POD_FAILURE_BACKOFF) -> float:
    """The delay after ``failures`` consecutive failures: base, doubling, at most ``cap``."""
    if failures <= 0:
        return 0.0
    delay = base
    for _ in range(1, failures):
        delay *= 2
        if delay >= cap:
            return cap
    return delay


@dataclass
class BackoffRecord:
    """backoffRecord: failures since the last success and when the last one happened."""

    failures_after_last_success: int = 0
    last_failure: dt.datetime | None = None

    def observe(self, succeeded: Iterable[Obj], failed: Iterable[Obj], now: dt.datetime) -> None:
        """newBackoffRecord: a new success resets the count to the failures that came after it."""
        succeeded, failed = list(succeeded), list(failed)
        if succeeded:
            last_success = max(finish_time(p, now) for p in succeeded)
            failed = [p for p in failed if finish_time(p, now) > last_success]
            self.failures_after_last_success = 0
            self.last_failure = None
        if failed:
            self.failures_after_last_success += len(failed)
            latest = max(finish_time(p, now) for p in failed)
            if self.last_failure is None or latest > self.last_failure:
                self.last_failure = latest

    def remaining(self, now: dt.datetime, base: float = DEFAULT_POD_FAILURE_BACKOFF,
                  cap: float = MAX_POD_FAILURE_BACKOFF) -> float:
        """getRemainingTime: how long pod creation must still wait (0 when it need not)."""
        if self.failures_after_last_success == 0 or self.last_failure is None:
            return 0.0
        delay = backoff_delay(self.failures_after_last_success, base, cap)
        elapsed = (now - self.last_failure).total_seconds()
        return 0.0 if delay < elapsed else delay - elapsed


@dataclass(frozen=True)
class PolicyMatch:
    action: str  # FailJob, Ignore, Count, FailIndex
    message: str = ""


def _matching_container(statuses: list[Obj], req: Obj) -> Obj | None:
    values = req.get("values") or []
    for cs in statuses:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is None:
            continue
        if req.get("containerName") not in (None, cs.get("name")):
            continue
        code = int(terminated.get("exitCode") or 0)
        if code == 0:
            continue  # a container that succeeded never matches, whatever the operator
        if (code in values) == (req.get("operator") == "In"):
            return cs
    return None


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> PolicyMatch | None:
    """matchPodFailurePolicy: the first rule that matches a failed pod, None when none does."""
    if not policy:
        return None
    status = pod.get("status") or {}
    ns, name = _meta(pod).get("namespace", ""), _meta(pod).get("name", "")
    for index, rule in enumerate(policy.get("rules") or []):
        action = str(rule.get("action") or "")
        if rule.get("onExitCodes") is not None:
            req = rule["onExitCodes"]
            cs = _matching_container(status.get("containerStatuses") or [], req) or _matching_container(
                status.get("initContainerStatuses") or [], req)
            if cs is None:
                continue
            code = cs["state"]["terminated"].get("exitCode")
            return PolicyMatch(action, f"Container {cs.get('name')} for pod {ns}/{name} failed with exit code "
                                       f"{code} matching {action} rule at index {index}")
        elif rule.get("onPodConditions") is not None:
            for cond in status.get("conditions") or []:
                for pattern in rule["onPodConditions"]:
                    if cond.get("type") == pattern.get("type") and cond.get("status") == (pattern.get("status") or "True"):
                        return PolicyMatch(action, f"Pod {ns}/{name} has condition {cond.get('type')} matching "
                                                   f"{action} rule at index {index}")
    return None


def past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """pastBackoffLimitOnFailure: with restartPolicy OnFailure, container restarts count as retries."""
    spec = _spec(job)
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Running", "Pending"):
            for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
                restarts += int(cs.get("restartCount") or 0)
    limit = int(spec.get("backoffLimit", 6))
    return restarts > 0 if limit == 0 else restarts >= limit


def past_active_deadline(job: Obj, now: dt.datetime) -> bool:
    deadline = _spec(job).get("activeDeadlineSeconds")
    start = timeutil.parse_time((job.get("status") or {}).get("startTime"))
    if deadline is None or start is None:
        return False
    return (now - start).total_seconds() >= float(deadline)


def pod_index(pod: Obj) -> int | None:
    """getCompletionIndex: the annotation's index, None when missing or not a number."""
    value = (_meta(pod).get("annotations") or {}).get(COMPLETION_INDEX)
    if value is None or not str(value).isdigit():
        return None
    return int(value)


def parse_indexes(text: str) -> set[int]:
    """The completedIndexes text ("1,3-5,7") as a set."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """orderedIntervals.String(): sorted; runs of three or more as ``first-last``, of two as ``a,b``."""
    parts: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = ordered[i], ordered[j]
        parts.append(str(first) if last == first else f"{first},{last}" if last == first + 1 else f"{first}-{last}")
        i = j + 1
    return ",".join(parts)


def _annotation_int(pod: Obj, key: str) -> int:
    value = str((_meta(pod).get("annotations") or {}).get(key) or "0")
    return int(value) if value.isdigit() else 0


@dataclass(frozen=True)
class IndexFailures:
    """What the failed pods of one index say (backoffLimitPerIndex): the failure count its next
    pod carries, its count of ignored failures, and when the last one failed."""

    count: int
    ignored: int
    last_failure: dt.datetime


def index_failures(job: Obj, pods: list[Obj], now: dt.datetime) -> dict[int, IndexFailures]:
    """Per index, from its latest failed pod: failures so far (an Ignore'd failure does not count)."""
    policy = _spec(job).get("podFailurePolicy")
    out: dict[int, IndexFailures] = {}
    for pod in pods:
        index = pod_index(pod)
        if index is None or (pod.get("status") or {}).get("phase") != "Failed":
            continue
        finished = finish_time(pod, now)
        if index in out and out[index].last_failure >= finished:
            continue
        count, ignored = _annotation_int(pod, INDEX_FAILURE_COUNT), _annotation_int(pod, INDEX_IGNORED_FAILURE_COUNT)
        match = match_pod_failure_policy(policy, pod)
        if match is not None and match.action == "Ignore":
            ignored += 1
        else:
            count += 1
        out[index] = IndexFailures(count, ignored, finished)
    return out


def match_success_policy(job: Obj, completed: set[int]) -> str | None:
    """matchSuccessPolicy: the message of the first rule the succeeded indexes satisfy."""
    for i, rule in enumerate((_spec(job).get("successPolicy") or {}).get("rules") or []):
        wanted = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            indexes = parse_indexes(str(rule["succeededIndexes"]))
            done = len(indexes & completed)
            matched = done >= int(wanted) if wanted is not None else indexes <= completed
        else:
            matched = wanted is not None and len(completed) >= int(wanted)
        if matched:
            return f"Matched rules at index {i}"
    return None


def wanted_active(job: Obj, succeeded: int, active: int) -> int:
    """How many pods should run now (NonIndexed), as manageJob computes wantActive."""
    spec = _spec(job)
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    if completions is None:
        # Any success means the work is done: let the running pods finish, start no more.
        return active if succeeded > 0 else parallelism
    return max(0, min(int(completions) - succeeded, parallelism))


def pending_indexes(job: Obj, completed: set[int], active_pods: list[Obj], count: int) -> list[int]:
    """The lowest ``count`` indexes neither completed nor running."""
    completions = int(_spec(job).get("completions") or 0)
    running = {pod_index(p) for p in active_pods}
    out: list[int] = []
    for i in range(completions):
        if len(out) >= count:
            break
        if i not in completed and i not in running:
            out.append(i)
    return out


def indexed_generate_name(job_name: str, index: int) -> str:
    """podGenerateNameWithIndex: ``<job>-<index>-``, the job name cut to fit 58 characters."""
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > MAX_GENERATED_NAME_LENGTH:
        prefix = prefix[:MAX_GENERATED_NAME_LENGTH - len(suffix)] + suffix
    return prefix


def pod_for_job(job: Obj, index: int | None, failures: IndexFailures | None = None) -> Obj:
    """The pod the controller creates: the template, the owner reference, the tracking finalizer,
    and in Indexed mode the index (annotation, label, hostname, environment)."""
    ref = podutil.new_controller_ref(job, "batch/v1", "Job")
    pod = podutil.pod_from_template(_spec(job).get("template") or {}, job, ref)
    meta = pod["metadata"]
    meta["finalizers"] = [*(meta.get("finalizers") or []), TRACKING_FINALIZER]
    if index is not None:
        name = str(_meta(job).get("name", ""))
        meta["generateName"] = indexed_generate_name(name, index)
        meta.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
        meta.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
        if _spec(job).get("backoffLimitPerIndex") is not None:
            meta["annotations"][INDEX_FAILURE_COUNT] = str(failures.count if failures else 0)
            if failures is not None and failures.ignored:
                meta["annotations"][INDEX_IGNORED_FAILURE_COUNT] = str(failures.ignored)
        spec = pod["spec"]
        if not spec.get("hostname"):
            spec["hostname"] = f"{name}-{index}"
        env_var = {"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                env = c.setdefault("env", [])
                if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                    env.append(dict(env_var))
    return pod


def ensure_condition(conditions: list[Obj], type_: str, status: str, reason: str, message: str,
                     now: dt.datetime) -> bool:
    """ensureJobConditionStatus: set a condition's status (adding it only when True); True if it changed."""
    for c in conditions:
        if c.get("type") == type_:
            if c.get("status") == status and c.get("reason") == reason and c.get("message") == message:
                return False
            c.update(new_condition(type_, reason, message, now, status))
            return True
    if status == "True":
        conditions.append(new_condition(type_, reason, message, now, status))
        return True
    return False


# ------------------------------------------------------------------------------ controller


class JobController(Controller):
    """Watches Jobs and their pods; one reconcile per Job key."""

    name = "job"
    service_account = "job-controller"
    workers = 5

    def __init__(self, ctx: Context, clock: Clock = timeutil.now) -> None:
        super().__init__(ctx)
        self.clock = clock
        self.backoff_base = float(os.environ.get("KUBELITE_JOB_POD_FAILURE_BACKOFF") or DEFAULT_POD_FAILURE_BACKOFF)
        self.recorder = EventRecorder(self.client, "job-controller")
        self.pod_control = PodControl(self.client, self.recorder)
        self.expectations = Expectations()
        self.backoffs: dict[str, BackoffRecord] = {}
        self.job_informer = ctx.informer(JOBS)
        self.pod_informer = ctx.informer(PODS, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.job_informer.add_handler(self._on_job)
        self.pod_informer.add_handler(self._on_pod)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ event handlers

    def _on_job(self, kind: EventType, job: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(job))
            self.backoffs.pop(key_of(job), None)
        self.enqueue(job)

    def _owner_key(self, pod: Obj) -> tuple[str, Obj | None]:
        ref = podutil.controller_ref(pod)
        if ref is None or ref.get("kind") != "Job" or not str(ref.get("apiVersion", "")).startswith("batch/"):
            return "", None
        key = f"{_meta(pod).get('namespace', '')}/{ref.get('name')}"
        job = self.job_informer.get(key)
        if job is None or _meta(job).get("uid") != ref.get("uid"):
            return key, None
        return key, job

    def _on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        key, job = self._owner_key(pod)
        if not key:
            if podutil.controller_ref(pod) is None and kind != "DELETED":
                self._on_orphan(pod)
            return
        if job is None:
            # Its Job is gone: nobody else will ever take the tracking finalizer off.
            if TRACKING_FINALIZER in (_meta(pod).get("finalizers") or []) and kind != "DELETED":
                self._spawn(self._remove_finalizer_if_orphan(pod))
            return
        if kind == "ADDED" or old is None:
            if not _meta(pod).get("deletionTimestamp"):
                self.expectations.creation_observed(key)
        elif kind == "DELETED" or (_meta(pod).get("deletionTimestamp") and not _meta(old).get("deletionTimestamp")):
            self.expectations.deletion_observed(key, key_of(pod))
        self.queue.add(key)

    def _on_orphan(self, pod: Obj) -> None:
        """A pod without a controller: the Jobs whose selector matches it sync, one of them may
        adopt it (getPodJobs); and the tracking finalizer comes off it meanwhile (syncOrphanPod:
        an adoption puts it back), or its deletion would wait for it forever."""
        labels = _meta(pod).get("labels") or {}
        for job in self.job_informer.list(str(_meta(pod).get("namespace") or "")):
            try:
                selector = selector_from_label_selector(_spec(job).get("selector"))
            except (SelectorError, ValueError):
                continue
            if not selector.empty and selector.matches(labels):
                self.enqueue(job)
        if TRACKING_FINALIZER in (_meta(pod).get("finalizers") or []):
            self._spawn(self._remove_orphan_finalizer(pod))

    async def _remove_orphan_finalizer(self, pod: Obj) -> None:
        # Still an orphan in the cache (the job-controller role may not get pods), at that
        # version: an adoption meanwhile (which sets the finalizer again) fails the test op.
        name, ns = _meta(pod)["name"], _meta(pod).get("namespace")
        fresh = self.pod_informer.get(key_of(pod))
        if fresh is None:
            return
        try:
            finalizers = list(_meta(fresh).get("finalizers") or [])
            if podutil.controller_ref(fresh) is not None or TRACKING_FINALIZER not in finalizers:
                return
            rest = [f for f in finalizers if f != TRACKING_FINALIZER]
            ops: list[Obj] = [{"op": "test", "path": "/metadata/resourceVersion", "value": _meta(fresh)["resourceVersion"]},
                              {"op": "replace", "path": "/metadata/finalizers", "value": rest} if rest
                              else {"op": "remove", "path": "/metadata/finalizers"}]
            await self.client.patch(PODS, name, ops, ns, type="json")
        except ApiError as e:
            if not (e.not_found or e.conflict or e.code == 422):
                log.warning("removing the tracking finalizer of orphan pod %s/%s: %s", ns, name, e)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remove_finalizer_if_orphan(self, pod: Obj) -> None:
        ref = podutil.controller_ref(pod) or {}
        try:
            live = await self.client.get(JOBS, str(ref.get("name")), _meta(pod).get("namespace"))
            if _meta(live).get("uid") == ref.get("uid"):
                return
        except ApiError as e:
            if not e.not_found:
                return
        await self._remove_finalizer(pod)

    async def _remove_finalizer(self, pod: Obj) -> None:
        """Kubernetes sends ``$deleteFromPrimitiveList/finalizers``; that leaves ``finalizers: []``
        here (kube-apiserver's Go types drop the empty list), so when ours is the pod's only
        finalizer a JSON patch that tests for exactly that removes the field instead."""
        name, ns = _meta(pod)["name"], _meta(pod).get("namespace")
        try:
            if _meta(pod).get("finalizers") == [TRACKING_FINALIZER]:
                ops = [{"op": "test", "path": "/metadata/finalizers", "value": [TRACKING_FINALIZER]},
                       {"op": "remove", "path": "/metadata/finalizers"}]
                try:
                    await self.client.patch(PODS, name, ops, ns, type="json")
                    return
                except ApiError as e:
                    if e.not_found:
                        return
                    # Another finalizer arrived meanwhile: remove just ours.
            patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
            await self.client.patch(PODS, name, patch, ns, type="strategic")
        except ApiError as e:
            if not e.not_found:
                raise

    # ------------------------------------------------------------------ sync

    def _pods(self, job: Obj) -> list[Obj]:
        uid = str(_meta(job).get("uid"))
        ns = _meta(job).get("namespace")
        return [p for p in self.pod_informer.by_index(podutil.CONTROLLER_UID_INDEX, uid)
                if _meta(p).get("namespace") == ns]

    async def reconcile(self, key: str) -> None:
        cached = self.job_informer.get(key)
        if cached is None:
            self.expectations.forget(key)
            self.backoffs.pop(key, None)
            return
        job = copy.deepcopy(cached)
        job.setdefault("apiVersion", "batch/v1")
        job.setdefault("kind", "Job")
        managed_by = _spec(job).get("managedBy")
        if managed_by not in (None, JOB_CONTROLLER):
            return
        pods = self._pods(job)
        if not is_finished(job) and not _meta(job).get("deletionTimestamp"):
            pods = await self._claim_pods(job, pods)
        if is_finished(job):
            # Nothing more to run; only the pods' finalizers may still have to go.
            await self._remove_finalizers([p for p in pods if TRACKING_FINALIZER in (_meta(p).get("finalizers") or [])
                                           and (not podutil.is_pod_active(p) or _meta(p).get("deletionTimestamp"))])
            return
        await self._sync(key, job, pods)

    async def _claim_pods(self, job: Obj, owned: list[Obj]) -> list[Obj]:
        """ClaimPods: adopt orphans the selector matches (with the tracking finalizer, as the Job
        controller's ref manager does), release owned pods it no longer matches."""
        try:
            selector = selector_from_label_selector(_spec(job).get("selector"))
        except (SelectorError, ValueError):
            return owned
        if selector.empty:
            return owned
        claimed: list[Obj] = []
        for pod in owned:
            if selector.matches(_meta(pod).get("labels") or {}) or _meta(pod).get("deletionTimestamp"):
                claimed.append(pod)
            else:
                patch = podutil.release_patch(pod, str(_meta(job)["uid"]))
                patch["metadata"]["$deleteFromPrimitiveList/finalizers"] = [TRACKING_FINALIZER]
                await self._patch_pod(pod, patch)
        orphans = [p for p in self.pod_informer.list(str(_meta(job).get("namespace")))
                   if podutil.controller_ref(p) is None and not _meta(p).get("deletionTimestamp")
                   and podutil.is_pod_active(p) and selector.matches(_meta(p).get("labels") or {})]
        if orphans:
            fresh = await self.client.get(JOBS, _meta(job)["name"], _meta(job).get("namespace"))
            if _meta(fresh).get("uid") != _meta(job).get("uid") or _meta(fresh).get("deletionTimestamp"):
                return claimed
            ref = podutil.new_controller_ref(job, "batch/v1", "Job")
            for pod in orphans:
                patch = podutil.adopt_patch(pod, ref)
                patch["metadata"]["finalizers"] = [TRACKING_FINALIZER]
                adopted = await self._patch_pod(pod, patch)
                if adopted is not None:
                    claimed.append(adopted)
        return claimed

    async def _patch_pod(self, pod: Obj, patch: Obj) -> Obj | None:
        try:
            out: Obj = await self.client.patch(PODS, _meta(pod)["name"], patch, _meta(pod).get("namespace"),
                                               type="strategic")
            return out
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def _remove_finalizers(self, pods: list[Obj]) -> None:
        results = await asyncio.gather(*(self._remove_finalizer(p) for p in pods), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _sync(self, key: str, job: Obj, pods: list[Obj]) -> None:
        now = self.clock()
        spec = _spec(job)
        status: Obj = copy.deepcopy(job.get("status") or {})
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        uncounted = status.get("uncountedTerminatedPods") or {}
        uc_succeeded, uc_failed = list(uncounted.get("succeeded") or []), list(uncounted.get("failed") or [])
        known = set(uc_succeeded) | set(uc_failed)
        completed = parse_indexes(status.get("completedIndexes") or "")
        per_index = indexed and spec.get("backoffLimitPerIndex") is not None
        failed_indexes = parse_indexes(status.get("failedIndexes") or "")

        # 1. Newly finished pods: recorded as uncounted before their finalizer goes.
        new_succeeded: list[Obj] = []
        new_failed: list[Obj] = []
        ignored: list[Obj] = []
        failure_target: tuple[str, str] | None = None
        for pod in pods:
            if TRACKING_FINALIZER not in (_meta(pod).get("finalizers") or []) or _meta(pod).get("uid") in known:
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded":
                index = pod_index(pod)
                if indexed and (index is None or index >= int(completions or 0) or index in completed):
                    ignored.append(pod)  # a duplicate or stray index: not a completion
                    continue
                if index is not None and indexed:
                    completed.add(index)
                new_succeeded.append(pod)
            elif is_pod_failed(pod, job):
                match = match_pod_failure_policy(spec.get("podFailurePolicy"), pod) if phase == "Failed" else None
                if match is not None and match.action == "Ignore":
                    ignored.append(pod)
                    continue
                if match is not None and match.action == "FailJob" and failure_target is None:
                    failure_target = ("PodFailurePolicy", match.message)
                index = pod_index(pod)
                if per_index and index is not None and index not in completed and (
                        (match is not None and match.action == "FailIndex")
                        or _annotation_int(pod, INDEX_FAILURE_COUNT) + 1 > int(spec["backoffLimitPerIndex"])):
                    failed_indexes.add(index)
                new_failed.append(pod)
        if status.get("startTime") is None and not spec.get("suspend"):
            status["startTime"] = timeutil.format_time(now)
        if indexed:
            status["completedIndexes"] = format_indexes(completed)
        if per_index:
            status["failedIndexes"] = format_indexes(failed_indexes)
        if new_succeeded or new_failed:
            self.backoffs.setdefault(key, BackoffRecord()).observe(new_succeeded, new_failed, now)
            uc_succeeded += [str(_meta(p)["uid"]) for p in new_succeeded]
            uc_failed += [str(_meta(p)["uid"]) for p in new_failed]
            status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", uc_succeeded), ("failed", uc_failed)) if v}
            job = await self._write_status(job, status)
            status = copy.deepcopy(job.get("status") or {})
        # 2. Finalizers off: the pods may go now.
        finishing = {*uc_succeeded, *uc_failed}
        await self._remove_finalizers([p for p in pods if TRACKING_FINALIZER in (_meta(p).get("finalizers") or [])
                                       and (_meta(p).get("uid") in finishing or p in ignored)])
        # 3. Counted.
        status["succeeded"] = int(status.get("succeeded") or 0) + len(uc_succeeded)
        status["failed"] = int(status.get("failed") or 0) + len(uc_failed)
        status["uncountedTerminatedPods"] = {}
        succeeded, failed = status["succeeded"], status["failed"]
        if indexed:
            succeeded = len(completed)

        active = [p for p in pods if podutil.is_pod_active(p)]
        created = 0
        terminating = sum(1 for p in pods if is_terminating(p))
        conditions: list[Obj] = status.setdefault("conditions", [])

        # 4. Terminal conditions: interim first, final once nothing terminates any more.
        final: Obj | None = None
        interim = next((c for c in conditions if c.get("type") in ("FailureTarget", "SuccessCriteriaMet")
                        and c.get("status") == "True"), None)
        requeue: float | None = None
        if interim is None:
            reason_msg: tuple[str, str] | None = failure_target
            if reason_msg is None and (failed > int(spec.get("backoffLimit", 6))
                                       or past_backoff_limit_on_failure(job, active)):
                reason_msg = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
            if reason_msg is None and past_active_deadline({**job, "status": status}, now):
                reason_msg = ("DeadlineExceeded", "Job was active longer than specified deadline")
            if reason_msg is None and spec.get("activeDeadlineSeconds") is not None and not spec.get("suspend"):
                start = timeutil.parse_time(status.get("startTime")) or now
                requeue = float(spec["activeDeadlineSeconds"]) - (now - start).total_seconds()
            if reason_msg is None and per_index:
                most = spec.get("maxFailedIndexes")
                if most is not None and len(failed_indexes) > int(most):
                    reason_msg = ("MaxFailedIndexesExceeded",
                                  "Job has exceeded the specified maximal number of failed indexes")
                elif failed_indexes and len(failed_indexes) + len(completed) >= int(completions or 0):
                    reason_msg = ("FailedIndexes", "Job has failed indexes")
            success_policy = match_success_policy(job, completed) if reason_msg is None and indexed else None
            if reason_msg is not None:
                interim = new_condition("FailureTarget", reason_msg[0], reason_msg[1], now)
                conditions.append(interim)
            elif success_policy is not None:
                interim = new_condition("SuccessCriteriaMet", "SuccessPolicy", success_policy, now)
                conditions.append(interim)
            else:
                done = (succeeded > 0 and not active) if completions is None else (
                    succeeded >= int(completions) and not active)
                if done:
                    interim = new_condition("SuccessCriteriaMet", "CompletionsReached",
                                            "Reached expected number of succeeded pods", now)
                    conditions.append(interim)
        if interim is not None:
            final_type = "Failed" if interim["type"] == "FailureTarget" else "Complete"
            final = new_condition(final_type, str(interim.get("reason", "")), str(interim.get("message", "")), now)
            if active:
                terminating += await self._delete_pods(job, active)
                active = []
        else:
            active, created = await self._manage(key, job, status, pods, active, terminating, succeeded,
                                                 completed | failed_indexes, now)

        # Pods just created count as active at once (manageJob's ``active += diff``).
        status["active"] = len(active) + created
        status["ready"] = sum(1 for p in active if podutil.is_pod_ready(p))
        status["terminating"] = terminating
        finished_now = final is not None and terminating == 0
        if finished_now and final is not None:
            conditions.append(final)
            if final["type"] == "Complete":
                status["completionTime"] = final["lastTransitionTime"]
        for k in ("active", "succeeded", "failed", *([] if per_index else ["failedIndexes"]), "completedIndexes"):
            if not status.get(k):
                status.pop(k, None)
        if not conditions:
            status.pop("conditions", None)
        await self._write_status(job, status)
        if finished_now and final is not None:
            if final["type"] == "Complete":
                await self.recorder.event(job, "Normal", "Completed", "Job completed")
            else:
                await self.recorder.event(job, "Warning", str(final["reason"]), str(final["message"]))
        elif requeue is not None and final is None:
            self.queue.add_after(key, max(requeue, 0.0) + 0.05)

    async def _manage(self, key: str, job: Obj, status: Obj, pods: list[Obj], active: list[Obj], terminating: int,
                      succeeded: int, done_indexes: set[int], now: dt.datetime) -> tuple[list[Obj], int]:
        """manageJob: suspend/resume, then create or delete pods towards the wanted number.

        ``done_indexes`` (Indexed) are the succeeded and the failed ones: neither is run again."""
        spec = _spec(job)
        conditions: list[Obj] = status.setdefault("conditions", [])
        if spec.get("suspend"):
            if ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now):
                await self.recorder.event(job, "Normal", "Suspended", "Job suspended")
            if active:
                await self._delete_pods(job, active)
            return [], 0
        if ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now):
            await self.recorder.event(job, "Normal", "Resumed", "Job resumed")
            # The deadline counts time spent running: it starts again on every resume.
            status["startTime"] = timeutil.format_time(now)
        if not self.expectations.satisfied(key):
            return active, 0
        indexed = spec.get("completionMode") == "Indexed"
        parallelism = int(spec.get("parallelism", 1))
        if indexed:
            want = min(parallelism, max(0, int(spec.get("completions") or 0) - len(done_indexes)))
        else:
            want = wanted_active(job, succeeded, len(active))
        busy = len(active) + (terminating if only_replace_failed_pods(job) else 0)
        diff = want - busy
        if diff > 0:
            count = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
            per_index = indexed and spec.get("backoffLimitPerIndex") is not None
            if per_index:
                # Each index backs off on its own failures.
                failures = index_failures(job, pods, now)
                ready: list[int | None] = []
                wait = 0.0
                for i in pending_indexes(job, done_indexes, active, int(spec.get("completions") or 0)):
                    f = failures.get(i)
                    left = 0.0 if f is None else BackoffRecord(f.count, f.last_failure).remaining(now, self.backoff_base)
                    if left > 0:
                        wait = left if not wait else min(wait, left)
                    elif len(ready) < count:
                        ready.append(i)
                if wait:
                    self.queue.add_after(key, wait)
                if ready:
                    await self._create_pods(key, job, ready, failures)
                return active, len(ready)
            remaining = self.backoffs.get(key, BackoffRecord()).remaining(now, self.backoff_base)
            if remaining > 0:
                self.queue.add_after(key, remaining)
                return active, 0
            indexes: list[int | None] = (list(pending_indexes(job, done_indexes, active, count)) if indexed
                                         else [None] * count)
            if indexes:
                await self._create_pods(key, job, indexes)
                return active, len(indexes)
        elif diff < 0 and len(active) > want:
            # Not-ready and newest pods go first.
            extra = sorted(active, key=lambda p: (podutil.is_pod_ready(p), _meta(p).get("creationTimestamp", "")))
            extra = extra[: len(active) - want]
            await self._delete_pods(job, extra)
            active = [p for p in active if p not in extra]
        return active, 0

    async def _create_pods(self, key: str, job: Obj, indexes: list[int | None],
                           failures: dict[int, IndexFailures] | None = None) -> None:
        """Slow-start batches (1, 2, 4...), as the Job controller's pod creation does."""
        self.expectations.expect_creations(key, len(indexes))
        created, batch, first_error = 0, 1, None
        while created < len(indexes) and first_error is None:
            chunk = indexes[created:created + batch]
            results = await asyncio.gather(
                *(self._create_pod(job, i, (failures or {}).get(i) if i is not None else None) for i in chunk),
                return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    if not isinstance(r, ApiError):
                        raise r
                    first_error = first_error or r
            created += len(chunk)
            batch *= 2
        if first_error is not None:
            for _ in range(len(indexes) - created):
                self.expectations.creation_observed(key)
            raise first_error

    async def _create_pod(self, job: Obj, index: int | None, failures: IndexFailures | None = None) -> None:
        try:
            await self.pod_control.create(job, pod_for_job(job, index, failures))
        except ApiError:
            self.expectations.creation_observed(key_of(job))
            raise

    async def _delete_pods(self, job: Obj, pods: list[Obj]) -> int:
        key = key_of(job)
        self.expectations.expect_deletions(key, [key_of(p) for p in pods])
        deleted = 0
        for pod in pods:
            try:
                await self.pod_control.delete(job, pod)
            except ApiError as e:
                self.expectations.deletion_observed(key, key_of(pod))
                if e.not_found:
                    continue
                raise
            deleted += 1
        return deleted

    async def _write_status(self, job: Obj, status: Obj) -> Obj:
        if (job.get("status") or {}) == status:
            return job
        try:
            out: Obj = await self.client.update_status(JOBS, {**job, "status": status})
        except ApiError as e:
            if e.not_found:
                return job
            raise
        out.setdefault("apiVersion", "batch/v1")
        out.setdefault("kind", "Job")
        return out
