"""Kinds served by two API groups over one stored object: the conversions between their views.

kube-apiserver stores an object once, in its group's storage version, and converts it to
whatever version a client asks for. Most kinds here have one served version, stored as
served; the exception that clients notice is Event: ``v1`` Events and ``events.k8s.io/v1``
Events are two views of one stored object (both at ``/registry/events/`` in etcd), so an
event a component writes through one API is listed, watched and selected through the
other (``kubectl get events --field-selector source=kubelet`` finds the events of a
component that writes events.k8s.io, and the reverse).

Events are stored here in their core/v1 form; the events.k8s.io view renames fields as
``pkg/apis/events/v1/conversion.go`` does (``involvedObject`` is ``regarding``, ``message``
is ``note``, ``source``/``firstTimestamp``/``lastTimestamp``/``count`` carry the
``deprecated`` prefix, ``reportingComponent`` is ``reportingController``); every other
field has the same name in both. A converted object comes out as kube-apiserver writes one:
its fields in the Go struct's order, with the zero values Go writes for fields that have
no ``omitempty`` (an events.k8s.io event read through core/v1 has ``"firstTimestamp":
null``, a core event read through events.k8s.io ``"eventTime": null``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# core/v1 name -> events.k8s.io/v1 name, for the fields whose names differ.
_EVENT_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}
_EVENT_RENAMES_BACK = {v: k for k, v in _EVENT_RENAMES.items()}

# Each version's fields in its Go struct's order, which is the order kube-apiserver writes a
# converted object in, and the zero values Go writes for fields without omitempty (a struct
# is never omitted: an empty reference is {}, an unset time null).
_CORE_FIELDS = ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count",
                "type", "eventTime", "series", "action", "related", "reportingComponent", "reportingInstance")
_CORE_ZEROS: dict[str, Any] = {"involvedObject": {}, "source": {}, "firstTimestamp": None, "lastTimestamp": None,
                               "eventTime": None, "reportingComponent": "", "reportingInstance": ""}
_EVENTS_V1_FIELDS = ("eventTime", "series", "reportingController", "reportingInstance", "action", "reason",
                     "regarding", "related", "note", "type", "deprecatedSource", "deprecatedFirstTimestamp",
                     "deprecatedLastTimestamp", "deprecatedCount")
_EVENTS_V1_ZEROS: dict[str, Any] = {"eventTime": None, "regarding": {}, "deprecatedSource": {},
                                    "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None}


def _converted(obj: Obj, names: dict[str, str], api_version: str, order: tuple[str, ...],
               zeros: dict[str, Any]) -> Obj:
    renamed = {names.get(k, k): v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    out: Obj = {"apiVersion": api_version, "kind": obj.get("kind", "Event")}
    if "metadata" in obj:
        out["metadata"] = obj["metadata"]
    for field in order:
        if field in renamed:
            out[field] = renamed.pop(field)
        elif field in zeros:
            zero = zeros[field]
            out[field] = {} if isinstance(zero, dict) else zero
    out.update(renamed)  # fields of neither version (kept: the decoder already warned about them)
    return out


def core_event_to_events_v1(event: Obj) -> Obj:
    """Convert_core_Event_To_v1_Event, from the stored (core/v1) form."""
    return _converted(event, _EVENT_RENAMES, "events.k8s.io/v1", _EVENTS_V1_FIELDS, _EVENTS_V1_ZEROS)


def events_v1_to_core_event(event: Obj) -> Obj:
    """Convert_v1_Event_To_core_Event, to the stored (core/v1) form."""
    return _converted(event, _EVENT_RENAMES_BACK, "v1", _CORE_FIELDS, _CORE_ZEROS)


@dataclass(frozen=True)
class StorageView:
    """A served kind stored as another group's object: where it is stored, and how to convert."""

    storage_group: str  # the group whose storage path holds the objects ("" = core)
    storage_api_version: str
    to_view: Callable[[Obj], Obj]
    to_storage: Callable[[Obj], Obj]


# (group, version, kind) served -> its view over another group's storage.
STORAGE_VIEWS: dict[tuple[str, str, str], StorageView] = {
    ("events.k8s.io", "v1", "Event"): StorageView("", "v1", core_event_to_events_v1, events_v1_to_core_event),
}


def storage_view(group: str, version: str, kind: str) -> StorageView | None:
    return STORAGE_VIEWS.get((group, version, kind))
