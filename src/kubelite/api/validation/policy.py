"""PodDisruptionBudget validation, after ``pkg/apis/policy/validation`` (policy/v1).

What a budget must say to be usable by the eviction subresource: at most one of
``minAvailable`` and ``maxUnavailable`` (each a non-negative int or a percentage up to
100%), a valid label selector, and a known ``unhealthyPodEvictionPolicy``. Unlike apps/v1
workloads, a budget's spec may change after creation (its generation moves, and eviction
waits for the disruption controller to observe it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import FieldError, invalid, not_supported
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_label_selector
from kubelite.api.validation.names import name_is_dns_subdomain
from kubelite.api.validation.workloads import int_or_percent, validate_positive_int_or_percent

Obj = Mapping[str, Any]

UNHEALTHY_POD_EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def _bound(spec: Obj, field: str) -> list[FieldError]:
    value = spec.get(field)
    if value is None:
        return []
    path = f"spec.{field}"
    errs = validate_positive_int_or_percent(value, path)
    number, percent = int_or_percent(value)
    if percent and number > 100:
        errs.append(invalid(path, value, "must not be greater than 100%"))
    return errs


def validate_pod_disruption_budget(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePodDisruptionBudget (create and update alike, plus the metadata rules)."""
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        errs = object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    else:
        errs = object_meta_update(meta, old.get("metadata") or {})
    spec: Obj = obj.get("spec") or {}
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(invalid("spec.minAvailable", spec["minAvailable"], "minAvailable and maxUnavailable cannot be both set"))
    errs += _bound(spec, "minAvailable")
    errs += _bound(spec, "maxUnavailable")
    errs += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
        errs.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, UNHEALTHY_POD_EVICTION_POLICIES))
    return errs
