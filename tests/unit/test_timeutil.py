"""kubelite.api.timeutil writes exactly what the Kubernetes API writes, and reads what Go's RFC 3339 reads."""

from __future__ import annotations

import datetime as dt
import re
import time

from kubelite.api import timeutil

T = dt.datetime(2006, 1, 2, 15, 4, 5, tzinfo=dt.UTC)


def test_time_is_whole_seconds_in_utc() -> None:
    assert timeutil.format_time(T) == "2006-01-02T15:04:05Z"
    assert timeutil.format_time(T.replace(microsecond=999_999)) == "2006-01-02T15:04:05Z"
    # Another zone is rendered in UTC, as metav1.Time marshals t.UTC().
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert timeutil.format_time(dt.datetime(2006, 1, 2, 17, 4, 5, tzinfo=plus2)) == "2006-01-02T15:04:05Z"
    assert timeutil.format_epoch(T.timestamp()) == "2006-01-02T15:04:05Z"


def test_micro_time_has_six_digits_always() -> None:
    assert timeutil.format_micro(T) == "2006-01-02T15:04:05.000000Z"
    assert timeutil.format_micro(T.replace(microsecond=120)) == "2006-01-02T15:04:05.000120Z"


def test_nano_trims_trailing_zeros() -> None:
    assert timeutil.format_nano(T) == "2006-01-02T15:04:05Z"
    assert timeutil.format_nano(T.replace(microsecond=500_000)) == "2006-01-02T15:04:05.5Z"
    assert timeutil.format_nano_ns(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert timeutil.format_nano_ns(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert timeutil.format_nano_ns(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    assert timeutil.trim_nano("2024-01-01T00:00:00.120000000Z") == "2024-01-01T00:00:00.12Z"
    assert timeutil.trim_nano("2024-01-01T00:00:00.000000000+02:00") == "2024-01-01T00:00:00+02:00"
    assert timeutil.trim_nano("garbage") == "garbage"


def test_now_formats() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", timeutil.now_rfc3339())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", timeutil.now_micro())
    # The cached rendering is the current second's (within the second this test straddles).
    before = int(time.time())
    stamp = timeutil.now_rfc3339()
    assert stamp in {timeutil.format_epoch(before), timeutil.format_epoch(before + 1)}
    assert timeutil.now().tzinfo is dt.UTC


def test_parse_reads_rfc3339_only() -> None:
    assert timeutil.parse_time("2006-01-02T15:04:05Z") == T
    assert timeutil.parse_time("2006-01-02T15:04:05.000000Z") == T
    assert timeutil.parse_time("2006-01-02T15:04:05.123456789Z") == T.replace(microsecond=123456)
    assert timeutil.parse_time("2006-01-02T17:04:05+02:00") == T
    for bad in ("", None, 5, "yesterday", "2006-01-02", "2006-01-02T15:04:05", "2006-01-02 15:04:05Z",
                "2006-13-02T15:04:05Z"):
        assert timeutil.parse_time(bad) is None, bad
    assert timeutil.parse_time("0001-01-01T00:00:00Z") == timeutil.ZERO_TIME


def test_round_trips() -> None:
    for render in (timeutil.format_time, timeutil.format_micro, timeutil.format_nano):
        t = T.replace(microsecond=250_000)
        back = timeutil.parse_time(render(t))
        assert back is not None and render(back) == render(t)
