"""Strict decoding of request bodies, as kube-apiserver's JSON decoder does it.

kube-apiserver decodes a body into the kind's Go struct. That one step reports three things
users see: JSON values of the wrong type (a 400, ``json: cannot unmarshal string into Go struct
field ServicePort.spec.ports.port of type int32``), and, under ``fieldValidation``, fields the
struct does not have (``unknown field "spec.containers[0].foo"``) and keys given twice
(``duplicate field "metadata.name"``). kubelite keeps objects as plain dicts, so it walks the
body against the kind's OpenAPI schema instead, compiled once per kind into a tree of small
node objects. The walk reproduces the Go decoder's order and wording: strict errors in
document order, deduplicated, at most 100; only the first type error, unless a custom
unmarshaller (int-or-string, quantity, time) fails, which stops decoding at once.

Duplicate keys vanish when JSON is parsed into a dict, so :func:`decode` compares the number
of object keys in the raw body with the number in the parsed object (byte counts, a few
microseconds) and only when they differ parses again keeping every key/value pair.

Unknown fields are dropped from the object, as decoding into a Go struct drops them, unless
``fieldValidation=Strict`` refuses them; only schema nodes that preserve unknown fields keep
them. Every decoded object is bounded in size (:func:`bounded`), so a body that expands when
decoded (YAML aliases, patches) cannot reach the store bigger than a request may be.

Approximations: Go type names come from schema names, so named string types print as
``string`` (Kubernetes says ``v1.Protocol``); invalid timestamps in strings are accepted.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api import schema
from kubelite.api.errors import bad_request, invalid, invalid_error, too_large

MAX_OBJECT_BYTES = 3 * 1024 * 1024  # kube-apiserver's request body limit, applied after decoding too
_MAX_STRICT_ERRORS = 100  # sigs.k8s.io/json stops collecting there
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_QUANTITY_FORMAT = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_QUANTITY_RE = re.compile(r"([+-]?[0-9]*(?:\.[0-9]*)?)([eEinumkKMGTP]*)([-+]?[0-9]*)")
_QUANTITY_SUFFIXES = frozenset(
    ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E")
)
_SHARED_KINDS = {"DeleteOptions": "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"}
_PAD, _NEWLINES = 0x3D, (0x0A, 0x0D)
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_KEY_END = re.compile(rb'"\s*:')


class _Pairs(list[tuple[str, Any]]):
    """A JSON object kept as its key/value pairs, so that repeated keys stay visible."""


@dataclass(frozen=True)
class StrictError:
    """One field that strict decoding rejects: ``unknown`` or ``duplicate``."""

    reason: str
    path: str

    def __str__(self) -> str:
        return f"{self.reason} field {orjson.dumps(self.path).decode()}"


@dataclass(frozen=True)
class DecodeResult:
    strict_errors: tuple[StrictError, ...] = ()
    # What Go's decoder returns first: a type error fails the request whatever fieldValidation says.
    type_error: str | None = None
    # Where the unknown fields are (the dict and its key): dropped unless the request is refused.
    unknown_at: tuple[tuple[dict[str, Any], str], ...] = field(default=(), compare=False, repr=False)
    # Where JSON null stands for a typed value (container, key or index, Go's zero value).
    null_at: tuple[tuple[Any, Any, Any], ...] = field(default=(), compare=False, repr=False)

    def drop_unknown(self) -> None:
        for container, key in self.unknown_at:
            container.pop(key, None)

    def zero_nulls(self) -> None:
        """Give each null what Go's decoder leaves there: nothing for a struct's field (a nil
        pointer, or a zero value its omitempty drops), the zero value for a map's value or a
        list's item ("" in a map[string]string, {} for a struct in a list). Code after decoding
        then never meets a None where the schema has a type."""
        for container, key, zero in self.null_at:
            if zero is _DROP:
                container.pop(key, None)
            else:
                container[key] = zero

    @property
    def unknown_fields(self) -> list[str]:
        return [e.path for e in self.strict_errors if e.reason == "unknown"]

    @property
    def duplicate_fields(self) -> list[str]:
        return [e.path for e in self.strict_errors if e.reason == "duplicate"]


_DROP = object()  # a struct field's null: the key goes
_KEEP = object()  # raw JSON (and metav1.Time, whose zero encodes as null): null stays


class _Fatal(Exception):
    """A custom UnmarshalJSON failed: Go's decoder returns at once with this error."""


