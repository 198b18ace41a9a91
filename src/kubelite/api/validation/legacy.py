"""ReplicationController and PodTemplate validation, after ``pkg/apis/core/validation``.

The two core/v1 kinds that predate apps/v1: a ReplicationController's selector is a plain
label map (required, and matching the template's labels), its template must restart
Always; a PodTemplate is a named pod template, checked as every template is (by
:mod:`kubelite.api.validation.pod` with ``template`` paths). Unlike apps/v1, an RC's
selector may change after creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import ErrorType, FieldError, forbidden, not_supported, required
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_labels
from kubelite.api.validation.names import name_is_dns_subdomain
from kubelite.api.validation.pod import validate_pod_template
from kubelite.api.validation.service import go_literal, go_string_map, validate_nonnegative

Obj = Mapping[str, Any]


def _meta_errors(obj: Obj, old: Obj | None) -> list[FieldError]:
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        return object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    return object_meta_update(meta, old.get("metadata") or {})


def _template_for_rc(template: Obj | None, selector: Mapping[str, str]) -> list[FieldError]:
    """ValidatePodTemplateSpecForRC."""
    path = "spec.template"
    if template is None:
        return [required(path)]
    errs: list[FieldError] = []
    labels: Mapping[str, str] = (template.get("metadata") or {}).get("labels") or {}
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        errs.append(go_literal(ErrorType.INVALID, f"{path}.metadata.labels", go_string_map(labels or None),
                               "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, path)
    spec: Obj = template.get("spec") or {}
    restart = spec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(not_supported(f"{path}.spec.restartPolicy", restart, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden(f"{path}.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicationController is not Supported"))
    return errs


def validate_replication_controller(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateReplicationController / ValidateReplicationControllerUpdate."""
    errs = _meta_errors(obj, old)
    spec: Obj = obj.get("spec") or {}
    selector: Mapping[str, str] = spec.get("selector") or {}
    errs += validate_nonnegative(spec.get("minReadySeconds") or 0, "spec.minReadySeconds")
    if not selector:
        errs.append(required("spec.selector"))
    else:
        errs += validate_labels(selector, "spec.selector")
    errs += validate_nonnegative(spec.get("replicas") or 0, "spec.replicas")
    errs += _template_for_rc(spec.get("template"), selector)
    return errs


def validate_pod_template_kind(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePodTemplate / ValidatePodTemplateUpdate (the kind PodTemplate)."""
    errs = _meta_errors(obj, old)
    template = obj.get("template")
    if template is None:
        # The Go struct is never nil: an absent template is an empty one, whose containers
        # are then required.
        template = {}
    errs += validate_pod_template(template, "template")
    return errs
