"""Event views: events.k8s.io/v1 <-> core/v1 renames as Kubernetes' conversion makes them,
written in Go's field order with Go's zero values, both views stored at one key."""

from __future__ import annotations

from kubelite.api.conversion import core_event_to_events_v1, events_v1_to_core_event
from kubelite.api.registry import lookup

CORE = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "e", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "message": "hi",
    "source": {"component": "kubelet", "host": "n"}, "firstTimestamp": "2026-01-01T00:00:00Z",
    "lastTimestamp": "2026-01-01T00:00:01Z", "count": 2, "type": "Normal",
    "eventTime": None, "reportingComponent": "kubelet", "reportingInstance": "n",
}


def test_core_to_events_v1_renames_in_go_order() -> None:
    ev = core_event_to_events_v1(CORE)
    assert list(ev.items()) == [
        ("apiVersion", "events.k8s.io/v1"), ("kind", "Event"), ("metadata", {"name": "e", "namespace": "default"}),
        ("eventTime", None), ("reportingController", "kubelet"), ("reportingInstance", "n"), ("reason", "Started"),
        ("regarding", {"kind": "Pod", "name": "p"}), ("note", "hi"), ("type", "Normal"),
        ("deprecatedSource", {"component": "kubelet", "host": "n"}),
        ("deprecatedFirstTimestamp", "2026-01-01T00:00:00Z"), ("deprecatedLastTimestamp", "2026-01-01T00:00:01Z"),
        ("deprecatedCount", 2),
    ]


def test_go_zero_values_of_the_other_view() -> None:
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x"},
           "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "c", "reportingInstance": "i",
           "action": "A", "reason": "R", "regarding": {"kind": "Node", "name": "n"}, "note": "n", "type": "Warning"}
    core = events_v1_to_core_event(new)
    assert list(core.items())[3:] == [
        ("involvedObject", {"kind": "Node", "name": "n"}), ("reason", "R"), ("message", "n"), ("source", {}),
        ("firstTimestamp", None), ("lastTimestamp", None), ("type", "Warning"),
        ("eventTime", "2026-01-01T00:00:00.000000Z"), ("action", "A"), ("reportingComponent", "c"),
        ("reportingInstance", "i"),
    ]
    # Back again: what was written, plus the zero values an events.k8s.io read shows.
    assert core_event_to_events_v1(core) == {**new, "deprecatedSource": {}, "deprecatedFirstTimestamp": None,
                                             "deprecatedLastTimestamp": None}
    minimal = core_event_to_events_v1({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "m"}})
    assert minimal == {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "m"},
                       "eventTime": None, "regarding": {}, "deprecatedSource": {},
                       "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None}


def test_full_objects_round_trip() -> None:
    assert events_v1_to_core_event(core_event_to_events_v1(CORE)) == CORE


def test_both_apis_store_at_one_key() -> None:
    core, events = lookup("", "v1", "events"), lookup("events.k8s.io", "v1", "events")
    assert core is not None and events is not None
    assert events.key("ns", "e") == core.key("ns", "e") == "/registry/core/events/ns/e"
    assert events.view is not None and core.view is None
