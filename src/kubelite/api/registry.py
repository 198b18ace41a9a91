"""The resource registry: which kinds and subresources the API serves, and how each is named.

Discovery (legacy and aggregated), OpenAPI paths, REST dispatch, ``kubectl api-resources``
and short names all read these tables, so registering a kind is one entry, and nothing is
advertised that the API server does not route (a test walks discovery against dispatch). Names, short names, categories and
verbs are those of a real kube-apiserver (kubectl's ``get all`` relies on the ``all``
category, ``get svc`` on the short name).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kubelite.api.conversion import StorageView, storage_view

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Subresource:
    """A subresource as discovery and OpenAPI describe it and the API server dispatches it.

    ``kind`` is (group, version, kind) when the subresource reads or writes another kind than
    its parent (a Scale, an Eviction), ``None`` when it is the parent's own kind (status),
    and ("", "", "") when it has no kind at all (a log is plain text). ``connect`` lists the
    HTTP methods of a streaming subresource (exec, attach, portforward), which OpenAPI
    describes as connect operations. ``options_kind`` names the options kind of a connect
    subresource; empty, it is the parent's kind + "ProxyOptions" (PodProxyOptions,
    ServiceProxyOptions, NodeProxyOptions), which is also the kind discovery shows for it.
    """

    name: str
    verbs: tuple[str, ...]
    kind: tuple[str, str, str] | None = None
    connect: tuple[str, ...] = ()
    options_kind: str = ""

    def kind_for(self, parent: ResourceType) -> tuple[str, str, str]:
        """(group, version, kind) as discovery names it under ``parent``."""
        if self.kind is not None:
            return self.kind
        if self.connect:
            return parent.group, parent.version, parent.kind + "ProxyOptions"
        return parent.group, parent.version, parent.kind


SUBRESOURCES: dict[str, Subresource] = {
    s.name: s
    for s in (
        Subresource("status", ("get", "patch", "update")),
        Subresource("scale", ("get", "patch", "update"), ("autoscaling", "v1", "Scale")),
        Subresource("finalize", ("update",)),
        Subresource("binding", ("create",), ("", "v1", "Binding")),
        Subresource("eviction", ("create",), ("policy", "v1", "Eviction")),
        Subresource("token", ("create",), ("authentication.k8s.io", "v1", "TokenRequest")),
        Subresource("log", ("get",), ("", "", "")),
        Subresource("exec", ("create", "get"), ("", "v1", "PodExecOptions"), ("get", "post"), "PodExecOptions"),
        Subresource("attach", ("create", "get"), ("", "v1", "PodAttachOptions"), ("get", "post"), "PodAttachOptions"),
        Subresource(
            "portforward", ("create", "get"), ("", "v1", "PodPortForwardOptions"), ("get", "post"),
            "PodPortForwardOptions",
        ),
        # pods/services/nodes NAME[:PORT]/proxy[/PATH]: every HTTP method, relayed to the backend.
        Subresource(
            "proxy", ("create", "delete", "get", "patch", "update"), None,
            ("delete", "get", "head", "options", "patch", "post", "put"),
        ),
        # certificatesigningrequests/approval: where Approved and Denied conditions are set.
        Subresource("approval", ("get", "patch", "update")),
    )
}


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified(self) -> str:
        """``pods`` or ``deployments.apps``: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @functools.cached_property
    def view(self) -> StorageView | None:
        """How this kind is stored when it is a view of another group's objects (events.k8s.io
        Events are core Events, see api.conversion); None when stored as served."""
        return storage_view(self.group, self.version, self.kind)

    @functools.cached_property
    def _storage_base(self) -> str:
        # A view lives under the path of the group it is a view of: one object, two APIs.
        group = self.view.storage_group if self.view is not None else self.group
        return f"/registry/{group or 'core'}/{self.plural}/"

    def key_prefix(self, namespace: str | None = None) -> str:
        """Store key prefix, etcd-like: /registry/<group>/<plural>/<namespace>/."""
        return self._storage_base + (f"{namespace}/" if namespace and self.namespaced else "")

    def key(self, namespace: str | None, name: str) -> str:
        return self.key_prefix(namespace if self.namespaced else None) + name


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Namespace", "namespaces", False, ("ns",), subresources=("status", "finalize"),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    # Not (yet) served, so not listed: pods/ephemeralcontainers.
    ResourceType("", "v1", "Pod", "pods", True, ("po",), ("all",),
                 ("status", "log", "exec", "attach", "portforward", "binding", "eviction", "proxy")),
    ResourceType("", "v1", "Service", "services", True, ("svc",), ("all",), ("status", "proxy"),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    ResourceType("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), subresources=("token",)),
    ResourceType("", "v1", "Event", "events", True, ("ev",)),
    ResourceType("", "v1", "Node", "nodes", False, ("no",), subresources=("status", "proxy")),
    ResourceType("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("all",), ("status", "scale")),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("all",), ("status", "scale")),
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    ResourceType("events.k8s.io", "v1", "Event", "events", True, ("ev",)),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
    ResourceType("networking.k8s.io", "v1", "IPAddress", "ipaddresses", False, ("ip",)),
    ResourceType("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", False, subresources=("status",)),
    # Issue 18: enforced by kubelite.networkpolicy in the node's nftables.
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ("netpol",)),
    ResourceType("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",),
                 subresources=("status",)),
    # Issue 15 (resa): the older core kinds, scheduling, CSI storage, flow control (read-only here:
    # kubelite has no priority-and-fairness filter for them to configure) and aggregation.
    ResourceType("", "v1", "ReplicationController", "replicationcontrollers", True, ("rc",), ("all",),
                 ("status", "scale")),
    ResourceType("", "v1", "PodTemplate", "podtemplates", True),
    # Computed on every read from the components' health, never stored: get and list only.
    ResourceType("", "v1", "ComponentStatus", "componentstatuses", False, ("cs",), verbs=("get", "list")),
    ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",)),
    ResourceType("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    ResourceType("storage.k8s.io", "v1", "CSINode", "csinodes", False),
    ResourceType("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", True),
    ResourceType("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, subresources=("status",)),
    ResourceType("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", False,
                 subresources=("status",), verbs=READ_VERBS),
    ResourceType("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations",
                 False, subresources=("status",), verbs=READ_VERBS),
    ResourceType("apiregistration.k8s.io", "v1", "APIService", "apiservices", False, categories=("api-extensions",),
                 subresources=("status",)),
    # Policy on what a namespace may use (LimitRanger and ResourceQuota admission) and the
    # certificates API (the controllers' csrsigning signs with the cluster CA).
    ResourceType("", "v1", "LimitRange", "limitranges", True, ("limits",)),
    ResourceType("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), subresources=("status",)),
    ResourceType("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", False,
                 ("csr",), subresources=("status", "approval")),
    # Issue 17: the workloads and storage real applications use (the API here; their controllers,
    # the provisioner and the node's mounts in controllers/ and node/).
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ("all",), ("status", "scale")),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("all",), ("status",)),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    ResourceType("batch", "v1", "Job", "jobs", True, (), ("all",), ("status",)),
    ResourceType("batch", "v1", "CronJob", "cronjobs", True, ("cj",), ("all",), ("status",)),
    ResourceType("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), subresources=("status",)),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), subresources=("status",)),
    ResourceType("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    # Issue 18: authorization. RBAC's four kinds, and the reviews: create-only kinds that are
    # answered, never stored (who am I, may I, what may I).
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ResourceType("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False, verbs=("create",)),
    ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", True,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
                 verbs=("create",)),
)

# Preferred order of API groups in discovery, as kube-apiserver orders them.
GROUP_ORDER = (
    "", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "batch", "certificates.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
    # kube-apiserver's order for the groups added since (by APIService group priority).
    "apiregistration.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "flowcontrol.apiserver.k8s.io",
)

# The local APIServices kube-apiserver registers for its own group versions (groupPriorityMinimum,
# versionPriority), from its aggregator's table; a served group version missing here gets the
# lowest priority of the table's scheme (see apiserver.apiservices).
API_SERVICE_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
}


def by_group_version() -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for r in RESOURCES:
        out.setdefault(r.group_version, []).append(r)
    return out


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def for_kind(api_version: str, kind: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.api_version == api_version and r.kind == kind:
            return r
    return None
