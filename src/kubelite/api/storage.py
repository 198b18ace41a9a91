"""Persistent storage rules shared by the API server, the PV controller, the scheduler and the node.

The names and pure decisions of Kubernetes' volume machinery, in one place so that each
component reads a claim the same way: the annotations the PV controller and the provisioners
write (``pkg/controller/volume/persistentvolume/util``), the claim's class as
``GetPersistentVolumeClaimClass`` reads it, the default class the DefaultStorageClass admission
and the retroactive assignment choose, the defaults of PV, PVC and StorageClass
(``SetDefaults_*``), and the volume a claim binds to (``findMatchingVolume`` of the PV
controller's index: the smallest Available volume of the claim's class and volume mode that
offers every requested access mode, at least the requested capacity, and the selector's labels).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubelite.api import labels
from kubelite.api.resource import parse_quantity

Obj = Mapping[str, Any]

# Finalizers of the StorageObjectInUseProtection admission and their controllers.
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"

# Annotations of the PV controller (pkg/controller/volume/persistentvolume/util).
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _annotations(obj: Obj) -> Obj:
    return _meta(obj).get("annotations") or {}


def claim_class(pvc: Obj) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation wins over spec.storageClassName."""
    ann = _annotations(pvc)
    if BETA_STORAGE_CLASS in ann:
        return str(ann[BETA_STORAGE_CLASS])
    return str((pvc.get("spec") or {}).get("storageClassName") or "")


def volume_class(pv: Obj) -> str:
    """GetPersistentVolumeClass."""
    ann = _annotations(pv)
    if BETA_STORAGE_CLASS in ann:
        return str(ann[BETA_STORAGE_CLASS])
    return str((pv.get("spec") or {}).get("storageClassName") or "")


def class_unset(pvc: Obj) -> bool:
    """A claim that never named a class (nil, not ""): the one the default class is given to."""
    return (pvc.get("spec") or {}).get("storageClassName") is None and BETA_STORAGE_CLASS not in _annotations(pvc)


def is_default_class(sc: Obj) -> bool:
    ann = _annotations(sc)
    return ann.get(DEFAULT_CLASS) == "true" or ann.get(BETA_DEFAULT_CLASS) == "true"


def default_class(classes: Iterable[Obj]) -> Obj | None:
    """GetDefaultClass: of several default classes, the newest (then the name) wins (1.26+)."""
    defaults = [sc for sc in classes if is_default_class(sc)]
    if not defaults:
        return None
    return max(defaults, key=lambda sc: (str(_meta(sc).get("creationTimestamp") or ""), str(_meta(sc).get("name") or "")))


def requested_storage(pvc: Obj) -> decimal.Decimal:
    value = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    return _quantity(value)


def volume_capacity(pv: Obj) -> decimal.Decimal:
    return _quantity(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))


def _quantity(value: Any) -> decimal.Decimal:
    if value is None:
        return decimal.Decimal(0)
    try:
        return parse_quantity(value)
    except ValueError:
        return decimal.Decimal(0)


def volume_mode(obj: Obj) -> str:
    return str((obj.get("spec") or {}).get("volumeMode") or "Filesystem")


# -- defaults (SetDefaults_PersistentVolume, _PersistentVolumeClaim, storage SetDefaults_StorageClass) --


def default_persistent_volume(pv: dict[str, Any]) -> None:
    spec = pv.setdefault("spec", {})
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    if isinstance(spec.get("hostPath"), dict) and spec["hostPath"].get("type") is None:
        spec["hostPath"]["type"] = ""
    status = pv.setdefault("status", {})
    if not status.get("phase"):
        status["phase"] = "Pending"


def default_persistent_volume_claim(pvc: dict[str, Any]) -> None:
    spec = pvc.setdefault("spec", {})
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    status = pvc.setdefault("status", {})
    if not status.get("phase"):
        status["phase"] = "Pending"


def default_storage_class(sc: dict[str, Any]) -> None:
    if not sc.get("reclaimPolicy"):
        sc["reclaimPolicy"] = "Delete"
    if not sc.get("volumeBindingMode"):
        sc["volumeBindingMode"] = "Immediate"


# -- admission: StorageObjectInUseProtection, DefaultStorageClass, PersistentVolumeClaimResize ------


def add_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    meta = obj.setdefault("metadata", {})
    finalizers = list(meta.get("finalizers") or [])
    if finalizer not in finalizers:
        meta["finalizers"] = [*finalizers, finalizer]


