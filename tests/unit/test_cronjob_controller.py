"""The CronJob controller's schedule arithmetic and decisions, with a fake clock and client."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kubelite.api import cron, timeutil
from kubelite.api.defaults import apply_defaults
from kubelite.api.registry import ResourceType
from kubelite.client import CRONJOBS, JOBS, ApiError
from kubelite.controllers.base import Context
from kubelite.controllers.cronjob import (
    SCHEDULED_TIMESTAMP,
    CronJobController,
    job_from_template,
    jobs_to_delete,
    most_recent_schedule_time,
    next_schedule_time,
    requeue_after,
)

Obj = dict[str, Any]
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def cronjob(schedule: str = "*/1 * * * *", created: str = "2025-06-01T12:00:30", **spec: Any) -> Obj:
    cj: Obj = {"apiVersion": "batch/v1", "kind": "CronJob",
               "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                            "creationTimestamp": created + "Z"},
               "spec": {"schedule": schedule, "timeZone": "UTC", **spec, "jobTemplate": {
                   "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                   "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                                  "containers": [{"name": "c", "image": "busybox"}]}}}}},
               "status": {}}
    apply_defaults("batch", "CronJob", cj)
    return cj


def test_most_recent_and_next_schedule_times() -> None:
    sched = cron.parse_standard("*/1 * * * *")
    cj = cronjob()
    assert next_schedule_time(cj, at("2025-06-01T12:00:50"), sched) == (None, False)
    assert next_schedule_time(cj, at("2025-06-01T12:01:00"), sched) == (at("2025-06-01T12:01:00"), False)
    # Several missed: only the most recent is run.
    assert next_schedule_time(cj, at("2025-06-01T12:05:20"), sched) == (at("2025-06-01T12:05:00"), False)
    cj["status"]["lastScheduleTime"] = "2025-06-01T12:05:00Z"
    assert next_schedule_time(cj, at("2025-06-01T12:05:20"), sched) == (None, False)
    assert requeue_after(cj, at("2025-06-01T12:05:20"), sched) == pytest.approx(40.1)
    # Down for hours: too many missed start times.
    cj["status"] = {}
    when, too_many = next_schedule_time(cj, at("2025-06-01T15:00:10"), sched)
    assert when == at("2025-06-01T15:00:00") and too_many
    # A starting deadline moves the window: no "too many" then.
    cj["spec"]["startingDeadlineSeconds"] = 200
    assert next_schedule_time(cj, at("2025-06-01T15:00:10"), sched) == (at("2025-06-01T15:00:00"), False)
    result = most_recent_schedule_time(cj, at("2025-06-01T15:00:10"), sched, True)
    assert result.earliest == at("2025-06-01T14:56:50")


def test_impossible_schedule_never_runs() -> None:
    sched = cron.parse_standard("0 0 31 2 *")
    assert next_schedule_time(cronjob(), at("2026-01-01T00:00:00"), sched) == (None, False)


def test_job_from_template_name_annotation_and_owner() -> None:
    cj = cronjob()
    job = job_from_template(cj, at("2025-06-01T12:05:00"))
    minutes = int(at("2025-06-01T12:05:00").timestamp()) // 60
    assert job["metadata"]["name"] == f"tick-{minutes}"
    assert job["metadata"]["annotations"] == {"note": "x", SCHEDULED_TIMESTAMP: "2025-06-01T12:05:00Z"}
    assert job["metadata"]["labels"] == {"team": "a"}
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("CronJob", "tick", "cj-uid", True)
    cj["spec"]["timeZone"] = "Europe/Paris"
    paris = dt.datetime(2025, 6, 1, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert job_from_template(cj, paris)["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2025-06-01T09:00:00+02:00"


def test_history_limits_delete_the_oldest() -> None:
    def job(name: str, type_: str, start: str | None) -> Obj:
        return {"metadata": {"name": name}, "status": {
            **({"startTime": start} if start else {}), "conditions": [{"type": type_, "status": "True"}]}}

    jobs = [job("a", "Complete", "2025-06-01T12:03:00Z"), job("b", "Complete", "2025-06-01T12:01:00Z"),
            job("c", "Complete", None), job("d", "Failed", "2025-06-01T12:00:00Z"),
            job("e", "Failed", "2025-06-01T12:02:00Z"), {"metadata": {"name": "running"}, "status": {}}]
    cj = cronjob(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1)
    assert [j["metadata"]["name"] for j in jobs_to_delete(cj, jobs)] == ["b", "a", "d"]


class FakeClient:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.events: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.rv = itertools.count(1)
        self.controller: CronJobController | None = None

    def feed(self, rt: ResourceType, kind: str, obj: Obj) -> None:
        assert self.controller is not None
        inf = self.controller.jobs if rt.plural == "jobs" else self.controller.cronjobs
        inf._apply(kind, copy.deepcopy(obj))  # type: ignore[arg-type]

    async def create(self, rt: ResourceType, obj: Obj, namespace: str | None = None, **_: Any) -> Obj:
        obj = copy.deepcopy(obj)
        if rt.plural == "events":
            self.events.append((obj["reason"], obj["message"]))
            return obj
        name = obj["metadata"]["name"]
        if (rt.plural, name) in self.objects:
            raise ApiError({"reason": "AlreadyExists", "code": 409}, 409)
        obj["metadata"].update(namespace="default", uid=f"uid-{name}", resourceVersion=str(next(self.rv)))
        obj.setdefault("status", {})
        self.objects[(rt.plural, name)] = obj
        self.feed(rt, "ADDED", obj)
        return copy.deepcopy(obj)

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj:
        if (rt.plural, name) not in self.objects:
            raise ApiError({"reason": "NotFound", "code": 404}, 404)
        return copy.deepcopy(self.objects[(rt.plural, name)])

    async def update_status(self, rt: ResourceType, obj: Obj, **_: Any) -> Obj:
        stored = self.objects[(rt.plural, obj["metadata"]["name"])]
        stored["status"] = copy.deepcopy(obj["status"])
        self.feed(rt, "MODIFIED", stored)
        return copy.deepcopy(stored)

    async def patch(self, *_: Any, **__: Any) -> Obj:
        return {}

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, **kw: Any) -> Obj:
        obj = self.objects.pop((rt.plural, name))
        self.deleted.append(f"{name}:{kw.get('propagation_policy')}")
        self.feed(rt, "DELETED", obj)
        return obj

    def finish(self, name: str, type_: str) -> None:
        job = self.objects[("jobs", name)]
        job["status"] = {"startTime": "2025-06-01T12:00:00Z", "conditions": [{"type": type_, "status": "True"}],
                         **({"completionTime": "2025-06-01T12:00:05Z"} if type_ == "Complete" else {})}
        self.feed(JOBS, "MODIFIED", job)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def env() -> tuple[FakeClient, CronJobController, Clock]:
    client = FakeClient()
    clock = Clock(at("2025-06-01T12:00:40"))
    controller = CronJobController(Context(client), clock=clock)  # type: ignore[arg-type]
    client.controller = controller
    return client, controller, clock


def jobs(client: FakeClient) -> list[str]:
    return sorted(name for plural, name in client.objects if plural == "jobs")


async def test_schedules_then_forbids_or_replaces(env: tuple[FakeClient, CronJobController, Clock]) -> None:
    client, controller, clock = env
    await client.create(CRONJOBS, cronjob(concurrencyPolicy="Forbid"))
    await controller.reconcile("default/tick")
    assert jobs(client) == []
    clock.now = at("2025-06-01T12:01:00.2")
    await controller.reconcile("default/tick")
    first = f"tick-{int(at('2025-06-01T12:01:00').timestamp()) // 60}"
    assert jobs(client) == [first]
    status = client.objects[("cronjobs", "tick")]["status"]
    assert status["lastScheduleTime"] == "2025-06-01T12:01:00Z" and [a["name"] for a in status["active"]] == [first]
    assert ("SuccessfulCreate", f"Created job {first}") in client.events
    clock.now = at("2025-06-01T12:02:01")
    await controller.reconcile("default/tick")
    assert jobs(client) == [first]
    assert ("JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid") \
        in client.events
    # Replace: the running Job goes, the new one comes.
    stored = client.objects[("cronjobs", "tick")]
    stored["spec"]["concurrencyPolicy"] = "Replace"
    client.feed(CRONJOBS, "MODIFIED", stored)
    await controller.reconcile("default/tick")
    second = f"tick-{int(at('2025-06-01T12:02:00').timestamp()) // 60}"
    assert jobs(client) == [second] and f"{first}:Background" in client.deleted
    assert ("SuccessfulDelete", f"Deleted job {first}") in client.events


async def test_completed_jobs_leave_active_and_history_is_kept(env: tuple[FakeClient, CronJobController, Clock]) -> None:
    client, controller, clock = env
    await client.create(CRONJOBS, cronjob(successfulJobsHistoryLimit=1))
    names = []
    for minute in (1, 2, 3):
        clock.now = at(f"2025-06-01T12:0{minute}:00.5")
        await controller.reconcile("default/tick")
        name = f"tick-{int(at(f'2025-06-01T12:0{minute}:00').timestamp()) // 60}"
        names.append(name)
        client.finish(name, "Complete")
        await controller.reconcile("default/tick")
    assert jobs(client) == [names[-1]]
    status = client.objects[("cronjobs", "tick")]["status"]
    assert "active" not in status and status["lastSuccessfulTime"] == "2025-06-01T12:00:05Z"
    assert ("SawCompletedJob", f"Saw completed job: {names[0]}, condition: Complete") in client.events


async def test_missed_deadline_suspend_and_bad_time_zone(env: tuple[FakeClient, CronJobController, Clock]) -> None:
    client, controller, clock = env
    await client.create(CRONJOBS, cronjob(startingDeadlineSeconds=10))
    clock.now = at("2025-06-01T12:01:30")
    await controller.reconcile("default/tick")
    # 12:01:00 is more than 10 s ago: outside the window, never started (the next is 12:02:00).
    assert jobs(client) == [] and client.events == []
    stored = client.objects[("cronjobs", "tick")]
    stored["spec"] |= {"suspend": True, "startingDeadlineSeconds": None}
    client.feed(CRONJOBS, "MODIFIED", stored)
    await controller.reconcile("default/tick")
    assert jobs(client) == []
    stored["spec"] |= {"suspend": False, "timeZone": "Mars/Olympus"}
    client.feed(CRONJOBS, "MODIFIED", stored)
    await controller.reconcile("default/tick")
    assert jobs(client) == []
    assert client.events[-1] == ("UnknownTimeZone", 'invalid timeZone: "Mars/Olympus": unknown time zone Mars/Olympus')
    stored["spec"]["timeZone"] = "UTC"
    client.feed(CRONJOBS, "MODIFIED", stored)
    await controller.reconcile("default/tick")
    assert len(jobs(client)) == 1
    assert timeutil.parse_time(client.objects[("cronjobs", "tick")]["status"]["lastScheduleTime"]) == at(
        "2025-06-01T12:01:00")
