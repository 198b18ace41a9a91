"""Job and CronJob validation, after ``pkg/apis/batch/validation`` (batch/v1, Kubernetes 1.33).

The checks users meet most: a pod template's ``restartPolicy`` must be ``OnFailure`` or
``Never``; an Indexed Job needs ``completions``; the generated selector and the labels
``batch.kubernetes.io/controller-uid`` / ``job-name`` must be the ones the API server put
there; a Job's template is immutable once it may have run (a suspended Job that never
started may still change its scheduling directives); a CronJob's schedule must parse as
robfig/cron parses it (:mod:`kubelite.api.cron`), with no ``TZ=`` in it, its ``timeZone`` must
be a known IANA zone, and its name at most 52 characters (the controller appends
``-<minutes since epoch>`` to name a Job, which must stay a 63-character label).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kubelite.api import cron
from kubelite.api.errors import ErrorType, FieldError, invalid, not_supported, required
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_label_selector
from kubelite.api.validation.names import is_dns1123_label, name_is_dns_subdomain
from kubelite.api.validation.pod import validate_pod_template
from kubelite.api.validation.service import go_literal, go_string_map, validate_nonnegative
from kubelite.api.validation.workloads import go_label_selector

Obj = Mapping[str, Any]

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"

MAX_PARALLELISM_FOR_INDEXED_JOB = 100_000
MAX_COMPLETIONS_FOR_INDEXED_JOB = 100_000
CRONJOB_NAME_MAX = 63 - 11  # DNS1035LabelMaxLength minus "-<minutes since epoch>"
_TZ_PART = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")
_FAILURE_ACTIONS = ("Count", "FailIndex", "FailJob", "Ignore")


def _has_label(meta: Obj, path: str, key: str, value: str) -> list[FieldError]:
    """ValidateHasLabel."""
    labels = meta.get("labels") or {}
    if key not in labels:
        return [required(f"{path}.labels[{key}]", f"must be '{value}'")]
    if labels[key] != value:
        return [invalid(f"{path}.labels[{key}]", labels[key], f"must be '{value}'")]
    return []


def _selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool | None:
    """Whether a LabelSelector selects ``labels``; None when it does not parse."""
    # Imported here: kubelite.api.labels imports this package (label-key rules).
    from kubelite.api.labels import SelectorError, selector_from_label_selector

    try:
        return selector_from_label_selector(selector).matches(labels)
    except (SelectorError, ValueError):
        return None


def validate_generated_selector(job: Obj) -> list[FieldError]:
    """ValidateGeneratedSelector: with manualSelector unset, the API server's labels must be intact."""
    spec: Obj = job.get("spec") or {}
    if spec.get("manualSelector") or spec.get("selector") is None:
        return []
    meta: Obj = job.get("metadata") or {}
    uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
    errs: list[FieldError] = []
    if not uid:
        errs.append(required("metadata.uid"))
    tmeta: Obj = (spec.get("template") or {}).get("metadata") or {}
    path = "spec.template.metadata"
    errs += _has_label(tmeta, path, LEGACY_CONTROLLER_UID_LABEL, uid)
    errs += _has_label(tmeta, path, LEGACY_JOB_NAME_LABEL, name)
    errs += _has_label(tmeta, path, CONTROLLER_UID_LABEL, uid)
    errs += _has_label(tmeta, path, JOB_NAME_LABEL, name)
    matches = _selector_matches(spec["selector"], {CONTROLLER_UID_LABEL: uid})
    if matches is None:
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(spec["selector"]),
                               "invalid label selector"))
    elif not matches:
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(spec["selector"]),
                               "`selector` not auto-generated"))
    return errs


