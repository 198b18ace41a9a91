"""The Node authorizer: what a kubelet may read, decided by the pods bound to its node.

kube-apiserver runs ``--authorization-mode=Node,RBAC``. A request from a node's identity
(user ``system:node:<name>`` in group ``system:nodes``) goes to the Node authorizer first: a
Secret, ConfigMap, PersistentVolumeClaim, PersistentVolume or a service account's token is
allowed only when a path leads from it to the node in a graph of the cluster's objects
(``node <- pod <- secret``, ``node <- pod <- pvc <- pv <- secret``, ...); its own Node
object, pods listed with ``spec.nodeName=<itself>``, its Lease in ``kube-node-lease``; and
everything else by the static rules of the ``system:node`` role. Anything it does not allow
falls through to RBAC, which binds nothing to nodes.

The graph here (``plugin/pkg/auth/authorizer/node/graph.go``'s counterpart, written anew) is
kept from a watch of pods and persistent volumes in the API server. Like the real one it can
lag a write by the time an event takes: a denial that depends on it is asked again as the
graph catches up with the store (:meth:`NodeGraph.wait_until`), so that a kubelet reading
the Secret of a pod it has just been given does not see a spurious 403. The pods' index also
answers whether the pod a bound service-account token names still exists (with which UID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api import bootstrappolicy, rbac
from kubelite.store import Store, StoreError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
NODE_LEASE_NAMESPACE = "kube-node-lease"
PODS_PREFIX = "/registry/core/pods/"
PVS_PREFIX = "/registry/core/persistentvolumes/"
CATCH_UP_LIMIT = 2.0


def node_identity(user: str, groups: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """(node name, whether the user is a node) as nodeidentifier.NodeIdentity decides."""
    if not user.startswith(NODE_PREFIX) or NODES_GROUP not in groups:
        return "", False
    return user[len(NODE_PREFIX):], True


# ---------------------------------------------------------------------------- references


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def pod_references(pod: Obj) -> frozenset[tuple[str, str]]:
    """(kind, name) of the objects of the pod's namespace the pod uses: ``secret``,
    ``configmap``, ``pvc`` and its ``serviceaccount`` (podutil.VisitPodSecretNames & co)."""
    spec = pod.get("spec") or {}
    refs: set[tuple[str, str]] = {("serviceaccount", spec.get("serviceAccountName") or "default")}
    for ref in spec.get("imagePullSecrets") or []:
        refs.add(("secret", str(ref.get("name") or "")))
    for c in _containers(spec):
        for src in c.get("envFrom") or []:
            if src.get("secretRef"):
                refs.add(("secret", str(src["secretRef"].get("name") or "")))
            if src.get("configMapRef"):
                refs.add(("configmap", str(src["configMapRef"].get("name") or "")))
        for env in c.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if value_from.get("secretKeyRef"):
                refs.add(("secret", str(value_from["secretKeyRef"].get("name") or "")))
            if value_from.get("configMapKeyRef"):
                refs.add(("configmap", str(value_from["configMapKeyRef"].get("name") or "")))
    for vol in spec.get("volumes") or []:
        if vol.get("secret"):
            refs.add(("secret", str(vol["secret"].get("secretName") or "")))
        if vol.get("configMap"):
            refs.add(("configmap", str(vol["configMap"].get("name") or "")))
        if vol.get("persistentVolumeClaim"):
            refs.add(("pvc", str(vol["persistentVolumeClaim"].get("claimName") or "")))
        if vol.get("ephemeral") is not None:  # the claim the ephemeral volume controller makes
            refs.add(("pvc", f"{(pod.get('metadata') or {}).get('name', '')}-{vol.get('name', '')}"))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if src.get("secret"):
                refs.add(("secret", str(src["secret"].get("name") or "")))
            if src.get("configMap"):
                refs.add(("configmap", str(src["configMap"].get("name") or "")))
        for kind, source in vol.items():  # csi, cephfs, rbd, iscsi, flexVolume, ...: their secretRefs
            if isinstance(source, dict) and kind not in ("secret", "projected"):
                for key, ref in source.items():
                    if key.endswith(("secretRef", "SecretRef")) and isinstance(ref, dict) and ref.get("name"):
                        refs.add(("secret", str(ref["name"])))
    refs.discard(("secret", ""))
    refs.discard(("configmap", ""))
    return frozenset(refs)


def pv_secrets(pv: Obj) -> frozenset[tuple[str, str]]:
    """(namespace, name) of the Secrets a PersistentVolume's source refers to."""
    out: set[tuple[str, str]] = set()
    for source in (pv.get("spec") or {}).values():
        if isinstance(source, dict):
            for key, ref in source.items():
                if key.endswith(("secretRef", "SecretRef")) and isinstance(ref, dict) and ref.get("name"):
                    out.add((str(ref.get("namespace") or ""), str(ref["name"])))
    return frozenset(out)


@dataclass(frozen=True)
class PodEntry:
    uid: str
    node: str
    deletion_timestamp: str
    refs: frozenset[tuple[str, str]]