def admit_default_class(pvc: dict[str, Any], classes: Iterable[Obj]) -> None:
    """DefaultStorageClass: a claim created without a class gets the default one, if any."""
    if not class_unset(pvc):
        return
    default = default_class(classes)
    if default is not None:
        pvc.setdefault("spec", {})["storageClassName"] = str(_meta(default).get("name") or "")


RESIZE_FORBIDDEN = ("only dynamically provisioned pvc can be resized and "
                    "the storageclass that provisions the pvc must support resize")
RESIZE_UNBOUND = "Only bound persistent volume claims can be expanded"


def admit_resize(new: Obj, old: Obj, classes: Mapping[str, Obj]) -> str | None:
    """PersistentVolumeClaimResize's Validate: why a grown request is refused, None if admitted."""
    if requested_storage(new) <= requested_storage(old):
        return None
    if (old.get("status") or {}).get("phase") != "Bound":
        return RESIZE_UNBOUND
    name, old_name = claim_class(new), claim_class(old)
    if not name or name != old_name:
        return RESIZE_FORBIDDEN
    sc = classes.get(name)
    if sc is None or not sc.get("allowVolumeExpansion"):
        return RESIZE_FORBIDDEN
    return None


# -- binding: the PV controller's volume index ------------------------------------------------------


def access_modes_cover(volume_modes: Sequence[str] | None, wanted: Sequence[str] | None) -> bool:
    """Every mode the claim asks for is one the volume offers (checkAccessModes)."""
    offered = set(volume_modes or [])
    return all(m in offered for m in wanted or [])


def node_affinity_allows(pv: Obj, node: Obj | None) -> bool:
    """CheckNodeAffinity: the volume's required node terms hold for ``node`` (any term; all its
    expressions). ``None`` (no node chosen yet) is allowed."""
    if node is None:
        return True
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    node_meta = _meta(node)
    node_labels = dict(node_meta.get("labels") or {})
    fields = {"metadata.name": str(node_meta.get("name") or "")}
    for term in terms:
        exprs, match_fields = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not match_fields:
            continue
        if all(_requirement(r, node_labels) for r in exprs) and all(_requirement(r, fields) for r in match_fields):
            return True
    return False


def _requirement(req: Obj, values_of: Mapping[str, str]) -> bool:
    """A NodeSelectorRequirement (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""
    key, op, values = str(req.get("key", "")), req.get("operator", ""), [str(v) for v in req.get("values") or []]
    if op == "In":
        return key in values_of and values_of[key] in values
    if op == "NotIn":
        return key not in values_of or values_of[key] not in values
    if op == "Exists":
        return key in values_of
    if op == "DoesNotExist":
        return key not in values_of
    if op in ("Gt", "Lt") and key in values_of and len(values) == 1:
        try:
            have, want = int(values_of[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def claim_ref_matches(pv: Obj, pvc: Obj) -> bool:
    """The volume is pre-bound (or bound) to exactly this claim (name, namespace, and uid if set)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    meta = _meta(pvc)
    if ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def volume_fits(pv: Obj, pvc: Obj, node: Obj | None = None) -> bool:
    """Whether ``pv`` can serve ``pvc`` (on ``node``) ignoring who it is bound to."""
    pv_spec, pvc_spec = pv.get("spec") or {}, pvc.get("spec") or {}
    if _meta(pv).get("deletionTimestamp"):
        return False
    if volume_class(pv) != claim_class(pvc) or volume_mode(pv) != volume_mode(pvc):
        return False
    if volume_capacity(pv) < requested_storage(pvc):
        return False
    if not access_modes_cover(pv_spec.get("accessModes"), pvc_spec.get("accessModes")):
        return False
    selector = pvc_spec.get("selector")
    if selector is not None:
        try:
            if not labels.selector_from_label_selector(selector).matches(_meta(pv).get("labels") or {}):
                return False
        except labels.SelectorError:
            return False
    return node_affinity_allows(pv, node)


def find_matching_volume(pvc: Obj, volumes: Iterable[Obj], node: Obj | None = None) -> Obj | None:
    """findMatchingVolume: a volume pre-bound to the claim first; else the smallest free fit.

    A volume whose claimRef names another claim is not free; one with phase Released keeps
    its claimRef (to the deleted claim) and so is never chosen, as in Kubernetes.
    """
    best: Obj | None = None
    for pv in volumes:
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            if claim_ref_matches(pv, pvc) and volume_fits(pv, pvc, node):
                return pv
            continue
        if (pv.get("status") or {}).get("phase") not in (None, "", "Available", "Pending"):
            continue
        if not volume_fits(pv, pvc, node):
            continue
        if best is None or volume_capacity(pv) < volume_capacity(best):
            best = pv
    return best
