"""Value formatting shared by the printers: ages, label maps and label selectors.

Each helper reproduces one apimachinery function to the character (``duration.HumanDuration``,
``labels.FormatLabels``, ``metav1.FormatLabelSelector``...), because the strings end up in
``kubectl get`` columns that users and scripts read. Timestamps stay the RFC 3339 strings of
the JSON objects and are parsed here, where they are compared or aged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kubelite.api import timeutil

UNKNOWN = "<unknown>"
NONE = "<none>"
_NS_PER_SECOND = 10**9


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero), for durations that may be negative."""
    q = abs(a) // b
    return q if a >= 0 else -q


def human_duration(d: timedelta) -> str:
    """``duration.HumanDuration``: two or three significant figures, ``5s`` to ``2y34d``."""
    ns = (d.days * 86400 + d.seconds) * _NS_PER_SECOND + d.microseconds * 1000
    seconds = _trunc_div(ns, _NS_PER_SECOND)
    # Up to a second in the future is clock skew between machines: call it now.
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 ``metav1.Time``/``MicroTime`` as an aware datetime; None when unset (Go's zero)."""
    t = timeutil.parse_time(value)
    # Go marshals an explicitly zero time as year 1; IsZero() treats it as unset too.
    return None if t == timeutil.ZERO_TIME else t


def since(value: Any, now: datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when it is unset."""
    t = parse_time(value)
    return UNKNOWN if t is None else human_duration(now - t)


def rfc3339_utc(value: Any) -> str:
    """``Time.UTC().Format(time.RFC3339)``; an unset time is Go's zero time."""
    t = parse_time(value)
    if t is None:
        return "0001-01-01T00:00:00Z"
    return timeutil.format_time(t)


def format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: ``a=1,b=2`` sorted by key, ``<none>`` when empty."""
    labels = labels or {}
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels)) or NONE


_OPERATORS = {"In": " in ", "NotIn": " notin ", "Exists": "", "DoesNotExist": ""}


def selector_string(selector: dict[str, Any] | None) -> str:
    """``LabelSelectorAsSelector(sel).String()``: requirements sorted by key, values sorted.

    Nil and empty selectors both render as the empty string (``labels.Nothing()`` and
    ``labels.Everything()`` print nothing). Raises ValueError for an unknown operator, as
    the conversion fails in Go.
    """
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        if op not in _OPERATORS:
            raise ValueError(f"{op!r} is not a valid label selector operator")
        if op == "Exists":
            text = key
        elif op == "DoesNotExist":
            text = "!" + key
        else:
            values = list(expr.get("values") or [])
            joined = values[0] if len(values) == 1 else ",".join(sorted(values))
            text = f"{key}{_OPERATORS[op]}({joined})"
        requirements.append((key, text))
    requirements.sort(key=lambda r: r[0])
    return ",".join(text for _, text in requirements)


def format_label_selector(selector: dict[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: like :func:`selector_string` but ``<none>`` when empty."""
    try:
        text = selector_string(selector)
    except ValueError:
        return "<error>"
    return text or NONE
