"""The pod worker's reading of a runtime's timestamps, now through kubelite.api.timeutil.

A restarted agent adopts running containers and places their start on its monotonic clock
from the runtime's ``started_at`` (and a crash-looping container's back-off from
``finished_at``): an RFC 3339 text in UTC or with an offset. A stamp it cannot read must not
stop the adoption: it counts as now.
"""

from __future__ import annotations

import datetime as dt
import time

from kubelite.node.podworker import _epoch

T = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC).timestamp()


def test_runtime_stamps_in_utc_with_fractions_and_offsets() -> None:
    assert _epoch("2024-05-01T10:00:00Z") == T
    assert _epoch("2024-05-01T10:00:00.250Z") == T + 0.25
    assert _epoch("2024-05-01T12:00:00+02:00") == T


def test_a_missing_or_unreadable_stamp_counts_as_now() -> None:
    for stamp in (None, "", "yesterday", "2024-05-01", "2024-13-01T10:00:00Z"):
        before = time.time()
        assert before <= _epoch(stamp) <= time.time()
