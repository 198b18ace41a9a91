"""Validation of the cluster-level kinds: PriorityClass, the CSI storage kinds, APIService.

After ``pkg/apis/scheduling/validation``, ``pkg/apis/storage/validation`` and
kube-aggregator's ``apiregistration/validation``: the essentials a client meets, in
Kubernetes' words. A PriorityClass's value is immutable and names starting ``system-``
are the two built-in classes only; CSI driver names follow the CSI naming rule; a
VolumeAttachment names its attacher, node and exactly one source, and its spec never
changes; an APIService is named ``<version>.<group>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubelite.api import resource
from kubelite.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required, too_long
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_label_selector
from kubelite.api.validation.names import is_dns1123_subdomain, name_is_dns_subdomain
from kubelite.api.validation.service import validate_dns1123_subdomain

Obj = Mapping[str, Any]

# scheduling.SystemPriorityClasses(): name -> value (neither is the global default).
SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
HIGHEST_USER_DEFINABLE_PRIORITY = 1000000000
PREEMPTION_POLICIES = ("Never", "PreemptLowerPriority")


def _meta(obj: Obj, old: Obj | None, *, namespaced: bool = False) -> list[FieldError]:
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        return object_meta(meta, namespaced=namespaced, name_validator=name_is_dns_subdomain)
    return object_meta_update(meta, old.get("metadata") or {})


# -- scheduling.k8s.io -----------------------------------------------------------------------


def _known_system_class(name: str, value: Any, global_default: bool) -> str | None:
    """scheduling.IsKnownSystemPriorityClass: None when it is one, else why not."""
    if name not in SYSTEM_PRIORITY_CLASSES:
        return f"{name} is not a known system priority class"
    if value != SYSTEM_PRIORITY_CLASSES[name]:
        return f"value of {name} PriorityClass must be {SYSTEM_PRIORITY_CLASSES[name]}"
    if global_default:
        return f"globalDefault of {name} PriorityClass must be false"
    return None


def validate_priority_class(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePriorityClass / ValidatePriorityClassUpdate."""
    errs = _meta(obj, old)
    name = str((obj.get("metadata") or {}).get("name") or "")
    value = obj.get("value", 0)
    if old is None:
        if name.startswith("system-"):
            why = _known_system_class(name, value, bool(obj.get("globalDefault")))
            if why is not None:
                errs.append(forbidden("metadata.name", "priority class names with 'system-' prefix are reserved for "
                                      f"system use only. error: {why}"))
        elif isinstance(value, int) and value > HIGHEST_USER_DEFINABLE_PRIORITY:
            errs.append(forbidden("value", "maximum allowed value of a user defined priority is "
                                  f"{HIGHEST_USER_DEFINABLE_PRIORITY}"))
        policy = obj.get("preemptionPolicy")
        if policy is not None and policy not in PREEMPTION_POLICIES:
            errs.append(not_supported("preemptionPolicy", policy, PREEMPTION_POLICIES))
        return errs
    if value != old.get("value", 0):
        errs.append(forbidden("value", "may not be changed in an update."))
    if obj.get("preemptionPolicy") != old.get("preemptionPolicy"):
        errs.append(invalid("preemptionPolicy", obj.get("preemptionPolicy"), "field is immutable"))
    return errs


# -- storage.k8s.io --------------------------------------------------------------------------

_CSI_DRIVER_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_CSI_DRIVER_NAME_MAX = 63


