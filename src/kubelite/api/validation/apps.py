"""StatefulSet, DaemonSet and ControllerRevision validation, after ``pkg/apis/apps/validation``.

Kept apart from :mod:`kubelite.api.validation.workloads` (Deployment, ReplicaSet) because the
three kinds differ in what they check: a StatefulSet's pod template is checked only for its
labels and annotations (Kubernetes leaves the pod spec unchecked there, since its volume
mounts may name claim templates rather than volumes), a DaemonSet's fully; a StatefulSet
allows updates to a handful of spec fields only, a DaemonSet to all but the selector.
Messages and Go renderings of bad values are Kubernetes' own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import ErrorType, FieldError, forbidden, invalid, not_supported, required
from kubelite.api.validation.core import object_meta_update
from kubelite.api.validation.meta import validate_annotations, validate_label_selector, validate_labels
from kubelite.api.validation.pod import validate_pod_template
from kubelite.api.validation.service import go_literal, go_string_map, validate_nonnegative
from kubelite.api.validation.workloads import (
    _meta_errors,
    go_label_selector,
    int_or_percent,
    validate_positive_int_or_percent,
)

Obj = Mapping[str, Any]

STATEFULSET_UPDATE_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)
# The spec fields ValidateStatefulSetUpdate lets change (the clone copies them from the old object).
_STATEFULSET_MUTABLE = ("replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
                        "persistentVolumeClaimRetentionPolicy")
_RETENTION_POLICIES = ("Retain", "Delete")


def semantic_equal(a: Any, b: Any) -> bool:
    """apiequality.Semantic.DeepEqual as it matters here: unset, null and empty are the same."""

    def norm(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: norm(v) for k, v in value.items() if v not in (None, [], {})}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return bool(norm(a) == norm(b))


def _int_or_string(value: int | str) -> str:
    """An IntOrString prints through its String(): the number or the string, unquoted."""
    return str(value)


def _not_more_than_100_percent(value: int | str, path: str) -> list[FieldError]:
    number, is_percent = int_or_percent(value)
    if is_percent and number > 100:
        return [go_literal(ErrorType.INVALID, path, _int_or_string(value), "must not be greater than 100%")]
    return []


def _selector(spec: Obj, kind: str) -> tuple[list[FieldError], Any]:
    """The selector checks common to both kinds; the parsed selector (None when unparsable)."""
    from kubelite.api.labels import SelectorError, selector_from_label_selector  # circular at module level

    errs: list[FieldError] = []
    selector = spec.get("selector")
    if selector is None:
        if kind == "statefulset":
            errs.append(required("spec.selector"))
    else:
        errs += validate_label_selector(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(selector),
                                   f"empty selector is invalid for {kind}"))
    try:
        return errs, selector_from_label_selector(selector)
    except (SelectorError, ValueError):
        return errs, None


def _template_labels(spec: Obj) -> Mapping[str, str] | None:
    labels: Mapping[str, str] | None = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    return labels


# -- StatefulSet ----------------------------------------------------------------------------------


def _go_sts_strategy(strategy: Obj) -> str:
    rolling = strategy.get("rollingUpdate")
    pointer = "(*apps.RollingUpdateStatefulSetStrategy)(nil)" if rolling is None else \
        "(*apps.RollingUpdateStatefulSetStrategy)(0xc000000000)"
    return f'apps.StatefulSetUpdateStrategy{{Type:"{strategy.get("type") or ""}", RollingUpdate:{pointer}}}'


def _validate_sts_rolling_update(rolling: Obj, path: str) -> list[FieldError]:
    """validateRollingUpdateStatefulSet: partition non-negative; maxUnavailable positive and <= 100%."""
    errs = validate_nonnegative(int(rolling.get("partition") or 0), f"{path}.partition")
    max_unavailable = rolling.get("maxUnavailable")
    if max_unavailable is not None:
        errs += validate_positive_int_or_percent(max_unavailable, f"{path}.maxUnavailable")
        if int_or_percent(max_unavailable)[0] == 0:
            errs.append(go_literal(ErrorType.INVALID, f"{path}.maxUnavailable", _int_or_string(max_unavailable),
                                   "cannot be 0"))
        errs += _not_more_than_100_percent(max_unavailable, f"{path}.maxUnavailable")
    return errs


def _validate_statefulset_spec(spec: Obj) -> list[FieldError]:
    """ValidateStatefulSetSpec, in its order."""
    errs: list[FieldError] = []
    policy = spec.get("podManagementPolicy") or ""
    if policy == "":
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy: Obj = spec.get("updateStrategy") or {}
    kind = strategy.get("type") or ""
    if kind == "":
        errs.append(required("spec.updateStrategy"))
    elif kind == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.append(go_literal(ErrorType.INVALID, "spec.updateStrategy.rollingUpdate",
                                   "&apps.RollingUpdateStatefulSetStrategy{Partition:0, MaxUnavailable:(*intstr.IntOrString)(nil)}",
                                   "only allowed for updateStrategy 'RollingUpdate'"))
    elif kind == "RollingUpdate":
        if strategy.get("rollingUpdate") is not None:
            errs += _validate_sts_rolling_update(strategy["rollingUpdate"], "spec.updateStrategy.rollingUpdate")
    else:
        errs.append(go_literal(ErrorType.INVALID, "spec.updateStrategy", _go_sts_strategy(strategy),
                               "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        for key in ("whenDeleted", "whenScaled"):
            value = retention.get(key) or ""
            if value not in _RETENTION_POLICIES:
                errs.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", value,
                                          _RETENTION_POLICIES))
    errs += validate_nonnegative(int(spec.get("replicas") or 0), "spec.replicas")
    errs += validate_nonnegative(int(spec.get("minReadySeconds") or 0), "spec.minReadySeconds")
    ordinals = spec.get("ordinals")
    if ordinals is not None:
        errs += validate_nonnegative(int(ordinals.get("start") or 0), "spec.ordinals.start")
    selector_errs, parsed = _selector(spec, "statefulset")
    errs += selector_errs
    if parsed is None:
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(spec.get("selector")), ""))
    else:
        # ValidatePodTemplateSpecForStatefulSet: labels and annotations only, not the pod spec.
        template = spec.get("template")
        if template is None:
            errs.append(required("spec.template"))
        else:
            labels = _template_labels(spec)
            if not parsed.empty and not parsed.matches(labels or {}):
                errs.append(go_literal(ErrorType.INVALID, "spec.template.metadata.labels", go_string_map(labels),
                                       "`selector` does not match template `labels`"))
            meta: Obj = template.get("metadata") or {}
            errs += validate_labels(meta.get("labels"), "spec.template.labels")
            errs += validate_annotations(meta.get("annotations"), "spec.template.annotations")
    pod_spec: Obj = (spec.get("template") or {}).get("spec") or {}
    restart = pod_spec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", restart, ["Always"]))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in StatefulSet is not Supported"))
    return errs


def validate_statefulset(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateStatefulSet / ValidateStatefulSetUpdate."""
    spec: Obj = obj.get("spec") or {}
    if old is None:
        return _meta_errors(obj, None) + _validate_statefulset_spec(spec)
    errs = object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
    errs += _validate_statefulset_spec(spec)
    old_spec: Obj = old.get("spec") or {}
    fixed_new = {k: v for k, v in spec.items() if k not in _STATEFULSET_MUTABLE}
    fixed_old = {k: v for k, v in old_spec.items() if k not in _STATEFULSET_MUTABLE}
    if not semantic_equal(fixed_new, fixed_old):
        errs.append(forbidden("spec", STATEFULSET_UPDATE_FORBIDDEN))
    return errs


