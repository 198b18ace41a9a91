"""The eviction subresource's budget checks (eviction.go), over plain budgets.

The integration tests run with the real disruption controller, which observes a new
budget within milliseconds; the "still being processed" answer is pinned here instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.errors import StatusError
from kubelite.apiserver.eviction import check_and_decrement


def _pdb(generation: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-pdb", "generation": generation}, "status": status}


def test_a_budget_not_yet_observed_is_still_being_processed() -> None:
    with pytest.raises(StatusError) as e:
        check_and_decrement(_pdb(2, observedGeneration=1, disruptionsAllowed=5), "a", dry_run=False)
    assert (e.value.code, e.value.reason) == (429, "TooManyRequests")
    assert e.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert e.value.details == {"causes": [{"reason": "DisruptionBudget", "message":
                                           "The disruption budget web-pdb is still being processed by the server."}],
                               "retryAfterSeconds": 10}
    assert e.value.headers == {"Retry-After": "10"}


def test_a_spent_budget_refuses_and_says_why() -> None:
    with pytest.raises(StatusError) as e:
        check_and_decrement(_pdb(1, observedGeneration=1, disruptionsAllowed=0, currentHealthy=1, desiredHealthy=1),
                            "a", dry_run=False)
    assert e.value.code == 429
    assert e.value.details == {"causes": [{"reason": "DisruptionBudget", "message":
                                           "The disruption budget web-pdb needs 1 healthy pods and has 1 currently"}]}


def test_an_allowed_eviction_is_spent_and_recorded() -> None:
    pdb = check_and_decrement(_pdb(1, observedGeneration=1, disruptionsAllowed=2), "a", dry_run=False)
    assert pdb["status"]["disruptionsAllowed"] == 1
    assert set(pdb["status"]["disruptedPods"]) == {"a"}
    dry = check_and_decrement(_pdb(1, observedGeneration=1, disruptionsAllowed=1), "a", dry_run=True)
    assert dry["status"]["disruptionsAllowed"] == 0 and "disruptedPods" not in dry["status"]
