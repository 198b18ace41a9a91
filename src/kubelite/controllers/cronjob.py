"""The CronJob controller (pkg/controller/cronjob, the "v2" controller of Kubernetes 1.33).

For each CronJob it finds the most recent schedule time not yet acted on, and unless the
CronJob is suspended, that time is past ``startingDeadlineSeconds``, or the concurrency
policy forbids it, creates the Job ``<cronjob>-<scheduled time in minutes since the epoch>``
(the name is the lock that keeps a restarted controller from creating it twice), annotated
``batch.kubernetes.io/cronjob-scheduled-timestamp``. Then it sleeps until the next schedule
time. Jobs it owns that finished leave ``status.active``; the oldest finished ones beyond
``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` are deleted.

When many start times were missed (a controller down for a weekend), only the most recent is
run, and more than 100 missed ones earn a ``TooManyMissedTimes`` warning, as in Kubernetes.

The schedule arithmetic (:func:`most_recent_schedule_time`, :func:`next_schedule_time`,
:func:`requeue_after`, :func:`job_from_template`) is pure and takes ``now``: unit tests drive
it with a fake clock. Schedules are parsed by :mod:`kubelite.api.cron` (robfig/cron's
dialect) and evaluated in ``spec.timeZone`` (the controller's local zone when unset).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kubelite.api import cron, timeutil
from kubelite.api.types import EventType, Obj
from kubelite.client import CRONJOBS, JOBS, ApiError
from kubelite.client.events import EventRecorder
from kubelite.controllers import podutil
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.job import has_condition, is_finished

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1  # nextScheduleDelta: wake a little after the time, never just before
MANY_MISSED = 100

Clock = Callable[[], dt.datetime]


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def local_zone() -> dt.tzinfo:
    """The controller's own time zone (Go's time.Local): $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ")
    try:
        if name:
            return ZoneInfo(name.lstrip(":"))
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f)
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def zone_of(cj: Obj) -> dt.tzinfo:
    """spec.timeZone as a zone (raises ZoneInfoNotFoundError/ValueError when unknown)."""
    name = (cj.get("spec") or {}).get("timeZone")
    if name is None:
        return local_zone()
    return dt.UTC if name == "UTC" else ZoneInfo(name)


@dataclass(frozen=True)
class ScheduleResult:
    earliest: dt.datetime
    most_recent: dt.datetime | None
    missed: int  # 0 none, else the rough count of missed start times


def most_recent_schedule_time(cj: Obj, now: dt.datetime, schedule: cron.Schedule,
                              include_deadline: bool) -> ScheduleResult:
    """mostRecentScheduleTime: the latest start time in (earliest, now], where earliest is the last
    schedule time (or creation), moved up to ``now - startingDeadlineSeconds`` when asked."""
    tz = now.tzinfo
    status = cj.get("status") or {}
    earliest = timeutil.parse_time(status.get("lastScheduleTime")) or timeutil.parse_time(
        _meta(cj).get("creationTimestamp")) or now
    earliest = earliest.astimezone(tz)
    deadline = (cj.get("spec") or {}).get("startingDeadlineSeconds")
    if include_deadline and deadline is not None:
        scheduling_deadline = now - dt.timedelta(seconds=int(deadline))
        if scheduling_deadline > earliest:
            earliest = scheduling_deadline
    t1 = schedule.next(earliest)
    if t1 == cron.ZERO:
        return ScheduleResult(earliest, None, 0)
    t2 = schedule.next(t1)
    if now < t1:
        return ScheduleResult(earliest, None, 0)
    if now < t2:
        return ScheduleResult(earliest, t1, 1)
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ValueError("time difference between two schedules is less than 1 second")
    elapsed = int((now - t1).total_seconds())
    missed = elapsed // between + 1
    most_recent: dt.datetime | None = None
    t = schedule.next(t1 + dt.timedelta(seconds=(missed - 2) * between))
    while t != cron.ZERO and t <= now:
        most_recent = t
        t = schedule.next(t)
    return ScheduleResult(earliest, most_recent, missed)


def next_schedule_time(cj: Obj, now: dt.datetime, schedule: cron.Schedule) -> tuple[dt.datetime | None, bool]:
    """nextScheduleTime: the start time to act on now (or None), and whether too many were missed."""
    result = most_recent_schedule_time(cj, now, schedule, True)
    if result.most_recent is None or result.most_recent > now:
        return None, False
    return result.most_recent, result.missed > MANY_MISSED


def requeue_after(cj: Obj, now: dt.datetime, schedule: cron.Schedule) -> float:
    """nextScheduleTimeDuration: seconds until just after the next start time."""
    try:
        result = most_recent_schedule_time(cj, now, schedule, False)
        base = result.most_recent or (result.earliest if result.missed == 0 else now)
    except ValueError:
        base = now
    nxt = schedule.next(base)
    if nxt == cron.ZERO:
        return 3600.0
    return (nxt - now).total_seconds() + NEXT_SCHEDULE_DELTA


