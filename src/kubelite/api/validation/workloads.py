"""Deployment and ReplicaSet validation, after ``pkg/apis/apps/validation`` (apps/v1).

The messages users meet here are few and famous (``spec.template.metadata.labels: Invalid
value: map[string]string{"app":"web"}: `selector` does not match template `labels```), so
they are reproduced with Go's renderings of the bad values. The pod template is validated
by :mod:`kubelite.api.validation.pod` with ``spec.template.spec`` paths. The selector is
immutable in apps/v1 (the strategies add that check on update).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import ErrorType, FieldError, forbidden, invalid, not_supported, required
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_label_selector
from kubelite.api.validation.names import name_is_dns_subdomain, regex_error
from kubelite.api.validation.pod import validate_pod_template
from kubelite.api.validation.service import go_literal, go_string_map, validate_nonnegative

Obj = Mapping[str, Any]

_PERCENT_MSG = regex_error("a valid percent string must be a numeric string followed by an ending '%'", "[0-9]+%", "1%", "93%")


def go_label_selector(selector: Obj | None) -> str:
    """The String() of a *metav1.LabelSelector, which is how errors print a selector."""
    if selector is None:
        return "nil"
    labels = selector.get("matchLabels") or {}
    exprs = "".join(
        f"LabelSelectorRequirement{{Key:{e.get('key', '')},Operator:{e.get('operator', '')},"
        f"Values:[{' '.join(e.get('values') or [])}],}},"
        for e in selector.get("matchExpressions") or []
    )
    pairs = "".join(f"{k}: {labels[k]}," for k in sorted(labels))
    return f"&LabelSelector{{MatchLabels:map[string]string{{{pairs}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"


def _validate_selector_and_template(spec: Obj, kind: str) -> list[FieldError]:
    errs: list[FieldError] = []
    selector = spec.get("selector")
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        errs += validate_label_selector(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(selector),
                                   "empty selector is invalid for deployment"))
    try:
        # Imported here: kubelite.api.labels imports the validation package (for label-key
        # rules), so a module-level import would be circular.
        from kubelite.api.labels import SelectorError, selector_from_label_selector

        parsed = selector_from_label_selector(selector)
    except (SelectorError, ValueError):
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(selector), "invalid label selector"))
        return errs
    template = spec.get("template")
    if template is None:
        return [*errs, required("spec.template")]
    labels: Mapping[str, str] | None = (template.get("metadata") or {}).get("labels")
    # An empty selector selects everything; a missing one selects nothing, so it never matches.
    if (selector is None or selector.get("matchLabels") or selector.get("matchExpressions")) and not parsed.matches(
        labels or {}
    ):
        errs.append(go_literal(ErrorType.INVALID, "spec.template.metadata.labels", go_string_map(labels),
                               "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, "spec.template")
    restart = (template.get("spec") or {}).get("restartPolicy") or ""
    if restart != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", restart, ["Always"]))
    if (template.get("spec") or {}).get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs


def int_or_percent(value: int | str) -> tuple[int, bool]:
    """getIntOrPercentValue: a percent's number, else the int (a non-numeric string counts 0)."""
    if isinstance(value, str):
        if value.endswith("%") and value[:-1].isdigit():
            return int(value[:-1]), True
        return (int(value) if value.lstrip("-").isdigit() else 0), False
    return value, False


def validate_positive_int_or_percent(value: int | str, path: str) -> list[FieldError]:
    if isinstance(value, str):
        if not (value.endswith("%") and value[:-1].isdigit()):
            # An IntOrString prints through its String(): unquoted.
            return [go_literal(ErrorType.INVALID, path, value, _PERCENT_MSG)]
        return []
    return validate_nonnegative(value, path)


def _validate_strategy(strategy: Obj) -> list[FieldError]:
    kind = strategy.get("type") or ""
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind != "RollingUpdate":
        rendered = (
            f'apps.DeploymentStrategy{{Type:"{kind}", RollingUpdate:'
            + ("(*apps.RollingUpdateDeployment)(nil)" if rolling is None else "(*apps.RollingUpdateDeployment)(0xc000000000)")
            + "}"
        )
        return [
            FieldError(ErrorType.NOT_SUPPORTED, "spec.strategy",
                       detail=f'{rendered}: supported values: "Recreate", "RollingUpdate"')
        ]
    if rolling is None:
        return [required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")]
    path = "spec.strategy.rollingUpdate"
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    errs = validate_positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += validate_positive_int_or_percent(surge, f"{path}.maxSurge")
    if int_or_percent(unavailable)[0] == 0 and int_or_percent(surge)[0] == 0:
        errs.append(go_literal(ErrorType.INVALID, f"{path}.maxUnavailable", str(unavailable),
                               "may not be 0 when `maxSurge` is 0"))
    number, is_percent = int_or_percent(unavailable)
    if is_percent and number > 100:
        errs.append(go_literal(ErrorType.INVALID, f"{path}.maxUnavailable", str(unavailable),
                               "must not be greater than 100%"))
    return errs


def _selector_immutable(obj: Obj, old: Obj) -> list[FieldError]:
    new_sel, old_sel = (obj.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    if (new_sel or None) != (old_sel or None):
        return [go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(new_sel), "field is immutable")]
    return []


def _meta_errors(obj: Obj, old: Obj | None) -> list[FieldError]:
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        return object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    return object_meta_update(meta, old.get("metadata") or {})


def validate_deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateDeployment / ValidateDeploymentUpdate, plus apps/v1's immutable selector."""
    spec: Obj = obj.get("spec") or {}
    errs = _meta_errors(obj, old)
    errs += validate_nonnegative(spec.get("replicas") or 0, "spec.replicas")
    errs += _validate_selector_and_template(spec, "ReplicaSet")
    errs += _validate_strategy(spec.get("strategy") or {})
    min_ready = spec.get("minReadySeconds") or 0
    errs += validate_nonnegative(min_ready, "spec.minReadySeconds")
    if spec.get("revisionHistoryLimit") is not None:
        errs += validate_nonnegative(spec["revisionHistoryLimit"], "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs += validate_nonnegative(deadline, "spec.progressDeadlineSeconds")
        if deadline <= min_ready:
            errs.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    if old is not None:
        errs += _selector_immutable(obj, old)
    return errs


def validate_replicaset(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateReplicaSet / ValidateReplicaSetUpdate, plus apps/v1's immutable selector."""
    spec: Obj = obj.get("spec") or {}
    errs = _meta_errors(obj, old)
    errs += validate_nonnegative(spec.get("replicas") or 0, "spec.replicas")
    errs += validate_nonnegative(spec.get("minReadySeconds") or 0, "spec.minReadySeconds")
    errs += _validate_selector_and_template(spec, "ReplicaSet")
    if old is not None:
        errs += _selector_immutable(obj, old)
    return errs
