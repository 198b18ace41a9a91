"""The Job controller's decisions, driven with a fake API client and a fake clock (no sleeping).

The fake client keeps objects in memory and feeds the controller's informer caches as a
watch would; the tests play the kubelet by setting pod phases, then run one reconcile.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any

import pytest

from kubelite.api import timeutil
from kubelite.api.defaults import apply_defaults, prepare_job_create
from kubelite.api.registry import ResourceType
from kubelite.client import JOBS, PODS, ApiError
from kubelite.controllers.base import Context
from kubelite.controllers.job import (
    COMPLETION_INDEX,
    TRACKING_FINALIZER,
    BackoffRecord,
    JobController,
    backoff_delay,
    format_indexes,
    match_pod_failure_policy,
    parse_indexes,
    past_backoff_limit_on_failure,
    pod_for_job,
    wanted_active,
)
from kubelite.controllers.ttlafterfinished import time_left

Obj = dict[str, Any]
T0 = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class FakeClient:
    """Objects by (plural, namespace, name); every write goes to the controller's informers."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.events: list[tuple[str, str, str]] = []
        self.rv = itertools.count(1)
        self.seq = itertools.count(1)
        self.controller: JobController | None = None

    def _feed(self, rt: ResourceType, kind: str, obj: Obj) -> None:
        assert self.controller is not None
        inf = self.controller.job_informer if rt.plural == "jobs" else self.controller.pod_informer
        inf._apply(kind, copy.deepcopy(obj))  # type: ignore[arg-type]

    async def create(self, rt: ResourceType, obj: Obj, namespace: str | None = None, **_: Any) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if rt.plural == "events":
            self.events.append((obj["involvedObject"]["name"], obj["reason"], obj["message"]))
            return obj
        meta.setdefault("name", f"{meta.get('generateName', 'x-')}{next(self.seq):05d}")
        meta.update(namespace=namespace or "default", uid=f"uid-{meta['name']}", resourceVersion=str(next(self.rv)),
                    creationTimestamp=timeutil.format_time(T0))
        obj.setdefault("status", {"phase": "Pending"} if rt.plural == "pods" else {})
        self.objects[(rt.plural, meta["namespace"], meta["name"])] = obj
        self._feed(rt, "ADDED", obj)
        return copy.deepcopy(obj)

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj:
        try:
            return copy.deepcopy(self.objects[(rt.plural, namespace or "default", name)])
        except KeyError:
            raise ApiError({"reason": "NotFound", "code": 404}, 404) from None

    async def update_status(self, rt: ResourceType, obj: Obj, **_: Any) -> Obj:
        meta = obj["metadata"]
        stored = self.objects[(rt.plural, meta["namespace"], meta["name"])]
        stored["status"] = copy.deepcopy(obj["status"])
        stored["metadata"]["resourceVersion"] = str(next(self.rv))
        self._feed(rt, "MODIFIED", stored)
        return copy.deepcopy(stored)

    async def patch(self, rt: ResourceType, name: str, patch: Any, namespace: str | None = None, **_: Any) -> Obj:
        if rt.plural == "events":
            return {}
        stored = self.objects[(rt.plural, namespace or "default", name)]
        if isinstance(patch, list):  # the JSON patch: test, then remove the finalizers
            assert stored["metadata"].get("finalizers") == patch[0]["value"]
            del stored["metadata"]["finalizers"]
        else:
            meta = stored["metadata"]
            gone = set(patch["metadata"].get("$deleteFromPrimitiveList/finalizers") or [])
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f not in gone]
            meta["finalizers"] += [f for f in patch["metadata"].get("finalizers") or [] if f not in meta["finalizers"]]
            if "ownerReferences" in patch["metadata"]:
                meta["ownerReferences"] = [r for r in patch["metadata"]["ownerReferences"] if "$patch" not in r]
        self._feed(rt, "MODIFIED", stored)
        return copy.deepcopy(stored)

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, **_: Any) -> Obj:
        stored = self.objects[(rt.plural, namespace or "default", name)]
        stored["metadata"]["deletionTimestamp"] = timeutil.format_time(T0)
        self._feed(rt, "MODIFIED", stored)
        return copy.deepcopy(stored)

    # the kubelet's part
    def finish(self, pod: Obj, phase: str, exit_code: int = 0, at: dt.datetime = T0, **status: Any) -> None:
        stored = self.objects[("pods", "default", pod["metadata"]["name"])]
        stored["status"] = {"phase": phase, **status, "containerStatuses": [{"name": "main", "restartCount": 0, "state": {
            "terminated": {"exitCode": exit_code, "finishedAt": timeutil.format_time(at)}}}]}
        self._feed(PODS, "MODIFIED", stored)

    def pods(self) -> list[Obj]:
        return [o for (plural, _, _), o in sorted(self.objects.items()) if plural == "pods"]


