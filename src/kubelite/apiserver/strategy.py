"""Per-kind behaviour of the API server: defaulting, status handling, validation, allocation.

kube-apiserver gives every kind a *strategy* (pkg/registry/<group>/<kind>/strategy.go): what
the server resets on create, what an update of the main resource may not touch (status), how
the status subresource is confined to status, and which validation runs. kubelite does the
same: the REST handlers are generic, and everything kind-specific sits behind
:class:`Strategy`, so adding a kind's rules is one subclass registered in ``STRATEGIES``.
"""

from __future__ import annotations

import base64
import copy
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from kubelite.api import defaults, errors, protobuf, schema, storage, timeutil, validation
from kubelite.api.errors import FieldError
from kubelite.api.registry import ResourceType, lookup
from kubelite.api.resource import pod_qos_class
from kubelite.api.validation import certificates

if TYPE_CHECKING:
    from kubelite.apiserver.auth import User
    from kubelite.apiserver.registry import ServiceAllocator

Rollback = Callable[[], Awaitable[None]]


class ObjectLister(Protocol):
    """What admission reads (the registry): every stored object of a kind."""

    async def list_objects(
        self, rt: ResourceType, namespace: str | None, *, fresh: bool = False
    ) -> list[dict[str, Any]]: ...


class Strategy:
    """The default behaviour: generic metadata rules and the kind's validation."""

    allow_create_on_update = False
    # AllowUnconditionalUpdate(): whether a PUT without metadata.resourceVersion overwrites
    # whatever is stored (true for most kinds in pkg/registry; Lease and PodDisruptionBudget
    # refuse, as their strategies there do).
    allow_unconditional_update = True
    # metadata.generation exists only for kinds whose strategy maintains it (workloads and
    # EndpointSlices here; a ConfigMap has none, as on a real cluster).
    tracks_generation = False

    def __init__(self, rt: ResourceType, services: ServiceAllocator | None = None) -> None:
        self.rt = rt
        self.has_status = "status" in rt.subresources
        self.services = services
        self.empty_status = empty_status(rt.group, rt.version, rt.kind)

    def defaults(self, obj: dict[str, Any]) -> None:
        """Fill defaults in place (the API's defaulting functions)."""
        defaults.apply_defaults(self.rt.group, self.rt.kind, obj)
        self.fill_status(obj)

    def fill_status(self, obj: dict[str, Any]) -> None:
        """An absent status is the Go struct's zero value, as kube-apiserver stores and serves it.

        A Deployment created without status comes back with ``"status":{}`` (clients read
        ``obj.status`` right after a create); a ConfigMap, whose Go type has no Status, has none.
        """
        if self.empty_status is not None and obj.get("status") is None:
            obj["status"] = copy.deepcopy(self.empty_status)

    def prepare_create(self, obj: dict[str, Any]) -> None:
        """Reset what a client may not set at creation (beyond the generic metadata)."""

    def prepare_create_by(self, obj: dict[str, Any], user: User) -> None:
        """What a kind records of who created it (a CertificateSigningRequest's requestor)."""

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Main resource update: status is not the client's to change here."""
        if self.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)

    def prepare_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Status subresource update: the spec stays as stored, metadata and status are the client's.

        As Kubernetes' status strategies: a controller may set annotations (the deployment
        controller's revision) and labels with its status write, but not spec, and not the
        owner references or finalizers.
        """
        status = new.get("status")
        meta = new.get("metadata", {})
        new.clear()
        new.update({k: v for k, v in old.items() if k != "status"})
        merged = {**old.get("metadata", {})}
        for k in ("labels", "annotations", "resourceVersion", "managedFields"):
            if k in meta:
                merged[k] = meta[k]
            elif k in ("labels", "annotations"):
                merged.pop(k, None)
        new["metadata"] = merged
        if status is not None:
            new["status"] = status

    def prepare_approval_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """The approval subresource (CertificateSigningRequests only: the registry routes no other kind here)."""
        self.prepare_status_update(new, old)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, subresource: str | None = None) -> list[FieldError]:
        return validation.validate(self.rt.group, self.rt.kind, obj, old)

    async def admit(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        """Mutating admission that reads other objects (kube-apiserver's admission plugins): raises to refuse.

        Called for a create (``old`` None) before the strategy prepares the object, and for an
        update of the main resource after validation.
        """

    async def admit_validating(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        """Validating admission that reads other objects: after the strategy's validation, for a
        create and for an update of the main resource (an invalid object is 422, not 403)."""

    # Whether allocate() claims anything: only then must a create look before it leaps (an
    # existing object must not cost a claim and its rollback); other kinds let the store's
    # create-if-absent answer AlreadyExists, one store call fewer.
    allocates = False

    async def allocate(self, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> Rollback | None:
        """Claim shared resources (ClusterIPs, node ports) after validation, before the write."""
        return None

    async def release(self, new: dict[str, Any] | None, old: dict[str, Any]) -> None:
        """After a stored update (or a delete, ``new=None``): give back what is no longer used."""


# Status fields (and fields within them) that are Go structs, not pointers: encoding/json
# writes them even when zero, whatever their omitempty, and the OpenAPI schema cannot tell
# them from pointers. Keyed by definition name.
_STRUCT_FIELDS: dict[str, tuple[str, ...]] = {
    "io.k8s.api.core.v1.NodeStatus": ("daemonEndpoints", "nodeInfo"),
    "io.k8s.api.core.v1.NodeDaemonEndpoints": ("kubeletEndpoint",),
    "io.k8s.api.core.v1.ServiceStatus": ("loadBalancer",),
}
_ZEROS = {"integer": 0, "number": 0, "string": "", "boolean": False}


@functools.cache
def empty_status(group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The JSON of a kind's zero Status struct, None for kinds without a status field.

    Derived from the schema: fields without omitempty (the schema's ``required``) keep their
    zero, struct fields (_STRUCT_FIELDS) are written as their own zero, the rest is omitted.
    """
    kind_schema = schema.schema_for(group, version, kind)
    prop = ((kind_schema or {}).get("properties") or {}).get("status")
    if prop is None:
        return None
    return _zero_struct(prop)


def _zero_struct(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref") or ((node.get("allOf") or [{}])[0].get("$ref") if len(node.get("allOf") or []) == 1 else None)
    name = ref[len(schema.REF_PREFIX):] if isinstance(ref, str) else ""
    target = schema.deref(node)
    props = target.get("properties") or {}
    out: dict[str, Any] = {}
    # Go writes a struct's fields in declaration order, which the protobuf field numbers follow.
    numbered = protobuf.field_order("k8s.io." + name.removeprefix("io.k8s.")) if name else []
    for field in sorted(props, key=lambda f: numbered.index(f) if f in numbered else len(numbered)):
        sub = schema.deref(props[field])
        if field in _STRUCT_FIELDS.get(name, ()):
            out[field] = _zero_struct(props[field])
        elif field in (target.get("required") or ()) and sub.get("type") in _ZEROS:
            out[field] = _ZEROS[sub["type"]]
    return out


class NamespaceStrategy(Strategy):
    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]

    def defaults(self, obj: dict[str, Any]) -> None:
        # The NamespaceDefaultLabelName feature: every namespace carries its own name as a label.
        meta = obj.setdefault("metadata", {})
        if meta.get("name"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]


async def _priority_classes(objects: ObjectLister, *, fresh: bool = False) -> list[dict[str, Any]]:
    rt = lookup("scheduling.k8s.io", "v1", "priorityclasses")
    return [] if rt is None else await objects.list_objects(rt, None, fresh=fresh)


class PodStrategy(Strategy):
    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(obj.get("spec") or {})}
        defaults.admit_pod_create(obj)

    async def admit(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        # The Priority plugin looks at creates only: a pod's priority never changes after.
        if old is not None or not isinstance(obj.get("spec"), dict):
            return
        refusal = defaults.admit_pod_priority(obj, await _priority_classes(objects))
        if refusal is not None and defaults.names_missing_class(refusal):
            # The cache may not have seen a class created a moment ago: ask the store.
            refusal = defaults.admit_pod_priority(obj, await _priority_classes(objects, fresh=True))
        if refusal is not None:
            raise errors.forbidden_error("pods", (obj.get("metadata") or {}).get("name") or "", refusal)


class PriorityClassStrategy(Strategy):
    # Priority's Validate (not its Admit) looks at PriorityClasses: one global default at most.
    async def admit_validating(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        refusal = defaults.admit_priority_class(obj, await _priority_classes(objects, fresh=True),
                                                creating=old is None)
        if refusal is not None:
            name = (obj.get("metadata") or {}).get("name") or ""
            raise errors.forbidden_error("priorityclasses", name, refusal, "scheduling.k8s.io")


class ServiceStrategy(Strategy):
    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"loadBalancer": {}}
        defaults.prepare_service_create(obj)

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_update(new, old)
        defaults.prepare_service_update(new, old)

    def defaults(self, obj: dict[str, Any]) -> None:
        super().defaults(obj)
        defaults.default_ip_families(obj)

    allocates = True

    async def allocate(self, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> Rollback | None:
        if self.services is None:
            return None
        return await self.services.allocate(obj, old, dry_run)

    async def release(self, new: dict[str, Any] | None, old: dict[str, Any]) -> None:
        if self.services is not None:
            await self.services.release_unused(new, old)


class SecretStrategy(Strategy):
    def defaults(self, obj: dict[str, Any]) -> None:
        super().defaults(obj)
        if not obj.get("type"):
            obj["type"] = "Opaque"
        # stringData is write-only: merged into data (base64) and never stored, as in Kubernetes.
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()


class GenerationStrategy(Strategy):
    tracks_generation = True



class DeploymentStrategy(GenerationStrategy):
    """deploymentStatusStrategy: a status write keeps the stored labels as well as the spec
    (its reset fields are ``spec`` and ``metadata.labels``)."""

    def prepare_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_status_update(new, old)
        labels = (old.get("metadata") or {}).get("labels")
        if labels is None:
            new["metadata"].pop("labels", None)
        else:
            new["metadata"]["labels"] = labels


class JobStrategy(GenerationStrategy):
    """pkg/registry/batch/job: the selector and the template's labels are generated on create."""

    def prepare_create(self, obj: dict[str, Any]) -> None:
        defaults.prepare_job_create(obj)


class StatefulSetStrategy(Strategy):
    """statefulSetStrategy: a new set's status is the zero StatefulSetStatus, whose
    availableReplicas has no omitempty (so it shows as 0 beside replicas)."""

    tracks_generation = True

    def fill_status(self, obj: dict[str, Any]) -> None:
        if obj.get("status") is None:
            obj["status"] = {"replicas": 0, "availableReplicas": 0}


class DaemonSetStrategy(Strategy):
    """daemonSetStrategy: apps/v1 keeps the internal spec.templateGeneration as the
    ``deprecated.daemonset.template.generation`` annotation: 1 at creation, one more each time
    the pod template changes (the controller labels its pods with it)."""

    tracks_generation = True
    _ANNOTATION = "deprecated.daemonset.template.generation"

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj.setdefault("metadata", {}).setdefault("annotations", {})[self._ANNOTATION] = "1"

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_update(new, old)
        annotations = new.setdefault("metadata", {}).setdefault("annotations", {})
        previous = (old.get("metadata") or {}).get("annotations", {}).get(self._ANNOTATION)
        generation = int(previous) if previous and previous.isdigit() else 1
        if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            generation += 1
        annotations[self._ANNOTATION] = str(generation)


class EventStrategy(Strategy):
    allow_create_on_update = True


class EndpointSliceStrategy(GenerationStrategy):
    """``endpoints`` and ``ports`` have no omitempty in Go: an empty slice reads back with both
    as null, as kube-apiserver serves it (a null in a request is dropped by decoding, like
    every nil slice, so it is put back here)."""

    def defaults(self, obj: dict[str, Any]) -> None:
        super().defaults(obj)
        obj.setdefault("endpoints", None)
        obj.setdefault("ports", None)


class EndpointsStrategy(Strategy):
    allow_create_on_update = True


class ReplicationControllerStrategy(Strategy):
    """Generation tracked; the status starts at zero replicas (not omitted in core/v1)."""

    tracks_generation = True

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"replicas": 0}


class PodDisruptionBudgetStrategy(Strategy):
    """A budget starts with an empty status (zeros are not omitted in policy/v1) at generation 1."""

    tracks_generation = True
    allow_unconditional_update = False

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}