class _State:
    __slots__ = ("go_fields", "go_struct", "null_at", "path", "seen", "strict", "type_error", "unknown_at")

    def __init__(self, kind: str) -> None:
        self.strict: list[StrictError] = []
        self.seen: set[tuple[str, str]] = set()
        self.type_error: str | None = None
        self.path: list[str] = []  # ".spec", "[0]", ".key": the strict error path
        self.go_fields: list[str] = []  # struct fields only: Go's UnmarshalTypeError.Field
        self.go_struct = kind
        self.unknown_at: list[tuple[dict[str, Any], str]] = []
        self.null_at: list[tuple[Any, Any, Any]] = []

    def null(self, container: Any, key: Any, node: _Node) -> None:
        zero = node.zero()
        if zero is not _KEEP:
            self.null_at.append((container, key, zero))

    def strict_error(self, reason: str, key: str) -> None:
        path = ("".join(self.path) + "." + key)[1:]
        if (reason, path) in self.seen or len(self.strict) >= _MAX_STRICT_ERRORS:
            return
        self.seen.add((reason, path))
        self.strict.append(StrictError(reason, path))

    def go_type_error(self, what: str, go_type: str) -> str:
        if not self.go_fields:
            return f"json: cannot unmarshal {what} into Go value of type {go_type}"
        return f"json: cannot unmarshal {what} into Go struct field {self.go_struct}.{'.'.join(self.go_fields)} of type {go_type}"

    def save_type_error(self, what: str, go_type: str) -> None:
        if self.type_error is None:
            self.type_error = self.go_type_error(what, go_type)

    def save_error(self, message: str) -> None:
        if self.type_error is None:
            self.type_error = message


def _json_kind(value: Any) -> str:
    """How Go's decoder names a JSON value it cannot store (UnmarshalTypeError.Value)."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list) and not isinstance(value, _Pairs):
        return "array"
    return "object"


class _Node:
    """A compiled schema node. ``ok`` lists the Python types accepted without a closer look."""

    go_type = ""
    ok: frozenset[type] = frozenset()

    def walk(self, value: Any, st: _State) -> None:
        raise NotImplementedError

    def zero(self) -> Any:
        """What a JSON null decodes to, in a map or a list (a fresh object each time)."""
        return _KEEP


class _Any(_Node):
    ok = frozenset((str, int, float, bool, dict, list, _Pairs))

    def walk(self, value: Any, st: _State) -> None:
        return


class _String(_Node):
    go_type = "string"
    ok = frozenset((str,))

    def zero(self) -> Any:
        return ""

    def walk(self, value: Any, st: _State) -> None:
        st.save_type_error(_json_kind(value), self.go_type)


class _Bool(_Node):
    go_type = "bool"
    ok = frozenset((bool,))

    def zero(self) -> Any:
        return False

    def walk(self, value: Any, st: _State) -> None:
        st.save_type_error(_json_kind(value), self.go_type)


class _Float(_Node):
    go_type = "float64"
    ok = frozenset((int, float))

    def zero(self) -> Any:
        return 0

    def walk(self, value: Any, st: _State) -> None:
        st.save_type_error(_json_kind(value), self.go_type)


class _Int(_Node):
    def __init__(self, bits: int) -> None:
        self.go_type = f"int{bits}"
        self.low, self.high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def zero(self) -> Any:
        return 0

    def walk(self, value: Any, st: _State) -> None:
        if type(value) is int:
            if not self.low <= value <= self.high:
                st.save_type_error(f"number {value}", self.go_type)
        elif type(value) is float:
            st.save_type_error(f"number {value}", self.go_type)
        else:
            st.save_type_error(_json_kind(value), self.go_type)


class _Bytes(_Node):
    """``format: byte``: Go decodes the string as standard base64."""

    go_type = "[]uint8"

    def zero(self) -> Any:
        return ""

    def walk(self, value: Any, st: _State) -> None:
        if type(value) is not str:
            st.save_type_error(_json_kind(value), self.go_type)
            return
        offset = _base64_error(value.encode())
        if offset is not None:
            st.save_error(f"illegal base64 data at input byte {offset}")


def _base64_error(src: bytes) -> int | None:
    """Where Go's base64.StdEncoding.Decode fails on ``src`` (its CorruptInputError), or None."""
    si, n = 0, len(src)
    while si < n:
        j = 0  # 6-bit groups of the current 4-character quantum
        while j < 4:
            if si == n:
                return si - j if j else None  # StdEncoding wants padding: no short last quantum
            c = src[si]
            si += 1
            if c in _B64:
                j += 1
            elif c in _NEWLINES:
                continue
            elif c != _PAD or j < 2:
                return si - 1
            else:
                if j == 2:  # a second "=" must follow
                    while si < n and src[si] in _NEWLINES:
                        si += 1
                    if si == n:
                        return n
                    if src[si] != _PAD:
                        return si - 1
                    si += 1
                while si < n and src[si] in _NEWLINES:
                    si += 1
                return si if si < n else None  # nothing may follow the padding
    return None


