"""The TTL-after-finished controller (pkg/controller/ttlafterfinished).

A finished Job (Complete or Failed) with ``spec.ttlSecondsAfterFinished`` is deleted that many
seconds after it finished, counted from its terminal condition's ``lastTransitionTime``. The
deletion is in the foreground with the Job's UID as precondition, as Kubernetes does it: its
pods go first (garbage collector), and a Job recreated under the same name is never hit.
Before deleting, the Job is read again: its TTL may have been changed or removed meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from kubelite.api import timeutil
from kubelite.api.types import EventType, Obj
from kubelite.client import JOBS, ApiError, key_of
from kubelite.controllers.base import Context, Controller
from kubelite.controllers.job import condition, is_finished

log = logging.getLogger(__name__)


def finish_time(job: Obj) -> dt.datetime | None:
    """jobFinishTime: when the Complete or Failed condition became True."""
    for type_ in ("Complete", "Failed"):
        c = condition(job, type_)
        if c is not None and c.get("status") == "True":
            return timeutil.parse_time(c.get("lastTransitionTime"))
    return None


def time_left(job: Obj, now: dt.datetime) -> float | None:
    """Seconds until a finished Job with a TTL expires (<= 0: expired); None if it never does."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or not is_finished(job) or (job.get("metadata") or {}).get("deletionTimestamp"):
        return None
    finished = finish_time(job)
    if finished is None:
        return None
    return (finished + dt.timedelta(seconds=int(ttl)) - now).total_seconds()


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    service_account = "ttl-after-finished-controller"
    workers = 2

    def __init__(self, ctx: Context, clock: Callable[[], dt.datetime] = timeutil.now) -> None:
        super().__init__(ctx)
        self.clock = clock
        self.jobs = ctx.informer(JOBS)
        self.jobs.add_handler(self._on_job)

    def _on_job(self, kind: EventType, job: Obj, old: Obj | None) -> None:
        if kind != "DELETED" and (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and is_finished(job):
            self.enqueue(job)

    async def reconcile(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        left = time_left(job, self.clock())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        meta = job.get("metadata") or {}
        try:
            fresh = await self.client.get(JOBS, meta["name"], meta.get("namespace"))
        except ApiError as e:
            if e.not_found:
                return
            raise
        left = time_left(fresh, self.clock())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:
            await self.client.delete(JOBS, meta["name"], meta.get("namespace"), propagation_policy="Foreground",
                                     preconditions={"uid": str((fresh.get("metadata") or {}).get("uid"))})
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise
        log.info("deleted finished job %s after its TTL", key_of(job))
