"""Kubernetes' protobuf: request bodies decoded into the JSON objects a JSON client sends,
and responses encoded for clients that ask for protobuf.

kubectl 1.32 and newer send typed writes (``create configmap|secret|service|deployment``,
``create token``, ``auth can-i``...) as ``application/vnd.kubernetes.protobuf``, and client-go
sends its DeleteOptions so: the magic ``k8s\\x00`` and a ``runtime.Unknown`` envelope whose
``raw`` field holds the object's gogo-protobuf encoding. kubelite keeps objects as JSON dicts,
so the API server decodes such bodies into exactly the dict the same client would have sent
as JSON, and encodes its answer from the JSON dict when the client's Accept puts protobuf first
(client-go's typed clients do), as kube-apiserver answers them.

The wire tables (field numbers, JSON names, types, Go pointer-ness) come from Kubernetes'
``generated.proto`` files through ``tools/gen_protobuf_fields.py``. The trade-off is the
JSON form of zero values: gogo writes every non-pointer field, zero or not, so a zero scalar
is dropped unless the field is a Go pointer or has no ``omitempty``, which reproduces Go's
JSON; empty messages are kept as ``{}`` (Go's JSON never omits a struct), except zero
timestamps, which Go writes as ``null`` and we leave out.
"""

from __future__ import annotations

import base64
import datetime
import functools
import gzip
from importlib import resources
from typing import Any, NamedTuple

import orjson

from kubelite.api import timeutil

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object kubelite can decode."""


class _Field(NamedTuple):
    name: str
    label: str  # "o"ptional, "r"epeated, "m"ap (of string keys)
    type: str  # a scalar, a message's full name, or a special form ("time", "quantity"...)
    keep_zero: bool  # a Go pointer, or a field JSON writes even when zero
    inline: bool  # an embedded Go struct: its fields go straight into the parent's JSON


_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_VARINT_TYPES = {"bool", "int32", "int64"}
_SCALARS = _VARINT_TYPES | {"string", "bytes"}


@functools.cache
def _tables() -> tuple[dict[str, str], dict[str, dict[int, _Field]]]:
    raw = resources.files("kubelite.api").joinpath("data/protobuf_fields.json.gz").read_bytes()
    data = orjson.loads(gzip.decompress(raw))
    messages = {
        name: {
            # Every group's ExtraValue is Go's ``[]string``: its JSON is a list, not the message.
            int(num): _Field(json, label, "extravalue" if type_.endswith(".ExtraValue") else type_,
                             "z" in flags, "i" in flags)
            for num, (json, label, type_, flags) in fields.items()
        }
        for name, fields in data["messages"].items()
    }
    return data["kinds"], messages


def field_order(message: str) -> list[str]:
    """A message's JSON field names by field number (Go's declaration order); [] when unknown."""
    fields = _tables()[1].get(message) or {}
    return [f.name for _, f in sorted(fields.items())]


def message_for(api_version: str, kind: str) -> str | None:
    """The protobuf message name of a kind, or None when kubelite has no table for it."""
    kinds = _tables()[0]
    return kinds.get(f"{api_version}/{kind}") or kinds.get(f"*/{kind}")


def decode_envelope(body: bytes) -> dict[str, Any]:
    """The JSON object equivalent to a ``k8s\\x00``-prefixed protobuf body.

    Raises ProtobufError for anything else: bad magic, malformed wire data, an unknown kind.
    """
    if not body.startswith(MAGIC):
        raise ProtobufError("protobuf body does not start with the Kubernetes magic number")
    unknown = _Reader(body, len(MAGIC), len(body))
    api_version = kind = content_encoding = ""
    raw = b""
    while not unknown.done():
        num, wire = unknown.tag()
        if num == 1 and wire == _BYTES:
            meta = unknown.sub()
            while not meta.done():
                n, w = meta.tag()
                if n == 1 and w == _BYTES:
                    api_version = meta.string()
                elif n == 2 and w == _BYTES:
                    kind = meta.string()
                else:
                    meta.skip(w)
        elif num == 2 and wire == _BYTES:
            raw = unknown.bytes()
        elif num == 3 and wire == _BYTES:
            content_encoding = unknown.string()
        else:
            unknown.skip(wire)  # field 4, contentType, says nothing the raw bytes do not
    if content_encoding:
        raise ProtobufError(f"unsupported protobuf content encoding {content_encoding!r}")
    # Request kinds, and what the API server answers (lists, Status), so that a client of ours
    # (or a test) reads a protobuf response with the same function.
    message = message_for(api_version, kind) or response_message_for(api_version, kind)
    if message is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    _decode(_Reader(raw, 0, len(raw)), message, obj)
    return obj


class _Reader:
    """A cursor over ``data[pos:end]`` that refuses to read past ``end``."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def done(self) -> bool:
        return self.pos >= self.end

    def varint(self) -> int:
        result = shift = 0
        while True:
            if self.pos >= self.end:
                raise ProtobufError("truncated varint")
            if shift >= 64:
                raise ProtobufError("varint overflows 64 bits")
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result & 0xFFFFFFFFFFFFFFFF
            shift += 7

    def tag(self) -> tuple[int, int]:
        key = self.varint()
        num, wire = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise ProtobufError(f"illegal field number {num}")
        return num, wire

    def sub(self) -> _Reader:
        n = self.varint()
        if n > self.end - self.pos:
            raise ProtobufError("length runs past the end of the message")
        r = _Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return r

    def bytes(self) -> bytes:
        r = self.sub()
        return self.data[r.pos : r.end]

    def string(self) -> str:
        return self.bytes().decode("utf-8", errors="replace")  # Go's JSON writes U+FFFD too

    def skip(self, wire: int) -> None:
        if wire == _VARINT:
            self.varint()
        elif wire == _BYTES:
            self.sub()
        elif wire in (_FIXED64, _FIXED32):
            n = 8 if wire == _FIXED64 else 4
            if n > self.end - self.pos:
                raise ProtobufError("truncated fixed-width field")
            self.pos += n
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _scalar(r: _Reader, wire: int, type_: str, field: str) -> Any:
    if type_ in _VARINT_TYPES:
        if wire != _VARINT:
            raise ProtobufError(f"wrong wire type {wire} for field {field}")
        v = r.varint()
        if type_ == "bool":
            return v != 0
        return _signed(v, 32 if type_ == "int32" else 64)
    if wire != _BYTES:
        raise ProtobufError(f"wrong wire type {wire} for field {field}")
    if type_ == "string":
        return r.string()
    return base64.b64encode(r.bytes()).decode()  # "bytes": JSON carries []byte as base64


