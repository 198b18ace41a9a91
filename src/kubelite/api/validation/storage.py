"""Validation of PersistentVolume, PersistentVolumeClaim and StorageClass.

After ``ValidatePersistentVolume(Update)``, ``ValidatePersistentVolumeClaim(Update)`` in
``pkg/apis/core/validation`` and ``ValidateStorageClass(Update)`` in
``pkg/apis/storage/validation``: the checks a client meets, in Kubernetes' words. A claim's
spec is frozen after creation except its storage request (growing it is the resize admission's
to allow), its ``volumeName`` (set once, by the binder) and a class given to a claim that had
none (the retroactive default); a volume's source and mode are frozen; a class's provisioner,
parameters, reclaim policy and binding mode are frozen.

Where Kubernetes appends a ``cmp.Diff`` of the old and new spec to an "immutable" message,
kubelite gives the message alone.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import Any

from kubelite.api import storage
from kubelite.api.errors import FieldError, forbidden, invalid, not_supported, required, too_long
from kubelite.api.resource import parse_quantity
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import FIELD_IMMUTABLE, validate_label_selector
from kubelite.api.validation.names import is_dns1123_subdomain, is_qualified_name, name_is_dns_subdomain

Obj = Mapping[str, Any]

# The PersistentVolumeSource members (one, exactly, per volume).
VOLUME_SOURCES = (
    "gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "nfs", "rbd", "iscsi", "cinder",
    "cephfs", "fc", "flocker", "flexVolume", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "local", "storageos", "csi",
)
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")


def _meta(obj: Obj, old: Obj | None, namespaced: bool) -> list[FieldError]:
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        return object_meta(meta, namespaced=namespaced, name_validator=name_is_dns_subdomain)
    return object_meta_update(meta, old.get("metadata") or {})


def _quantity(value: Any) -> decimal.Decimal | None:
    try:
        return parse_quantity(value)
    except (ValueError, TypeError):
        return None


def _access_modes(modes: Any, path: str, claim: bool) -> list[FieldError]:
    if not modes:
        return [required(path, "at least 1 access mode is required" if claim else "")]
    errs: list[FieldError] = []
    for mode in modes:
        if mode not in storage.ACCESS_MODES:
            errs.append(not_supported(path, mode, list(storage.ACCESS_MODES)))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _positive_storage(value: Any, path: str) -> list[FieldError]:
    q = _quantity(value)
    if q is None:
        return [invalid(path, value, "must be a valid quantity")]
    if q <= 0:
        return [invalid(path, str(value), "must be greater than zero")]
    return []


def _class_name(name: Any, path: str) -> list[FieldError]:
    if not name:
        return []
    return [invalid(path, name, m) for m in is_dns1123_subdomain(str(name))]


def _volume_mode(spec: Obj, path: str) -> list[FieldError]:
    mode = spec.get("volumeMode")
    if mode is not None and mode not in storage.VOLUME_MODES:
        return [not_supported(path, mode, list(storage.VOLUME_MODES))]
    return []


# -- PersistentVolume ----------------------------------------------------------------------------


def validate_persistent_volume(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePersistentVolume / ValidatePersistentVolumeUpdate."""
    errs = _meta(obj, old, namespaced=False)
    spec: Obj = obj.get("spec") or {}
    errs += _access_modes(spec.get("accessModes"), "spec.accessModes", claim=False)
    capacity = spec.get("capacity") or {}
    if not capacity:
        errs.append(required("spec.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        errs.append(not_supported("spec.capacity", capacity, ["storage"]))
    for name, value in capacity.items():
        errs += _positive_storage(value, f"spec.capacity[{name}]")
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in storage.RECLAIM_POLICIES:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, list(storage.RECLAIM_POLICIES)))
    errs += _class_name(spec.get("storageClassName"), "spec.storageClassName")
    sources = [k for k in VOLUME_SOURCES if spec.get(k) is not None]
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errs.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    host_path = spec.get("hostPath")
    if isinstance(host_path, Mapping):
        if not host_path.get("path"):
            errs.append(required("spec.hostPath.path"))
        if host_path.get("type") not in (None, *HOST_PATH_TYPES):
            errs.append(not_supported("spec.hostPath.type", host_path.get("type"), list(HOST_PATH_TYPES)))
        if policy == "Recycle" and host_path.get("path") == "/":
            errs.append(forbidden("spec.persistentVolumeReclaimPolicy",
                                  'may not be \'recycle\' for a hostPath mount of \'/\''))
    local = spec.get("local")
    if isinstance(local, Mapping):
        if not local.get("path"):
            errs.append(required("spec.local.path"))
        if spec.get("nodeAffinity") is None:
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    errs += _volume_mode(spec, "spec.volumeMode")
    if old is not None:
        errs += _persistent_volume_update(obj, old)
    return errs