@dataclass
class NodeGraph:
    """Pods and persistent volumes as the Node authorizer needs them, kept from store watches."""

    store: Store
    pods: dict[tuple[str, str], PodEntry] = field(default_factory=dict)
    # (kind, namespace, name) -> how many pods on each node use it
    uses: dict[tuple[str, str, str], Counter[str]] = field(default_factory=dict)
    pvs: dict[str, tuple[str, str, frozenset[tuple[str, str]]]] = field(default_factory=dict)
    revision: int = 0
    synced: bool = False
    # Moves whenever a pod goes or its UID or deletionTimestamp changes (what bound-token
    # validation reads of it), not with every status write.
    pod_identities: int = 0

    def __post_init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._moved = asyncio.Event()
        self._revisions = {PODS_PREFIX: 0, PVS_PREFIX: 0}

    # -- the watch

    async def start(self) -> None:
        for prefix in (PODS_PREFIX, PVS_PREFIX):
            rev = await self._relist(prefix)
            self._tasks.append(asyncio.create_task(self._follow(prefix, rev), name=f"node-graph {prefix}"))
        self.synced = True

    async def stop(self) -> None:
        self.synced = False
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _relist(self, prefix: str) -> int:
        kvs, rev, _ = await self.store.list(prefix)
        if prefix == PODS_PREFIX:
            self.pod_identities += 1
            for key in list(self.pods):
                self._remove_pod(key)
        else:
            self.pvs.clear()
        for kv in kvs:
            self._apply(prefix, kv.key, orjson.loads(kv.value))
        self._advance(prefix, rev)
        return rev

    async def _follow(self, prefix: str, rev: int) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.store.watch_batches(prefix, rev)) as batches:
                    async for batch in batches:
                        for ev in batch.events:
                            self._apply(prefix, ev.kv.key, None if ev.type == "DELETED" else orjson.loads(ev.kv.value))
                        rev = batch.revision
                        self._advance(prefix, rev)
            except StoreError as e:
                log.info("node graph %s: %s; relisting", prefix, e)
                await asyncio.sleep(0.1)
                try:
                    rev = await self._relist(prefix)
                except StoreError:
                    continue

    def _advance(self, prefix: str, rev: int) -> None:
        self._revisions[prefix] = rev
        self.revision = min(self._revisions.values())
        self._moved.set()
        self._moved = asyncio.Event()

    def _apply(self, prefix: str, key: str, obj: Obj | None) -> None:
        rest = key[len(prefix):]
        if prefix == PVS_PREFIX:
            if obj is None:
                self.pvs.pop(rest, None)
            else:
                ref = (obj.get("spec") or {}).get("claimRef") or {}
                self.pvs[rest] = (str(ref.get("namespace") or ""), str(ref.get("name") or ""), pv_secrets(obj))
            return
        ns, _, name = rest.partition("/")
        old = self._remove_pod((ns, name))
        if obj is None:
            if old is not None:
                self.pod_identities += 1
            return
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        entry = PodEntry(str(meta.get("uid") or ""), str(spec.get("nodeName") or ""),
                         str(meta.get("deletionTimestamp") or ""), pod_references(obj))
        if old is not None and (old.uid, old.deletion_timestamp) != (entry.uid, entry.deletion_timestamp):
            self.pod_identities += 1
        self.pods[(ns, name)] = entry
        if entry.node:
            for kind, ref in entry.refs:
                self.uses.setdefault((kind, ns, ref), Counter())[entry.node] += 1

    def _remove_pod(self, key: tuple[str, str]) -> PodEntry | None:
        entry = self.pods.pop(key, None)
        if entry is None:
            return None
        if not entry.node:
            return entry
        for kind, ref in entry.refs:
            counter = self.uses.get((kind, key[0], ref))
            if counter is not None:
                counter[entry.node] -= 1
                if counter[entry.node] <= 0:
                    del counter[entry.node]
                if not counter:
                    del self.uses[(kind, key[0], ref)]
        return entry

    async def wait_until(self, answer: Callable[[], bool], limit: float = CATCH_UP_LIMIT) -> bool:
        """``answer()`` once it is True, or once the graph has seen every write the store had
        committed when asked (then its False stands); at most ``limit`` seconds. Other
        prefixes' commits reach the graph as progress about once a second: an answer that
        turns True with the awaited pod event comes back as soon as that event is applied."""
        target = self.store.revision
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            if answer():
                return True
            left = deadline - loop.time()
            if self.revision >= target or left <= 0 or not self.synced:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)

    # -- paths

    def has_path(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Whether the object leads to ``node`` (hasPathFrom)."""
        if kind == "pod":
            entry = self.pods.get((namespace, name))
            return entry is not None and entry.node == node
        if kind == "pv":
            claim = self.pvs.get(name)
            return claim is not None and bool(claim[1]) and self.has_path(node, "pvc", claim[0], claim[1])
        if node in self.uses.get((kind, namespace, name), ()):
            return True
        if kind == "secret":  # node <- pod <- pvc <- pv <- secret
            return any((namespace, name) in secrets and self.has_path(node, "pv", "", pv)
                       for pv, (_, _, secrets) in self.pvs.items() if secrets)
        return False


# ---------------------------------------------------------------------------- the authorizer


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    # The answer came from the graph (which may lag the store): worth asking again once caught up.
    graph: bool = False


NO_OPINION = Verdict(False)
ALLOW = Verdict(True)


def _node_rules() -> list[Obj]:
    role = next(r for r in bootstrappolicy.CLUSTER_ROLES if r["metadata"]["name"] == "system:node")
    rules: list[Obj] = role["rules"]
    return rules


class NodeAuthorizer:
    """NodeAuthorizer.Authorize, with AuthorizeNodeWithSelectors (on by default since 1.32)."""

    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph
        self.rules = _node_rules()

    def authorize(self, attrs: rbac.Attributes) -> Verdict:
        node, is_node = node_identity(attrs.user, attrs.groups)
        if not is_node:
            return NO_OPINION
        if not node:
            return Verdict(False, f'unknown node for user "{attrs.user}"')
        if attrs.resource_request:
            resource = (attrs.api_group, attrs.resource)
            if resource in (("", "secrets"), ("", "configmaps")):
                return self._read_namespaced(node, "secret" if attrs.resource == "secrets" else "configmap", attrs)
            if resource == ("", "persistentvolumeclaims"):
                if attrs.subresource == "status":
                    if attrs.verb not in ("update", "patch"):
                        return Verdict(False, "can only get/update/patch this type")
                    return self._path(node, "pvc", attrs)
                return self._get(node, "pvc", attrs)
            if resource == ("", "persistentvolumes"):
                return self._get(node, "pv", attrs)
            if resource == ("", "serviceaccounts"):
                return self._create_token(node, attrs)
            if resource == ("coordination.k8s.io", "leases"):
                return self._lease(node, attrs)
            if resource == ("", "nodes"):
                return self._node(node, attrs)
            if resource == ("", "pods"):
                return self._pod(node, attrs)
        if any(rbac.rule_allows(attrs, r) for r in self.rules):
            return ALLOW
        return NO_OPINION

    def _path(self, node: str, kind: str, attrs: rbac.Attributes) -> Verdict:
        if not attrs.name:
            return Verdict(False, "No Object name found")
        if self.graph.has_path(node, kind, attrs.namespace, attrs.name):
            return ALLOW
        return Verdict(False, f"no relationship found between node '{node}' and this object", graph=True)

    def _get(self, node: str, kind: str, attrs: rbac.Attributes) -> Verdict:
        if attrs.verb != "get":
            return Verdict(False, "can only get individual resources of this type")
        if attrs.subresource:
            return Verdict(False, "cannot get subresource")
        return self._path(node, kind, attrs)

    def _read_namespaced(self, node: str, kind: str, attrs: rbac.Attributes) -> Verdict:
        if attrs.verb not in ("get", "list", "watch"):
            return Verdict(False, "can only read resources of this type")
        if attrs.subresource:
            return Verdict(False, "cannot read subresource")
        if not attrs.namespace:
            return Verdict(False, "can only read namespaced object of this type")
        return self._path(node, kind, attrs)

    def _create_token(self, node: str, attrs: rbac.Attributes) -> Verdict:
        if attrs.verb != "create" or not attrs.name:
            return Verdict(False, "can only create tokens for individual service accounts")
        if attrs.subresource != "token":
            return Verdict(False, "can only create token subresource of serviceaccount")
        return self._path(node, "serviceaccount", attrs)

    def _lease(self, node: str, attrs: rbac.Attributes) -> Verdict:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return Verdict(False, "can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return Verdict(False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if attrs.verb != "create" and attrs.name != node:
            return Verdict(False, "can only access node lease with the same name as the requesting node")
        return ALLOW

    def _node(self, node: str, attrs: rbac.Attributes) -> Verdict:
        if not attrs.subresource:
            if attrs.verb in ("create", "update", "patch"):
                return ALLOW  # NodeRestriction limits the node to its own object
            if attrs.verb in ("get", "list", "watch"):
                if attrs.name == node:
                    return ALLOW
                if not attrs.name:
                    return Verdict(False, f"node '{node}' cannot read all nodes, only its own Node object")
                return Verdict(False, f"node '{node}' cannot read '{attrs.name}', only its own Node object")
        elif attrs.subresource == "status" and attrs.verb in ("update", "patch"):
            return ALLOW
        return NO_OPINION

    def _pod(self, node: str, attrs: rbac.Attributes) -> Verdict:
        if not attrs.subresource:
            if attrs.verb == "get":
                return self._get(node, "pod", attrs)
            if attrs.verb in ("list", "watch"):
                if ("spec.nodeName", "=", node) in attrs.fields or ("spec.nodeName", "==", node) in attrs.fields:
                    return ALLOW
                if attrs.name:
                    return self._path(node, "pod", attrs)
                return Verdict(False, "can only list/watch pods with spec.nodeName field selector")
            if attrs.verb in ("create", "delete"):
                return ALLOW  # mirror pods; NodeRestriction limits them to the node's own
        elif (attrs.subresource == "status" and attrs.verb in ("update", "patch")) or (attrs.subresource == "eviction" and attrs.verb == "create"):
            return ALLOW
        return NO_OPINION