# -- DaemonSet ------------------------------------------------------------------------------------


def _go_ds_strategy(strategy: Obj) -> str:
    rolling = strategy.get("rollingUpdate")
    pointer = "(*apps.RollingUpdateDaemonSet)(nil)" if rolling is None else "(*apps.RollingUpdateDaemonSet)(0xc000000000)"
    return f'&apps.DaemonSetUpdateStrategy{{Type:"{strategy.get("type") or ""}", RollingUpdate:{pointer}}}'


def _validate_ds_strategy(strategy: Obj) -> list[FieldError]:
    """ValidateDaemonSetUpdateStrategy and ValidateRollingUpdateDaemonSet."""
    path = "spec.updateStrategy"
    kind = strategy.get("type") or ""
    if kind == "OnDelete":
        return []
    if kind != "RollingUpdate":
        return [FieldError(ErrorType.NOT_SUPPORTED, path,
                           detail=f'{_go_ds_strategy(strategy)}: supported values: "RollingUpdate", "OnDelete"')]
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        return [required(f"{path}.rollingUpdate")]
    path = f"{path}.rollingUpdate"
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    errs = validate_positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += validate_positive_int_or_percent(surge, f"{path}.maxSurge")
    errs += _not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    errs += _not_more_than_100_percent(surge, f"{path}.maxSurge")
    has_unavailable, has_surge = int_or_percent(unavailable)[0] != 0, int_or_percent(surge)[0] != 0
    if has_unavailable and has_surge:
        errs.append(go_literal(ErrorType.INVALID, f"{path}.maxSurge", _int_or_string(surge),
                               "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def _validate_daemonset_spec(spec: Obj) -> list[FieldError]:
    """ValidateDaemonSetSpec, in its order."""
    from kubelite.api.labels import SelectorError, selector_from_label_selector  # circular at module level

    errs: list[FieldError] = []
    selector = spec.get("selector")
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        errs += validate_label_selector(selector, "spec.selector")
    try:
        parsed = selector_from_label_selector(selector) if selector is not None else None
    except (SelectorError, ValueError):
        parsed = None
    labels = _template_labels(spec)
    if parsed is not None and not parsed.matches(labels or {}):
        errs.append(go_literal(ErrorType.INVALID, "spec.template.metadata.labels", go_string_map(labels),
                               "`selector` does not match template `labels`"))
    if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(selector),
                               "empty selector is invalid for daemonset"))
    errs += validate_pod_template(spec.get("template") or {}, "spec.template")
    pod_spec: Obj = (spec.get("template") or {}).get("spec") or {}
    restart = pod_spec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", restart, ["Always"]))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.append(invalid("spec.template.spec.activeDeadlineSeconds", pod_spec["activeDeadlineSeconds"],
                            "activeDeadlineSeconds must be nil for daemonset"))
    errs += validate_nonnegative(int(spec.get("minReadySeconds") or 0), "spec.minReadySeconds")
    errs += _validate_ds_strategy(spec.get("updateStrategy") or {})
    if spec.get("revisionHistoryLimit") is not None:
        errs += validate_nonnegative(int(spec["revisionHistoryLimit"]), "spec.revisionHistoryLimit")
    return errs


def validate_daemonset(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateDaemonSet / ValidateDaemonSetUpdate, plus apps/v1's immutable selector."""
    spec: Obj = obj.get("spec") or {}
    if old is None:
        return _meta_errors(obj, None) + _validate_daemonset_spec(spec)
    errs = object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
    errs += _validate_daemonset_spec(spec)
    new_sel, old_sel = spec.get("selector"), (old.get("spec") or {}).get("selector")
    if (new_sel or None) != (old_sel or None):
        errs.append(go_literal(ErrorType.INVALID, "spec.selector", go_label_selector(new_sel), "field is immutable"))
    return errs


# -- ControllerRevision ---------------------------------------------------------------------------


def validate_controller_revision(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateControllerRevision / ValidateControllerRevisionUpdate: data is required and immutable."""
    errs = _meta_errors(obj, None) if old is None else object_meta_update(obj.get("metadata") or {},
                                                                          old.get("metadata") or {})
    if obj.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    errs += validate_nonnegative(int(obj.get("revision") or 0), "revision")
    if old is not None and not semantic_equal(obj.get("data"), old.get("data")):
        errs.append(go_literal(ErrorType.INVALID, "data", "runtime.RawExtension{...}", "field is immutable"))
    return errs