class LeaseStrategy(Strategy):
    allow_unconditional_update = False


class ResourceQuotaStrategy(Strategy):
    """A quota starts with an empty status: the resourcequota controller fills hard and used."""

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {}


def _conditions(obj: dict[str, Any], types: tuple[str, ...], keep: bool) -> list[dict[str, Any]]:
    """The conditions whose type is (keep=True) or is not (keep=False) among ``types``."""
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if (c.get("type") in types) == keep]


_VERDICTS = ("Approved", "Denied")


class CertificateSigningRequestStrategy(Strategy):
    """pkg/registry/certificates/certificates/strategy.go: three write paths, each confined.

    The main resource changes only metadata; ``/status`` sets the certificate and the
    signer's conditions but not the verdicts; ``/approval`` sets the verdicts (Approved or
    Denied) and nothing else. A create starts without a status and records who asked.
    """

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {}
        spec = obj.setdefault("spec", {})
        for key in ("username", "uid", "groups", "extra"):
            spec.pop(key, None)

    def prepare_create_by(self, obj: dict[str, Any], user: User) -> None:
        spec = obj.setdefault("spec", {})
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        if user.groups:
            spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = {k: list(v) if isinstance(v, (list, tuple)) else [str(v)] for k, v in user.extra.items()}

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        new["spec"] = old.get("spec", {})
        if "status" in old:
            new["status"] = old["status"]

    def prepare_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_status_update(new, old)
        # preserveConditionInstances: the verdicts stay as stored when their count did not change
        # (a changed count is left for validation to refuse).
        status = new.setdefault("status", {})
        for t in _VERDICTS:
            if len(_conditions(new, (t,), True)) == len(_conditions(old, (t,), True)):
                olds = iter(_conditions(old, (t,), True))
                status["conditions"] = [next(olds) if c.get("type") == t else c for c in status.get("conditions") or []]
        _stamp_conditions(new, old)

    def prepare_approval_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        conditions = (new.get("status") or {}).get("conditions")
        meta = new.get("metadata", {})
        new.clear()
        new.update({k: v for k, v in old.items() if k != "metadata"})
        new["metadata"] = {**old.get("metadata", {}), **{k: meta[k] for k in ("labels", "annotations", "resourceVersion",
                                                                               "managedFields") if k in meta}}
        status = dict(old.get("status") or {})
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        new["status"] = status
        _stamp_conditions(new, old)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, subresource: str | None = None) -> list[FieldError]:
        if old is None or subresource is None:
            return super().validate(obj, old)
        return certificates.validate_csr(
            obj, old, allow_setting_approval=subresource == "approval", allow_setting_certificate=subresource == "status"
        )


