"""Event views: events.k8s.io/v1 <-> core/v1 renames as Kubernetes' conversion makes them,
both views stored at one key, and round trips that give back exactly what was written."""

from __future__ import annotations

from kubelite.api.conversion import core_event_to_events_v1, events_v1_to_core_event
from kubelite.api.registry import lookup

CORE = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "e", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "message": "hi",
    "source": {"component": "kubelet", "host": "n"}, "firstTimestamp": "2026-01-01T00:00:00Z",
    "lastTimestamp": "2026-01-01T00:00:01Z", "count": 2, "type": "Normal",
    "reportingComponent": "kubelet", "reportingInstance": "n", "eventTime": None,
}


def test_core_to_events_v1_renames() -> None:
    ev = core_event_to_events_v1(CORE)
    assert list(ev)[:3] == ["apiVersion", "kind", "metadata"]
    assert ev == {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
        "regarding": {"kind": "Pod", "name": "p"}, "reason": "Started", "note": "hi",
        "deprecatedSource": {"component": "kubelet", "host": "n"},
        "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z", "deprecatedLastTimestamp": "2026-01-01T00:00:01Z",
        "deprecatedCount": 2, "type": "Normal", "reportingController": "kubelet", "reportingInstance": "n",
        "eventTime": None,
    }


def test_round_trips() -> None:
    assert events_v1_to_core_event(core_event_to_events_v1(CORE)) == CORE
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x"},
           "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "c", "reportingInstance": "i",
           "action": "A", "reason": "R", "regarding": {"kind": "Node", "name": "n"}, "note": "n", "type": "Warning",
           "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}}
    assert core_event_to_events_v1(events_v1_to_core_event(new)) == new


def test_both_apis_store_at_one_key() -> None:
    core, events = lookup("", "v1", "events"), lookup("events.k8s.io", "v1", "events")
    assert core is not None and events is not None
    assert events.key("ns", "e") == core.key("ns", "e") == "/registry/core/events/ns/e"
    assert events.view is not None and core.view is None
