"""Validation of the small core kinds: ConfigMap, Secret, Namespace, ServiceAccount, Event, Lease.

The counterpart of the matching parts of Kubernetes' ``pkg/apis/core/validation`` (and
``pkg/apis/coordination/validation`` for Lease). Each validator takes the new object and,
for an update, the stored one, and returns field errors in Kubernetes' words; the checks
are those that a client can trip over (bad keys, sizes, required data per Secret type,
immutability), not a full port.

Objects are the external (v1) JSON a client sends, so a few conversions Kubernetes makes
before validating are made here too: a Secret's ``stringData`` counts as ``data`` and its
missing ``type`` is ``Opaque``; an events.k8s.io Event is read through its core names, which
are the names its errors use.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubelite.api.errors import ErrorType, FieldError, forbidden, invalid, not_supported, required, too_long
from kubelite.api.validation.meta import (
    FIELD_IMMUTABLE,
    KindValidator,
    StringerError,
    go_time,
    validate_object_meta,
    validate_object_meta_update,
)
from kubelite.api.validation.names import (
    NameValidator,
    is_config_map_key,
    is_dns1123_subdomain,
    is_qualified_name,
    name_is_dns_label,
    name_is_dns_subdomain,
)

MAX_SECRET_SIZE = 1024 * 1024  # also the ConfigMap limit
_STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})
_IMMUTABLE_SET = "field is immutable when `immutable` is set"

Obj = Mapping[str, Any]


def _kube_finalizer_name(value: str, path: str) -> list[FieldError]:
    """The core group's extra rule: a finalizer without a domain must be a standard one."""
    if "/" not in value and value not in _STANDARD_FINALIZERS:
        return [invalid(path, value, "name is neither a standard finalizer name nor is it fully qualified")]
    return []


def object_meta(meta: Obj, *, namespaced: bool, name_validator: NameValidator) -> list[FieldError]:
    """core validation.ValidateObjectMeta: apimachinery's checks plus the finalizer rule."""
    errs = validate_object_meta(meta, namespaced=namespaced, name_validator=name_validator)
    for i, f in enumerate(meta.get("finalizers") or []):
        errs.extend(_kube_finalizer_name(f, f"metadata.finalizers[{i}]"))
    return errs


def object_meta_update(new: Obj, old: Obj) -> list[FieldError]:
    """core validation.ValidateObjectMetaUpdate."""
    errs = validate_object_meta_update(new, old)
    for i, f in enumerate(new.get("finalizers") or []):
        errs.extend(_kube_finalizer_name(f, f"metadata.finalizers[{i}]"))
    return errs


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _decoded_size(value: str) -> int:
    """Bytes of a base64 field once decoded (how Kubernetes measures Secret and binaryData sizes)."""
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        # The JSON decoding layer rejects bad base64; if it let one through, count it as sent.
        return len(value.encode())


def _immutable_fields(new: Obj, old: Obj, fields: Sequence[str]) -> list[FieldError]:
    """Data bags frozen by ``immutable: true`` on the stored object."""
    errs: list[FieldError] = []
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(forbidden("immutable", _IMMUTABLE_SET))
        errs.extend(forbidden(f, _IMMUTABLE_SET) for f in fields if (new.get(f) or {}) != (old.get(f) or {}))
    return errs


def validate_config_map(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if old is not None:
        errs += object_meta_update(_meta(obj), _meta(old))
        errs += _immutable_fields(obj, old, ("data", "binaryData"))
    # An update runs the create checks on the new object too, as ValidateConfigMapUpdate does.
    errs += object_meta(_meta(obj), namespaced=True, name_validator=name_is_dns_subdomain)
    data: Mapping[str, str] = obj.get("data") or {}
    binary: Mapping[str, str] = obj.get("binaryData") or {}
    total = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += len(value.encode())
    for key, value in binary.items():
        errs.extend(invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key))
        total += _decoded_size(value)
    if total > MAX_SECRET_SIZE:
        # Kubernetes reports this one against the whole object: an empty field path.
        errs.append(too_long("", "", MAX_SECRET_SIZE))
    return errs


