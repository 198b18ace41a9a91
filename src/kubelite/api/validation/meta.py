"""ObjectMeta validation, as apimachinery's ``api/validation/objectmeta.go`` does it.

Every kind runs these checks, so their messages are the ones users meet most: a missing
name, a bad label, an annotation too large, a second controller owner, a name changed in an
update. The functions take plain metadata dicts and return :class:`FieldError` lists so a
kind's validator can add its own errors to the same list, in Kubernetes' order.

The core API group adds a finalizer rule on top of these (see ``core.py``); the Lease API,
like Kubernetes', does not. The label and label-selector checks of metav1 live here as well,
for specs (Deployments, ReplicaSets) that carry a selector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubelite.api.errors import ErrorType, FieldError, forbidden, go_value, invalid, required, too_long
from kubelite.api.validation.names import (
    NameValidator,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns_label,
)

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
FIELD_IMMUTABLE = "field is immutable"
_FIELD_MANAGER_MAX_LENGTH = 128
_BANNED_OWNERS = {("", "v1", "Event")}
_ORPHAN, _FOREGROUND = "orphan", "foregroundDeletion"

# What a kind's validator is: (new object, stored object or None on create) -> errors.
KindValidator = Callable[[Mapping[str, Any], Mapping[str, Any] | None], list[FieldError]]


class StringerError(FieldError):
    """An error whose value is already rendered as Go prints it, so shown unquoted.

    For values Go prints with a String() method (timestamps: ``Invalid value: 2024-05-01
    10:00:00 +0000 UTC``) or with ``%#v`` (``Invalid value: []string{"a"}``), unlike strings,
    which Go quotes.
    """

    def body(self) -> str:
        return f"{self.type.text}: {self.value}" + (f": {self.detail}" if self.detail else "")


def go_time(value: str | None) -> str:
    """metav1.Time's String(): Go's time.Time layout, in UTC as the API server decodes it."""
    if not value:
        return "0001-01-01 00:00:00 +0000 UTC"
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    frac = f".{t.microsecond:06d}".rstrip("0").rstrip(".") if t.microsecond else ""
    return t.strftime("%Y-%m-%d %H:%M:%S") + frac + " +0000 UTC"


def go_string_slice(values: Iterable[str]) -> str:
    """How Go's ``%#v`` prints a []string, the bad value some errors show."""
    return "[]string{" + ", ".join(go_value(v) for v in values) + "}"


def validate_labels(labels: Mapping[str, str] | None, path: str) -> list[FieldError]:
    """metav1 validation.ValidateLabels: every key a qualified name, every value a label value."""
    errs: list[FieldError] = []
    for k, v in (labels or {}).items():
        errs.extend(invalid(path, k, m) for m in is_qualified_name(k))
        errs.extend(invalid(path, v, m) for m in is_valid_label_value(v))
    return errs


