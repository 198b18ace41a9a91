"""Quota arithmetic and evaluators: what an object costs a ResourceQuota (``pkg/quota/v1``).

One home for the API server's ResourceQuota admission (which charges a new object against
``status.used`` before it is stored) and the controllers' resourcequota controller (which
recounts what a namespace holds and writes ``status``): both must price a pod, a Service or
any counted object the same way, or a quota would drift between what admission refuses and
what the controller reports.

Resource lists are dicts of resource name to quantity text, as in the API. Sums keep the
text format of their first non-zero term (``resource.Quantity.Add``), so memory adds up in
``Mi`` and cpu in millicores, and are printed canonically (``2000m`` is ``2``).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping
from typing import Any

from kubelite.api import timeutil
from kubelite.api.labels import SelectorError, selector_from_label_selector
from kubelite.api.resource import (
    QuantityFormat,
    format_quantity,
    parse_quantity,
    pod_qos_class,
    quantity_format,
)

Obj = Mapping[str, Any]
ResourceList = dict[str, str]

# A quota that tracks any of these requires every container to state it (a historic rule
# Kubernetes keeps for backward compatibility; no other resource gets it).
VALIDATION_SET = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})

POD_RESOURCES = frozenset({
    "count/pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods",
})
SERVICE_RESOURCES = frozenset({"count/services", "services", "services.nodeports", "services.loadbalancers"})
# The core kinds whose object count has a legacy name of its own besides count/<plural>.
LEGACY_COUNT_NAMES = {
    "configmaps": "configmaps", "secrets": "secrets", "resourcequotas": "resourcequotas",
    "replicationcontrollers": "replicationcontrollers", "persistentvolumeclaims": "persistentvolumeclaims",
}


def _q(text: Any) -> tuple[decimal.Decimal, QuantityFormat]:
    try:
        return parse_quantity(text), quantity_format(text)
    except (ValueError, decimal.InvalidOperation):
        return decimal.Decimal(0), "DecimalSI"


def add(a: Mapping[str, str], b: Mapping[str, str]) -> ResourceList:
    """quota.Add: the union, summing the names both hold."""
    out = dict(a)
    for name, text in b.items():
        if name not in out:
            out[name] = text
            continue
        (x, fx), (y, fy) = _q(out[name]), _q(text)
        out[name] = format_quantity(x + y, fy if x == 0 else fx)
    return out


def subtract(a: Mapping[str, str], b: Mapping[str, str]) -> ResourceList:
    out = dict(a)
    for name, text in b.items():
        (x, fx), (y, _) = _q(out.get(name, "0")), _q(text)
        out[name] = format_quantity(x - y, fx)
    return out


def mask(items: Mapping[str, str], names: Iterable[str]) -> ResourceList:
    keep = set(names)
    return {k: v for k, v in items.items() if k in keep}


def is_zero(items: Mapping[str, str]) -> bool:
    return all(_q(v)[0] == 0 for v in items.values())


def exceeded(new: Mapping[str, str], hard: Mapping[str, str]) -> list[str]:
    """quota.LessThanOrEqual's failures: the names whose new usage is over the hard limit."""
    return sorted(k for k, v in new.items() if k in hard and _q(v)[0] > _q(hard[k])[0])


def pretty(items: Mapping[str, str]) -> str:
    """prettyPrint: ``name=value`` in name order, joined by commas."""
    return ",".join(f"{k}={format_quantity(*_q(items[k]))}" for k in sorted(items))


def _container_resources(c: Obj, bucket: str) -> dict[str, str]:
    return dict((c.get("resources") or {}).get(bucket) or {})


def _pod_totals(spec: Obj, bucket: str) -> ResourceList:
    """resourcehelper.PodRequests/PodLimits: the sum over containers, at least any init container."""
    total: ResourceList = {}
    for c in spec.get("containers") or []:
        total = add(total, _container_resources(c, bucket))
    for c in spec.get("initContainers") or []:
        if c.get("restartPolicy") == "Always":  # a sidecar runs alongside: it adds up
            total = add(total, _container_resources(c, bucket))
            continue
        for name, text in _container_resources(c, bucket).items():
            if name not in total or _q(text)[0] > _q(total[name])[0]:
                total[name] = text
    overhead = spec.get("overhead") or {}
    if overhead and bucket == "requests":
        total = add(total, overhead)
    return total


def compute_usage(requests: Mapping[str, str], limits: Mapping[str, str]) -> ResourceList:
    """podComputeUsageHelper: what one container's (or a pod's) requests and limits charge."""
    out: ResourceList = {"pods": "1"}
    for res in ("cpu", "memory", "ephemeral-storage"):
        if res in requests:
            out[res] = requests[res]
            out[f"requests.{res}"] = requests[res]
        if res in limits:
            out[f"limits.{res}"] = limits[res]
    for name, text in requests.items():
        if name.startswith("hugepages-"):
            out[name] = text
            out[f"requests.{name}"] = text
        elif "/" in name and not name.startswith("kubernetes.io/") and not name.startswith("requests."):
            out[f"requests.{name}"] = text  # an extended resource is quota'd by its request only
    return out


