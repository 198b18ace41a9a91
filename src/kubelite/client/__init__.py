"""client-go's counterpart: how every component talks to the API server.

Components import only this package (and the pure ``kubelite.api`` helpers), never the API
server or the store; ``lint-imports`` checks that. It offers the REST client, informers
(list-then-watch caches with indexes) and rate-limited work queues.
"""

from kubelite.api.registry import ResourceType, lookup
from kubelite.client.informer import Informer, key_of
from kubelite.client.rest import ApiError, Client, Config
from kubelite.client.workqueue import WorkQueue, run_workers


def _rt(group: str, version: str, plural: str) -> ResourceType:
    rt = lookup(group, version, plural)
    assert rt is not None, plural
    return rt


PODS = _rt("", "v1", "pods")
SERVICES = _rt("", "v1", "services")
ENDPOINTS = _rt("", "v1", "endpoints")
NAMESPACES = _rt("", "v1", "namespaces")
NODES = _rt("", "v1", "nodes")
EVENTS = _rt("", "v1", "events")
CONFIGMAPS = _rt("", "v1", "configmaps")
SECRETS = _rt("", "v1", "secrets")
SERVICEACCOUNTS = _rt("", "v1", "serviceaccounts")
ENDPOINTSLICES = _rt("discovery.k8s.io", "v1", "endpointslices")
DEPLOYMENTS = _rt("apps", "v1", "deployments")
REPLICASETS = _rt("apps", "v1", "replicasets")
LEASES = _rt("coordination.k8s.io", "v1", "leases")
PODDISRUPTIONBUDGETS = _rt("policy", "v1", "poddisruptionbudgets")
REPLICATIONCONTROLLERS = _rt("", "v1", "replicationcontrollers")
STATEFULSETS = _rt("apps", "v1", "statefulsets")
DAEMONSETS = _rt("apps", "v1", "daemonsets")
CONTROLLERREVISIONS = _rt("apps", "v1", "controllerrevisions")
JOBS = _rt("batch", "v1", "jobs")
CRONJOBS = _rt("batch", "v1", "cronjobs")
PERSISTENTVOLUMES = _rt("", "v1", "persistentvolumes")
PERSISTENTVOLUMECLAIMS = _rt("", "v1", "persistentvolumeclaims")
STORAGECLASSES = _rt("storage.k8s.io", "v1", "storageclasses")
CLUSTERROLES = _rt("rbac.authorization.k8s.io", "v1", "clusterroles")
NETWORKPOLICIES = _rt("networking.k8s.io", "v1", "networkpolicies")

__all__ = [
    "CONFIGMAPS", "DEPLOYMENTS", "ENDPOINTS", "ENDPOINTSLICES", "EVENTS", "LEASES", "NAMESPACES", "NETWORKPOLICIES", "NODES",
    "PODDISRUPTIONBUDGETS", "PODS", "REPLICASETS", "REPLICATIONCONTROLLERS", "SECRETS", "SERVICEACCOUNTS", "SERVICES",
    "ApiError", "Client", "Config", "Informer", "ResourceType", "WorkQueue", "key_of", "run_workers",
]