class _IntOrString(_Node):
    """intstr.IntOrString.UnmarshalJSON: a string, else json.Unmarshal into an int32."""

    ok = frozenset((str,))

    def zero(self) -> Any:
        return 0

    def walk(self, value: Any, st: _State) -> None:
        if type(value) is int and -(1 << 31) <= value < (1 << 31):
            return
        what = f"number {value}" if type(value) in (int, float) else _json_kind(value)
        st.type_error = st.go_type_error(what, "int32")
        raise _Fatal


class _Quantity(_Node):
    """resource.Quantity.UnmarshalJSON: ParseQuantity of the string or of the raw JSON text."""

    go_type = "resource.Quantity"

    def zero(self) -> Any:
        return "0"

    def walk(self, value: Any, st: _State) -> None:
        text = value if type(value) is str else orjson.dumps(value).decode()
        error = _quantity_error(text.strip())
        if error:
            st.type_error = error
            raise _Fatal


def _quantity_error(text: str) -> str | None:
    if text == "0":
        return None
    m = _QUANTITY_RE.fullmatch(text)
    if not m or not any(c.isdigit() for c in m.group(1)):
        return _QUANTITY_FORMAT
    letters, exponent = m.group(2), m.group(3)
    if letters in ("e", "E") and exponent.lstrip("+-").isdigit():
        return None
    if exponent or letters not in _QUANTITY_SUFFIXES:
        return "unable to parse quantity's suffix"
    return None


class _Time(_Node):
    """metav1.Time.UnmarshalJSON: strconv.Unquote fails on anything but a JSON string."""

    ok = frozenset((str,))

    def walk(self, value: Any, st: _State) -> None:
        st.type_error = "invalid syntax"
        raise _Fatal


class _List(_Node):
    def __init__(self, item: _Node) -> None:
        self.item = item
        self.go_type = "[]" + item.go_type

    def zero(self) -> Any:
        return []

    def walk(self, value: Any, st: _State) -> None:
        if type(value) is not list:
            st.save_type_error(_json_kind(value), self.go_type)
            return
        item, ok, path = self.item, self.item.ok, st.path
        for i, v in enumerate(value):
            if v is None:
                st.null(value, i, item)
                continue
            if type(v) in ok:
                continue
            path.append(f"[{i}]")
            item.walk(v, st)
            path.pop()


