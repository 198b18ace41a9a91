"""When the taint-eviction controller deletes a pod from a NoExecute-tainted node (processPodOnNode)."""

from __future__ import annotations

from typing import Any

from kubelite.controllers.tainteviction import eviction_delay

TAINT = {"key": "kubernetes.io/e2e-evict-taint-key", "value": "evictTaintVal", "effect": "NoExecute"}


def pod(*tolerations: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"tolerations": list(tolerations)}}


def toleration(seconds: int | None = None, **kw: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"key": TAINT["key"], "value": TAINT["value"], "effect": "NoExecute", **kw}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


def test_no_execute_taints_only() -> None:
    assert eviction_delay(pod(), []) is None
    assert eviction_delay(pod(), [{**TAINT, "effect": "NoSchedule"}]) is None


def test_untolerated_goes_at_once_and_tolerated_after_the_smallest_seconds() -> None:
    assert eviction_delay(pod(), [TAINT]) == 0.0
    assert eviction_delay(pod(toleration(value="other")), [TAINT]) == 0.0
    assert eviction_delay(pod(toleration(5)), [TAINT]) == 5.0
    assert eviction_delay(pod(toleration(25), toleration(5)), [TAINT]) == 5.0
    assert eviction_delay(pod(toleration(-3)), [TAINT]) == 0.0


def test_tolerated_forever_and_every_taint_counts() -> None:
    assert eviction_delay(pod(toleration()), [TAINT]) is None
    assert eviction_delay(pod({"operator": "Exists"}), [TAINT]) is None
    second = {"key": "other", "effect": "NoExecute"}
    assert eviction_delay(pod(toleration()), [TAINT, second]) == 0.0  # the second is not tolerated
    assert eviction_delay(pod(toleration(), {"key": "other", "operator": "Exists", "tolerationSeconds": 7}),
                          [TAINT, second]) == 7.0
