"""Cron schedules as Kubernetes reads them: robfig/cron v3's ``ParseStandard`` and ``Next``.

Both kube-apiserver (validating ``spec.schedule``) and the CronJob controller (finding the
next start time) use github.com/robfig/cron/v3. Its dialect is not quite any Python library's:
exactly five fields (no seconds, no year), ``?`` as a synonym of ``*``, names for months and
week days, ``N/step`` meaning ``N-max/step``, the day-of-month/day-of-week rule (if either
field starts with ``*`` both must match, otherwise either may), the ``@hourly``... descriptors
and ``@every <duration>``; and its error texts are what ``kubectl`` shows under
``spec.schedule: Invalid value``. croniter (the usual choice) accepts six or seven fields,
``L``/``W``/``#``/``H`` and day-of-week 7, so schedules a real cluster refuses would be
accepted here, and its errors are its own. The parser is small, so it is written here, with
robfig's semantics and messages, and tested against them.

Times are aware datetimes; a schedule is evaluated in the wall clock of the zone it is given
(``spec.timeZone`` through :mod:`zoneinfo`, else the controller's local zone).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_STAR = 1 << 63  # robfig's starBit: the field was "*" or "?" (matters for the day rule)


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_MINUTES = _Bounds(0, 59, {})
_HOURS = _Bounds(0, 23, {})
_DOM = _Bounds(1, 31, {})
_MONTHS = _Bounds(1, 12, {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))})
_DOW = _Bounds(0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))})

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A schedule robfig/cron refuses; the message is robfig's."""


def _go_atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _must_parse_int(text: str) -> int:
    num = _go_atoi(text)
    if num < 0:
        raise CronError(f"negative number ({num}) not allowed: {text}")
    return num


def _int_or_name(text: str, names: dict[str, int]) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    return _must_parse_int(text)


def _range(expr: str, b: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    single = len(low_high) == 1
    extra = 0
    if low_high[0] in ("*", "?"):
        start, end, extra = b.low, b.high, _STAR
    else:
        start = _int_or_name(low_high[0], b.names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], b.names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _must_parse_int(range_and_step[1])
        if single:
            end = b.high  # "N/step" is "N-max/step"
        if step > 1:
            extra = 0
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < b.low:
        raise CronError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise CronError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    bits = 0
    for v in range(start, end + 1, step):
        bits |= 1 << v
    return bits | extra


def _field(text: str, b: _Bounds) -> int:
    bits = 0
    for expr in text.split(","):
        bits |= _range(expr, b)
    return bits


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_go_duration(text: str) -> float:
    pos, total = 0, 0.0
    if text in ("0",):
        return 0.0
    while pos < len(text):
        m = _GO_DURATION.match(text, pos)
        if m is None:
            raise CronError(f'failed to parse duration @every {text}: time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise CronError('failed to parse duration @every : time: invalid duration ""')
    return total


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: bit sets per field (robfig's SpecSchedule), or a constant delay (@every)."""

    minute: int = 0
    hour: int = 0
    dom: int = 0
    month: int = 0
    dow: int = 0
    every: float | None = None  # seconds, for "@every <duration>" (ConstantDelaySchedule)

    def _day_matches(self, t: dt.datetime) -> bool:
        dom_match = bool((1 << t.day) & self.dom)
        dow_match = bool((1 << ((t.weekday() + 1) % 7)) & self.dow)
        if self.dom & _STAR or self.dow & _STAR:
            return dom_match and dow_match
        return dom_match or dow_match

    def next(self, after: dt.datetime) -> dt.datetime:
        """The first activation strictly after ``after``, in ``after``'s zone; a year-1 zero time
        when there is none within five years (as robfig returns time.Time{})."""
        if self.every is not None:
            # ConstantDelaySchedule: at least a second, rounded down to the second.
            delay = max(1, int(self.every))
            base = after.replace(microsecond=0)
            return base + dt.timedelta(seconds=delay)
        tz = after.tzinfo
        # Wall-clock arithmetic in the zone: naive local time, then back to aware.
        t = after.replace(tzinfo=None, second=0, microsecond=0) + dt.timedelta(minutes=1)
        year_limit = t.year + 5
        while t.year <= year_limit:
            if not (1 << t.month) & self.month:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if not (1 << t.hour) & self.hour:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if not (1 << t.minute) & self.minute:
                t += dt.timedelta(minutes=1)
                continue
            return t.replace(tzinfo=tz)
        return dt.datetime(1, 1, 1, tzinfo=dt.UTC)


ZERO = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def parse_standard(spec: str) -> Schedule:
    """cron.ParseStandard: five fields or a descriptor; raises :class:`CronError` with robfig's text.

    A leading ``TZ=``/``CRON_TZ=`` is understood as robfig does (the API server refuses it
    separately, in Kubernetes' words).
    """
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, rest = spec.partition(" ")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        name = head.partition("=")[2]
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"provided bad location {name}: unknown time zone {name}") from None
        spec = rest.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            return Schedule(every=_parse_go_duration(spec[len("@every "):]))
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    return Schedule(
        minute=_field(fields[0], _MINUTES),
        hour=_field(fields[1], _HOURS),
        dom=_field(fields[2], _DOM),
        month=_field(fields[3], _MONTHS),
        dow=_field(fields[4], _DOW),
    )
