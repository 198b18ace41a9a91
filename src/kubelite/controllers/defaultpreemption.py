"""kube-scheduler's DefaultPreemption post-filter: make room for a pod by evicting lower-priority ones.

When a pod fits no node, and only for nodes where it failed a filter that removing pods
can help with (NodePorts, NodeResourcesFit: "resolvable"), the scheduler asks whether
evicting pods of lower priority would let it in. Per node, the dry run removes every
lower-priority pod; if the pod still does not fit, that node is out (with the filter's
reasons, or "No preemption victims found for incoming pod" when there was nothing to
remove). Otherwise as many of them as possible are given back ("reprieved"), the most
important first, and the rest are the victims. Among candidate nodes the one whose victims
matter least wins (lowest highest priority, then lowest sum of priorities, then fewest).

The victims get the ``DisruptionTarget`` condition and are deleted (gracefully); the pod
gets ``status.nominatedNodeName`` and waits for the room to be free. While a victim on its
nominated node is still terminating, the pod does not preempt again. Not modelled:
PodDisruptionBudgets (kube-scheduler prefers nodes whose victims violate none) and the
nominated pods' reservations of room against lower-priority pods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api.types import Obj

Fits = Callable[[Obj, Obj, list[Obj]], list[str]]  # (pod, node, pods there) -> why it does not fit

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
DISRUPTION_REASON = "PreemptionByScheduler"


def priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def terminating_by_preemption(pod: Obj) -> bool:
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "DisruptionTarget" and c.get("reason") == DISRUPTION_REASON
               for c in (pod.get("status") or {}).get("conditions") or [])


def ineligible(pod: Obj, nominated_pods: list[Obj] | None, nominated_unresolvable: bool) -> str | None:
    """Why the pod may not preempt now (PodEligibleToPreemptOthers), or None."""
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return NEVER
    if nominated_pods is not None and not nominated_unresolvable:
        if any(priority(p) < priority(pod) and terminating_by_preemption(p) for p in nominated_pods):
            return TERMINATING
    return None


def _start(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("startTime") or "")


def select_victims(pod: Obj, node: Obj, pods: list[Obj], fits: Fits) -> tuple[list[Obj] | None, list[str]]:
    """The dry run on one node: (victims, []) when evicting them lets the pod in, else (None, reasons)."""
    lower = [p for p in pods if priority(p) < priority(pod)]
    if not lower:
        return None, [NO_VICTIMS]
    kept = [p for p in pods if priority(p) >= priority(pod)]
    reasons = fits(pod, node, kept)
    if reasons:
        return None, reasons
    # Reprieve the most important first: higher priority, then the one running longer.
    lower.sort(key=lambda p: (-priority(p), _start(p)))
    victims = []
    for p in lower:
        if fits(pod, node, [*kept, p]):
            victims.append(p)
        else:
            kept.append(p)
    return victims, []


@dataclass
class Candidate:
    node: str
    victims: list[Obj]

    def rank(self) -> tuple[int, int, int, str]:
        prios = [priority(v) for v in self.victims]
        return max(prios, default=0), sum(prios), len(prios), self.node


def pick(candidates: list[Candidate]) -> Candidate | None:
    """pickOneNodeForPreemption without the PodDisruptionBudget criterion."""
    return min(candidates, key=Candidate.rank, default=None)


def disruption_condition(scheduler_name: str, now: str) -> dict[str, Any]:
    return {"type": "DisruptionTarget", "status": "True", "reason": DISRUPTION_REASON,
            "message": f"{scheduler_name}: preempting to accommodate a higher priority pod",
            "lastProbeTime": None, "lastTransitionTime": now}
