"""Errors in Kubernetes' own shapes and words.

kubectl and the client libraries do not just show an error's text: they branch on the
``Status`` object's ``reason`` and ``code`` (``IsNotFound``, ``IsConflict``...), and kubectl
rebuilds the "is invalid" message from ``details.causes``. So every failure the API server
reports is a :class:`StatusError` carrying exactly the Status a real kube-apiserver would
send, and validation collects :class:`FieldError` values rendered as apimachinery's
``field.Error`` renders them (``spec.ports[0].port: Invalid value: 70000: must be ...``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


class ErrorType(enum.Enum):
    """field.ErrorType: the value is the text, the second item the Status cause reason."""

    NOT_FOUND = ("Not found", "FieldValueNotFound")
    REQUIRED = ("Required value", "FieldValueRequired")
    DUPLICATE = ("Duplicate value", "FieldValueDuplicate")
    INVALID = ("Invalid value", "FieldValueInvalid")
    NOT_SUPPORTED = ("Unsupported value", "FieldValueNotSupported")
    FORBIDDEN = ("Forbidden", "FieldValueForbidden")
    TOO_LONG = ("Too long", "FieldValueTooLong")
    TOO_MANY = ("Too many", "FieldValueTooMany")
    INTERNAL = ("Internal error", "InternalError")
    TYPE_INVALID = ("Invalid value", "FieldValueTypeInvalid")

    @property
    def text(self) -> str:
        return self.value[0]

    @property
    def reason(self) -> str:
        return self.value[1]


_OMIT = object()
# Types whose bad value apimachinery never prints, only the type's text.
_VALUELESS = {ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG, ErrorType.INTERNAL}


def go_value(value: Any) -> str:
    """Render a bad value the way Go's fmt does in field errors (%v for scalars, %q for strings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, bytes):
        # Go's %#v of a []byte (a CSR's spec.request): []byte{0x2d, 0x2d, ...}.
        return "[]byte{" + ", ".join(f"0x{b:x}" for b in value) + "}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        # Go's %#v of a []string, as kube-apiserver prints `spec.clusterIPs: Invalid value: []string{"10.96.0.5"}`.
        return "[]string{" + ", ".join(orjson.dumps(v).decode() for v in value) + "}"
    if isinstance(value, (list, tuple)):
        return orjson.dumps(list(value)).decode()
    return orjson.dumps(value, default=str).decode()


@dataclass(frozen=True)
class FieldError:
    """One validation cause: a field path, what is wrong, the bad value and a detail."""

    type: ErrorType
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        if self.type in _VALUELESS or self.value is _OMIT:
            s = self.type.text
        else:
            s = f"{self.type.text}: {go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        # Go's field.Error always prints "%s: %s", even for an empty path (": Too long: ...").
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.type.reason, "message": self.body(), "field": self.field}


# Constructors named after apimachinery's field.Required, field.Invalid... so that code
# translated from reading Kubernetes' validation reads the same.
def required(path: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, path, _OMIT, detail)


def invalid(path: str, value: Any, detail: str = "") -> FieldError:
    return FieldError(ErrorType.INVALID, path, value, detail)


def forbidden(path: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.FORBIDDEN, path, _OMIT, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(ErrorType.DUPLICATE, path, value)


def not_found(path: str, value: Any) -> FieldError:
    return FieldError(ErrorType.NOT_FOUND, path, value)


def too_long(path: str, value: Any, max_len: int) -> FieldError:
    return FieldError(ErrorType.TOO_LONG, path, value, f"must have at most {max_len} bytes")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError(ErrorType.TOO_MANY, path, actual, f"must have at most {max_items} items")


def not_supported(path: str, value: Any, supported: Sequence[str]) -> FieldError:
    detail = "supported values: " + ", ".join(orjson.dumps(s).decode() for s in supported)
    return FieldError(ErrorType.NOT_SUPPORTED, path, value, detail)


def aggregate(messages: Iterable[str]) -> str:
    """utilerrors.Aggregate's text: one message as is, several as ``[a, b]``, duplicates once."""
    seen: list[str] = []
    for m in messages:
        if m not in seen:
            seen.append(m)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


@dataclass
class StatusError(Exception):
    """A failure to report to the client as a ``Status`` object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        # The order of metav1.Status' Go fields, which its JSON follows: clients that compare
        # an error body byte for byte with a real server's see the same bytes.
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:  # Kubernetes omits an empty reason (omitempty)
            st["reason"] = self.reason
        if self.details is not None:  # a generic 404 has "details":{}, a BadRequest none
            st["details"] = self.details
        st["code"] = self.code
        return st


def _details(resource: str, group: str, name: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = resource
    d.update(extra)
    return d


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found_error(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', _details(resource, group, name)
    )


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        _details(resource, group, name),
    )


CONFLICT_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(resource: str, name: str, detail: str = CONFLICT_MODIFIED, group: str = "") -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        _details(resource, group, name),
    )


def invalid_error(kind: str, name: str, errors: Sequence[FieldError], group: str = "") -> StatusError:
    """StatusError for 422 Invalid, as apierrors.NewInvalid builds it."""
    qualified = f"{kind}.{group}" if group else kind
    msg = f'{qualified} "{name}" is invalid: {aggregate(str(e) for e in errors)}'
    details = _details(kind, group, name, causes=[e.cause() for e in errors])
    return StatusError(422, "Invalid", msg, details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden_error(resource: str, name: str, message: str, group: str = "") -> StatusError:
    what = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    return StatusError(403, "Forbidden", f"{what} is forbidden: {message}", _details(resource, group, name))


def method_not_allowed() -> StatusError:
    return StatusError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def unsupported_media_type(accepted: Sequence[str]) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
    )


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def too_large(message: str = "Request entity too large: limit is 3145728") -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")
