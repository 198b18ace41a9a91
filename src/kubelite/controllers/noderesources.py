"""kube-scheduler's NodeResourcesFit filter: does a pod's request fit what a node has left?

A node offers ``status.allocatable`` (what its kubelet reports after reservations and
eviction thresholds); every pod already bound there and not finished holds its requests,
whether or not its processes use them. A new pod fits when, for every resource it
requests, its request is at most allocatable minus what is held. This is book-keeping,
not measurement: a pod that requests 100 CPUs never fits a 2-CPU node, and a pod that
requests nothing always fits (but counts against the node's ``pods``).

What a pod requests is the component-helpers' ``PodRequests``: init containers run one at
a time before the others, so the pod needs the larger of (the sum over its containers) and
(the largest init container); sidecars (init containers with ``restartPolicy: Always``)
keep running, so they add to both; ``spec.overhead`` (from the RuntimeClass) comes on top.

The reasons are kube-scheduler's (``Insufficient cpu``, ``Too many pods``), which the
scheduler folds into its ``0/N nodes are available`` message. In 1.33 every one of them is
resolvable by preemption (it became unresolvable for requests larger than the whole node
only in 1.34).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from typing import Any

from kubelite.api.resource import parse_quantity

Resources = dict[str, decimal.Decimal]
Obj = Mapping[str, Any]

# The resources with a field of their own in the scheduler's Resource; every other one
# (extended resources, hugepages-*) is a "scalar resource", checked the same way.
CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"


def _quantities(rl: Mapping[str, Any] | None) -> Resources:
    out: Resources = {}
    for name, value in (rl or {}).items():
        try:
            out[name] = parse_quantity(value)
        except (ValueError, decimal.InvalidOperation):
            continue  # validation refuses these before a pod is stored
    return out


def _add(into: Resources, rl: Mapping[str, decimal.Decimal]) -> None:
    for name, q in rl.items():
        into[name] = into.get(name, decimal.Decimal(0)) + q


def _max(into: Resources, rl: Mapping[str, decimal.Decimal]) -> None:
    for name, q in rl.items():
        if q > into.get(name, decimal.Decimal(0)):
            into[name] = q


def pod_requests(pod: Obj) -> Resources:
    """What the pod asks of a node (resourcehelper.PodRequests, without pod-level resources)."""
    spec = pod.get("spec") or {}
    reqs: Resources = {}
    for c in spec.get("containers") or []:
        _add(reqs, _quantities((c.get("resources") or {}).get("requests")))
    sidecars: Resources = {}
    init_max: Resources = {}
    for c in spec.get("initContainers") or []:
        own = _quantities((c.get("resources") or {}).get("requests"))
        if c.get("restartPolicy") == "Always":
            # A sidecar runs from its start on: it adds to the pod's steady state, and
            # every later init container runs next to all sidecars started before it.
            _add(reqs, own)
            _add(sidecars, own)
            during = dict(sidecars)
        else:
            during = dict(own)
            _add(during, sidecars)
        _max(init_max, during)
    _max(reqs, init_max)
    _add(reqs, _quantities(spec.get("overhead")))
    return reqs


def held(pods: Iterable[Obj]) -> Resources:
    """What the pods already on a node hold (the NodeInfo's Requested)."""
    out: Resources = {}
    for p in pods:
        _add(out, pod_requests(p))
    return out


def insufficient(request: Mapping[str, decimal.Decimal], allocatable: Mapping[str, Any],
                 requested: Mapping[str, decimal.Decimal], pod_count: int) -> list[str]:
    """fitsRequest: the reasons the node cannot take the pod, in kube-scheduler's order."""
    alloc = _quantities(allocatable)
    zero = decimal.Decimal(0)
    reasons = []
    if pod_count + 1 > int(alloc.get(PODS, zero)):
        reasons.append("Too many pods")
    for name in (CPU, MEMORY, EPHEMERAL):
        want = request.get(name, zero)
        if want > 0 and want > alloc.get(name, zero) - requested.get(name, zero):
            reasons.append(f"Insufficient {name}")
    # Go ranges over a map here, in no fixed order; sorted keeps the message stable (the
    # scheduler's histogram sorts the reasons anyway).
    for name in sorted(request):
        if name in (CPU, MEMORY, EPHEMERAL, PODS):
            continue
        want = request[name]
        if want > 0 and want > alloc.get(name, zero) - requested.get(name, zero):
            reasons.append(f"Insufficient {name}")
    return reasons