def _is_zero(v: Any) -> bool:
    return bool(v == 0 or v == "")  # False == 0 too


def _value(r: _Reader, wire: int, type_: str, field: str) -> Any:
    """One decoded value of a (non-map) field, or None when its JSON form is null."""
    if type_ in _SPECIAL:
        if wire != _BYTES:
            raise ProtobufError(f"wrong wire type {wire} for field {field}")
        return _SPECIAL[type_](r.sub())
    if "." in type_:
        if wire != _BYTES:
            raise ProtobufError(f"wrong wire type {wire} for field {field}")
        out: dict[str, Any] = {}
        _decode(r.sub(), type_, out)
        return out
    return _scalar(r, wire, type_, field)


def _decode(r: _Reader, message: str, out: dict[str, Any]) -> None:
    """Decode a message's fields into ``out`` (merging, as protobuf does for repeated occurrences).

    Recursion follows the message graph, which has no cycles, so its depth is bounded by the
    types (about a dozen levels for a PodSpec), whatever the body.
    """
    fields = _fields_of(message)
    while not r.done():
        num, wire = r.tag()
        f = fields.get(num)
        if f is None:
            r.skip(wire)  # a field newer than our tables
            continue
        if f.inline:
            if wire != _BYTES:
                raise ProtobufError(f"wrong wire type {wire} for field {f.name}")
            _decode(r.sub(), f.type, out)
        elif f.label == "m":
            key, value = _map_entry(r, wire, f)
            out.setdefault(f.name, {})[key] = value
        elif f.label == "r":
            items = out.setdefault(f.name, [])
            if wire == _BYTES and f.type in _VARINT_TYPES:  # packed repeated scalars
                packed = r.sub()
                while not packed.done():
                    items.append(_scalar(packed, _VARINT, f.type, f.name))
            else:
                items.append(_value(r, wire, f.type, f.name))
        else:
            v = _value(r, wire, f.type, f.name)
            # Only plain scalars lose their zero: a message (IntOrString 0 included) is a struct
            # or a set pointer in Go, and Go's JSON writes it.
            if v is None or (not f.keep_zero and f.type in _SCALARS and _is_zero(v)):
                out.pop(f.name, None)  # the last occurrence wins, even a zero one
            elif isinstance(v, dict) and isinstance(out.get(f.name), dict):
                out[f.name].update(v)
            else:
                out[f.name] = v


