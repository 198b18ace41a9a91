"""Objects kube-apiserver creates for itself at start: priority classes, flow control, APIServices.

Three of kube-apiserver's post-start hooks, done once by the primary API server:

- ``scheduling/bootstrap-system-priority-classes``: ``system-node-critical`` and
  ``system-cluster-critical``, created when missing and otherwise left alone.
- ``priority-and-fairness-config-producer``: the *mandatory* flow-control objects, the
  ``exempt`` and ``catch-all`` FlowSchemas and PriorityLevelConfigurations, kept at their
  mandatory spec (they carry ``apf.kubernetes.io/autoupdate-spec: "true"``). kubelite serves
  flow control read-only (it has no fairness filter to configure), so these are what
  ``kubectl get flowschemas`` lists.
- the aggregator's ``autoregister``: one *local* APIService per served group version
  (``v1.``, ``v1.apps``...: no service, Available because local), labelled
  ``kube-aggregator.kubernetes.io/automanaged: onstart``. Reconciled against the served table
  at every start: missing ones created, changed ones updated, ones for a group version no
  longer served deleted, so the list never drifts from discovery.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api import errors
from kubelite.api.registry import API_SERVICE_PRIORITIES, ResourceType, by_group_version, lookup
from kubelite.apiserver import objects
from kubelite.apiserver.registry import Registry, Target

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MANAGER = "kube-apiserver"
AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"
AUTOUPDATE = "apf.kubernetes.io/autoupdate-spec"

SYSTEM_PRIORITY_CLASSES: tuple[Obj, ...] = (
    {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "system-node-critical"}, "value": 2000001000,
        "description": "Used for system critical pods that must not be moved from their current node.",
    },
    {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "system-cluster-critical"}, "value": 2000000000,
        "description": "Used for system critical pods that must run in the cluster, but can be moved to "
                       "another node if necessary.",
    },
)

_ALL_RESOURCES = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True, "namespaces": ["*"]}
_ALL_NON_RESOURCES = {"verbs": ["*"], "nonResourceURLs": ["*"]}


def _group_subject(name: str) -> Obj:
    return {"kind": "Group", "group": {"name": name}}


MANDATORY_PRIORITY_LEVELS: tuple[Obj, ...] = (
    {"metadata": {"name": "exempt"},
     "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}},
    {"metadata": {"name": "catch-all"},
     "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0,
                                               "limitResponse": {"type": "Reject"}}}},
)

MANDATORY_FLOW_SCHEMAS: tuple[Obj, ...] = (
    {"metadata": {"name": "exempt"},
     "spec": {"priorityLevelConfiguration": {"name": "exempt"}, "matchingPrecedence": 1,
              "rules": [{"subjects": [_group_subject("system:masters")], "resourceRules": [_ALL_RESOURCES],
                         "nonResourceRules": [_ALL_NON_RESOURCES]}]}},
    {"metadata": {"name": "catch-all"},
     "spec": {"priorityLevelConfiguration": {"name": "catch-all"}, "matchingPrecedence": 10000,
              "distinguisherMethod": {"type": "ByUser"},
              "rules": [{"subjects": [_group_subject("system:unauthenticated"), _group_subject("system:authenticated")],
                         "resourceRules": [_ALL_RESOURCES], "nonResourceRules": [_ALL_NON_RESOURCES]}]}},
)


def _rt(group: str, plural: str) -> ResourceType:
    rt = lookup(group, "v1", plural)
    assert rt is not None, plural
    return rt


async def _create_missing(registry: Registry, rt: ResourceType, obj: Obj) -> Obj | None:
    """Create ``obj`` unless an object of its name exists; the created object, or None."""
    name = obj["metadata"]["name"]
    if await registry.store.get(rt.key(None, name)) is not None:
        return None
    try:
        return await registry.create_object(rt, None, obj, manager=MANAGER)
    except errors.StatusError as e:
        if e.code != 409:  # another API server got there first
            raise
        return None


async def _set_status(registry: Registry, rt: ResourceType, name: str, status: Obj) -> None:
    def compute(old: Obj) -> Obj:
        old["status"] = status
        return old

    await registry.update_status(rt, None, name, compute, manager=MANAGER, dry_run=False)


async def priority_classes(registry: Registry) -> None:
    rt = _rt("scheduling.k8s.io", "priorityclasses")
    for pc in SYSTEM_PRIORITY_CLASSES:
        if await _create_missing(registry, rt, {**pc, "metadata": dict(pc["metadata"])}) is not None:
            log.info("created PriorityClass %s", pc["metadata"]["name"])


async def flow_control(registry: Registry) -> None:
    """The mandatory priority levels, then the flow schemas that reference them."""
    group = "flowcontrol.apiserver.k8s.io"
    for rt, kind, items in (
        (_rt(group, "prioritylevelconfigurations"), "PriorityLevelConfiguration", MANDATORY_PRIORITY_LEVELS),
        (_rt(group, "flowschemas"), "FlowSchema", MANDATORY_FLOW_SCHEMAS),
    ):
        for item in items:
            name = item["metadata"]["name"]
            obj: Obj = {"apiVersion": f"{group}/v1", "kind": kind,
                        "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"}}, "spec": item["spec"]}
            created = await _create_missing(registry, rt, obj)
            if created is None:
                current = await registry.get_object(rt, None, name)
                if current.get("spec") == item["spec"]:
                    continue
                spec = item["spec"]

                def keep_mandatory(old: Obj, spec: Obj = spec) -> Obj:
                    old["spec"] = spec
                    old["metadata"].setdefault("annotations", {})[AUTOUPDATE] = "true"
                    return old

                await registry.guaranteed_update(Target(rt, None, name, None), keep_mandatory, manager=MANAGER)
            if kind == "FlowSchema":
                conditions = ((created or await registry.get_object(rt, None, name)).get("status") or {}).get(
                    "conditions") or []
                if any(c.get("type") == "Dangling" and c.get("status") == "False" for c in conditions):
                    continue
                level = item["spec"]["priorityLevelConfiguration"]["name"]
                await _set_status(registry, rt, name, {"conditions": [{
                    "type": "Dangling", "status": "False", "lastTransitionTime": objects.now_rfc3339(),
                    "reason": "Found",
                    "message": f"This FlowSchema references the PriorityLevelConfiguration object named "
                               f"\"{level}\" and it exists",
                }]})


def api_service_name(group: str, version: str) -> str:
    return f"{version}.{group}"


def local_api_services() -> dict[str, Obj]:
    """The local APIServices of the served group versions, by name."""
    lowest = min(g for g, _ in API_SERVICE_PRIORITIES.values())
    out: dict[str, Obj] = {}
    for gv in by_group_version():
        group, _, version = gv.rpartition("/")
        group_min, version_priority = API_SERVICE_PRIORITIES.get((group, version), (lowest - 100, 9))
        out[api_service_name(group, version)] = {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": api_service_name(group, version), "labels": {AUTOMANAGED: "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": group_min,
                     "versionPriority": version_priority, "service": None},
        }
    return out


_AVAILABLE = {"type": "Available", "status": "True", "reason": "Local",
              "message": "Local APIServices are always available"}


async def api_services(registry: Registry) -> None:
    rt = _rt("apiregistration.k8s.io", "apiservices")
    wanted = local_api_services()
    for current in await registry.list_objects(rt, None):
        name = current["metadata"]["name"]
        automanaged = (current["metadata"].get("labels") or {}).get(AUTOMANAGED) == "onstart"
        if name not in wanted and automanaged and (current.get("spec") or {}).get("service") is None:
            log.info("deleting APIService %s: its group version is no longer served", name)
            try:
                await registry.delete_named(rt, None, name, {})
            except errors.StatusError as e:
                if e.code != 404:
                    raise
    for name, obj in wanted.items():
        created = await _create_missing(registry, rt, obj)
        if created is None:
            current = await registry.get_object(rt, None, name)
            if current.get("spec") != obj["spec"] or (current["metadata"].get("labels") or {}).get(AUTOMANAGED) != "onstart":

                def reset(old: Obj, obj: Obj = obj) -> Obj:
                    old["spec"] = obj["spec"]
                    old["metadata"].setdefault("labels", {})[AUTOMANAGED] = "onstart"
                    return old

                current, _ = await registry.guaranteed_update(Target(rt, None, name, None), reset, manager=MANAGER)
            conditions = (current.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions):
                continue
        await _set_status(registry, rt, name, {"conditions": [{**_AVAILABLE, "lastTransitionTime": objects.now_rfc3339()}]})


async def bootstrap(registry: Registry) -> None:
    await priority_classes(registry)
    await flow_control(registry)
    await api_services(registry)