class _Map(_Node):
    def __init__(self, value: _Node, go_type: str) -> None:
        self.value = value
        self.go_type = go_type

    def zero(self) -> Any:
        return {}

    def walk(self, value: Any, st: _State) -> None:
        kind = type(value)
        if kind is dict:
            pairs: Iterable[tuple[str, Any]] = value.items()
        elif kind is _Pairs:
            pairs = _check_duplicates(value, st, lambda _: True)
        else:
            st.save_type_error(_json_kind(value), self.go_type)
            return
        node, ok, path = self.value, self.value.ok, st.path
        for key, v in pairs:
            if v is None:
                if kind is dict:
                    st.null(value, key, node)
                continue
            if type(v) in ok:
                continue
            path.append("." + key)
            node.walk(v, st)
            path.pop()


class _Struct(_Node):
    def __init__(self, name: str, go_type: str) -> None:
        self.name = name
        self.go_type = go_type
        self.fields: dict[str, _Node] = {}
        # Fields that are Go structs, not pointers: null decodes into their zero value, {}.
        self.value_structs: frozenset[str] = frozenset()

    def zero(self) -> Any:
        return {}

    def walk(self, value: Any, st: _State) -> None:
        kind = type(value)
        fields = self.fields
        if kind is dict:
            pairs: Iterable[tuple[str, Any]] = value.items()
        elif kind is _Pairs:
            pairs = _check_duplicates(value, st, fields.__contains__)
        else:
            st.save_type_error(_json_kind(value), self.go_type)
            return
        path, go_fields, outer = st.path, st.go_fields, st.go_struct
        for key, v in pairs:
            node = fields.get(key)
            if node is None:
                st.strict_error("unknown", key)
                if kind is dict:
                    st.unknown_at.append((value, key))
                continue
            if v is None:
                if kind is dict and node.zero() is not _KEEP:
                    st.null_at.append((value, key, {} if key in self.value_structs else _DROP))
                continue
            if type(v) in node.ok:
                continue
            path.append("." + key)
            go_fields.append(key)
            st.go_struct = self.name
            node.walk(v, st)
            path.pop()
            go_fields.pop()
            st.go_struct = outer


def _check_duplicates(pairs: _Pairs, st: _State, known: Any) -> Iterable[tuple[str, Any]]:
    """Yield the pairs, reporting a known key the second time it comes, where Go's decoder does."""
    seen: set[str] = set()
    for key, v in pairs:
        if known(key):
            if key in seen:
                st.strict_error("duplicate", key)
            seen.add(key)
        yield key, v


class _Compiler:
    def __init__(self) -> None:
        self.defs = schema.definitions()
        self.named: dict[str, _Node] = {}

    def definition(self, name: str) -> _Node:
        node = self.named.get(name)
        if node is not None:
            return node
        s = self.defs[name]
        if name == _QUANTITY:
            node = _Quantity()
        elif s.get("format") == "int-or-string":
            node = _IntOrString()
        elif s.get("format") == "date-time":
            node = _Time()
        elif "properties" in s:
            pkg, short = name.split(".")[-2:]
            struct = _Struct(short, f"{pkg}.{short}")
            self.named[name] = struct  # before its fields: schemas may refer to themselves
            struct.fields = {k: self.node(v) for k, v in s["properties"].items()}
            return struct
        else:
            node = self.node(s)
        self.named[name] = node
        return node

    def node(self, s: dict[str, Any]) -> _Node:
        if "$ref" in s:
            return self.definition(s["$ref"][len(schema.REF_PREFIX) :])
        if len(s.get("allOf", ())) == 1:
            return self.node(s["allOf"][0])
        if s.get("x-kubernetes-preserve-unknown-fields"):
            return _Any()
        t, fmt = s.get("type"), s.get("format")
        if t == "object":
            if "additionalProperties" not in s:
                return _Any()  # RawExtension, FieldsV1: raw JSON kept as is
            value = self.node(s["additionalProperties"])
            key = "v1.ResourceList" if isinstance(value, _Quantity) else f"map[string]{value.go_type}"
            return _Map(value, key)
        if t == "array":
            return _List(self.node(s["items"]))
        if t == "integer":
            return _Int(32 if fmt == "int32" else 64)
        if t == "number":
            return _Float()
        if t == "boolean":
            return _Bool()
        if t == "string":
            if fmt == "int-or-string":
                return _IntOrString()
            return _Bytes() if fmt == "byte" else _String()
        return _Any()