def _map_entry(r: _Reader, wire: int, f: _Field) -> tuple[str, Any]:
    if wire != _BYTES:
        raise ProtobufError(f"wrong wire type {wire} for field {f.name}")
    entry = r.sub()
    key, value = "", None
    while not entry.done():
        n, w = entry.tag()
        if n == 1:
            key = _scalar(entry, w, "string", f.name)
        elif n == 2:
            value = _value(entry, w, f.type, f.name)
        else:
            entry.skip(w)
    if value is None:  # an absent value is the type's zero
        value = {"string": "", "bytes": "", "quantity": "0"}.get(f.type, {})
    return key, value


def _timestamp(r: _Reader) -> datetime.datetime | None:
    seconds = nanos = 0
    while not r.done():
        n, w = r.tag()
        if n == 1:
            seconds = _scalar(r, w, "int64", "seconds")
        elif n == 2:
            nanos = _scalar(r, w, "int32", "nanos")
        else:
            r.skip(w)
    if seconds == 0 and nanos == 0:
        return None  # Go's zero time: marshalled as an empty message, shown as null
    try:
        return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            seconds=seconds, microseconds=nanos // 1000
        )
    except OverflowError as e:
        raise ProtobufError(f"timestamp out of range: {seconds}s") from e


def _time(r: _Reader) -> str | None:
    t = _timestamp(r)
    return timeutil.format_time(t) if t else None


def _microtime(r: _Reader) -> str | None:
    t = _timestamp(r)
    return timeutil.format_micro(t) if t else None


def _int_or_string(r: _Reader) -> int | str:
    type_, int_val, str_val = 0, 0, ""
    while not r.done():
        n, w = r.tag()
        if n == 1:
            type_ = _scalar(r, w, "int64", "type")
        elif n == 2:
            int_val = _scalar(r, w, "int32", "intVal")
        elif n == 3:
            str_val = _scalar(r, w, "string", "strVal")
        else:
            r.skip(w)
    return str_val if type_ == 1 else int_val


def _quantity(r: _Reader) -> str:
    s = ""
    while not r.done():
        n, w = r.tag()
        if n == 1:
            s = _scalar(r, w, "string", "string")
        else:
            r.skip(w)
    return s or "0"  # a zero Quantity is written as "0"


def _fields_v1(r: _Reader) -> Any:
    raw = b""
    while not r.done():
        n, w = r.tag()
        if n == 1 and w == _BYTES:
            raw = r.bytes()
        else:
            r.skip(w)
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as e:
        raise ProtobufError("fieldsV1 is not JSON") from e


def _extra_value(r: _Reader) -> list[str]:
    """An ExtraValue (a user's extra values): Go's ``[]string``, so a JSON list, written in
    protobuf as a message of one ``repeated string items = 1``."""
    items: list[str] = []
    while not r.done():
        n, w = r.tag()
        if n == 1:
            items.append(_scalar(r, w, "string", "items"))
        else:
            r.skip(w)
    return items


_SPECIAL = {
    "time": _time,
    "microtime": _microtime,
    "intorstring": _int_or_string,
    "quantity": _quantity,
    "fieldsv1": _fields_v1,
    # A RawExtension (ControllerRevision.data) holds JSON in its ``raw`` = 1, as FieldsV1 does.
    "rawextension": _fields_v1,
    "extravalue": _extra_value,
}


# ---------------------------------------------------------------------------- encoding
#
# Responses in protobuf, for clients whose Accept prefers it (client-go's typed clients send
# ``application/vnd.kubernetes.protobuf, application/json``). The same tables, walked the
# other way: each field of the JSON object is written under its number, in field order as
# gogo-protobuf writes them. Fields absent from the JSON are left out (a reader takes them
# as zero, which is what the JSON meant); fields the tables do not know are not sent.

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
STATUS = META + "Status"
LIST_META = META + "ListMeta"

# Messages a response needs beyond the request kinds' tables (from apimachinery's
# meta/v1/generated.proto): the Status of every error, and ListMeta for lists.
_RESPONSE_MESSAGES: dict[str, dict[int, _Field]] = {
    STATUS: {
        1: _Field("metadata", "o", LIST_META, False, False),
        2: _Field("status", "o", "string", False, False),
        3: _Field("message", "o", "string", False, False),
        4: _Field("reason", "o", "string", False, False),
        5: _Field("details", "o", META + "StatusDetails", False, False),
        6: _Field("code", "o", "int32", False, False),
    },
    META + "StatusDetails": {
        1: _Field("name", "o", "string", False, False),
        2: _Field("group", "o", "string", False, False),
        3: _Field("kind", "o", "string", False, False),
        4: _Field("causes", "r", META + "StatusCause", False, False),
        5: _Field("retryAfterSeconds", "o", "int32", False, False),
        6: _Field("uid", "o", "string", False, False),
    },
    META + "StatusCause": {
        1: _Field("reason", "o", "string", False, False),
        2: _Field("message", "o", "string", False, False),
        3: _Field("field", "o", "string", False, False),
    },
    LIST_META: {
        1: _Field("selfLink", "o", "string", False, False),
        2: _Field("resourceVersion", "o", "string", False, False),
        3: _Field("continue", "o", "string", False, False),
        4: _Field("remainingItemCount", "o", "int64", True, False),
    },
}
_LIST_SUFFIX = "#list"


