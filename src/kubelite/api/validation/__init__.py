"""Validation of API objects: one entry point, :func:`validate`, for every served kind.

It reproduces what kube-apiserver's create and update paths do: first the kind's own
validation (its strategy's Validate / ValidateUpdate, which includes the kind's metadata
rules and name format), then, only when that passed, the generic metadata check every
object gets (``ValidateObjectMetaAccessor`` with path-segment names). The order matters to
users: the kind's messages are the ones they see.

Kinds register their validator in :data:`VALIDATORS`; a kind without one gets the core
metadata rules with its name format from :func:`name_validator_for`. Adding the validators
of a new module is one line in the table below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import FieldError
from kubelite.api.registry import RESOURCES
from kubelite.api.validation import (
    apps,
    batch,
    certificates,
    cluster,
    core,
    discovery,
    legacy,
    networking,
    pod,
    policy,
    quota,
    rbac,
    service,
    storage,
    workloads,
)
from kubelite.api.validation.meta import KindValidator, validate_object_meta, validate_object_meta_update
from kubelite.api.validation.names import (
    NameValidator,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
    path_segment_name,
)

VALIDATORS: dict[tuple[str, str], KindValidator] = {
    **core.VALIDATORS,
    ("", "Service"): service.validate_service,
    ("", "Pod"): pod.validate_pod,
    ("apps", "Deployment"): workloads.validate_deployment,
    ("apps", "ReplicaSet"): workloads.validate_replicaset,
    ("apps", "StatefulSet"): apps.validate_statefulset,
    ("apps", "DaemonSet"): apps.validate_daemonset,
    ("apps", "ControllerRevision"): apps.validate_controller_revision,
    ("discovery.k8s.io", "EndpointSlice"): discovery.validate_endpointslice,
    ("", "Endpoints"): discovery.validate_endpoints,
    ("policy", "PodDisruptionBudget"): policy.validate_pod_disruption_budget,
    ("", "ReplicationController"): legacy.validate_replication_controller,
    ("", "PodTemplate"): legacy.validate_pod_template_kind,
    ("scheduling.k8s.io", "PriorityClass"): cluster.validate_priority_class,
    ("storage.k8s.io", "CSIDriver"): cluster.validate_csi_driver,
    ("storage.k8s.io", "CSINode"): cluster.validate_csi_node,
    ("storage.k8s.io", "CSIStorageCapacity"): cluster.validate_csi_storage_capacity,
    ("storage.k8s.io", "VolumeAttachment"): cluster.validate_volume_attachment,
    ("apiregistration.k8s.io", "APIService"): cluster.validate_api_service,
    **quota.VALIDATORS,
    **certificates.VALIDATORS,
    ("batch", "Job"): batch.validate_job,
    ("batch", "CronJob"): batch.validate_cronjob,
    **storage.VALIDATORS,
    **rbac.VALIDATORS,
    **networking.VALIDATORS,
}

_NAME_VALIDATORS: dict[tuple[str, str], NameValidator] = {
    ("", "Namespace"): name_is_dns_label,
    ("", "Service"): name_is_dns1035_label,
    # core/v1 Events only need names usable in a URL; events.k8s.io ones are subdomains.
    ("", "Event"): path_segment_name,
    # An IPAddress is named after its address (an IPv6 one is no DNS name); Kubernetes checks
    # it is a canonical IP, which is not done here.
    ("networking.k8s.io", "IPAddress"): path_segment_name,
}


def name_validator_for(group: str, kind: str) -> NameValidator:
    """The name format a kind requires: a DNS-1123 subdomain unless Kubernetes says otherwise."""
    return _NAME_VALIDATORS.get((group, kind), name_is_dns_subdomain)


_NAMESPACED = {(r.group, r.kind): r.namespaced for r in reversed(RESOURCES)}  # first entry wins


def _namespaced(group: str, kind: str) -> bool:
    try:
        return _NAMESPACED[(group, kind)]
    except KeyError:
        raise KeyError(f"no served kind {kind!r} in group {group!r}") from None


def _default_validator(group: str, kind: str, namespaced: bool) -> KindValidator:
    def validate_kind(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
        meta = obj.get("metadata") or {}
        if old is None:
            return core.object_meta(meta, namespaced=namespaced, name_validator=name_validator_for(group, kind))
        return core.object_meta_update(meta, old.get("metadata") or {})

    return validate_kind


def validate(
    group: str, kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> list[FieldError]:
    """Errors of a create (``old`` None) or an update of ``obj``; empty when it is valid.

    Expects the API server's preparation to be done: defaults applied, the namespace set
    from the URL, a generated name filled in, and for an update the system fields
    (resourceVersion, uid, creationTimestamp) carried over from ``old``.
    """
    namespaced = _namespaced(group, kind)
    validator = VALIDATORS.get((group, kind)) or _default_validator(group, kind, namespaced)
    errs = validator(obj, old)
    if errs:
        return errs
    meta = obj.get("metadata") or {}
    if old is None:
        return validate_object_meta(meta, namespaced=namespaced, name_validator=path_segment_name)
    return validate_object_meta_update(meta, old.get("metadata") or {})
