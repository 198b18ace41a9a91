"""The kubelet's active deadline handler: ``spec.activeDeadlineSeconds`` ends a pod.

A pod may say how long it may be active on the node, counted from its ``status.startTime``
(when the kubelet first took it on). Past that, whatever its restart policy, the kubelet
stops its containers and reports the pod Failed with reason ``DeadlineExceeded``; the
deadline is checked on every sync, and a pod worker wakes up for it. Pure, with the clock
passed in, so that the rule is tested without waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api import timeutil

REASON = "DeadlineExceeded"
MESSAGE = "Pod was active on the node longer than the specified deadline"


def remaining(pod: Mapping[str, Any], start_time: str, now: float) -> float | None:
    """Seconds left before the pod's active deadline (zero or less: past it), or None when
    it has none or has not started (pastActiveDeadline: ``duration >= allowed``)."""
    seconds = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    if seconds is None:
        return None
    started = timeutil.parse_time(start_time or None)
    if started is None:
        return None
    return float(seconds) - (now - started.timestamp())