def _fields_of(message: str) -> dict[int, _Field]:
    if message.endswith(_LIST_SUFFIX):  # every Kubernetes list: ListMeta = 1, repeated items = 2
        return {
            1: _Field("metadata", "o", LIST_META, False, False),
            2: _Field("items", "r", message[: -len(_LIST_SUFFIX)], False, False),
        }
    fields = _tables()[1].get(message) or _RESPONSE_MESSAGES.get(message)
    if fields is None:
        raise ProtobufError(f"no protobuf table for message {message}")
    return fields


def response_message_for(api_version: str, kind: str) -> str | None:
    """The message a response object of this kind is written as, None when it has no table."""
    if kind == "Status" and api_version == "v1":
        return STATUS
    if kind.endswith("List"):
        item = _tables()[0].get(f"{api_version}/{kind[:-4]}")
        return item + _LIST_SUFFIX if item else None
    return _tables()[0].get(f"{api_version}/{kind}")


def encode_envelope(obj: dict[str, Any]) -> bytes:
    """``obj`` as kube-apiserver writes it in protobuf: the magic, then a runtime.Unknown.

    Raises ProtobufError when its kind has no table or a value does not fit its field's type
    (the caller then answers in JSON).
    """
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    message = response_message_for(api_version, kind)
    if message is None:
        raise ProtobufError(f'no protobuf table for kind "{kind}" of version "{api_version}"')
    type_meta = bytearray()
    _put_bytes(type_meta, 1, api_version.encode())
    _put_bytes(type_meta, 2, kind.encode())
    out = bytearray(MAGIC)
    _put_bytes(out, 1, bytes(type_meta))
    _put_bytes(out, 2, _bytes_of(lambda b: _encode(b, obj, message)))
    _put_bytes(out, 3, b"")  # contentEncoding and contentType: gogo writes them even empty
    _put_bytes(out, 4, b"")
    return bytes(out)


def _bytes_of(write: Any) -> bytes:
    buf = bytearray()
    write(buf)
    return bytes(buf)


def _put_varint(out: bytearray, n: int) -> None:
    n &= 0xFFFFFFFFFFFFFFFF  # negative numbers: ten bytes of two's complement, as Go writes them
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_bytes(out: bytearray, num: int, payload: bytes) -> None:
    _put_varint(out, num << 3 | _BYTES)
    _put_varint(out, len(payload))
    out += payload


def _encode(out: bytearray, obj: Any, message: str) -> None:
    if not isinstance(obj, dict):
        raise ProtobufError(f"{message} is not an object")
    for num, f in sorted(_fields_of(message).items()):
        if f.inline:  # an embedded Go struct: its fields are the parent's own JSON fields
            _put_bytes(out, num, _bytes_of(lambda b, t=f.type: _encode(b, obj, t)))
            continue
        value = obj.get(f.name)
        if value is None:
            continue
        if f.label == "m":
            if not isinstance(value, dict):
                raise ProtobufError(f"field {f.name} is not a map")
            for key in sorted(value):  # gogo writes map entries in key order
                entry = bytearray()
                _put_bytes(entry, 1, str(key).encode())
                _put_value(entry, 2, value[key], f.type, f.name)
                _put_bytes(out, num, bytes(entry))
        elif f.label == "r":
            if not isinstance(value, list):
                raise ProtobufError(f"field {f.name} is not a list")
            for item in value:
                _put_value(out, num, item, f.type, f.name)
        else:
            _put_value(out, num, value, f.type, f.name)


