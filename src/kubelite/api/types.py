"""Static types for the Kubernetes JSON that components read, and the kinds of watch events and patches.

Kubernetes objects stay plain JSON dicts everywhere in kubelite: the API server decodes and
validates them against their schemas, and everything else passes them through. These
``TypedDict``\\ s only describe, for mypy, the fields that code *reads*: they cost nothing at
run time and convert nothing. They follow ``k8s.io/api`` (core/v1, discovery/v1): fields the
API may omit are optional (``total=False``), the few that every valid object has are
``Required``, and fields Go marshals as ``null`` (no ``omitempty``) admit ``None``. Fields no
component reads are left out; a dict carrying them is still the same ``TypedDict`` at run time.

``Obj`` is the one alias for JSON that is not (yet) typed. Raw JSON (``Obj``) becomes a typed
view with ``typing.cast`` where it enters code that reads it (e.g. from an informer's cache):
the API server has already validated its shape.

``EventType``/``WatchEventType`` name what a watch carries and ``PatchType`` the four PATCH
bodies; the client, the informers and the API server share them from here because
``kubelite.client`` may not import the store (which has its own storage-level event type).
"""

from __future__ import annotations

from typing import Any, Literal, Required, TypedDict

#: Kubernetes JSON without a static type: the objects' common currency.
Obj = dict[str, Any]

# ---------------------------------------------------------------------------- watch and patch

#: The events an informer hands to its handlers (client-go's add/update/delete).
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
#: The ``type`` of a watch stream's event (``metav1.WatchEvent``).
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]

#: The PATCH body kinds, named as ``kubectl patch --type`` names them (``apply`` is server-side apply).
PatchType = Literal["json", "merge", "strategic", "apply"]
#: Each patch kind's ``Content-Type``.
PATCH_CONTENT_TYPES: dict[PatchType, str] = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


class WatchEvent(TypedDict):
    type: WatchEventType
    object: Obj


# ---------------------------------------------------------------------------- meta/v1


class OwnerReference(TypedDict, total=False):
    apiVersion: Required[str]
    kind: Required[str]
    name: Required[str]
    uid: Required[str]
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    deletionGracePeriodSeconds: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    finalizers: list[str]
    managedFields: list[Obj]


class ObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    namespace: str
    name: str
    uid: str
    resourceVersion: str
    fieldPath: str


# ---------------------------------------------------------------------------- core/v1 Service


class ServicePort(TypedDict, total=False):
    name: str
    protocol: str  # TCP (the default), UDP, SCTP
    appProtocol: str
    port: Required[int]
    targetPort: int | str
    nodePort: int


class ClientIPConfig(TypedDict, total=False):
    timeoutSeconds: int


class SessionAffinityConfig(TypedDict, total=False):
    clientIP: ClientIPConfig


class ServiceSpec(TypedDict, total=False):
    type: str  # ClusterIP (the default), NodePort, LoadBalancer, ExternalName
    ports: list[ServicePort]
    selector: dict[str, str]
    clusterIP: str  # "None" for a headless Service
    clusterIPs: list[str]
    externalName: str
    externalIPs: list[str]
    sessionAffinity: str
    sessionAffinityConfig: SessionAffinityConfig
    externalTrafficPolicy: str
    internalTrafficPolicy: str
    publishNotReadyAddresses: bool
    ipFamilies: list[str]
    ipFamilyPolicy: str


class Service(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Required[ObjectMeta]
    spec: ServiceSpec
    status: Obj


# ---------------------------------------------------------------------------- discovery/v1 EndpointSlice


class EndpointConditions(TypedDict, total=False):
    # None (or absent) means "unknown", which consumers treat as ready/serving.
    ready: bool | None
    serving: bool | None
    terminating: bool | None


class Endpoint(TypedDict, total=False):
    addresses: Required[list[str]]
    conditions: EndpointConditions
    hostname: str
    targetRef: ObjectReference
    nodeName: str
    zone: str
    hints: Obj


class EndpointPort(TypedDict, total=False):
    name: str
    protocol: str
    port: int | None  # None: every port of the endpoints
    appProtocol: str


class EndpointSlice(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Required[ObjectMeta]
    addressType: Required[str]  # IPv4, IPv6, FQDN
    endpoints: list[Endpoint] | None
    ports: list[EndpointPort] | None


# ---------------------------------------------------------------------------- core/v1 Pod


class ContainerPort(TypedDict, total=False):
    name: str
    containerPort: Required[int]
    protocol: str
    hostPort: int
    hostIP: str


class Container(TypedDict, total=False):
    name: Required[str]
    image: str
    command: list[str]
    args: list[str]
    workingDir: str
    restartPolicy: str  # Always: a sidecar (init container that keeps running)
    ports: list[ContainerPort]
    env: list[Obj]
    resources: Obj
    readinessProbe: Obj
    livenessProbe: Obj
    startupProbe: Obj


class PodSpec(TypedDict, total=False):
    containers: list[Container]
    initContainers: list[Container]
    nodeName: str
    hostname: str
    subdomain: str
    hostNetwork: bool
    restartPolicy: str
    serviceAccountName: str
    terminationGracePeriodSeconds: int
    volumes: list[Obj]


class PodCondition(TypedDict, total=False):
    type: Required[str]
    status: Required[str]  # "True", "False", "Unknown"
    lastProbeTime: str | None
    lastTransitionTime: str | None
    reason: str
    message: str


class PodIP(TypedDict):
    ip: str


class PodStatus(TypedDict, total=False):
    phase: str
    conditions: list[PodCondition]
    hostIP: str
    hostIPs: list[PodIP]
    podIP: str
    podIPs: list[PodIP]
    startTime: str
    containerStatuses: list[Obj]
    initContainerStatuses: list[Obj]
    qosClass: str
    reason: str
    message: str


class Pod(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Required[ObjectMeta]
    spec: PodSpec
    status: PodStatus