def _validate_pod_failure_policy(spec: Obj, path: str) -> list[FieldError]:
    policy: Obj = spec.get("podFailurePolicy") or {}
    errs: list[FieldError] = []
    rules = policy.get("rules") or []
    if len(rules) > 20:
        errs.append(FieldError(ErrorType.TOO_MANY, f"{path}.rules", len(rules), "must have at most 20 items"))
    container_names = {c.get("name") for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []}
    container_names |= {c.get("name") for c in ((spec.get("template") or {}).get("spec") or {}).get("initContainers") or []}
    for i, rule in enumerate(rules):
        rpath = f"{path}.rules[{i}]"
        action = rule.get("action") or ""
        if action not in _FAILURE_ACTIONS:
            errs.append(not_supported(f"{rpath}.action", action, _FAILURE_ACTIONS))
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errs.append(invalid(f"{rpath}.action", action, "requires the backoffLimitPerIndex to be set"))
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if codes is not None and conditions is not None:
            errs.append(invalid(rpath, "", "specifying both OnExitCodes and OnPodConditions is not supported"))
        elif codes is None and conditions is None:
            errs.append(invalid(rpath, "", "specifying one of OnExitCodes and OnPodConditions is required"))
        if codes is not None:
            cpath = f"{rpath}.onExitCodes"
            name = codes.get("containerName")
            if name is not None and name not in container_names:
                errs.append(invalid(f"{cpath}.containerName", name,
                                    "must be one of the container or initContainer names in the pod template"))
            operator = codes.get("operator") or ""
            if operator not in ("In", "NotIn"):
                errs.append(not_supported(f"{cpath}.operator", operator, ["In", "NotIn"]))
            values = codes.get("values") or []
            if not values:
                errs.append(required(f"{cpath}.values", "at least one value is required"))
            elif len(values) > 255:
                errs.append(FieldError(ErrorType.TOO_MANY, f"{cpath}.values", len(values), "must have at most 255 items"))
            else:
                previous: int | None = None
                for j, v in enumerate(values):
                    if operator == "In" and v == 0:
                        errs.append(invalid(f"{cpath}.values[{j}]", v, "must not be 0 for the In operator"))
                    if previous is not None and previous >= v:
                        errs.append(invalid(f"{cpath}.values[{j}]", v, "must be ordered"))
                    previous = v
        for j, pattern in enumerate(conditions or []):
            ppath = f"{rpath}.onPodConditions[{j}]"
            status = pattern.get("status") or ""
            if status not in ("True", "False", "Unknown"):
                errs.append(not_supported(f"{ppath}.status", status, ["False", "True", "Unknown"]))
            if not pattern.get("type"):
                errs.append(required(f"{ppath}.type"))
    return errs


def _validate_success_policy(spec: Obj, path: str) -> list[FieldError]:
    """validateSuccessPolicy: Indexed Jobs only; each rule names indexes and/or a count."""
    policy: Obj | None = spec.get("successPolicy")
    if policy is None:
        return []
    errs: list[FieldError] = []
    rules = policy.get("rules") or []
    if not rules:
        errs.append(required(f"{path}.rules", "at least one rules must be specified when the successPolicy is specified"))
    if len(rules) > 20:
        errs.append(FieldError(ErrorType.TOO_MANY, f"{path}.rules", len(rules), "must have at most 20 items"))
    if spec.get("completionMode") != "Indexed":
        errs.append(invalid(path, spec.get("completionMode") or "", "requires indexed completion mode"))
        return errs
    completions = int(spec.get("completions") or 0)
    for i, rule in enumerate(rules):
        rpath = f"{path}.rules[{i}]"
        indexes, count = rule.get("succeededIndexes"), rule.get("succeededCount")
        if indexes is None and count is None:
            errs.append(required(rpath, "at least one of succeededCount or succeededIndexes must be specified"))
        total = 0
        if indexes is not None:
            try:
                total = _count_indexes(str(indexes), completions)
            except ValueError as e:
                errs.append(invalid(f"{rpath}.succeededIndexes", indexes, f"error parsing succeededIndexes: {e}"))
        if count is not None:
            errs += validate_nonnegative(count, f"{rpath}.succeededCount")
            if count > completions:
                errs.append(invalid(f"{rpath}.succeededCount", count,
                                    f"must be less than or equal to {completions} (the number of specified completions)"))
            if indexes is not None and count > total:
                errs.append(invalid(f"{rpath}.succeededCount", count, f"must be less than or equal to {total} "
                                    "(the number of indexes in the specified succeededIndexes field)"))
    return errs


def _count_indexes(text: str, completions: int) -> int:
    """validateIndexesFormat: "1,3-5" with ordered, non-overlapping intervals below completions."""
    total, previous = 0, -1
    for part in text.split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise ValueError(f"cannot parse integer index: {part!r}")
        first, last = int(bounds[0]), int(bounds[-1])
        if last < first:
            raise ValueError(f"non-increasing order, previous: {first}, current: {last}")
        if first <= previous:
            raise ValueError(f"overlapping intervals, previous: {previous}, current: {first}")
        if last >= completions:
            raise ValueError(f"too large index: {last}")
        total += last - first + 1
        previous = last
    return total