def _persistent_volume_update(obj: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    if any(spec.get(k) != old_spec.get(k) for k in VOLUME_SOURCES):
        errs.append(forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation"))
    if spec.get("volumeMode") != old_spec.get("volumeMode"):
        errs.append(invalid("volumeMode", spec.get("volumeMode"), FIELD_IMMUTABLE))
    if old_spec.get("nodeAffinity") is not None and spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
        errs.append(invalid("nodeAffinity", spec.get("nodeAffinity"), FIELD_IMMUTABLE))
    return errs


# -- PersistentVolumeClaim -------------------------------------------------------------------------


def validate_persistent_volume_claim(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePersistentVolumeClaim / ValidatePersistentVolumeClaimUpdate."""
    errs = _meta(obj, old, namespaced=True)
    spec: Obj = obj.get("spec") or {}
    errs += _access_modes(spec.get("accessModes"), "spec.accessModes", claim=True)
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec.get("selector"), "spec.selector")
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        errs.append(required("spec.resources[storage]"))
    else:
        errs += _positive_storage(requests["storage"], "spec.resources[storage]")
    errs += _class_name(spec.get("storageClassName"), "spec.storageClassName")
    errs += _volume_mode(spec, "spec.volumeMode")
    if old is not None:
        errs += _persistent_volume_claim_update(obj, old)
    return errs


SPEC_IMMUTABLE = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"


def _persistent_volume_claim_update(obj: Obj, old: Obj) -> list[FieldError]:
    spec = dict(obj.get("spec") or {})
    old_spec = dict(old.get("spec") or {})
    # volumeName may be set once (the binder does it).
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = spec.get("volumeName")
    # RetroactiveDefaultStorageClass: a claim without a class may be given one while unbound.
    if (old_spec.get("storageClassName") is None and storage.BETA_STORAGE_CLASS not in
            ((old.get("metadata") or {}).get("annotations") or {})
            and spec.get("storageClassName") and not (old.get("spec") or {}).get("volumeName")):
        old_spec["storageClassName"] = spec.get("storageClassName")
    # A bound claim's storage request may change (expansion), nothing else of its spec.
    if (obj.get("status") or {}).get("phase") == "Bound" or (old.get("status") or {}).get("phase") == "Bound":
        spec["resources"] = _with_storage(spec.get("resources"), _storage_of(old_spec))
    errs: list[FieldError] = []
    if _normal(spec) != _normal(old_spec):
        errs.append(forbidden("spec", SPEC_IMMUTABLE))
    new_size, old_size = storage.requested_storage(obj), storage.requested_storage(old)
    capacity = storage._quantity(((old.get("status") or {}).get("capacity") or {}).get("storage"))
    # RecoverVolumeExpansionFailure (beta, on): a request may shrink back, but not to the capacity.
    if new_size < old_size and new_size <= capacity:
        errs.append(forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"))
    return errs


def _storage_of(spec: Obj) -> Any:
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def _with_storage(resources: Any, value: Any) -> dict[str, Any]:
    out = dict(resources or {})
    requests = dict(out.get("requests") or {})
    if value is None:
        requests.pop("storage", None)
    else:
        requests["storage"] = value
    out["requests"] = requests
    return out


def _normal(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Compare as Go's semantic equality does: quantities by value, empty and absent alike."""
    out: dict[str, Any] = {}
    for k, v in spec.items():
        if v in (None, "", [], {}):
            continue
        if k == "resources":
            v = {rk: {name: _quantity(q) for name, q in (rv or {}).items()} for rk, rv in (v or {}).items() if rv}
        out[k] = v
    return out


# -- StorageClass ------------------------------------------------------------------------------------


def validate_storage_class(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateStorageClass / ValidateStorageClassUpdate."""
    errs = _meta(obj, old, namespaced=False)
    provisioner = obj.get("provisioner") or ""
    if not provisioner:
        errs.append(required("provisioner"))
    elif len(provisioner) > 255:
        errs.append(too_long("provisioner", provisioner, 255))
    else:
        errs += [invalid("provisioner", provisioner, m) for m in is_qualified_name(provisioner.lower())]
    params = obj.get("parameters") or {}
    if len(params) > 512:
        errs.append(invalid("parameters", params, "can't have more than 512 parameters"))
    if any(not k for k in params):
        errs.append(invalid("parameters", params, "key must not be empty"))
    policy = obj.get("reclaimPolicy")
    if policy is not None and policy not in ("Delete", "Retain"):
        errs.append(not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    if mode is None:
        errs.append(required("volumeBindingMode"))
    elif mode not in storage.BINDING_MODES:
        errs.append(not_supported("volumeBindingMode", mode, list(storage.BINDING_MODES)))
    if old is not None:
        if (obj.get("parameters") or {}) != (old.get("parameters") or {}):
            errs.append(forbidden("parameters", "updates to parameters are forbidden."))
        if provisioner != (old.get("provisioner") or ""):
            errs.append(forbidden("provisioner", "updates to provisioner are forbidden."))
        if policy != old.get("reclaimPolicy"):
            errs.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        if mode != old.get("volumeBindingMode"):
            errs.append(invalid("volumeBindingMode", mode, FIELD_IMMUTABLE))
    return errs


VALIDATORS = {
    ("", "PersistentVolume"): validate_persistent_volume,
    ("", "PersistentVolumeClaim"): validate_persistent_volume_claim,
    ("storage.k8s.io", "StorageClass"): validate_storage_class,
}
