"""Kubernetes' time formats, in one place: ``metav1.Time``, ``metav1.MicroTime``, RFC 3339 nano.

The API serves three renderings of an instant, and clients compare them as strings as often
as they parse them, so every component must write exactly what the API server writes:

- ``metav1.Time`` (creationTimestamp, conditions' lastTransitionTime, container times):
  whole seconds in UTC, ``2006-01-02T15:04:05Z``;
- ``metav1.MicroTime`` (Events' eventTime, Leases' renewTime): always six fraction digits,
  ``2006-01-02T15:04:05.000000Z``;
- Go's ``time.RFC3339Nano`` (CRI log lines, the endpoints' last-change-trigger-time):
  nanoseconds with trailing zeros trimmed, no fraction at all when it is zero.

Parsing is Go's ``time.Parse(time.RFC3339, …)``: any fraction, ``Z`` or a numeric offset, and
nothing else (no bare dates, no missing zone).

Only the standard library is imported: the per-container shim (``kubelite.node.shim``) is a
small process image of its own and imports this module too.
"""

from __future__ import annotations

import datetime as dt
import re
import time

#: Go's zero ``time.Time`` as ``metav1.Time`` marshals it; ``IsZero()`` treats it as unset.
ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)

_RFC3339_PARTS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None when absent, not a string or malformed.

    Fractions beyond microseconds are truncated (Python's datetime stops there).
    """
    if not isinstance(value, str) or not _RFC3339_PARTS.fullmatch(value):
        return None
    try:
        return dt.datetime.fromisoformat(value)  # 3.11 reads "Z" and any number of fraction digits
    except ValueError:  # well-formed but out of range (month 13, hour 25)
        return None


def format_time(t: dt.datetime) -> str:
    """``metav1.Time``: whole seconds, UTC, ``Z``."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(t: dt.datetime) -> str:
    """``metav1.MicroTime``: six fraction digits, UTC, ``Z``."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_nano(t: dt.datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: the fraction without trailing zeros, none when zero."""
    t = t.astimezone(dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{t.microsecond:06d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def format_nano_ns(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC of nanoseconds since the epoch (``time.time_ns()``)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def format_epoch(seconds: float) -> str:
    """``metav1.Time`` of seconds since the epoch (``time.time()``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


_last_second: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """The current ``metav1.Time``.

    The API server stamps every write with it; the text changes once a second, so it is
    rendered once a second.
    """
    global _last_second
    second = int(time.time())
    if _last_second[0] != second:
        _last_second = (second, format_epoch(second))
    return _last_second[1]


def now_micro() -> str:
    """The current ``metav1.MicroTime``."""
    return format_micro(now())


def trim_nano(ts: str) -> str:
    """An RFC 3339 text as Go's ``RFC3339Nano`` prints it: trailing fraction zeros cut.

    Works on the text, not a datetime, so a CRI log line's nanoseconds survive; the zone is
    kept as written. Text that is not RFC 3339 comes back unchanged.
    """
    m = _RFC3339_PARTS.fullmatch(ts)
    if m is None:
        return ts
    base, frac, zone = m.groups()
    frac = (frac or "").rstrip("0")
    return base + ("." + frac if frac else "") + zone