def new_job(**spec: Any) -> Obj:
    job: Obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "main", "image": "busybox"}]}}, **spec}}
    prepare_job_create(job)
    apply_defaults("batch", "Job", job)
    return job


@pytest.fixture
async def env() -> tuple[FakeClient, JobController, Clock]:
    client = FakeClient()
    clock = Clock()
    controller = JobController(Context(client), clock=clock)  # type: ignore[arg-type]
    client.controller = controller
    return client, controller, clock


async def start(client: FakeClient, job: Obj) -> Obj:
    out: Obj = await client.create(JOBS, job, "default")
    return out


def status(client: FakeClient) -> Obj:
    s: Obj = client.objects[("jobs", "default", "pi")]["status"]
    return s


def expect(controller: JobController) -> None:
    """Forget pending expectations: in these tests the informer saw every write already."""
    controller.expectations.forget("default/pi")


async def test_completions_with_parallelism_and_the_terminal_conditions(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, clock = env
    await start(client, new_job(completions=3, parallelism=2))
    await controller.reconcile("default/pi")
    pods = client.pods()
    assert len(pods) == 2
    assert all(p["metadata"]["finalizers"] == [TRACKING_FINALIZER] for p in pods)
    assert pods[0]["metadata"]["generateName"] == "pi-"
    assert status(client) == {"active": 2, "ready": 0, "terminating": 0, "startTime": "2025-06-01T12:00:00Z",
                              "uncountedTerminatedPods": {}}
    assert [e[1:] for e in client.events] == [("SuccessfulCreate", f"Created pod: {p['metadata']['name']}") for p in pods]
    client.finish(pods[0], "Succeeded")
    clock.advance(5)
    await controller.reconcile("default/pi")
    s = status(client)
    assert s["succeeded"] == 1 and s["active"] == 2 and s["uncountedTerminatedPods"] == {}
    assert "finalizers" not in client.objects[("pods", "default", pods[0]["metadata"]["name"])]["metadata"]
    for pod in client.pods():
        if pod["status"]["phase"] == "Pending":
            client.finish(pod, "Succeeded")
    clock.advance(5)
    expect(controller)
    await controller.reconcile("default/pi")
    s = status(client)
    assert s["succeeded"] == 3 and len(client.pods()) == 3 and "active" not in s
    assert [(c["type"], c["reason"], c["message"]) for c in s["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
    assert s["completionTime"] == "2025-06-01T12:00:10Z"
    assert ("pi", "Completed", "Job completed") in client.events


async def test_uncounted_pods_are_written_before_their_finalizer_goes(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, _ = env
    await start(client, new_job())
    await controller.reconcile("default/pi")
    writes: list[Obj] = []
    real = client.update_status

    async def spy(rt: ResourceType, obj: Obj, **kw: Any) -> Obj:
        writes.append(copy.deepcopy(obj["status"]))
        return await real(rt, obj, **kw)

    client.update_status = spy  # type: ignore[method-assign]
    pod = client.pods()[0]
    client.finish(pod, "Succeeded")
    await controller.reconcile("default/pi")
    assert writes[0]["uncountedTerminatedPods"] == {"succeeded": [pod["metadata"]["uid"]]}
    assert "succeeded" not in writes[0]
    assert writes[-1]["succeeded"] == 1 and writes[-1]["uncountedTerminatedPods"] == {}


async def test_backoff_then_backoff_limit_exceeded(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, clock = env
    await start(client, new_job(backoffLimit=1))
    await controller.reconcile("default/pi")
    client.finish(client.pods()[0], "Failed", exit_code=3, at=clock.now)
    await controller.reconcile("default/pi")
    # Back-off: 10 s after the first failure no new pod before then.
    assert len(client.pods()) == 1 and status(client)["failed"] == 1
    clock.advance(9)
    expect(controller)
    await controller.reconcile("default/pi")
    assert len(client.pods()) == 1
    clock.advance(1.5)
    await controller.reconcile("default/pi")
    assert len(client.pods()) == 2
    second = next(p for p in client.pods() if p["status"]["phase"] == "Pending")
    client.finish(second, "Failed", exit_code=3, at=clock.now)
    expect(controller)
    await controller.reconcile("default/pi")
    s = status(client)
    assert s["failed"] == 2 and len(client.pods()) == 2
    assert [(c["type"], c["reason"]) for c in s["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert ("pi", "BackoffLimitExceeded", "Job has reached the specified backoff limit") in client.events
    assert "completionTime" not in s


async def test_deadline_exceeded_deletes_pods_and_waits_for_them(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, clock = env
    await start(client, new_job(activeDeadlineSeconds=30, parallelism=2, completions=4))
    await controller.reconcile("default/pi")
    assert len(client.pods()) == 2
    clock.advance(30)
    await controller.reconcile("default/pi")
    s = status(client)
    assert [(c["type"], c["reason"], c["message"]) for c in s["conditions"]] == [
        ("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")]
    assert s["terminating"] == 2 and all(p["metadata"].get("deletionTimestamp") for p in client.pods())
    # The pods are gone (the kubelet stopped them): now the Job has failed.
    for pod in client.pods():
        client.finish(pod, "Failed", exit_code=137)
    expect(controller)
    await controller.reconcile("default/pi")
    assert [c["type"] for c in status(client)["conditions"]] == ["FailureTarget", "Failed"]


async def test_pod_failure_policy_fail_job_and_ignore(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, _ = env
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}
    await start(client, new_job(podFailurePolicy=policy, backoffLimit=6))
    await controller.reconcile("default/pi")
    client.finish(client.pods()[0], "Failed", exit_code=1,
                  conditions=[{"type": "DisruptionTarget", "status": "True"}])
    await controller.reconcile("default/pi")
    assert "failed" not in status(client)  # ignored: not counted, replaced at once
    assert len(client.pods()) == 2
    victim = next(p for p in client.pods() if p["status"]["phase"] == "Pending")
    client.finish(victim, "Failed", exit_code=42)
    expect(controller)
    await controller.reconcile("default/pi")
    conditions = status(client)["conditions"]
    assert conditions[-1]["type"] == "Failed" and conditions[-1]["reason"] == "PodFailurePolicy"
    assert conditions[-1]["message"] == (f"Container main for pod default/{victim['metadata']['name']} failed with exit code 42 "
                                         "matching FailJob rule at index 1")


async def test_indexed_job(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, _ = env
    await start(client, new_job(completionMode="Indexed", completions=3, parallelism=2))
    await controller.reconcile("default/pi")
    pods = client.pods()
    assert sorted(p["metadata"]["annotations"][COMPLETION_INDEX] for p in pods) == ["0", "1"]
    client.finish(next(p for p in pods if p["metadata"]["annotations"][COMPLETION_INDEX] == "1"), "Succeeded")
    await controller.reconcile("default/pi")
    assert status(client)["completedIndexes"] == "1"
    expect(controller)
    await controller.reconcile("default/pi")
    assert sorted(p["metadata"]["annotations"][COMPLETION_INDEX] for p in client.pods()) == ["0", "1", "2"]
    for pod in client.pods():
        if pod["status"]["phase"] == "Pending":
            client.finish(pod, "Succeeded")
    expect(controller)
    await controller.reconcile("default/pi")
    assert status(client)["completedIndexes"] == "0-2"
    assert status(client)["conditions"][-1]["type"] == "Complete"


async def test_suspend_and_resume(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, clock = env
    await start(client, new_job(suspend=True))
    await controller.reconcile("default/pi")
    s = status(client)
    assert client.pods() == [] and "startTime" not in s
    assert [(c["type"], c["status"], c["reason"]) for c in s["conditions"]] == [("Suspended", "True", "JobSuspended")]
    stored = client.objects[("jobs", "default", "pi")]
    stored["spec"]["suspend"] = False
    client._feed(JOBS, "MODIFIED", stored)
    clock.advance(60)
    await controller.reconcile("default/pi")
    s = status(client)
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in s["conditions"]] == [
        ("Suspended", "False", "JobResumed", "Job resumed")]
    assert s["startTime"] == "2025-06-01T12:01:00Z" and len(client.pods()) == 1
    assert ("pi", "Resumed", "Job resumed") in client.events and ("pi", "Suspended", "Job suspended") in client.events


def test_backoff_delays_double_to_the_cap() -> None:
    assert [backoff_delay(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 320]
    assert backoff_delay(7) == 600 and backoff_delay(30) == 600
    record = BackoffRecord()
    failed = {"metadata": {}, "status": {"containerStatuses": [{"state": {"terminated": {
        "finishedAt": "2025-06-01T12:00:00Z"}}}]}}
    record.observe([], [failed, failed], T0)
    assert record.failures_after_last_success == 2
    assert record.remaining(T0 + dt.timedelta(seconds=5)) == 15
    assert record.remaining(T0 + dt.timedelta(seconds=21)) == 0
    assert record.remaining(T0, base=0.5) == 1.0
    record.observe([failed], [], T0)
    assert record.failures_after_last_success == 0 and record.remaining(T0) == 0


def test_pod_failure_policy_matching() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "status": {
        "conditions": [{"type": "DisruptionTarget", "status": "True"}],
        "containerStatuses": [{"name": "ok", "state": {"terminated": {"exitCode": 0}}},
                              {"name": "main", "state": {"terminated": {"exitCode": 5}}}]}}
    count = {"rules": [{"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}}]}
    assert match_pod_failure_policy(count, pod) == match_pod_failure_policy(count, pod)
    m = match_pod_failure_policy(count, pod)
    assert m is not None and m.action == "Count"
    # Exit code 0 never matches, even NotIn.
    zero = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "ok", "operator": "NotIn", "values": [5]}}]}
    assert match_pod_failure_policy(zero, pod) is None
    cond = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}]},
                      {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    m = match_pod_failure_policy(cond, pod)
    assert m is not None and (m.action, m.message) == (
        "FailJob", "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 1")
    assert match_pod_failure_policy(None, pod) is None


def test_wanted_pods_indexes_and_restart_counts() -> None:
    assert wanted_active(new_job(completions=5, parallelism=2), succeeded=4, active=1) == 1
    assert wanted_active(new_job(parallelism=3), succeeded=0, active=0) == 3
    assert wanted_active(new_job(parallelism=3), succeeded=1, active=2) == 2
    assert format_indexes([5, 0, 1, 2, 7, 8]) == "0-2,5,7,8"
    assert parse_indexes("0-2,5,7,8") == {0, 1, 2, 5, 7, 8}
    job = new_job(backoffLimit=2)
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    running = {"status": {"phase": "Running", "containerStatuses": [{"restartCount": 2}]}}
    assert past_backoff_limit_on_failure(job, [running])
    job["spec"]["backoffLimit"] = 3
    assert not past_backoff_limit_on_failure(job, [running])


def test_indexed_pod_template() -> None:
    job = new_job(completionMode="Indexed", completions=3)
    pod = pod_for_job(job, 2)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["generateName"] == "pi-2-" and spec["hostname"] == "pi-2"
    assert meta["annotations"][COMPLETION_INDEX] == "2" and meta["labels"][COMPLETION_INDEX] == "2"
    assert meta["finalizers"] == [TRACKING_FINALIZER]
    assert spec["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    assert pod_for_job(new_job(), None)["metadata"]["generateName"] == "pi-"
    long = new_job(completionMode="Indexed", completions=3)
    long["metadata"]["name"] = "j" * 60
    assert pod_for_job(long, 12)["metadata"]["generateName"] == "j" * 54 + "-12-"


def test_ttl_after_finished() -> None:
    job = new_job(ttlSecondsAfterFinished=100)
    assert time_left(job, T0) is None
    job["status"] = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2025-06-01T12:00:00Z"}]}
    assert time_left(job, T0 + dt.timedelta(seconds=40)) == 60
    assert time_left(job, T0 + dt.timedelta(seconds=100)) == 0
    del job["spec"]["ttlSecondsAfterFinished"]
    assert time_left(job, T0) is None


def index_of(pod: Obj) -> int:
    return int(pod["metadata"]["annotations"][COMPLETION_INDEX])


async def test_backoff_limit_per_index_and_fail_index(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, clock = env
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]}
    await start(client, new_job(completionMode="Indexed", completions=3, parallelism=3, backoffLimitPerIndex=1,
                                podFailurePolicy=policy))
    job = client.objects[("jobs", "default", "pi")]
    assert job["spec"]["backoffLimit"] == 2147483647
    await controller.reconcile("default/pi")
    pods = {index_of(p): p for p in client.pods()}
    assert {i: p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] for i, p in pods.items()} \
        == {0: "0", 1: "0", 2: "0"}
    client.finish(pods[0], "Succeeded")
    client.finish(pods[1], "Failed", exit_code=1, at=clock.now)  # retried once (backoffLimitPerIndex 1)
    client.finish(pods[2], "Failed", exit_code=7, at=clock.now)  # FailIndex: never retried
    await controller.reconcile("default/pi")
    s = status(client)
    assert s["completedIndexes"] == "0" and s["failedIndexes"] == "2" and s["failed"] == 2
    # Index 1 waits for its own back-off (10 s), then comes back with its failure count.
    expect(controller)
    await controller.reconcile("default/pi")
    assert len(client.pods()) == 3
    clock.advance(11)
    expect(controller)
    await controller.reconcile("default/pi")
    retry = next(p for p in client.pods() if p["status"]["phase"] == "Pending")
    assert index_of(retry) == 1 and retry["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "1"
    client.finish(retry, "Failed", exit_code=1, at=clock.now)
    expect(controller)
    await controller.reconcile("default/pi")
    s = status(client)
    assert s["failedIndexes"] == "1,2"
    assert [(c["type"], c["reason"], c["message"]) for c in s["conditions"]] == [
        ("FailureTarget", "FailedIndexes", "Job has failed indexes"), ("Failed", "FailedIndexes", "Job has failed indexes")]


async def test_max_failed_indexes(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, _ = env
    await start(client, new_job(completionMode="Indexed", completions=4, parallelism=4, backoffLimitPerIndex=0,
                                maxFailedIndexes=1))
    await controller.reconcile("default/pi")
    pods = {index_of(p): p for p in client.pods()}
    client.finish(pods[0], "Failed", exit_code=1)
    client.finish(pods[1], "Failed", exit_code=1)
    await controller.reconcile("default/pi")
    s = status(client)
    assert s["conditions"][0]["reason"] == "MaxFailedIndexesExceeded"
    assert s["conditions"][0]["message"] == "Job has exceeded the specified maximal number of failed indexes"
    assert all(p["metadata"].get("deletionTimestamp") for p in client.pods() if p["status"]["phase"] == "Pending")


async def test_success_policy(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, _ = env
    await start(client, new_job(completionMode="Indexed", completions=3, parallelism=3,
                                successPolicy={"rules": [{"succeededIndexes": "0"}]}))
    await controller.reconcile("default/pi")
    pods = {index_of(p): p for p in client.pods()}
    client.finish(pods[0], "Succeeded")
    await controller.reconcile("default/pi")
    s = status(client)
    assert [(c["type"], c["reason"], c["message"]) for c in s["conditions"]] == [
        ("SuccessCriteriaMet", "SuccessPolicy", "Matched rules at index 0")]
    assert s["terminating"] == 2
    for i in (1, 2):
        client.finish(pods[i], "Failed", exit_code=137)
    expect(controller)
    await controller.reconcile("default/pi")
    assert [c["type"] for c in status(client)["conditions"]] == ["SuccessCriteriaMet", "Complete"]


async def test_manual_selector_adopts_orphans(env: tuple[FakeClient, JobController, Clock]) -> None:
    client, controller, _ = env
    await client.create(PODS, {"metadata": {"name": "stray", "labels": {"app": "work"}},
                               "spec": {"containers": [{"name": "main", "image": "busybox"}]}}, "default")
    job = new_job(manualSelector=True, selector={"matchLabels": {"app": "work"}})
    job["spec"]["template"]["metadata"] = {"labels": {"app": "work"}}
    await start(client, job)
    await controller.reconcile("default/pi")
    stray = client.objects[("pods", "default", "stray")]
    assert stray["metadata"]["ownerReferences"][0]["name"] == "pi"
    assert stray["metadata"]["finalizers"] == [TRACKING_FINALIZER]
    assert len(client.pods()) == 1 and status(client)["active"] == 1