def _go_json_error(raw: bytes) -> str | None:
    """Why Go's json.Unmarshal into a map would fail on raw, in Go's words (common cases)."""
    try:
        value = json.loads(raw)
    except ValueError as e:
        text = raw.decode(errors="replace")
        pos = getattr(e, "pos", len(text))
        if not text.strip() or pos >= len(text):
            return "unexpected end of JSON input"
        msg = getattr(e, "msg", "")
        context = {
            "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
            "Expecting ':' delimiter": "after object key",
            "Extra data": "after top-level value",
        }.get(msg, "looking for beginning of value")
        return f"invalid character '{text[pos]}' {context}"
    go_types = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}
    for py_type, go_type in go_types.items():
        if isinstance(value, py_type):
            return f"json: cannot unmarshal {go_type} into Go value of type map[string]interface {{}}"
    return None


def _secret_data(secret: Obj) -> dict[str, bytes]:
    data = {k: _decoded(v) for k, v in (secret.get("data") or {}).items()}
    # stringData overwrites data, as the v1 -> internal conversion does before validation.
    data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def _decoded(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value.encode()


def _secret_type(secret: Obj) -> str:
    return secret.get("type") or "Opaque"


def validate_secret(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if old is not None:
        errs += object_meta_update(_meta(obj), _meta(old))
        if _secret_type(obj) != _secret_type(old):
            errs.append(invalid("type", _secret_type(obj), FIELD_IMMUTABLE))
        errs += _immutable_fields(obj, old, ("data",))
    errs += object_meta(_meta(obj), namespaced=True, name_validator=name_is_dns_subdomain)
    data = _secret_data(obj)
    total = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        total += len(value)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", "", MAX_SECRET_SIZE))
    secret_type = _secret_type(obj)
    annotations = _meta(obj).get("annotations") or {}
    if secret_type == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif secret_type in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if secret_type == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            errs.append(required(f"data[{key}]"))
        elif (problem := _go_json_error(data[key])) is not None:
            errs.append(invalid(f"data[{key}]", "<secret contents redacted>", problem))
    elif secret_type == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs += [required("data[username]"), required("data[password]")]
    elif secret_type == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(required("data[ssh-privatekey]"))
    elif secret_type == "kubernetes.io/tls":
        errs.extend(required(f"data[{k}]") for k in ("tls.crt", "tls.key") if k not in data)
    return errs


def validate_namespace(obj: Obj, old: Obj | None) -> list[FieldError]:
    if old is not None:
        return object_meta_update(_meta(obj), _meta(old))
    errs = object_meta(_meta(obj), namespaced=False, name_validator=name_is_dns_label)
    for f in (obj.get("spec") or {}).get("finalizers") or []:
        errs.extend(invalid("spec.finalizers", f, m) for m in is_qualified_name(f))
        errs.extend(_kube_finalizer_name(f, "spec.finalizers"))
    return errs


def validate_service_account(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = [] if old is None else object_meta_update(_meta(obj), _meta(old))
    return errs + object_meta(_meta(obj), namespaced=True, name_validator=name_is_dns_subdomain)


# -- Events ------------------------------------------------------------------------------

_REPORTING_INSTANCE_LIMIT = _ACTION_LIMIT = _REASON_LIMIT = 128
_NOTE_LIMIT = 1024


def _internal_event(obj: Obj, events_api: bool) -> dict[str, Any]:
    """The fields of the internal Event, read from either API's JSON."""
    if not events_api:
        return {**obj, "reportingController": obj.get("reportingComponent") or ""}
    return {
        **obj,
        "involvedObject": obj.get("regarding") or {},
        "message": obj.get("note") or "",
        "source": obj.get("deprecatedSource") or {},
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount") or 0,
    }


def _legacy_event(event: Obj, namespace: str) -> list[FieldError]:
    errs: list[FieldError] = []
    involved_ns = (event.get("involvedObject") or {}).get("namespace") or ""
    mismatch = invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not event.get("eventTime"):
        if (not involved_ns and namespace not in ("", "default")) or (involved_ns and namespace != involved_ns):
            errs.append(mismatch)
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(mismatch)
        controller = event.get("reportingController") or ""
        if not controller:
            errs.append(required("reportingController"))
        errs.extend(invalid("reportingController", controller, m) for m in is_qualified_name(controller))
        for field, limit in (("reportingInstance", _REPORTING_INSTANCE_LIMIT), ("action", _ACTION_LIMIT),
                             ("reason", _REASON_LIMIT)):
            value = event.get(field) or ""
            if not value:
                errs.append(required(field))
            if len(value.encode()) > limit:
                errs.append(invalid(field, "", f"can have at most {limit} characters"))
        if len((event.get("message") or "").encode()) > _NOTE_LIMIT:
            errs.append(invalid("message", "", f"can have at most {_NOTE_LIMIT} characters"))
    errs.extend(invalid("namespace", namespace, m) for m in is_dns1123_subdomain(namespace))
    return errs


def _event_series(event: Obj) -> list[FieldError]:
    series = event.get("series")
    if series is None:
        return []
    errs: list[FieldError] = []
    if (series.get("count") or 0) < 2:
        errs.append(invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        errs.append(required("series.lastObservedTime"))
    return errs


_EVENT_IMMUTABLE = ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
                    "count", "type", "eventTime", "action", "related", "reportingController",
                    "reportingInstance")
_EVENT_TIMES = frozenset({"firstTimestamp", "lastTimestamp", "eventTime"})


def _event_immutable(new: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    for field in _EVENT_IMMUTABLE:
        a, b = new.get(field), old.get(field)
        if (a or None) == (b or None):
            continue
        if field in _EVENT_TIMES:
            errs.append(StringerError(ErrorType.INVALID, field, go_time(a), FIELD_IMMUTABLE))
        else:
            errs.append(invalid(field, a, FIELD_IMMUTABLE))
    return errs


def _validate_event(obj: Obj, old: Obj | None, events_api: bool) -> list[FieldError]:
    event = _internal_event(obj, events_api)
    namespace = _meta(obj).get("namespace") or ""
    errs = _legacy_event(event, namespace)
    if not events_api:
        # Through core/v1 only the legacy rules apply, for old clients' sake.
        return errs
    if old is not None:
        old_event = _internal_event(old, events_api)
        errs += object_meta_update(_meta(obj), _meta(old))
        if event.get("series") != old_event.get("series"):
            errs += _event_series(event)
        return errs + _event_immutable(event, old_event)
    errs += object_meta(_meta(obj), namespaced=True, name_validator=name_is_dns_subdomain)
    errs += _event_series(event)
    if not event.get("eventTime"):
        errs.append(required("eventTime"))
    if event.get("type") not in ("Normal", "Warning"):
        errs.append(invalid("type", "", f"has invalid value: {event.get('type') or ''}"))
    for field in ("firstTimestamp", "lastTimestamp", "count"):
        if event.get(field):
            errs.append(invalid(field, "", "needs to be unset"))
    source = event.get("source") or {}
    if source.get("component") or source.get("host"):
        errs.append(invalid("source", "", "needs to be unset"))
    return errs


def validate_core_event(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _validate_event(obj, old, events_api=False)


def validate_events_event(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _validate_event(obj, old, events_api=True)


# -- Lease (coordination.k8s.io) -----------------------------------------------------------

_LEASE_STRATEGIES = ("OldestEmulationVersion",)


def validate_lease(obj: Obj, old: Obj | None) -> list[FieldError]:
    # Lease uses apimachinery's metadata rules directly, without the core finalizer rule.
    if old is None:
        errs = validate_object_meta(_meta(obj), namespaced=True, name_validator=name_is_dns_subdomain)
    else:
        errs = validate_object_meta_update(_meta(obj), _meta(old))
    spec = obj.get("spec") or {}
    duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
    if duration is not None and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    if transitions is not None and transitions < 0:
        errs.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if strategy is not None:
        # Kubernetes appends "strategy" to a path that already ends with it.
        path = "spec.strategy.strategy"
        if "/" not in strategy:
            if strategy not in _LEASE_STRATEGIES:
                errs.append(not_supported(path, strategy, _LEASE_STRATEGIES))
        else:
            errs.extend(invalid(path, strategy, m) for m in is_qualified_name(strategy))
    if spec.get("preferredHolder") and not strategy:
        errs.append(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("", "ConfigMap"): validate_config_map,
    ("", "Secret"): validate_secret,
    ("", "Namespace"): validate_namespace,
    ("", "ServiceAccount"): validate_service_account,
    ("", "Event"): validate_core_event,
    ("events.k8s.io", "Event"): validate_events_event,
    ("coordination.k8s.io", "Lease"): validate_lease,
}
