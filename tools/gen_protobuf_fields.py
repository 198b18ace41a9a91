"""Regenerate src/kubelite/api/data/protobuf_fields.json.gz, the wire tables of Kubernetes' protobuf.

Why: kubectl 1.32+ sends typed writes (``create configmap``, ``create deployment``,
``create token``...) as ``application/vnd.kubernetes.protobuf``. Decoding them needs, for each
message, its field numbers, JSON names, types and repeated/map-ness: facts that live in
Kubernetes' ``generated.proto`` files. This script parses those files (real ones from a
Kubernetes checkout, or trimmed copies holding only the ``message`` blocks), keeps the messages
reachable from the kinds below, and adds what the .proto files do not say but the JSON form
depends on:

- which fields are Go pointers (``*int32``, ``*bool``...): gogo-protobuf writes non-pointer
  fields even when zero, and JSON drops them (``omitempty``), while a pointer's zero is a real
  value (``replicas: 0``, ``automountServiceAccountToken: false``). Read from the Go
  ``types.go`` struct tags and kept in POINTERS;
- which fields have no ``omitempty`` (their zero stays in JSON): the OpenAPI ``required``
  list of kubelite's own schemas;
- which fields are embedded Go structs whose JSON is inlined into the parent (Probe's
  ``handler``, Volume's ``volumeSource``, the ``localObjectReference`` of key selectors...).

    python tools/gen_protobuf_fields.py PROTO_FILE_OR_DIR...

e.g. with a checkout: ``python tools/gen_protobuf_fields.py ~/kubernetes/staging/src/k8s.io``.

``--add [API_VERSION/KIND...]`` keeps the committed table and adds only the messages it does not
have yet that the kinds reach (all of ROOTS when none is named); messages already tabled are not
looked for again, so the given .proto files need only hold the new ones. That is how a kind is
added without a full regeneration (which, from one k8s.io/api release, stops on POINTERS entries
of fields newer than it), e.g. ``python tools/gen_protobuf_fields.py --add
tools/protos/scheduling_v1.proto`` or ``python tools/gen_protobuf_fields.py PROTO_DIR --add
v1/LimitRange v1/ResourceQuota certificates.k8s.io/v1/CertificateSigningRequest``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import re
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from kubelite.api import schema

OUT = pathlib.Path(__file__).resolve().parents[1] / "src/kubelite/api/data/protobuf_fields.json.gz"

CORE = "k8s.io.api.core.v1."
META = "k8s.io.apimachinery.pkg.apis.meta.v1."

# (apiVersion, kind) -> message: what an envelope's typeMeta may name.
ROOTS = {
    ("v1", "ConfigMap"): CORE + "ConfigMap",
    ("v1", "Secret"): CORE + "Secret",
    ("v1", "Namespace"): CORE + "Namespace",
    ("v1", "ServiceAccount"): CORE + "ServiceAccount",
    ("v1", "Service"): CORE + "Service",
    ("v1", "Pod"): CORE + "Pod",
    ("v1", "Node"): CORE + "Node",
    ("v1", "Endpoints"): CORE + "Endpoints",
    ("v1", "Event"): CORE + "Event",
    ("v1", "Binding"): CORE + "Binding",
    ("apps/v1", "Deployment"): "k8s.io.api.apps.v1.Deployment",
    ("apps/v1", "ReplicaSet"): "k8s.io.api.apps.v1.ReplicaSet",
    ("autoscaling/v1", "Scale"): "k8s.io.api.autoscaling.v1.Scale",
    ("discovery.k8s.io/v1", "EndpointSlice"): "k8s.io.api.discovery.v1.EndpointSlice",
    ("events.k8s.io/v1", "Event"): "k8s.io.api.events.v1.Event",
    ("coordination.k8s.io/v1", "Lease"): "k8s.io.api.coordination.v1.Lease",
    ("networking.k8s.io/v1", "IPAddress"): "k8s.io.api.networking.v1.IPAddress",
    ("networking.k8s.io/v1", "ServiceCIDR"): "k8s.io.api.networking.v1.ServiceCIDR",
    ("networking.k8s.io/v1", "NetworkPolicy"): "k8s.io.api.networking.v1.NetworkPolicy",
    ("policy/v1", "Eviction"): "k8s.io.api.policy.v1.Eviction",
    ("policy/v1", "PodDisruptionBudget"): "k8s.io.api.policy.v1.PodDisruptionBudget",
    ("scheduling.k8s.io/v1", "PriorityClass"): "k8s.io.api.scheduling.v1.PriorityClass",
    ("v1", "LimitRange"): CORE + "LimitRange",
    ("v1", "ResourceQuota"): CORE + "ResourceQuota",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "k8s.io.api.certificates.v1.CertificateSigningRequest",
    ("v1", "ReplicationController"): CORE + "ReplicationController",
    ("v1", "PodTemplate"): CORE + "PodTemplate",
    ("v1", "ComponentStatus"): CORE + "ComponentStatus",
    # Issue 17: workloads and storage.
    ("apps/v1", "StatefulSet"): "k8s.io.api.apps.v1.StatefulSet",
    ("apps/v1", "DaemonSet"): "k8s.io.api.apps.v1.DaemonSet",
    ("apps/v1", "ControllerRevision"): "k8s.io.api.apps.v1.ControllerRevision",
    ("batch/v1", "Job"): "k8s.io.api.batch.v1.Job",
    ("batch/v1", "CronJob"): "k8s.io.api.batch.v1.CronJob",
    ("v1", "PersistentVolume"): CORE + "PersistentVolume",
    ("v1", "PersistentVolumeClaim"): CORE + "PersistentVolumeClaim",
    ("storage.k8s.io/v1", "StorageClass"): "k8s.io.api.storage.v1.StorageClass",
    # Issue 18: authorization.
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "k8s.io.api.rbac.v1.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "k8s.io.api.rbac.v1.ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "k8s.io.api.rbac.v1.Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "k8s.io.api.rbac.v1.RoleBinding",
    ("authentication.k8s.io/v1", "TokenReview"): "k8s.io.api.authentication.v1.TokenReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "k8s.io.api.authorization.v1.SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "k8s.io.api.authorization.v1.LocalSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "k8s.io.api.authorization.v1.SelfSubjectRulesReview",
    ("storage.k8s.io/v1", "CSIDriver"): "k8s.io.api.storage.v1.CSIDriver",
    ("storage.k8s.io/v1", "CSINode"): "k8s.io.api.storage.v1.CSINode",
    ("storage.k8s.io/v1", "CSIStorageCapacity"): "k8s.io.api.storage.v1.CSIStorageCapacity",
    ("storage.k8s.io/v1", "VolumeAttachment"): "k8s.io.api.storage.v1.VolumeAttachment",
    ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema"): "k8s.io.api.flowcontrol.v1.FlowSchema",
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "PriorityLevelConfiguration",
    ): "k8s.io.api.flowcontrol.v1.PriorityLevelConfiguration",
    ("apiregistration.k8s.io/v1", "APIService"): "k8s.io.kube_aggregator.pkg.apis.apiregistration.v1.APIService",
    ("authentication.k8s.io/v1", "TokenRequest"): "k8s.io.api.authentication.v1.TokenRequest",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "k8s.io.api.authentication.v1.SelfSubjectReview",
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
    ): "k8s.io.api.authorization.v1.SelfSubjectAccessReview",
    # client-go sends DeleteOptions with the group-version of the resource being deleted.
    ("*", "DeleteOptions"): META + "DeleteOptions",
}

# Messages with a JSON form of their own, decoded by kubelite.api.protobuf itself.
SPECIAL = {
    META + "Time": "time",
    META + "MicroTime": "microtime",
    META + "FieldsV1": "fieldsv1",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    # ControllerRevision.data: the raw JSON of the revision, as a RawExtension carries it.
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "rawextension",
}

# Scalar fields that are Go pointers (from the `*T` of their types.go declarations).
POINTERS: dict[str, list[str]] = {
    META + "ObjectMeta": ["deletionGracePeriodSeconds"],
    META + "OwnerReference": ["controller", "blockOwnerDeletion"],
    META + "DeleteOptions": [
        "gracePeriodSeconds",
        "orphanDependents",
        "propagationPolicy",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
    ],
    META + "Preconditions": ["uid", "resourceVersion"],
    CORE + "ConfigMap": ["immutable"],
    CORE + "Secret": ["immutable"],
    CORE + "ServiceAccount": ["automountServiceAccountToken"],
    CORE + "ServiceSpec": [
        "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts",
        "loadBalancerClass",
        "internalTrafficPolicy",
        "trafficDistribution",
    ],
    CORE + "ServicePort": ["appProtocol"],
    CORE + "ClientIPConfig": ["timeoutSeconds"],
    CORE + "LoadBalancerIngress": ["ipMode"],
    CORE + "PortStatus": ["error"],
    CORE + "EndpointPort": ["appProtocol"],
    CORE + "PodSpec": [
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "automountServiceAccountToken",
        "shareProcessNamespace",
        "priority",
        "runtimeClassName",
        "enableServiceLinks",
        "preemptionPolicy",
        "setHostnameAsFQDN",
        "hostUsers",
        "hostnameOverride",
    ],
    CORE + "Container": ["restartPolicy"],
    CORE + "EphemeralContainerCommon": ["restartPolicy"],
    CORE + "Probe": ["terminationGracePeriodSeconds"],
    CORE + "GRPCAction": ["service"],
    CORE + "Lifecycle": ["stopSignal"],
    CORE + "SecurityContext": [
        "privileged",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "procMount",
    ],
    CORE + "PodSecurityContext": [
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "supplementalGroupsPolicy",
        "fsGroup",
        "fsGroupChangePolicy",
        "seLinuxChangePolicy",
    ],
    CORE + "SeccompProfile": ["localhostProfile"],
    CORE + "AppArmorProfile": ["localhostProfile"],
    CORE + "WindowsSecurityContextOptions": [
        "gmsaCredentialSpecName",
        "gmsaCredentialSpec",
        "runAsUserName",
        "hostProcess",
    ],
    CORE + "Toleration": ["tolerationSeconds"],
    CORE + "TopologySpreadConstraint": ["minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy"],
    CORE + "PodDNSConfigOption": ["value"],
    CORE + "ConfigMapKeySelector": ["optional"],
    CORE + "SecretKeySelector": ["optional"],
    CORE + "ConfigMapEnvSource": ["optional"],
    CORE + "SecretEnvSource": ["optional"],
    CORE + "FileKeySelector": ["optional"],
    CORE + "ConfigMapVolumeSource": ["defaultMode", "optional"],
    CORE + "SecretVolumeSource": ["defaultMode", "optional"],
    CORE + "ConfigMapProjection": ["optional"],
    CORE + "SecretProjection": ["optional"],
    CORE + "ProjectedVolumeSource": ["defaultMode"],
    CORE + "DownwardAPIVolumeSource": ["defaultMode"],
    CORE + "DownwardAPIVolumeFile": ["mode"],
    CORE + "KeyToPath": ["mode"],
    CORE + "ServiceAccountTokenProjection": ["expirationSeconds"],
    CORE + "ClusterTrustBundleProjection": ["name", "signerName", "optional"],
    CORE + "PodCertificateProjection": ["maxExpirationSeconds"],
    CORE + "HostPathVolumeSource": ["type"],
    CORE + "VolumeMount": ["recursiveReadOnly", "mountPropagation"],
    CORE + "VolumeMountStatus": ["recursiveReadOnly"],
    CORE + "CSIVolumeSource": ["readOnly", "fsType"],
    CORE + "AzureDiskVolumeSource": ["cachingMode", "fsType", "readOnly", "kind"],
    CORE + "PersistentVolumeClaimSpec": ["storageClassName", "volumeMode", "volumeAttributesClassName"],
    CORE + "TypedLocalObjectReference": ["apiGroup"],
    CORE + "TypedObjectReference": ["apiGroup", "namespace"],
    CORE + "ResourceHealth": ["message"],
    CORE + "ContainerStatus": ["started", "stopSignal"],
    CORE + "PodResourceClaim": ["resourceClaimName", "resourceClaimTemplateName"],
    CORE + "PodResourceClaimStatus": ["resourceClaimName"],
    CORE + "NodeFeatures": ["supplementalGroupsPolicy", "containerUlimits"],
    CORE + "NodeRuntimeHandlerFeatures": ["recursiveReadOnlyMounts", "userNamespaces"],
    CORE + "NodeSwapStatus": ["capacity"],
    CORE + "ISCSIVolumeSource": ["initiatorName"],
    CORE + "FCVolumeSource": ["lun"],
    "k8s.io.api.apps.v1.DeploymentSpec": [
        "replicas",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "podReplacementPolicy",
    ],
    "k8s.io.api.apps.v1.DeploymentStatus": ["terminatingReplicas", "collisionCount"],
    "k8s.io.api.apps.v1.ReplicaSetSpec": ["replicas"],
    "k8s.io.api.apps.v1.ReplicaSetStatus": ["terminatingReplicas"],
    "k8s.io.api.discovery.v1.EndpointConditions": ["ready", "serving", "terminating"],
    "k8s.io.api.discovery.v1.Endpoint": ["hostname", "nodeName", "zone"],
    "k8s.io.api.discovery.v1.EndpointPort": ["name", "protocol", "port", "appProtocol"],
    "k8s.io.api.coordination.v1.LeaseSpec": [
        "holderIdentity",
        "leaseDurationSeconds",
        "leaseTransitions",
        "strategy",
        "preferredHolder",
    ],
    "k8s.io.api.authentication.v1.TokenRequestSpec": ["expirationSeconds"],
    "k8s.io.api.policy.v1.PodDisruptionBudgetSpec": ["unhealthyPodEvictionPolicy"],
    "k8s.io.api.networking.v1.NetworkPolicyPort": ["protocol", "endPort"],
    "k8s.io.api.scheduling.v1.PriorityClass": ["preemptionPolicy"],
    "k8s.io.api.certificates.v1.CertificateSigningRequestSpec": ["expirationSeconds"],
    CORE + "ReplicationControllerSpec": ["replicas"],
    CORE + "PersistentVolumeSpec": ["volumeMode", "volumeAttributesClassName"],
    CORE + "AzureFilePersistentVolumeSource": ["secretNamespace"],
    CORE + "GlusterfsPersistentVolumeSource": ["endpointsNamespace"],
    CORE + "ISCSIPersistentVolumeSource": ["initiatorName"],
    CORE + "LocalVolumeSource": ["fsType"],
    "k8s.io.api.storage.v1.CSIDriverSpec": [
        "attachRequired",
        "podInfoOnMount",
        "storageCapacity",
        "fsGroupPolicy",
        "requiresRepublish",
        "seLinuxMount",
        "nodeAllocatableUpdatePeriodSeconds",
    ],
    "k8s.io.api.storage.v1.TokenRequest": ["expirationSeconds"],
    "k8s.io.api.storage.v1.VolumeAttachmentSource": ["persistentVolumeName"],
    "k8s.io.api.storage.v1.VolumeError": ["errorCode"],
    "k8s.io.api.storage.v1.VolumeNodeResources": ["count"],
    "k8s.io.api.flowcontrol.v1.LimitedPriorityLevelConfiguration": [
        "nominalConcurrencyShares",
        "lendablePercent",
        "borrowingLimitPercent",
    ],
    "k8s.io.api.flowcontrol.v1.ExemptPriorityLevelConfiguration": ["nominalConcurrencyShares", "lendablePercent"],
    "k8s.io.kube_aggregator.pkg.apis.apiregistration.v1.ServiceReference": ["port"],
    "k8s.io.api.apps.v1.RollingUpdateStatefulSetStrategy": ["partition"],
    "k8s.io.api.apps.v1.StatefulSetSpec": ["replicas", "revisionHistoryLimit"],
    "k8s.io.api.apps.v1.StatefulSetStatus": ["collisionCount"],
    "k8s.io.api.apps.v1.DaemonSetSpec": ["revisionHistoryLimit"],
    "k8s.io.api.apps.v1.DaemonSetStatus": ["collisionCount"],
    "k8s.io.api.batch.v1.PodFailurePolicyOnExitCodesRequirement": ["containerName"],
    "k8s.io.api.batch.v1.SuccessPolicyRule": ["succeededIndexes", "succeededCount"],
    "k8s.io.api.batch.v1.JobSpec": [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "manualSelector",
        "ttlSecondsAfterFinished",
        "completionMode",
        "suspend",
        "podReplacementPolicy",
        "managedBy",
    ],
    "k8s.io.api.batch.v1.JobStatus": ["terminating", "failedIndexes", "ready"],
    "k8s.io.api.batch.v1.CronJobSpec": [
        "timeZone",
        "startingDeadlineSeconds",
        "suspend",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ],
    CORE + "PersistentVolumeClaimStatus": ["currentVolumeAttributesClassName"],
    "k8s.io.api.storage.v1.StorageClass": ["reclaimPolicy", "allowVolumeExpansion", "volumeBindingMode"],
}

_FIELD = re.compile(r"^(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;$")
_MAP = re.compile(r"^map\s*<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;$")
SCALARS = {"string", "bytes", "bool", "int32", "int64"}  # all that the kinds below use


def parse(text: str) -> dict[str, list[tuple[str, str, str, int]]]:
    """Messages of one .proto file: full name -> [(label, type, name, number)] with full type names."""
    text = re.sub(r"//[^\n]*", "", text)
    package = re.search(r"\bpackage\s+([\w.]+)\s*;", text)
    if not package:
        raise SystemExit("no package statement")
    pkg = package.group(1)

    def qualify(t: str) -> str:
        if t in SCALARS:
            return t
        t = t.lstrip(".")
        return t if "." in t else f"{pkg}.{t}"

    out: dict[str, list[tuple[str, str, str, int]]] = {}
    for m in re.finditer(r"\bmessage\s+(\w+)\s*\{([^{}]*)\}", text):
        fields = []
        for stmt in m.group(2).split(";"):
            stmt = " ".join(stmt.split())
            if not stmt:
                continue
            stmt += ";"
            if f := _FIELD.match(stmt):
                fields.append((f.group(1), qualify(f.group(2)), f.group(3), int(f.group(4))))
            elif f := _MAP.match(stmt):
                fields.append(("map", qualify(f.group(2)), f.group(3), int(f.group(4))))
            elif not stmt.startswith("option "):
                raise SystemExit(f"cannot parse {stmt!r} in message {m.group(1)}")
        out[f"{pkg}.{m.group(1)}"] = fields
    return out


def _definition(message: str) -> dict[str, Any]:
    # The proto package k8s.io.kube_aggregator is the OpenAPI's io.k8s.kube-aggregator.
    name = "io.k8s." + message.removeprefix("k8s.io.").replace("kube_aggregator.", "kube-aggregator.", 1)
    d: dict[str, Any] = schema.definitions().get(name, {})
    return d


def build(messages: dict[str, list[tuple[str, str, str, int]]], known: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The table of the messages reachable from ROOTS, except ``known`` ones (already tabled)."""
    reachable: list[str] = []
    todo = list(dict.fromkeys(ROOTS.values()))
    while todo:
        name = todo.pop()
        if name in reachable or name in SPECIAL or name in known:
            continue
        if name not in messages:
            raise SystemExit(f"message {name} is reachable but not in the given .proto files")
        reachable.append(name)
        todo.extend(t for _, t, _, _ in messages[name] if t not in SCALARS)

    table: dict[str, dict[str, list[Any]]] = {}
    for name in sorted(reachable):
        props = _definition(name).get("properties", {})
        required = set(_definition(name).get("required", []))
        pointers = set(POINTERS.get(name, ()))
        unknown = pointers - {f for _, _, f, _ in messages[name]}
        if unknown:
            raise SystemExit(f"POINTERS names unknown fields of {name}: {sorted(unknown)}")
        fields: dict[str, list[Any]] = {}
        for label, type_, field, number in messages[name]:
            flags = ""
            if field in pointers or field in required:
                flags += "z"  # keep a zero value: it is what the JSON form says too
            embedded = props and field not in props and type_ in messages and type_ not in SPECIAL
            if embedded and any(f in props for _, _, f, _ in messages[type_]):
                flags += "i"  # an embedded Go struct: its fields appear directly in the parent's JSON
            fields[str(number)] = [field, label[0], SPECIAL.get(type_, type_), flags]
        table[name] = fields
    return {
        "kinds": {f"{api_version}/{kind}": msg for (api_version, kind), msg in ROOTS.items()},
        "messages": table,
    }