def job_name(cj: Obj, scheduled: dt.datetime) -> str:
    """getJobName: ``<cronjob>-<scheduled time in minutes since the epoch>``."""
    return f"{_meta(cj).get('name')}-{int(scheduled.timestamp()) // 60}"


def format_rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339 in the time's own zone: ``Z`` for a zero offset, else ``+hh:mm``."""
    text = t.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if t.utcoffset() == dt.timedelta(0) else text


def job_from_template(cj: Obj, scheduled: dt.datetime) -> Obj:
    """getJobFromTemplate2: the template's labels, annotations and spec, the scheduled-time
    annotation (in the CronJob's time zone; UTC when it names none) and the owner reference."""
    template = (cj.get("spec") or {}).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    tz_name = (cj.get("spec") or {}).get("timeZone")
    zone: dt.tzinfo = dt.UTC if not tz_name or tz_name == "UTC" else ZoneInfo(tz_name)
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = format_rfc3339(scheduled.astimezone(zone))
    meta: Obj = {"name": job_name(cj, scheduled), "annotations": annotations,
                 "ownerReferences": [podutil.new_controller_ref(cj, "batch/v1", "CronJob")]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


def finished_type(job: Obj) -> str:
    return "Complete" if has_condition(job, "Complete") else "Failed" if has_condition(job, "Failed") else ""


def _start_key(job: Obj) -> tuple[int, str, str]:
    """byJobStartTime: jobs without a start time last, then by start time, then by name."""
    start = (job.get("status") or {}).get("startTime")
    return (1 if start is None else 0, str(timeutil.parse_time(start) or ""), str(_meta(job).get("name")))


def jobs_to_delete(cj: Obj, jobs: list[Obj]) -> list[Obj]:
    """cleanupFinishedJobs: the oldest finished jobs beyond each history limit."""
    spec = cj.get("spec") or {}
    out: list[Obj] = []
    for type_, key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
        limit = spec.get(key)
        if limit is None:
            continue
        done = sorted((j for j in jobs if finished_type(j) == type_), key=_start_key)
        out += done[: max(0, len(done) - int(limit))]
    return out


def _ref(job: Obj) -> Obj:
    meta = _meta(job)
    return {"kind": "Job", "namespace": meta.get("namespace"), "name": meta.get("name"), "uid": meta.get("uid"),
            "apiVersion": "batch/v1", "resourceVersion": meta.get("resourceVersion")}


class CronJobController(Controller):
    name = "cronjob"
    service_account = "cronjob-controller"
    workers = 2

    def __init__(self, ctx: Context, clock: Clock = timeutil.now) -> None:
        super().__init__(ctx)
        self.clock = clock
        self.recorder = EventRecorder(self.client, "cronjob-controller")
        self.cronjobs = ctx.informer(CRONJOBS)
        self.jobs = ctx.informer(JOBS, indexers={podutil.CONTROLLER_UID_INDEX: podutil.controller_uid_index})
        self.cronjobs.add_handler(self._on_cronjob)
        self.jobs.add_handler(self._on_job)

    def _on_cronjob(self, kind: EventType, cj: Obj, old: Obj | None) -> None:
        self.enqueue(cj)

    def _on_job(self, kind: EventType, job: Obj, old: Obj | None) -> None:
        ref = podutil.controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{_meta(job).get('namespace')}/{ref.get('name')}")

    def _owned_jobs(self, cj: Obj) -> list[Obj]:
        ns = _meta(cj).get("namespace")
        return [j for j in self.jobs.by_index(podutil.CONTROLLER_UID_INDEX, str(_meta(cj).get("uid")))
                if _meta(j).get("namespace") == ns]

    async def reconcile(self, key: str) -> None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return
        cj = copy.deepcopy(cached)
        cj.setdefault("apiVersion", "batch/v1")
        cj.setdefault("kind", "CronJob")
        original_status = copy.deepcopy(cj.get("status") or {})
        jobs = self._owned_jobs(cj)
        requeue = await self._sync(cj, jobs)
        for job in jobs_to_delete(cj, [j for j in self._owned_jobs(cj) if not _meta(j).get("deletionTimestamp")]):
            await self._delete_job(cj, job)
        status = cj.get("status") or {}
        if status != original_status:
            try:
                await self.client.update_status(CRONJOBS, cj)
            except ApiError as e:
                if not e.not_found:
                    raise
        if requeue is not None:
            self.queue.add_after(key, requeue)

    async def _delete_job(self, cj: Obj, job: Obj) -> bool:
        name = _meta(job)["name"]
        try:
            await self.client.delete(JOBS, name, _meta(job).get("namespace"), propagation_policy="Background")
        except ApiError as e:
            if not e.not_found:
                await self.recorder.event(cj, "Warning", "FailedDelete", f"Deleted job: {e.status.get('message', e)}")
                return False
        status = cj.setdefault("status", {})
        status["active"] = [a for a in status.get("active") or [] if a.get("uid") != _meta(job).get("uid")]
        if not status["active"]:
            status.pop("active")
        await self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {name}")
        return True

    async def _sync(self, cj: Obj, jobs: list[Obj]) -> float | None:
        """syncCronJob: returns when to look again (None: only when something changes)."""
        status = cj.setdefault("status", {})
        active: list[Obj] = list(status.get("active") or [])
        uids = {a.get("uid") for a in active}
        for job in jobs:
            uid = _meta(job).get("uid")
            if uid not in uids and not is_finished(job):
                await self.recorder.event(cj, "Warning", "UnexpectedJob",
                                          f"Saw a job that the controller did not create or forgot: {_meta(job).get('name')}")
            elif uid in uids and is_finished(job):
                active = [a for a in active if a.get("uid") != uid]
                await self.recorder.event(cj, "Normal", "SawCompletedJob",
                                          f"Saw completed job: {_meta(job).get('name')}, condition: {finished_type(job)}")
            if has_condition(job, "Complete"):
                done = (job.get("status") or {}).get("completionTime")
                last = status.get("lastSuccessfulTime")
                if done and (last is None or (timeutil.parse_time(done) or dt.datetime.min.replace(tzinfo=dt.UTC))
                             > (timeutil.parse_time(last) or dt.datetime.min.replace(tzinfo=dt.UTC))):
                    status["lastSuccessfulTime"] = done
        owned = {_meta(j).get("uid") for j in jobs}
        for ref in list(active):
            if ref.get("uid") in owned:
                continue
            try:
                await self.client.get(JOBS, str(ref.get("name")), ref.get("namespace"))
            except ApiError as e:
                if not e.not_found:
                    raise
                await self.recorder.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
                active = [a for a in active if a.get("uid") != ref.get("uid")]
        self._set_active(status, active)
        if _meta(cj).get("deletionTimestamp"):
            return None
        spec = cj.get("spec") or {}
        try:
            zone = zone_of(cj)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            tz = spec.get("timeZone")
            # Go's time.LoadLocation error text.
            await self.recorder.event(cj, "Warning", "UnknownTimeZone", f'invalid timeZone: "{tz}": unknown time zone {tz}')
            return None
        if spec.get("suspend"):
            return None
        try:
            schedule = cron.parse_standard(str(spec.get("schedule") or ""))
        except cron.CronError as e:
            await self.recorder.event(cj, "Warning", "UnparseableSchedule",
                                      f'unparseable schedule: "{spec.get("schedule")}" : {e}')
            return None
        now = self.clock().astimezone(zone)
        try:
            scheduled, too_many = next_schedule_time(cj, now, schedule)
        except ValueError as e:
            await self.recorder.event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {spec.get('schedule')} : {e}")
            return None
        if too_many:
            await self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                      "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                      "or check clock skew")
        if scheduled is None:
            return requeue_after(cj, now, schedule)
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + dt.timedelta(seconds=int(deadline)) < now:
            await self.recorder.event(cj, "Warning", "MissSchedule", "Missed scheduled time to start a job: "
                                      + scheduled.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"))
            return requeue_after(cj, now, schedule)
        name = job_name(cj, scheduled)
        last = timeutil.parse_time(status.get("lastScheduleTime"))
        if any(a.get("name") == name for a in active) or (last is not None and last == scheduled):
            return requeue_after(cj, now, schedule)
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            await self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                      "Not starting job because prior execution is running and concurrency policy is Forbid")
            return requeue_after(cj, now, schedule)
        if policy == "Replace":
            for ref in list(active):
                try:
                    job = await self.client.get(JOBS, str(ref.get("name")), ref.get("namespace"))
                except ApiError as e:
                    await self.recorder.event(cj, "Warning", "FailedGet", f"Get job: {e.status.get('message', e)}")
                    raise
                if not await self._delete_job(cj, job):
                    raise RuntimeError(f"could not replace job {ref.get('namespace')}/{ref.get('name')}")
            active = list(status.get("active") or [])
        try:
            created = await self.client.create(JOBS, job_from_template(cj, scheduled), _meta(cj).get("namespace"))
            await self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {_meta(created).get('name')}")
        except ApiError as e:
            if not e.already_exists:
                if not e.namespace_terminating:
                    await self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {e.status.get('message', e)}")
                raise
            created = await self.client.get(JOBS, name, _meta(cj).get("namespace"))
            if not podutil.is_controlled_by(created, cj) or any(a.get("uid") == _meta(created).get("uid") for a in active):
                return None
        active.append(_ref(created))
        self._set_active(status, active)
        status["lastScheduleTime"] = timeutil.format_time(scheduled.astimezone(dt.UTC))
        return requeue_after(cj, now, schedule)

    @staticmethod
    def _set_active(status: Obj, active: list[Obj]) -> None:
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