def _put_value(out: bytearray, num: int, value: Any, type_: str, field: str) -> None:
    if type_ in _VARINT_TYPES:
        if type_ == "bool" and isinstance(value, bool):
            n = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            raise ProtobufError(f"field {field} is not a {type_}")
        _put_varint(out, num << 3 | _VARINT)
        _put_varint(out, n)
    elif type_ == "string":
        if not isinstance(value, str):
            raise ProtobufError(f"field {field} is not a string")
        _put_bytes(out, num, value.encode())
    elif type_ == "bytes":
        try:
            _put_bytes(out, num, base64.b64decode(value, validate=True))
        except (TypeError, ValueError) as e:
            raise ProtobufError(f"field {field} is not base64") from e
    elif type_ in _SPECIAL_ENCODERS:
        _put_bytes(out, num, _SPECIAL_ENCODERS[type_](value, field))
    else:
        _put_bytes(out, num, _bytes_of(lambda b: _encode(b, value, type_)))


def _timestamp_bytes(value: Any, field: str) -> bytes:
    t = timeutil.parse_time(value)
    if t is None:
        raise ProtobufError(f"field {field} is not a time")
    delta = t - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    seconds = delta.days * 86400 + delta.seconds
    out = bytearray()  # seconds and nanos, both written as gogo writes them, zero or not
    _put_varint(out, 1 << 3 | _VARINT)
    _put_varint(out, seconds)
    _put_varint(out, 2 << 3 | _VARINT)
    _put_varint(out, delta.microseconds * 1000)
    return bytes(out)


def _int_or_string_bytes(value: Any, field: str) -> bytes:
    out = bytearray()
    if isinstance(value, str):  # type 1, strVal; gogo writes every field, zero or not
        _put_varint(out, 1 << 3 | _VARINT)
        _put_varint(out, 1)
        _put_varint(out, 2 << 3 | _VARINT)
        _put_varint(out, 0)
        _put_bytes(out, 3, value.encode())
    elif isinstance(value, int) and not isinstance(value, bool):
        _put_varint(out, 1 << 3 | _VARINT)
        _put_varint(out, 0)
        _put_varint(out, 2 << 3 | _VARINT)
        _put_varint(out, value)
        _put_bytes(out, 3, b"")
    else:
        raise ProtobufError(f"field {field} is not an int or a string")
    return bytes(out)


def _quantity_bytes(value: Any, field: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ProtobufError(f"field {field} is not a quantity")
    return _bytes_of(lambda b: _put_bytes(b, 1, str(value).encode()))


def _fields_v1_bytes(value: Any, field: str) -> bytes:
    return _bytes_of(lambda b: _put_bytes(b, 1, orjson.dumps(value)))


def _extra_value_bytes(value: Any, field: str) -> bytes:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtobufError(f"field {field} is not a list of strings")
    out = bytearray()
    for v in value:
        _put_bytes(out, 1, v.encode())
    return bytes(out)


_SPECIAL_ENCODERS = {
    "time": _timestamp_bytes,
    "microtime": _timestamp_bytes,
    "intorstring": _int_or_string_bytes,
    "quantity": _quantity_bytes,
    "fieldsv1": _fields_v1_bytes,
    "rawextension": _fields_v1_bytes,
    "extravalue": _extra_value_bytes,
}


WATCH_CONTENT_TYPE = "application/vnd.kubernetes.protobuf;stream=watch"


def encode_watch_event(event_type: str, obj: dict[str, Any]) -> bytes:
    """One frame of a protobuf watch, as kube-apiserver streams it.

    A four-byte big-endian length, then a metav1.WatchEvent written without envelope (the
    raw serializer): ``type`` = 1, ``object`` = 2, a RawExtension whose ``raw`` = 1 holds the
    object's own enveloped encoding.
    """
    event = bytearray()
    _put_bytes(event, 1, event_type.encode())
    _put_bytes(event, 2, _bytes_of(lambda b: _put_bytes(b, 1, encode_envelope(obj))))
    return len(event).to_bytes(4, "big") + bytes(event)


def decode_watch_frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The events of a protobuf watch stream's bytes (for clients and tests of ours)."""
    events: list[tuple[str, dict[str, Any]]] = []
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        r = _Reader(data, pos + 4, pos + 4 + n)
        if r.end > len(data):
            raise ProtobufError("truncated watch frame")
        pos = r.end
        event_type, raw = "", b""
        while not r.done():
            num, wire = r.tag()
            if num == 1 and wire == _BYTES:
                event_type = r.string()
            elif num == 2 and wire == _BYTES:
                ext = r.sub()
                while not ext.done():
                    k, w = ext.tag()
                    if k == 1 and w == _BYTES:
                        raw = ext.bytes()
                    else:
                        ext.skip(w)
            else:
                r.skip(wire)
        events.append((event_type, decode_envelope(raw)))
    return events