def _validate_job_spec_common(spec: Obj, path: str) -> list[FieldError]:
    """validateJobSpec: what a Job and a CronJob's jobTemplate share."""
    errs: list[FieldError] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(key) is not None:
            errs += validate_nonnegative(spec[key], f"{path}.{key}")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
        if mode == "Indexed":
            completions, parallelism = spec.get("completions"), spec.get("parallelism")
            if completions is None:
                errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
            if parallelism is not None and parallelism > MAX_PARALLELISM_FOR_INDEXED_JOB:
                errs.append(invalid(f"{path}.parallelism", parallelism,
                                    f"must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"))
            if completions is not None and completions > MAX_COMPLETIONS_FOR_INDEXED_JOB:
                errs.append(invalid(f"{path}.completions", completions,
                                    f"must be less than or equal to {MAX_COMPLETIONS_FOR_INDEXED_JOB} when completion mode is Indexed"))
        elif spec.get("backoffLimitPerIndex") is not None:
            errs.append(invalid(f"{path}.backoffLimitPerIndex", spec["backoffLimitPerIndex"],
                                "requires indexed completion mode"))
    if spec.get("podFailurePolicy") is not None:
        errs += _validate_pod_failure_policy(spec, f"{path}.podFailurePolicy")
    errs += _validate_success_policy(spec, f"{path}.successPolicy")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if replacement not in ("TerminatingOrFailed", "Failed"):
            errs.append(not_supported(f"{path}.podReplacementPolicy", replacement, ["Failed", "TerminatingOrFailed"]))
        elif spec.get("podFailurePolicy") is not None and replacement != "Failed":
            errs.append(not_supported(f"{path}.podReplacementPolicy", replacement, ["Failed"]))
    template = spec.get("template")
    errs += validate_pod_template(template, f"{path}.template")
    restart = ((template or {}).get("spec") or {}).get("restartPolicy") or ""
    rpath = f"{path}.template.spec.restartPolicy"
    if restart in ("Always", ""):
        errs.append(required(rpath, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        errs.append(not_supported(rpath, restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        errs.append(invalid(rpath, restart, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def validate_job_spec(spec: Obj, path: str = "spec") -> list[FieldError]:
    """ValidateJobSpec: the common rules plus a selector that exists and selects the template."""
    errs = _validate_job_spec_common(spec, path)
    selector = spec.get("selector")
    if selector is None:
        errs.append(required(f"{path}.selector"))
    else:
        errs += validate_label_selector(selector, f"{path}.selector")
    labels: Mapping[str, str] = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if selector is not None:
        matches = _selector_matches(selector, labels)
        if matches is not None:
            if not selector.get("matchLabels") and not selector.get("matchExpressions"):
                errs.append(required(f"{path}.selector"))
            if not matches:
                errs.append(go_literal(ErrorType.INVALID, f"{path}.template.metadata.labels",
                                       go_string_map(((spec.get("template") or {}).get("metadata") or {}).get("labels")),
                                       "`selector` does not match template `labels`"))
    return errs


def _meta_errors(obj: Obj, old: Obj | None) -> list[FieldError]:
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        # Jobs and CronJobs use ValidateReplicationControllerName: a DNS-1123 subdomain.
        return object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    return object_meta_update(meta, old.get("metadata") or {})


def _go_template(template: Obj) -> str:
    """An abbreviated %#v of a core.PodTemplateSpec (Go prints every field of the struct)."""
    labels = ((template.get("metadata") or {}).get("labels")) or None
    return f"core.PodTemplateSpec{{ObjectMeta:v1.ObjectMeta{{Labels:{go_string_map(labels)}}}, Spec:core.PodSpec{{...}}}}"


def _template_update(spec: Obj, old_spec: Obj, old_status: Obj) -> list[FieldError]:
    """validatePodTemplateUpdate: immutable, except scheduling directives of a Job suspended
    since before it ever started (AllowMutableSchedulingDirectives)."""
    new_t: dict[str, Any] = dict(spec.get("template") or {})
    old_t: dict[str, Any] = dict(old_spec.get("template") or {})
    if old_spec.get("suspend") and old_status.get("startTime") is None:
        new_meta = dict(new_t.get("metadata") or {})
        old_meta = dict(old_t.get("metadata") or {})
        for key in ("labels", "annotations"):
            old_meta.pop(key, None)
            new_meta.pop(key, None)
        new_spec = dict(new_t.get("spec") or {})
        old_spec_t = dict(old_t.get("spec") or {})
        for key in ("nodeSelector", "tolerations", "affinity", "schedulingGates"):
            new_spec.pop(key, None)
            old_spec_t.pop(key, None)
        new_t, old_t = {**new_t, "metadata": new_meta, "spec": new_spec}, {**old_t, "metadata": old_meta, "spec": old_spec_t}
    if new_t != old_t:
        return [go_literal(ErrorType.INVALID, "spec.template", _go_template(spec.get("template") or {}), "field is immutable")]
    return []


def _immutable(spec: Obj, old_spec: Obj, key: str) -> list[FieldError]:
    if spec.get(key) != old_spec.get(key):
        value = spec.get(key)
        if isinstance(value, (dict, list)):
            return [go_literal(ErrorType.INVALID, f"spec.{key}", f"&batch.{key[0].upper()}{key[1:]}{{...}}", "field is immutable")]
        return [invalid(f"spec.{key}", value, "field is immutable")]
    return []


def validate_job(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateJob / ValidateJobUpdate (the main resource)."""
    meta: Obj = obj.get("metadata") or {}
    spec: Obj = obj.get("spec") or {}
    errs = _meta_errors(obj, old)
    errs += validate_generated_selector(obj)
    errs += validate_job_spec(spec)
    if old is None:
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed" and isinstance(completions, int) and completions > 0:
            # Each pod's hostname is <job>-<index>: the longest must be a DNS label.
            hostname = f"{meta.get('name', '')}-{completions - 1}"
            if is_dns1123_label(hostname):
                errs.append(invalid("metadata.name", meta.get("name", ""),
                                    f"will not able to create pod with invalid DNS label: {hostname}"))
        return errs
    old_spec: Obj = old.get("spec") or {}
    if spec.get("completionMode") == "Indexed" and spec.get("completions") != old_spec.get("completions"):
        # Elastic Indexed Jobs: completions may change in step with parallelism.
        if spec.get("completions") is not None and spec.get("completions") != spec.get("parallelism"):
            errs.append(invalid("spec.completions", spec.get("completions"),
                                "can only be modified in tandem with spec.parallelism"))
    else:
        errs += _immutable(spec, old_spec, "completions")
    if (spec.get("selector") or None) != (old_spec.get("selector") or None):
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(spec.get("selector")),
                               "field is immutable"))
    errs += _template_update(spec, old_spec, old.get("status") or {})
    for key in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
        errs += _immutable(spec, old_spec, key)
    return errs


def validate_time_zone(tz: str | None, path: str) -> list[FieldError]:
    """validateTimeZone: an IANA name Go's time.LoadLocation knows, not ``Local``."""
    if tz is None:
        return []
    if not tz:
        return [invalid(path, tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.fullmatch(part):
            return [invalid(path, tz, f"unknown time zone {tz}")]
    errs: list[FieldError] = []
    if tz.lower() == "local":
        errs.append(invalid(path, tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
    if tz != "UTC":
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            errs.append(invalid(path, tz, f"unknown time zone {tz}"))
    return errs


def validate_schedule(schedule: str, tz: str | None, allow_tz_in_schedule: bool, path: str) -> list[FieldError]:
    """validateScheduleFormat."""
    errs: list[FieldError] = []
    try:
        cron.parse_standard(schedule)
    except cron.CronError as e:
        errs.append(invalid(path, schedule, str(e)))
    if allow_tz_in_schedule and "TZ" in schedule and tz is not None:
        errs.append(invalid(path, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    elif not allow_tz_in_schedule and "TZ" in schedule:
        errs.append(invalid(path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    return errs


def validate_cronjob(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateCronJobCreate / ValidateCronJobUpdate."""
    meta: Obj = obj.get("metadata") or {}
    spec: Obj = obj.get("spec") or {}
    old_spec: Obj | None = (old.get("spec") or {}) if old is not None else None
    errs = _meta_errors(obj, old)
    schedule = spec.get("schedule") or ""
    if not schedule:
        errs.append(required("spec.schedule"))
    else:
        allow = old_spec is not None and "TZ" in (old_spec.get("schedule") or "")
        errs += validate_schedule(schedule, spec.get("timeZone"), allow, "spec.schedule")
    if spec.get("startingDeadlineSeconds") is not None:
        errs += validate_nonnegative(spec["startingDeadlineSeconds"], "spec.startingDeadlineSeconds")
    if old_spec is None or old_spec.get("timeZone") != spec.get("timeZone"):
        errs += validate_time_zone(spec.get("timeZone"), "spec.timeZone")
    policy = spec.get("concurrencyPolicy") or ""
    if not policy:
        errs.append(required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"]))
    job_spec: Obj = (spec.get("jobTemplate") or {}).get("spec") or {}
    errs += _validate_job_spec_common(job_spec, "spec.jobTemplate.spec")
    if job_spec.get("selector") is not None:
        errs.append(go_literal(ErrorType.INVALID, "spec.jobTemplate.spec.selector", go_label_selector(job_spec["selector"]),
                               "`selector` will be auto-generated"))
    if job_spec.get("manualSelector"):
        errs.append(not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"]))
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if spec.get(key) is not None:
            errs += validate_nonnegative(spec[key], f"spec.{key}")
    if old is None and len(str(meta.get("name") or "")) > CRONJOB_NAME_MAX:
        # Only on create: an older, longer-named CronJob can still be updated and deleted.
        errs.append(invalid("metadata.name", meta.get("name"), f"must be no more than {CRONJOB_NAME_MAX} characters"))
    return errs
