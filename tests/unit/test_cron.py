"""robfig/cron's ParseStandard and Next, as the CronJob controller and validation use them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from kubelite.api.cron import ZERO, CronError, parse_standard

UTC = dt.UTC


def at(text: str, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("*/1 * * * *", "2025-06-01T12:00:00", "2025-06-01T12:01:00"),
        ("*/1 * * * *", "2025-06-01T12:00:30", "2025-06-01T12:01:00"),
        ("*/15 * * * *", "2025-06-01T12:01:00", "2025-06-01T12:15:00"),
        ("5/20 * * * *", "2025-06-01T12:26:00", "2025-06-01T12:45:00"),  # N/step = N-59/step
        ("0 0 * * *", "2025-06-01T12:00:00", "2025-06-02T00:00:00"),
        ("@hourly", "2025-06-01T12:00:00", "2025-06-01T13:00:00"),
        ("@daily", "2025-12-31T23:59:00", "2026-01-01T00:00:00"),
        ("@weekly", "2025-06-01T00:00:00", "2025-06-08T00:00:00"),  # 2025-06-01 is a Sunday
        ("@monthly", "2025-01-31T00:00:00", "2025-02-01T00:00:00"),
        ("@yearly", "2025-06-01T00:00:00", "2026-01-01T00:00:00"),
        ("0 9 * * mon-fri", "2025-06-06T09:00:00", "2025-06-09T09:00:00"),  # Friday -> Monday
        ("0 0 13 * fri", "2025-06-01T00:00:00", "2025-06-06T00:00:00"),  # day-of-month OR day-of-week
        ("0 0 13 * *", "2025-06-01T00:00:00", "2025-06-13T00:00:00"),
        ("0 0 * JAN,jul ?", "2025-06-01T00:00:00", "2025-07-01T00:00:00"),
        ("30 6-16/4 * * 1-5", "2025-06-02T10:30:00", "2025-06-02T14:30:00"),
        ("0 0 29 2 *", "2025-03-01T00:00:00", "2028-02-29T00:00:00"),
    ],
)
def test_next(spec: str, after: str, expected: str) -> None:
    assert parse_standard(spec).next(at(after)) == at(expected)


def test_next_in_a_time_zone_and_impossible_dates() -> None:
    paris = ZoneInfo("Europe/Paris")
    nxt = parse_standard("0 9 * * *").next(at("2025-06-01T08:30:00", paris))
    assert nxt == at("2025-06-01T09:00:00", paris) and nxt.astimezone(UTC).hour == 7
    assert parse_standard("59 23 31 2 *").next(at("2025-01-01T00:00:00")) == ZERO


def test_every() -> None:
    assert parse_standard("@every 1h30m").next(at("2025-06-01T12:00:00")) == at("2025-06-01T13:30:00")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
        ("0 24 * * *", "end of range (24) above maximum (23): 24"),
        ("0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("0 0 * * 7", "end of range (7) above maximum (6): 7"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        ("@every x", 'failed to parse duration @every x: time: invalid duration "x"'),
        ("0 0 * foo *", 'failed to parse int from foo: strconv.Atoi: parsing "foo": invalid syntax'),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(CronError) as e:
        parse_standard(spec)
    assert str(e.value) == message
