"""Validation of LimitRanges and ResourceQuotas (``pkg/apis/core/validation``), in Kubernetes' words.

The checks a user trips over when writing one: quantities that parse and are not negative,
resource names a quota can track, integer counts, one item per limit type, defaults that lie
between min and max, a Pod-type limit without defaults. The admission plugins that enforce
them (apiserver.admission) trust what passed here.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import FieldError, duplicate, forbidden, invalid, not_supported
from kubelite.api.resource import format_quantity, parse_quantity, quantity_format
from kubelite.api.validation import core
from kubelite.api.validation.names import is_qualified_name, name_is_dns_subdomain

Obj = Mapping[str, Any]

# The resources a quota may name without a domain (core v1 ResourceName constants).
STANDARD_QUOTA_RESOURCES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers", "cpu", "memory",
    "ephemeral-storage", "storage", "requests.cpu", "requests.memory", "requests.storage",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
})
# Counted things: their quantities must be whole numbers.
INTEGER_RESOURCES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers",
})
QUOTA_SCOPES = ("BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
                "Terminating", "VolumeAttributesClass")
LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")


def _quantity(path: str, value: Any, name: str) -> tuple[decimal.Decimal | None, list[FieldError]]:
    try:
        q = parse_quantity(value)
    except (ValueError, decimal.InvalidOperation):
        return None, [invalid(path, value, "quantities must match the regular expression "
                                           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    if q < 0:
        return q, [invalid(path, str(value), "must be greater than or equal to 0")]
    if (name in INTEGER_RESOURCES or name.startswith("count/")) and q != q.to_integral_value():
        return q, [invalid(path, str(value), "must be an integer")]
    return q, []


def _quota_resource_name(path: str, name: str) -> list[FieldError]:
    """ValidateResourceQuotaResourceName: a standard name, a count/ or hugepages one, or a qualified one."""
    if name in STANDARD_QUOTA_RESOURCES or name.startswith(("count/", "hugepages-", "requests.hugepages-")):
        return []
    if "/" in name or name.startswith("requests."):
        return [invalid(path, name, msg) for msg in is_qualified_name(name.removeprefix("requests."))]
    return [invalid(path, name, "must be a standard resource for quota")]


def _resource_list(path: str, resources: Any, quota: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for name, value in (resources or {}).items():
        key = f"{path}[{name}]"
        if quota:
            errs.extend(_quota_resource_name(key, name))
        errs.extend(_quantity(key, value, name)[1])
    return errs


def validate_resource_quota(obj: Obj, old: Obj | None) -> list[FieldError]:
    meta = obj.get("metadata") or {}
    if old is None:
        errs = core.object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    else:
        errs = core.object_meta_update(meta, old.get("metadata") or {})
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    errs.extend(_resource_list("spec.hard", spec.get("hard"), True))
    errs.extend(_resource_list("status.hard", status.get("hard"), True))
    errs.extend(_resource_list("status.used", status.get("used"), True))
    seen: set[str] = set()
    for i, scope in enumerate(spec.get("scopes") or []):
        if scope not in QUOTA_SCOPES:
            errs.append(not_supported(f"spec.scopes[{i}]", scope, QUOTA_SCOPES))
        elif scope in seen:
            errs.append(duplicate(f"spec.scopes[{i}]", scope))
        seen.add(scope)
    scopes = set(spec.get("scopes") or [])
    for a, b in (("Terminating", "NotTerminating"), ("BestEffort", "NotBestEffort")):
        if a in scopes and b in scopes:
            errs.append(invalid("spec.scopes", sorted(scopes), f"conflicting scopes: {a}, {b}"))
    if old is not None:
        old_spec = old.get("spec") or {}
        if sorted(old_spec.get("scopes") or []) != sorted(spec.get("scopes") or []):
            errs.append(invalid("spec.scopes", spec.get("scopes") or [], "field is immutable"))
    return errs


def _limit_item(path: str, item: Obj, seen_types: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    type_ = item.get("type") or ""
    if type_ in seen_types:
        errs.append(duplicate(f"{path}.type", type_))
    seen_types.add(type_)
    parsed: dict[str, dict[str, tuple[decimal.Decimal, str]]] = {}
    for field_name in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
        values = item.get(field_name) or {}
        parsed[field_name] = {}
        for name, value in values.items():
            key = f"{path}.{field_name}[{name}]"
            q, qerrs = _quantity(key, value, name)
            errs.extend(qerrs)
            if q is not None and not qerrs:
                parsed[field_name][name] = (q, format_quantity(q, quantity_format(value)))
    if type_ == "Pod":
        if item.get("default"):
            errs.append(forbidden(f"{path}.default", "may not be specified when `type` is 'Pod'"))
        if item.get("defaultRequest"):
            errs.append(forbidden(f"{path}.defaultRequest", "may not be specified when `type` is 'Pod'"))
    names = set().union(*(set(v) for v in parsed.values()))
    for name in sorted(names):
        mn, mx = parsed["min"].get(name), parsed["max"].get(name)
        dflt, dreq = parsed["default"].get(name), parsed["defaultRequest"].get(name)
        ratio = parsed["maxLimitRequestRatio"].get(name)
        if mn and mx and mn[0] > mx[0]:
            errs.append(invalid(f"{path}.min[{name}]", mn[1], f"min value {mn[1]} is greater than max value {mx[1]}"))
        if dreq and mn and mn[0] > dreq[0]:
            errs.append(invalid(f"{path}.defaultRequest[{name}]", dreq[1],
                                f"min value {mn[1]} is greater than default request value {dreq[1]}"))
        if dreq and mx and dreq[0] > mx[0]:
            errs.append(invalid(f"{path}.defaultRequest[{name}]", dreq[1],
                                f"default request value {dreq[1]} is greater than max value {mx[1]}"))
        if dreq and dflt and dreq[0] > dflt[0]:
            errs.append(invalid(f"{path}.defaultRequest[{name}]", dreq[1],
                                f"default request value {dreq[1]} is greater than default limit value {dflt[1]}"))
        if dflt and mn and mn[0] > dflt[0]:
            errs.append(invalid(f"{path}.default[{name}]", mn[1], f"min value {mn[1]} is greater than default value {dflt[1]}"))
        if dflt and mx and dflt[0] > mx[0]:
            errs.append(invalid(f"{path}.default[{name}]", mx[1], f"default value {dflt[1]} is greater than max value {mx[1]}"))
        if ratio:
            if ratio[0] < 1:
                errs.append(invalid(f"{path}.maxLimitRequestRatio[{name}]", ratio[1], f"ratio {ratio[1]} is less than 1"))
            if mn and mx and mn[0] > 0 and ratio[0] > mx[0] / mn[0]:
                errs.append(invalid(f"{path}.maxLimitRequestRatio[{name}]", ratio[1],
                                    f"ratio {ratio[1]} is greater than max/min = {float(mx[0] / mn[0]):f}"))
    return errs


def validate_limit_range(obj: Obj, old: Obj | None) -> list[FieldError]:
    meta = obj.get("metadata") or {}
    if old is None:
        errs = core.object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    else:
        errs = core.object_meta_update(meta, old.get("metadata") or {})
    seen: set[str] = set()
    for i, item in enumerate((obj.get("spec") or {}).get("limits") or []):
        errs.extend(_limit_item(f"spec.limits[{i}]", item, seen))
    return errs


VALIDATORS = {
    ("", "LimitRange"): validate_limit_range,
    ("", "ResourceQuota"): validate_resource_quota,
}