@functools.cache
def _compiler() -> _Compiler:
    return _Compiler()


@functools.cache
def _root(group: str, version: str, kind: str) -> _Struct | None:
    # DeleteOptions belongs to every group: the schema lists them all, so no single GVK finds it.
    name = schema.definition_name(group, version, kind) or _SHARED_KINDS.get(kind)
    if name is None:
        return None
    compiled = _compiler().definition(name)
    if not isinstance(compiled, _Struct):
        return None
    # apiVersion and kind are read before decoding, by the codec that picks the Go type.
    root = _Struct(compiled.name, compiled.go_type)
    root.fields = {**compiled.fields, "apiVersion": _Any(), "kind": _Any()}
    # A kind's metadata, spec and status are struct values (ObjectMeta, PodSpec, ...) in Go.
    root.value_structs = frozenset(k for k in ("metadata", "spec", "status") if isinstance(root.fields.get(k), _Struct))
    return root


def _run(root: _Struct, obj: Any) -> DecodeResult:
    st = _State(root.name)
    try:
        root.walk(obj, st)
    except _Fatal:
        pass
    return DecodeResult(tuple(st.strict), st.type_error, tuple(st.unknown_at), tuple(st.null_at))


def check(group: str, version: str, kind: str, obj: Any) -> DecodeResult:
    """Unknown fields and type errors of an already parsed object of a served kind.

    Raises LookupError for a kind without a schema.
    """
    root = _root(group, version, kind)
    if root is None:
        raise LookupError(f"no schema for {group}/{version} {kind}")
    return _run(root, obj)


def _key_ends(data: bytes) -> int:
    """Occurrences of a quote followed by a colon: each object key ends so (strings may add some)."""
    if b'" ' in data or b'"\n' in data or b'"\t' in data or b'"\r' in data:
        return len(_KEY_END.findall(data))
    return data.count(b'":')  # compact JSON, as kubectl and client-go send it: ten times faster


