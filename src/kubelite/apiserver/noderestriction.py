"""NodeRestriction admission: a node writes only what is its own.

The Node authorizer lets every node create, update and delete Nodes, pod statuses, mirror
pods, leases and evictions, because it cannot see the objects written; kube-apiserver's
NodeRestriction plugin then limits each node to its own (``plugin/pkg/admission/
noderestriction``, written anew here with its messages): its own Node object (and, on
register, only the labels a kubelet may set), the status of pods bound to it, mirror pods of
itself that reference no Secret, ConfigMap, service account or claim, its own Lease, evictions
and deletions of pods bound to it, and tokens only for pods running on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.api import errors
from kubelite.api.errors import StatusError
from kubelite.api.registry import ResourceType
from kubelite.apiserver.auth import User
from kubelite.apiserver.nodeauthorizer import NODE_LEASE_NAMESPACE, node_identity, pod_references

Obj = dict[str, Any]
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
# What a kubelet may label its own Node with (kubeletapis.KubeletLabels and the prefixes
# kubelets own); other labels under kubernetes.io/ and k8s.io/ are for administrators.
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")

GetPod = Callable[[str, str], Awaitable[Obj | None]]


def _forbidden(rt: ResourceType, name: str, message: str) -> StatusError:
    return errors.forbidden_error(rt.plural, name, message, rt.group)


def _forbidden_labels(labels: dict[str, str]) -> list[str]:
    out = []
    for key in labels:
        prefix, _, _ = key.rpartition("/")
        domain = prefix.lower()
        if key in KUBELET_LABELS or key.startswith(KUBELET_LABEL_NAMESPACES):
            continue
        if domain == "kubernetes.io" or domain.endswith(".kubernetes.io") or domain == "k8s.io" \
                or domain.endswith(".k8s.io"):
            out.append(key)
    return sorted(out)


async def admit(user: User | None, operation: str, rt: ResourceType, subresource: str | None,
                namespace: str | None, name: str, obj: Obj | None, old: Obj | None, get_pod: GetPod) -> None:
    """Raise the plugin's 403 when a node's write is not its own to make. ``operation`` is
    CREATE, UPDATE or DELETE; ``obj`` the new object (CREATE, UPDATE), ``old`` the stored one."""
    if user is None:
        return
    node, is_node = node_identity(user.name, user.groups)
    if not is_node:
        return
    if not node:
        raise _forbidden(rt, name, f'could not determine node from user "{user.name}"')
    resource = (rt.group, rt.plural)
    if resource == ("", "pods"):
        if subresource is None:
            await _pod(node, operation, rt, namespace or "", name, obj, old)
        elif subresource == "status":
            if operation != "UPDATE":
                raise _forbidden(rt, name, f'unexpected operation "{operation}"')
            if ((old or {}).get("spec") or {}).get("nodeName") != node:
                raise _forbidden(rt, name, f'node "{node}" can only update pod status for pods with spec.nodeName set '
                                           "to itself")
            if ((obj or {}).get("metadata") or {}).get("labels") != ((old or {}).get("metadata") or {}).get("labels"):
                raise _forbidden(rt, name, f'node "{node}" cannot update labels through pod status')
        elif subresource == "eviction":
            pod = await get_pod(namespace or "", name)
            if pod is None:
                raise errors.not_found_error("pods", name)
            if (pod.get("spec") or {}).get("nodeName") != node:
                raise _forbidden(rt, name, f"node {node} can only evict pods with spec.nodeName set to itself")
        else:
            raise _forbidden(rt, name, f"unexpected pod subresource \"{subresource}\", only 'status' and 'eviction' "
                                       "are allowed")
    elif resource == ("", "nodes"):
        if name != node:
            raise _forbidden(rt, name, f'node "{node}" is not allowed to modify node "{name}"')
        if operation == "CREATE":
            labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
            forbidden = _forbidden_labels(labels)
            if forbidden:
                raise _forbidden(rt, name, f'node "{node}" is not allowed to set the following labels: '
                                           + ", ".join(forbidden))
        elif operation == "UPDATE" and subresource is None:
            new_labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
            old_labels = ((old or {}).get("metadata") or {}).get("labels") or {}
            changed = {k: v for k, v in new_labels.items() if old_labels.get(k) != v}
            changed.update({k: "" for k in old_labels if k not in new_labels})
            forbidden = _forbidden_labels(changed)
            if forbidden:
                raise _forbidden(rt, name, f'is not allowed to modify labels: {", ".join(forbidden)}')
            if ((obj or {}).get("spec") or {}).get("taints") != ((old or {}).get("spec") or {}).get("taints"):
                raise _forbidden(rt, name, f'node "{node}" is not allowed to modify taints')
    elif resource == ("", "persistentvolumeclaims"):
        if subresource != "status":
            raise _forbidden(rt, name, "may only update PVC status")
    elif resource == ("", "serviceaccounts") and operation == "CREATE" and subresource == "token":
        await _token(node, rt, namespace or "", name, obj or {}, get_pod)
    elif resource == ("coordination.k8s.io", "leases"):
        if namespace != NODE_LEASE_NAMESPACE:
            raise _forbidden(rt, name, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        lease_name = ((obj or {}).get("metadata") or {}).get("name") if operation == "CREATE" else name
        if lease_name != node:
            raise _forbidden(rt, name, "can only access node lease with the same name as the requesting node")


async def _pod(node: str, operation: str, rt: ResourceType, namespace: str, name: str, obj: Obj | None,
               old: Obj | None) -> None:
    if operation == "DELETE":
        if ((old or {}).get("spec") or {}).get("nodeName") != node:
            raise _forbidden(rt, name, f'node "{node}" can only delete pods with spec.nodeName set to itself')
        return
    if operation != "CREATE":
        raise _forbidden(rt, name, f'unexpected operation "{operation}", node "{node}" can only create and delete '
                                   "mirror pods")
    pod = obj or {}
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if MIRROR_POD_ANNOTATION not in (meta.get("annotations") or {}):
        raise _forbidden(rt, name, f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can only '
                                   "create mirror pods")
    if spec.get("nodeName") != node:
        raise _forbidden(rt, name, f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = meta.get("ownerReferences") or []
    if len(owners) > 1:
        raise _forbidden(rt, name, f'node "{node}" can only create pods with a single owner reference set to itself')
    if not owners:
        raise _forbidden(rt, name, f'node "{node}" can only create pods with an owner reference set to itself')
    owner = owners[0]
    if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node) \
            or not owner.get("controller"):
        raise _forbidden(rt, name, f'node "{node}" can only create pods with an owner reference set to itself')
    if spec.get("serviceAccountName"):
        raise _forbidden(rt, name, f'node "{node}" can not create pods that reference a service account')
    kinds = {kind for kind, _ in pod_references(pod) if kind != "serviceaccount"}
    for kind, plural in (("secret", "secrets"), ("configmap", "configmaps"), ("pvc", "persistentvolumeclaims")):
        if kind in kinds:
            raise _forbidden(rt, name, f'node "{node}" can not create pods that reference {plural}')


async def _token(node: str, rt: ResourceType, namespace: str, name: str, request: Obj, get_pod: GetPod) -> None:
    ref = (request.get("spec") or {}).get("boundObjectRef") or {}
    if ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        raise _forbidden(rt, name, "node requested token not bound to a pod")
    if not ref.get("uid"):
        raise _forbidden(rt, name, "node requested token with a pod binding without a uid")
    pod = await get_pod(namespace, ref["name"])
    if pod is None:
        raise errors.not_found_error("pods", ref["name"])
    if ref["uid"] != (pod.get("metadata") or {}).get("uid"):
        raise _forbidden(rt, name, f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                                   "record. The object might have been deleted and then recreated")
    if (pod.get("spec") or {}).get("nodeName") != node:
        raise _forbidden(rt, name, "node requested token bound to a pod scheduled on a different node")