def _csi_driver_name(name: Any, path: str) -> list[FieldError]:
    """ValidateCSIDriverName."""
    if not name:
        return [required(path)]
    errs: list[FieldError] = []
    if len(name) > _CSI_DRIVER_NAME_MAX:
        errs.append(too_long(path, name, _CSI_DRIVER_NAME_MAX))
    if not _CSI_DRIVER_NAME.match(name):
        errs.append(invalid(path, name, "must consist of alphanumeric characters, '-', '_' or '.', and must start "
                            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
                            "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))
    return errs


def validate_csi_driver(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateCSIDriver (the name is a driver name, the defaulted booleans are set)."""
    meta: Obj = obj.get("metadata") or {}
    errs = _csi_driver_name(meta.get("name"), "metadata.name")
    errs += _meta(obj, old) if old is not None else []
    spec: Obj = obj.get("spec") or {}
    for field in ("attachRequired", "podInfoOnMount"):
        if spec.get(field) is None:
            errs.append(required(f"spec.{field}"))
    for i, mode in enumerate(spec.get("volumeLifecycleModes") or []):
        if mode not in ("Persistent", "Ephemeral"):
            errs.append(not_supported(f"spec.volumeLifecycleModes[{i}]", mode, ["Persistent", "Ephemeral"]))
    if old is not None and spec.get("storageCapacity") is None:
        errs.append(required("spec.storageCapacity"))
    return errs


def validate_csi_node(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateCSINode: every driver named, with a node ID, once."""
    errs = _meta(obj, old)
    seen: set[str] = set()
    for i, driver in enumerate((obj.get("spec") or {}).get("drivers") or []):
        path = f"spec.drivers[{i}]"
        name = driver.get("name")
        errs += _csi_driver_name(name, f"{path}.name")
        if not driver.get("nodeID"):
            errs.append(required(f"{path}.nodeID", "nodeID must not be empty"))
        if name in seen:
            errs.append(duplicate(f"{path}.name", name))
        seen.add(str(name))
    return errs


def validate_csi_storage_capacity(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateCSIStorageCapacity."""
    errs = _meta(obj, old, namespaced=True)
    errs += validate_label_selector(obj.get("nodeTopology"), "nodeTopology")
    errs += validate_dns1123_subdomain(obj.get("storageClassName") or "", "storageClassName")
    for field in ("capacity", "maximumVolumeSize"):
        value = obj.get(field)
        if value is None:
            continue
        try:
            negative = resource.parse_quantity(str(value)) < 0
        except ValueError:
            errs.append(invalid(field, value, "quantities must match the regular expression "
                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
            continue
        if negative:
            errs.append(invalid(field, value, "must be greater than or equal to 0"))
    return errs


def validate_volume_attachment(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateVolumeAttachment / ValidateVolumeAttachmentUpdate (the spec is immutable)."""
    errs = _meta(obj, old)
    spec: Obj = obj.get("spec") or {}
    errs += _csi_driver_name(spec.get("attacher"), "spec.attacher")
    if not spec.get("nodeName"):
        errs.append(required("spec.nodeName"))
    source: Obj = spec.get("source") or {}
    given = [k for k in ("persistentVolumeName", "inlineVolumeSpec") if source.get(k) is not None]
    if len(given) != 1:
        errs.append(required("spec.source", "must specify exactly one of inlineVolumeSpec and persistentVolumeName"))
    elif source.get("persistentVolumeName") == "":
        errs.append(required("spec.source.persistentVolumeName", "must specify non empty persistentVolumeName"))
    if old is not None and spec != (old.get("spec") or {}):
        errs.append(invalid("spec", spec, "field is immutable"))
    return errs


# -- apiregistration.k8s.io ------------------------------------------------------------------


def validate_api_service(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateAPIService: named <version>.<group>, with priorities in range."""
    meta: Obj = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    errs = _meta(obj, old) if old is not None else []
    spec: Obj = obj.get("spec") or {}
    version, group = spec.get("version") or "", spec.get("group") or ""
    if old is None:
        if not name:
            errs.append(required("metadata.name", "name or generateName is required"))
        elif name != f"{version}.{group}":
            errs.append(invalid("metadata.name", name, f'must be "{version}.{group}"'))
        else:
            for msg in is_dns1123_subdomain(name.rstrip(".")) if group else []:
                errs.append(invalid("metadata.name", name, msg))
    if not version:
        errs.append(required("spec.version"))
    elif not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", version) or len(version) > 63:
        errs.append(invalid("spec.version", version, "a lowercase RFC 1123 label"))
    group_min = spec.get("groupPriorityMinimum") or 0
    if not 0 < group_min <= 20000:
        errs.append(invalid("spec.groupPriorityMinimum", group_min, "must be positive and less than 20000"))
    version_priority = spec.get("versionPriority") or 0
    if not 0 < version_priority <= 1000:
        errs.append(invalid("spec.versionPriority", version_priority, "must be positive and less than 1000"))
    service = spec.get("service")
    if service is None:
        if not group and version != "v1":
            errs.append(required("spec.group", "only v1 may have an empty group and it better be legacy kube"))
        if spec.get("caBundle"):
            errs.append(invalid("spec.caBundle", f"{len(spec['caBundle'])} bytes",
                                "local APIServices may not have a caBundle"))
        if spec.get("insecureSkipTLSVerify"):
            errs.append(invalid("spec.insecureSkipTLSVerify", True, "local APIServices may not have "
                                "insecureSkipTLSVerify"))
    else:
        if not service.get("namespace"):
            errs.append(required("spec.service.namespace"))
        if not service.get("name"):
            errs.append(required("spec.service.name"))
        if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
            errs.append(invalid("spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present"))
    return errs