def add(messages: dict[str, list[tuple[str, str, str, int]]], kinds: list[str]) -> None:
    """``--add``: the committed table plus the messages it lacks that ``kinds`` (all of ROOTS if none) reach."""
    if kinds:
        wanted = {tuple(k.rsplit("/", 1)) for k in kinds}
        missing = wanted - set(ROOTS)
        if missing:
            raise SystemExit(f"not in ROOTS: {sorted('/'.join(m) for m in missing)}")
        for key in [k for k in ROOTS if k not in wanted]:
            del ROOTS[key]
    for name in POINTERS:  # the .proto files may be older than a POINTERS entry's field
        if name in messages:
            known_fields = {f for _, _, f, _ in messages[name]}
            POINTERS[name] = [f for f in POINTERS[name] if f in known_fields]
    data = json.loads(gzip.decompress(OUT.read_bytes()))
    added = build(messages, frozenset(data["messages"]))
    data["messages"].update(added["messages"])
    data["kinds"].update(added["kinds"])
    print(f"added {len(added['messages'])} messages: {', '.join(sorted(added['messages']))}")
    OUT.write_bytes(gzip.compress(json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("protos", nargs="*", type=pathlib.Path, help=".proto files or directories holding them")
    ap.add_argument("--add", nargs="*", default=None, metavar="API_VERSION/KIND",
                    help="add to the committed table instead of replacing it (only these kinds' messages if named)")
    args = ap.parse_args()
    # ``--add FILE.proto`` reads as kinds to argparse: what names an existing path is a .proto source.
    protos = list(args.protos) + [pathlib.Path(k) for k in args.add or [] if pathlib.Path(k).exists()]
    if not protos:
        ap.error("no .proto files given")
    messages: dict[str, list[tuple[str, str, str, int]]] = {}
    for p in protos:
        for f in sorted(p.rglob("*.proto")) if p.is_dir() else [p]:
            messages.update(parse(f.read_text()))
    if args.add is not None:
        add(messages, [k for k in args.add if not pathlib.Path(k).exists()])
        return
    data = build(messages)
    inline = sorted(
        f"{m.rsplit('.', 1)[1]}.{f[0]}"
        for m, fs in data["messages"].items()
        for f in fs.values()
        if "i" in f[3]
    )
    print(f"{len(data['messages'])} messages; inlined: {', '.join(inline)}")
    OUT.write_bytes(gzip.compress(json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