def _stamp_conditions(new: dict[str, Any], old: dict[str, Any]) -> None:
    """populateConditionTimestamps: a condition without times gets now (a transition keeps the old one)."""
    now = timeutil.now_rfc3339()
    for c in (new.get("status") or {}).get("conditions") or []:
        if not isinstance(c, dict):
            continue
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (o["lastTransitionTime"] for o in (old.get("status") or {}).get("conditions") or []
                 if o.get("type") == c.get("type") and o.get("status") == c.get("status") and o.get("lastTransitionTime")),
                now,
            )


# -- persistent storage (pkg/registry/core/persistentvolume(claim), storage/storageclass) ----------


async def _storage_classes(objects: ObjectLister) -> list[dict[str, Any]]:
    rt = lookup("storage.k8s.io", "v1", "storageclasses")
    return [] if rt is None else await objects.list_objects(rt, None)


class PersistentVolumeStrategy(Strategy):
    """A volume starts Pending (its phase stamped); StorageObjectInUseProtection adds pv-protection."""

    def defaults(self, obj: dict[str, Any]) -> None:
        super().defaults(obj)
        storage.default_persistent_volume(obj)

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Pending", "lastPhaseTransitionTime": timeutil.now_rfc3339()}

    def prepare_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_status_update(new, old)
        status = new.get("status")
        if isinstance(status, dict) and status.get("phase") != (old.get("status") or {}).get("phase"):
            status["lastPhaseTransitionTime"] = timeutil.now_rfc3339()

    async def admit(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        if old is None:
            storage.add_finalizer(obj, storage.PV_PROTECTION)


class PersistentVolumeClaimStrategy(Strategy):
    """A claim starts Pending; admission adds pvc-protection and the default class (on create) and
    refuses a grown request its class does not allow (PersistentVolumeClaimResize)."""

    def defaults(self, obj: dict[str, Any]) -> None:
        super().defaults(obj)
        storage.default_persistent_volume_claim(obj)

    def prepare_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Pending"}

    async def admit(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        if old is not None or not isinstance(obj.get("spec"), dict):
            return
        storage.admit_default_class(obj, await _storage_classes(objects))
        storage.add_finalizer(obj, storage.PVC_PROTECTION)

    async def admit_validating(self, obj: dict[str, Any], old: dict[str, Any] | None, objects: ObjectLister) -> None:
        if old is None:
            return
        classes = {str((sc.get("metadata") or {}).get("name")): sc for sc in await _storage_classes(objects)}
        refusal = storage.admit_resize(obj, old, classes)
        if refusal is not None:
            raise errors.forbidden_error("persistentvolumeclaims", (obj.get("metadata") or {}).get("name") or "", refusal)


class StorageClassStrategy(Strategy):
    def defaults(self, obj: dict[str, Any]) -> None:
        super().defaults(obj)
        storage.default_storage_class(obj)


STRATEGIES: dict[tuple[str, str], type[Strategy]] = {
    ("", "Namespace"): NamespaceStrategy,
    ("", "Pod"): PodStrategy,
    ("", "Service"): ServiceStrategy,
    ("", "Secret"): SecretStrategy,
    ("apps", "Deployment"): DeploymentStrategy,
    ("apps", "ReplicaSet"): GenerationStrategy,
    ("discovery.k8s.io", "EndpointSlice"): EndpointSliceStrategy,
    ("", "Event"): EventStrategy,
    ("", "Endpoints"): EndpointsStrategy,
    ("policy", "PodDisruptionBudget"): PodDisruptionBudgetStrategy,
    ("coordination.k8s.io", "Lease"): LeaseStrategy,
    ("", "ReplicationController"): ReplicationControllerStrategy,
    # podtemplate/strategy.go: generation 1, moved by any change of the template.
    ("", "PodTemplate"): GenerationStrategy,
    ("scheduling.k8s.io", "PriorityClass"): PriorityClassStrategy,
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"): GenerationStrategy,
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"): GenerationStrategy,
    ("", "ResourceQuota"): ResourceQuotaStrategy,
    ("certificates.k8s.io", "CertificateSigningRequest"): CertificateSigningRequestStrategy,
    ("apps", "StatefulSet"): StatefulSetStrategy,
    ("apps", "DaemonSet"): DaemonSetStrategy,
    ("batch", "Job"): JobStrategy,
    ("batch", "CronJob"): GenerationStrategy,
    ("", "PersistentVolume"): PersistentVolumeStrategy,
    ("", "PersistentVolumeClaim"): PersistentVolumeClaimStrategy,
    ("storage.k8s.io", "StorageClass"): StorageClassStrategy,
}


def strategy_for(rt: ResourceType, services: ServiceAllocator | None = None) -> Strategy:
    return STRATEGIES.get((rt.group, rt.kind), Strategy)(rt, services)