def bounded(obj: Any) -> Any:
    """``obj`` if it serializes within :data:`MAX_OBJECT_BYTES`, else kube-apiserver's 413.

    A decoded body may be larger than the bytes it came from (YAML aliases, a patch that
    copies); what is stored or answered must not be. Nesting too deep to serialize is a 400.
    """
    try:
        size = len(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as e:
        raise bad_request(f"the object could not be encoded: {e}") from None
    if size > MAX_OBJECT_BYTES:
        raise too_large()
    return obj


def may_have_duplicate_keys(body: bytes, parsed: Any) -> bool:
    """Whether some JSON object of ``body`` may repeat a key.

    Parsing into dicts drops repeated keys, so the parsed object, serialized again, ends
    fewer keys than the body. Strings are the same on both sides, except for escapes such as
    ``\\u0022`` that orjson writes differently; those can only make this answer True
    without a duplicate, or, combined with duplicates on purpose, hide them.
    """
    return _key_ends(body) != _key_ends(orjson.dumps(parsed))


def decode(group: str, version: str, kind: str, body: bytes) -> tuple[Any, DecodeResult]:
    """Parse a JSON request body and check it as :func:`check` does, duplicate keys included.

    Raises ``orjson.JSONDecodeError`` (a ValueError) on malformed JSON.
    """
    root = _root(group, version, kind)
    if root is None:
        raise LookupError(f"no schema for {group}/{version} {kind}")
    obj = orjson.loads(body)
    try:
        duplicates = may_have_duplicate_keys(body, obj)
    except orjson.JSONEncodeError as e:  # nested deeper than orjson writes (the store could not keep it)
        raise bad_request(f"the object could not be encoded: {e}") from None
    if duplicates:
        result = _run(root, json.loads(body, object_pairs_hook=_Pairs))
        if result.unknown_fields and result.type_error is None:
            # The pairs' walk found them; the dicts to drop them from are obj's.
            on_obj = _run(root, obj)
            result = DecodeResult(result.strict_errors, None, on_obj.unknown_at, on_obj.null_at)
        return obj, result
    return obj, _run(root, obj)


def strict_decoding_error(errors: Iterable[StrictError]) -> str:
    """runtime.NewStrictDecodingError's text."""
    return "strict decoding error: " + ", ".join(str(e) for e in errors)


def enforce(
    result: DecodeResult, directive: str, *, body_kind: str, body_version: str, kind: str
) -> list[str]:
    """Apply ``fieldValidation`` to a create or update body: raise kube-apiserver's error, or
    return the texts of the ``Warning: 299`` headers to send.

    ``body_kind``/``body_version`` are those the body names (or the URL's when it names none),
    ``kind`` the kind the endpoint stores. ``directive`` is ``Strict``, ``Warn`` (the server's
    default when the parameter is absent) or ``Ignore``.
    """
    prefix = f"{body_kind} in version {orjson.dumps(body_version).decode()} cannot be handled as a {kind}: "
    if result.type_error is not None:
        raise bad_request(prefix + result.type_error)
    result.zero_nulls()
    if not result.strict_errors:
        return []
    if directive == "Strict":
        raise bad_request(prefix + strict_decoding_error(result.strict_errors))
    result.drop_unknown()
    return [] if directive == "Ignore" else [str(e) for e in result.strict_errors]


def enforce_patched(result: DecodeResult, directive: str, patched: Any) -> list[str]:
    """Apply ``fieldValidation`` to the object a JSON or merge patch produced.

    kube-apiserver reports a type error in a patched object as 422 on the field ``patch``
    (with the patched JSON as its value), and unknown fields as a 400 without the
    "cannot be handled" prefix of create and update.
    """
    bounded(patched)
    if result.type_error is not None:
        raise invalid_error("", "", [invalid("patch", orjson.dumps(patched).decode(), result.type_error)])
    result.zero_nulls()
    if not result.strict_errors:
        return []
    if directive == "Strict":
        raise bad_request(strict_decoding_error(result.strict_errors))
    result.drop_unknown()
    return [] if directive == "Ignore" else [str(e) for e in result.strict_errors]


def enforce_body(group: str, version: str, kind: str, body: Any, directive: str = "Warn") -> list[str]:
    """Decode a subresource's body (a Binding, an Eviction, a Scale, a TokenRequest, DeleteOptions)
    as kube-apiserver decodes it into its Go type: a wrong type is a 400 before any handler
    reads it, unknown fields are dropped; returns the warnings. Non-objects are left to the caller."""
    if not isinstance(body, dict):
        return []
    body_version = str(body.get("apiVersion") or version).rpartition("/")[2]
    return enforce(
        check(group, version, kind, body), directive,
        body_kind=str(body.get("kind") or kind), body_version=body_version, kind=kind,
    )


def resource_version(value: str) -> int:
    """A list's or watch's ``resourceVersion`` parameter as the storage parses it ("" and "0" are 0).

    kube-apiserver's storage reports a malformed one with this text, as a 500 (kubernetes#101350);
    it is the client's error, so it is a 400 here.
    """
    if value in ("", "0"):
        return 0
    if value.isascii() and value.isdigit():
        if int(value) < 1 << 64:
            return int(value)
        reason = "value out of range"
    else:
        reason = "invalid syntax"
    quoted = orjson.dumps(value).decode()
    raise bad_request(f"resourceVersion: Invalid value: {quoted}: strconv.ParseUint: parsing {quoted}: {reason}")


def check_path_segments(*segments: str | None) -> None:
    """Refuse a namespace or name in the URL with control characters (``%00``): no object can
    have one (names are DNS labels or path segments), so the request is malformed, not empty."""
    for segment in segments:
        if segment is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
            raise bad_request(f"invalid path segment {orjson.dumps(segment).decode()}: control characters are not allowed")