def validate_label_selector(obj: Mapping[str, Any] | None, path: str) -> list[FieldError]:
    """metav1 validation.ValidateLabelSelector, for specs that carry a LabelSelector."""
    if obj is None:
        return []
    errs = validate_labels(obj.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(obj.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator", ""), expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{p}.values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
        key = expr.get("key", "")
        errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
    return errs


def validate_annotations(annotations: Mapping[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for k, v in (annotations or {}).items():
        # Annotation keys are qualified names in any case.
        errs.extend(invalid(path, k, m) for m in is_qualified_name(k.lower()))
        total += len(k.encode()) + len(v.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _group_version(api_version: str) -> tuple[str, str] | None:
    """schema.ParseGroupVersion; None when it would fail (more than one '/')."""
    if not api_version:
        return "", ""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def validate_owner_references(refs: Sequence[Mapping[str, Any]] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    first_controller = ""
    for ref in refs or []:
        api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
        group, version = _group_version(api_version) or ("", "")
        if not version:
            errs.append(invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            errs.append(invalid(f"{path}.kind", kind, "must not be empty"))
        if not ref.get("name"):
            errs.append(invalid(f"{path}.name", ref.get("name", ""), "must not be empty"))
        if not ref.get("uid"):
            errs.append(invalid(f"{path}.uid", ref.get("uid", ""), "must not be empty"))
        if (group, version, kind) in _BANNED_OWNERS:
            errs.append(invalid(path, dict(ref), f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name', '')}"
            if first_controller:
                errs.append(invalid(path, list(refs or []),
                                    "Only one reference can have Controller set to true. "
                                    f'Found "true" in references for {first_controller} and {current}'))
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: Sequence[str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in finalizers or []:
        errs.extend(invalid(path, f, m) for m in is_qualified_name(f))
    if finalizers and _ORPHAN in finalizers and _FOREGROUND in finalizers:
        errs.append(StringerError(ErrorType.INVALID, path, go_string_slice(finalizers),
                                  f"finalizer {_ORPHAN} and {_FOREGROUND} cannot be both set"))
    return errs


def validate_managed_fields(entries: Sequence[Mapping[str, Any]] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, entry in enumerate(entries or []):
        p = f"{path}[{i}]"
        # JSON null decodes into Go's zero value: an empty entry, empty strings.
        entry = entry or {}
        operation = entry.get("operation") or ""
        if operation not in ("Apply", "Update"):
            errs.append(invalid(f"{p}.operation", operation, "must be `Apply` or `Update`"))
        fields_type = entry.get("fieldsType") or ""
        if fields_type and fields_type != "FieldsV1":
            errs.append(invalid(f"{p}.fieldsType", fields_type, "must be `FieldsV1`"))
        manager = entry.get("manager") or ""
        if len(manager.encode()) > _FIELD_MANAGER_MAX_LENGTH:
            errs.append(too_long(f"{p}.manager", manager, _FIELD_MANAGER_MAX_LENGTH))
    return errs


def _common(meta: Mapping[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    """The part of create validation that does not depend on the kind's name rule."""
    errs: list[FieldError] = []
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errs.append(required(f"{path}.namespace"))
        else:
            errs.extend(invalid(f"{path}.namespace", namespace, m) for m in name_is_dns_label(namespace, False))
    elif namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    generation = meta.get("generation") or 0
    if generation < 0:
        errs.append(invalid(f"{path}.generation", generation, "must be greater than or equal to 0"))
    errs.extend(validate_labels(meta.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    errs.extend(validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences"))
    errs.extend(validate_finalizers(meta.get("finalizers"), f"{path}.finalizers"))
    errs.extend(validate_managed_fields(meta.get("managedFields"), f"{path}.managedFields"))
    return errs


def validate_object_meta(
    meta: Mapping[str, Any], *, namespaced: bool, name_validator: NameValidator, path: str = "metadata"
) -> list[FieldError]:
    """ValidateObjectMeta, for a create. Expects name generation to have been done already."""
    errs: list[FieldError] = []
    generate_name = meta.get("generateName") or ""
    if generate_name:
        errs.extend(invalid(f"{path}.generateName", generate_name, m) for m in name_validator(generate_name, True))
    name = meta.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(invalid(f"{path}.name", name, m) for m in name_validator(name, False))
    return errs + _common(meta, namespaced, path)


def _immutable(new: Any, old: Any, path: str) -> list[FieldError]:
    return [] if new == old else [invalid(path, new, FIELD_IMMUTABLE)]


def _immutable_time(new: str | None, old: str | None, path: str, nullable: bool) -> list[FieldError]:
    if (new or None) == (old or None):
        return []
    shown = "null" if nullable and not new else go_time(new)
    return [StringerError(ErrorType.INVALID, path, shown, FIELD_IMMUTABLE)]


def validate_object_meta_update(
    new: Mapping[str, Any], old: Mapping[str, Any], path: str = "metadata"
) -> list[FieldError]:
    """ValidateObjectMetaAccessorUpdate: identity fields are immutable, the rest revalidated.

    Expects what the API server's update path does before validation: resourceVersion set
    (to the stored one for an unconditional update), and creationTimestamp, deletion
    fields and uid carried over from the stored object when the client left them out.
    """
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        added = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if added:
            errs.append(forbidden(f"{path}.finalizers",
                                  "no new finalizers can be added if the object is being deleted, "
                                  f"found new finalizers {go_string_slice(added)}"))
    if not new.get("resourceVersion"):
        errs.append(invalid(f"{path}.resourceVersion", new.get("resourceVersion") or "",
                            "must be specified for an update"))
    new_generation = new.get("generation") or 0
    if new_generation < (old.get("generation") or 0):
        errs.append(invalid(f"{path}.generation", new_generation, "must not be decremented"))
    for field in ("name", "namespace", "uid"):
        errs.extend(_immutable(new.get(field) or "", old.get(field) or "", f"{path}.{field}"))
    errs.extend(_immutable_time(new.get("creationTimestamp"), old.get("creationTimestamp"),
                                f"{path}.creationTimestamp", nullable=False))
    errs.extend(_immutable_time(new.get("deletionTimestamp"), old.get("deletionTimestamp"),
                                f"{path}.deletionTimestamp", nullable=True))
    errs.extend(_immutable(new.get("deletionGracePeriodSeconds"), old.get("deletionGracePeriodSeconds"),
                           f"{path}.deletionGracePeriodSeconds"))
    errs.extend(validate_labels(new.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(new.get("annotations"), f"{path}.annotations"))
    errs.extend(validate_owner_references(new.get("ownerReferences"), f"{path}.ownerReferences"))
    errs.extend(validate_managed_fields(new.get("managedFields"), f"{path}.managedFields"))
    return errs
