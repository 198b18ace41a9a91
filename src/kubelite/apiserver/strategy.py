"""Per-kind behaviour of the API server: defaulting, status handling, validation, allocation.

kube-apiserver gives every kind a *strategy* (pkg/registry/<group>/<kind>/strategy.go): what
the server resets on create, what an update of the main resource may not touch (status), how
the status subresource is confined to status, and which validation runs. kubelite does the
same: the REST handlers are generic, and everything kind-specific sits behind
:class:`Strategy`, so adding a kind's rules is one subclass registered in ``STRATEGIES``.
"""

from __future__ import annotations

from typing import Any

from kubelite.api import validation
from kubelite.api.errors import FieldError
from kubelite.api.registry import ResourceType


class Strategy:
    """The default behaviour: generic metadata rules and the kind's validation."""

    allow_create_on_update = False
    allow_unconditional_update = True

    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt
        self.has_status = "status" in rt.subresources

    def defaults(self, obj: dict[str, Any]) -> None:
        """Fill defaults in place (the API's defaulting functions)."""

    def prepare_create(self, obj: dict[str, Any]) -> None:
        """Reset what a client may not set at creation (beyond the generic metadata)."""

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Main resource update: status is not the client's to change here."""
        if self.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)

    def prepare_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Status subresource update: everything but status (and a few metadata) comes from old."""
        status = new.get("status")
        meta = new.get("metadata", {})
        new.clear()
        new.update({k: v for k, v in old.items() if k != "status"})
        new["metadata"] = {**old.get("metadata", {})}
        for k in ("resourceVersion", "managedFields"):
            if k in meta:
                new["metadata"][k] = meta[k]
        if status is not None:
            new["status"] = status

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        return validation.validate(self.rt.group, self.rt.kind, obj, old)


class NamespaceStrategy(Strategy):
    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]

    def defaults(self, obj: dict[str, Any]) -> None:
        # The NamespaceDefaultLabelName feature: every namespace carries its own name as a label.
        meta = obj.setdefault("metadata", {})
        if meta.get("name"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]


class EventStrategy(Strategy):
    allow_create_on_update = True


class EndpointsStrategy(Strategy):
    allow_create_on_update = True


STRATEGIES: dict[tuple[str, str], type[Strategy]] = {
    ("", "Namespace"): NamespaceStrategy,
    ("", "Event"): EventStrategy,
    ("", "Endpoints"): EndpointsStrategy,
}


def strategy_for(rt: ResourceType) -> Strategy:
    return STRATEGIES.get((rt.group, rt.kind), Strategy)(rt)