def pod_is_terminal(pod: Obj, now: dt.datetime | None = None) -> bool:
    """QuotaV1Pod's negation: a finished pod, or one past its deletion time plus its grace, costs no compute."""
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return True
    meta = pod.get("metadata") or {}
    deletion = timeutil.parse_time(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    if deletion is None or not isinstance(grace, int):
        return False
    return (now or timeutil.now()) > deletion + dt.timedelta(seconds=grace)


def pod_usage(pod: Obj) -> ResourceList:
    """PodUsageFunc: count/pods always; compute resources while the pod is not terminal."""
    out: ResourceList = {"count/pods": "1"}
    if pod_is_terminal(pod):
        return out
    spec = pod.get("spec") or {}
    return add(out, compute_usage(_pod_totals(spec, "requests"), _pod_totals(spec, "limits")))


def service_usage(svc: Obj) -> ResourceList:
    spec = svc.get("spec") or {}
    out: ResourceList = {"count/services": "1", "services": "1"}
    type_ = spec.get("type") or "ClusterIP"
    if type_ == "LoadBalancer":
        out["services.loadbalancers"] = "1"
    if type_ in ("NodePort", "LoadBalancer"):
        out["services.nodeports"] = str(len(spec.get("ports") or []))
    return out


def count_usage(plural: str, group: str) -> ResourceList:
    """The generic object count evaluator: ``count/<resource>[.<group>]`` (plus a legacy name)."""
    out = {f"count/{plural}.{group}" if group else f"count/{plural}": "1"}
    if not group and plural in LEGACY_COUNT_NAMES:
        out[LEGACY_COUNT_NAMES[plural]] = "1"
    return out


def matching_resources(plural: str, group: str, names: Iterable[str]) -> list[str]:
    """MatchingResources: which of a quota's resource names an object of this resource may charge."""
    if not group and plural == "pods":
        return sorted(n for n in names if n in POD_RESOURCES or n.startswith(("hugepages-", "requests.hugepages-"))
                      or (n.startswith("requests.") and "/" in n))
    if not group and plural == "services":
        return sorted(n for n in names if n in SERVICE_RESOURCES)
    return sorted(n for n in names if n in count_usage(plural, group))


def usage(plural: str, group: str, obj: Obj) -> ResourceList:
    if not group and plural == "pods":
        return pod_usage(obj)
    if not group and plural == "services":
        return service_usage(obj)
    return count_usage(plural, group)


# -- scopes (pods only; other kinds match only unscoped quotas) --------------------------------


def scope_selectors(quota: Obj) -> list[Obj]:
    spec = quota.get("spec") or {}
    out: list[Obj] = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    out += list(((spec.get("scopeSelector") or {}).get("matchExpressions")) or [])
    return out


def _pod_matches_scope(selector: Obj, pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    scope = selector.get("scopeName")
    terminating = isinstance(spec.get("activeDeadlineSeconds"), int) and spec["activeDeadlineSeconds"] >= 0
    best_effort = pod_qos_class(spec) == "BestEffort"
    if scope == "Terminating":
        return terminating
    if scope == "NotTerminating":
        return not terminating
    if scope == "BestEffort":
        return best_effort
    if scope == "NotBestEffort":
        return not best_effort
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        if selector.get("operator") == "Exists":
            return bool(name)
        try:
            sel = selector_from_label_selector({"matchExpressions": [
                {"key": "PriorityClass", "operator": selector.get("operator"), "values": selector.get("values") or []}
            ]})
        except SelectorError:
            return False
        return sel.matches({"PriorityClass": name} if name else {})
    if scope == "CrossNamespacePodAffinity":
        affinity = spec.get("affinity") or {}
        for kind in ("podAffinity", "podAntiAffinity"):
            a = affinity.get(kind) or {}
            terms = list(a.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
            terms += [w.get("podAffinityTerm") or {} for w in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
            if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
                return True
        return False
    return False


def matches(quota: Obj, plural: str, group: str, obj: Obj, hard: Mapping[str, str]) -> bool:
    """generic.Matches: the quota tracks something this object charges, and every scope holds."""
    if not matching_resources(plural, group, hard):
        return False
    selectors = scope_selectors(quota)
    if not selectors:
        return True
    if group or plural != "pods":
        return False
    return all(_pod_matches_scope(s, obj) for s in selectors)


def missing_constraints(required: Iterable[str], pod: Obj) -> str | None:
    """podEvaluator.Constraints: each container must state what the quota tracks of cpu and memory."""
    wanted = sorted(set(required) & VALIDATION_SET)
    if not wanted:
        return None
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        has = compute_usage(_container_resources(c, "requests"), _container_resources(c, "limits"))
        for name in wanted:
            if name not in has:
                missing.setdefault(name, set()).add(c.get("name") or "")
    if not missing:
        return None
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


def zero_usage(names: Iterable[str]) -> ResourceList:
    return {n: "0" for n in names}
