"""The image garbage collector's choice, as the kubelet's image GC makes it.

The kubelet frees disk when the image filesystem's usage passes ``imageGCHighThresholdPercent``
(85): it deletes unused images, least recently used first, until usage is back under
``imageGCLowThresholdPercent`` (80), never one younger than ``imageMinimumGCAge`` (2 min) and
never one a container uses; ``imageMaximumGCAge`` (off by default) also deletes images unused
for that long whatever the disk. Pure logic with the clock passed in, so it is tested
without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class GCPolicy:
    high_threshold_percent: int = 85
    low_threshold_percent: int = 80
    min_age: float = 120.0
    max_age: float = 0.0  # 0: off


@dataclass(frozen=True)
class Candidate:
    digest: str  # manifest digest: the unit that is freed (all its tags)
    size: int
    first_seen: float  # when it was stored here
    last_used: float


def choose(images: Iterable[Candidate], in_use: set[str], *, capacity: int, available: int,
           now: float, policy: GCPolicy = GCPolicy()) -> list[str]:
    """The digests to delete, in order."""
    unused = sorted((c for c in images if c.digest not in in_use), key=lambda c: c.last_used)
    chosen: list[str] = []
    if policy.max_age > 0:
        chosen = [c.digest for c in unused if now - c.last_used > policy.max_age]
    usage_percent = 100 * (capacity - available) // capacity if capacity > 0 else 0
    if usage_percent >= policy.high_threshold_percent:
        to_free = (capacity - available) - capacity * policy.low_threshold_percent // 100
        freed = 0
        for c in unused:
            if freed >= to_free:
                break
            if c.digest in chosen:
                freed += c.size
                continue
            if now - c.first_seen < policy.min_age:
                continue
            chosen.append(c.digest)
            freed += c.size
    return chosen
