"""The Node authorizer's graph and verdicts, NodeRestriction, and bound-token validation with a fake
clock (issue 18): pure logic, no server."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import pytest

from kubelite.api import rbac
from kubelite.api.errors import StatusError
from kubelite.api.registry import lookup
from kubelite.apiserver import noderestriction
from kubelite.apiserver.auth import TokenAuthenticator, TokenError, TokenSigner, User
from kubelite.apiserver.nodeauthorizer import NodeAuthorizer, NodeGraph, pod_references
from kubelite.apiserver.pki import _key, _pem_key

Obj = dict[str, Any]
NODE = User("system:node:n1", ("system:nodes", "system:authenticated"))


def graph_with(*pods: tuple[str, str, Obj], pvs: tuple[tuple[str, Obj], ...] = ()) -> NodeGraph:
    g = NodeGraph(store=None)  # type: ignore[arg-type]  # fed by hand, not from a store
    for ns, name, obj in pods:
        g._apply("/registry/core/pods/", f"/registry/core/pods/{ns}/{name}", obj)
    for name, pv in pvs:
        g._apply("/registry/core/persistentvolumes/", f"/registry/core/persistentvolumes/{name}", pv)
    return g


def a_pod(node: str, **spec: Any) -> Obj:
    return {"metadata": {"uid": "u1"}, "spec": {"nodeName": node, "containers": [{"name": "c"}], **spec}}


def attrs(verb: str, resource: str, name: str = "", namespace: str = "ns", subresource: str = "",
          group: str = "", fields: tuple[tuple[str, str, str], ...] = ()) -> rbac.Attributes:
    return rbac.Attributes(NODE.name, NODE.groups, verb, True, "", group, "v1", resource, subresource, namespace, name,
                           fields=fields)


def test_a_pod_references_what_it_mounts_and_reads() -> None:
    spec = {
        "serviceAccountName": "robot",
        "imagePullSecrets": [{"name": "pull"}],
        "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "env-s"}}, {"configMapRef": {"name": "env-c"}}],
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "key-s", "key": "k"}}}]}],
        "volumes": [{"name": "a", "secret": {"secretName": "vol-s"}},
                    {"name": "b", "projected": {"sources": [{"configMap": {"name": "proj-c"}}]}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "d", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi-s"}}}],
    }
    refs = pod_references({"metadata": {"name": "p"}, "spec": spec})
    assert refs == {("serviceaccount", "robot"), ("secret", "pull"), ("secret", "env-s"), ("configmap", "env-c"),
                    ("secret", "key-s"), ("secret", "vol-s"), ("configmap", "proj-c"), ("pvc", "data"),
                    ("secret", "csi-s")}


def test_secrets_only_of_pods_bound_to_the_node() -> None:
    vol = [{"name": "s", "secret": {"secretName": "mine"}}]
    g = graph_with(("ns", "a", a_pod("n1", volumes=vol)),
                   ("ns", "b", a_pod("n2", volumes=[{"name": "s", "secret": {"secretName": "theirs"}}])))
    authz = NodeAuthorizer(g)
    assert authz.authorize(attrs("get", "secrets", "mine")).allowed
    refused = authz.authorize(attrs("get", "secrets", "theirs"))
    assert (refused.allowed, refused.reason, refused.graph) == (
        False, "no relationship found between node 'n1' and this object", True)
    assert not authz.authorize(attrs("get", "secrets", "mine", namespace="other")).allowed
    assert authz.authorize(attrs("list", "secrets")).reason == "No Object name found"
    assert authz.authorize(attrs("update", "secrets", "mine")).reason == "can only read resources of this type"
    g._apply("/registry/core/pods/", "/registry/core/pods/ns/a", None)  # the pod is gone, so is the path
    assert not authz.authorize(attrs("get", "secrets", "mine")).allowed


def test_volumes_through_their_claims() -> None:
    pod = a_pod("n1", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}])
    pv = {"spec": {"claimRef": {"namespace": "ns", "name": "data"},
                   "csi": {"driver": "x", "nodePublishSecretRef": {"name": "pv-s", "namespace": "secrets"}}}}
    authz = NodeAuthorizer(graph_with(("ns", "p", pod), pvs=(("vol-1", pv),)))
    assert authz.authorize(attrs("get", "persistentvolumeclaims", "data")).allowed
    assert authz.authorize(attrs("get", "persistentvolumes", "vol-1", namespace="")).allowed
    assert authz.authorize(attrs("get", "secrets", "pv-s", namespace="secrets")).allowed
    assert authz.authorize(attrs("list", "persistentvolumes", namespace="")).reason == \
        "can only get individual resources of this type"
    assert authz.authorize(attrs("update", "persistentvolumeclaims", "data", subresource="status")).allowed


def test_nodes_pods_leases_and_tokens() -> None:
    authz = NodeAuthorizer(graph_with(("ns", "p", a_pod("n1", serviceAccountName="robot"))))
    assert authz.authorize(attrs("get", "nodes", "n1", namespace="")).allowed
    assert authz.authorize(attrs("list", "nodes", namespace="")).reason == \
        "node 'n1' cannot read all nodes, only its own Node object"
    assert authz.authorize(attrs("get", "nodes", "n2", namespace="")).reason == \
        "node 'n1' cannot read 'n2', only its own Node object"
    assert authz.authorize(attrs("watch", "pods", namespace="", fields=(("spec.nodeName", "=", "n1"),))).allowed
    assert not authz.authorize(attrs("watch", "pods", namespace="", fields=(("spec.nodeName", "=", "n2"),))).allowed
    assert authz.authorize(attrs("create", "serviceaccounts", "robot", subresource="token")).allowed
    assert not authz.authorize(attrs("create", "serviceaccounts", "other", subresource="token")).allowed
    assert authz.authorize(attrs("update", "leases", "n1", namespace="kube-node-lease",
                                 group="coordination.k8s.io")).allowed
    assert authz.authorize(attrs("update", "leases", "n2", namespace="kube-node-lease",
                                 group="coordination.k8s.io")).reason == \
        "can only access node lease with the same name as the requesting node"
    # The rest by the system:node role's static rules.
    assert authz.authorize(attrs("watch", "services", namespace="")).allowed
    assert authz.authorize(attrs("create", "events")).allowed
    assert not authz.authorize(attrs("create", "deployments", group="apps")).allowed
    # Not a node: no opinion, RBAC decides.
    other = rbac.Attributes("alice", ("system:authenticated",), "get", True, "", "", "v1", "secrets", "", "ns", "x")
    assert authz.authorize(other) == authz.authorize(other) and not authz.authorize(other).allowed


def _restrict(operation: str, plural: str, name: str, obj: Obj | None = None, old: Obj | None = None,
              subresource: str | None = None, namespace: str = "ns", pods: dict[str, Obj] | None = None) -> None:
    rt = lookup("coordination.k8s.io" if plural == "leases" else "", "v1", plural)
    assert rt is not None

    async def get_pod(ns: str, pod_name: str) -> Obj | None:
        return (pods or {}).get(pod_name)

    asyncio.run(noderestriction.admit(NODE, operation, rt, subresource, namespace, name, obj, old, get_pod))


def refusal(*args: Any, **kw: Any) -> str:
    with pytest.raises(StatusError) as e:
        _restrict(*args, **kw)
    assert e.value.code == 403
    return e.value.message


def test_node_restriction() -> None:
    assert refusal("UPDATE", "nodes", "n2", {}, {}, namespace="") == \
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    _restrict("UPDATE", "nodes", "n1", {"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}},
              {"metadata": {}}, namespace="")
    assert refusal("UPDATE", "nodes", "n1", {"metadata": {"labels": {"node-role.kubernetes.io/master": ""}}},
                   {"metadata": {}}, namespace="") == \
        'nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/master'
    theirs, mine = a_pod("n2"), a_pod("n1")
    assert refusal("DELETE", "pods", "p", None, theirs) == \
        'pods "p" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself'
    _restrict("DELETE", "pods", "p", None, mine)
    _restrict("UPDATE", "pods", "p", mine, mine, subresource="status")
    relabelled = {**mine, "metadata": {**mine["metadata"], "labels": {"x": "y"}}}
    assert refusal("UPDATE", "pods", "p", relabelled, mine, subresource="status") == \
        'pods "p" is forbidden: node "n1" cannot update labels through pod status'
    mirror: Obj = {"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"},
                           "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "controller": True}]},
              "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}}
    _restrict("CREATE", "pods", "m", mirror)
    with_secret = {**mirror, "spec": {**mirror["spec"], "volumes": [{"name": "s", "secret": {"secretName": "x"}}]}}
    assert refusal("CREATE", "pods", "m", with_secret) == \
        'pods "m" is forbidden: node "n1" can not create pods that reference secrets'
    token = {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1"}}}
    _restrict("CREATE", "serviceaccounts", "default", token, subresource="token", pods={"p": mine})
    assert refusal("CREATE", "serviceaccounts", "default", token, subresource="token", pods={"p": theirs}) == \
        'serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node'
    assert refusal("CREATE", "serviceaccounts", "default", {"spec": {}}, subresource="token") == \
        'serviceaccounts "default" is forbidden: node requested token not bound to a pod'
    assert refusal("CREATE", "leases", "n2", {"metadata": {"name": "n2"}}, namespace="kube-node-lease") == \
        'leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the ' \
        "requesting node"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Objects:
    """auth.ObjectGetter over dicts: (uid, deletionTimestamp) by name."""

    def __init__(self) -> None:
        self.sas: dict[tuple[str, str], tuple[str, str]] = {("ns", "app"): ("sa-uid", "")}
        self.pods: dict[tuple[str, str], tuple[str, str]] = {("ns", "p"): ("pod-uid", "")}

    async def service_account(self, namespace: str, name: str) -> tuple[str, str] | None:
        return self.sas.get((namespace, name))

    async def pod(self, namespace: str, name: str) -> tuple[str, str] | None:
        return self.pods.get((namespace, name))

    async def secret(self, namespace: str, name: str) -> tuple[str, str] | None:
        return None

    async def node(self, name: str) -> tuple[str, str] | None:
        return None

    def version(self) -> Hashable | None:
        # Moves with any change, as a watch-fed getter's does: remembered verdicts must not
        # outlive a deleted or recreated object.
        return tuple(sorted(self.sas.items())), tuple(sorted(self.pods.items()))


class CountingObjects(Objects):
    """A getter that counts its lookups and whose version moves only when told."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.moved = 0

    async def service_account(self, namespace: str, name: str) -> tuple[str, str] | None:
        self.lookups += 1
        return await super().service_account(namespace, name)

    def version(self) -> Hashable | None:
        return self.moved


def review(authn: TokenAuthenticator, token: str, audiences: tuple[str, ...] | None = None) -> User | str:
    try:
        user = asyncio.run(authn.review(token, audiences))
    except TokenError as e:
        return str(e)
    assert user is not None
    return user


def test_bound_token_validation_with_a_fake_clock() -> None:
    clock = Clock(1_800_000_000.0)
    signer = TokenSigner(_pem_key(_key()), clock=clock)
    objects = Objects()
    authn = TokenAuthenticator(signer, objects, clock=clock)
    token, exp = signer.issue("ns", "app", "sa-uid", expiration_seconds=600, pod=("p", "pod-uid"),
                              node=("n1", "node-uid"))
    assert exp == 1_800_000_600
    user = review(authn, token)
    assert isinstance(user, User)
    assert user.name == "system:serviceaccount:ns:app" and user.uid == "sa-uid"
    assert user.extra["authentication.kubernetes.io/pod-name"] == ["p"]
    assert user.extra["authentication.kubernetes.io/node-uid"] == ["node-uid"]
    # Expiry, with go-jose's minute of leeway.
    clock.now = exp + 60
    assert isinstance(review(authn, token), User)
    clock.now = exp + 61
    assert review(authn, token) == "service account token has expired"
    clock.now = exp - 300
    # Another audience.
    assert review(authn, token, ("vault",)) == ('token audiences ["https://kubernetes.default.svc.cluster.local"] '
                                               'is invalid for the target audiences ["vault"]')
    # The pod made again under another UID, then being deleted, then gone.
    objects.pods[("ns", "p")] = ("other-uid", "")
    assert review(authn, token) == "pod UID (other-uid) does not match service account pod ref claim (pod-uid)"
    objects.pods[("ns", "p")] = ("pod-uid", "2027-01-15T08:00:00Z")  # deleted, within the leeway: still good
    clock.now = 1_800_000_000.0 + 30
    assert isinstance(review(authn, token), User)
    objects.pods[("ns", "p")] = ("pod-uid", "2027-01-15T07:58:00Z")
    assert review(authn, token) == "service account token has been invalidated"
    del objects.pods[("ns", "p")]
    assert review(authn, token) == "service account token has been invalidated"
    # The service account made again.
    objects.pods[("ns", "p")] = ("pod-uid", "")
    objects.sas[("ns", "app")] = ("new-sa-uid", "")
    assert review(authn, token) == "service account UID (new-sa-uid) does not match claim (sa-uid)"
    del objects.sas[("ns", "app")]
    assert review(authn, token) == 'serviceaccounts "app" not found'
    # Not one of ours at all.
    assert asyncio.run(authn.review("not.a.token")) is None


def test_a_token_verdict_is_remembered_until_the_objects_move_or_the_token_expires() -> None:
    clock = Clock(1_800_000_000.0)
    signer = TokenSigner(_pem_key(_key()), clock=clock)
    objects = CountingObjects()
    authn = TokenAuthenticator(signer, objects, clock=clock)
    token, exp = signer.issue("ns", "app", "sa-uid", expiration_seconds=600, pod=("p", "pod-uid"))
    first = review(authn, token)
    assert isinstance(first, User) and objects.lookups == 1
    assert review(authn, token) is first and objects.lookups == 1  # remembered
    # Another audience is its own question.
    assert isinstance(review(authn, token, ("https://kubernetes.default.svc.cluster.local", "vault")), User)
    assert objects.lookups == 2
    # Expiry is checked on every request, remembered or not.
    clock.now = exp + 61
    assert review(authn, token) == "service account token has expired"
    clock.now = exp - 300
    # A deletion moves the version: the verdict is made again, and refused.
    del objects.sas[("ns", "app")]
    objects.moved += 1
    assert review(authn, token) == 'serviceaccounts "app" not found'
    # An object being deleted is not remembered: its verdict turns with the clock.
    objects.sas[("ns", "app")] = ("sa-uid", "2027-01-15T08:05:00Z")  # now, within the leeway
    objects.moved += 1
    before = objects.lookups
    assert isinstance(review(authn, token), User) and isinstance(review(authn, token), User)
    assert objects.lookups == before + 2
    # A getter that cannot tell (its caches not synced) has nothing remembered.
    objects.sas[("ns", "app")] = ("sa-uid", "")
    objects.version = lambda: None  # type: ignore[method-assign]
    before = objects.lookups
    review(authn, token)
    review(authn, token)
    assert objects.lookups == before + 2


class TokenClient:
    """The TokenRequest API as the kubelet's token manager sees it: numbered tokens."""

    def __init__(self) -> None:
        self.requests: list[Obj] = []

    async def create(self, rt: Any, body: Obj, namespace: str, *, subresource: str, name: str) -> Obj:
        self.requests.append(body["spec"])
        return {"status": {"token": f"token-{len(self.requests)}"}}


def test_the_kubelet_renews_a_token_at_80_percent_of_its_life() -> None:
    from kubelite.node.podconfig import TokenManager

    clock = Clock(1000.0)
    client = TokenClient()
    manager = TokenManager(client, clock=clock)  # type: ignore[arg-type]

    def get(seconds: int = 600) -> str:
        return asyncio.run(manager.get("ns", "p", "pod-uid", "app", seconds, ""))

    assert get() == "token-1"
    assert client.requests == [{"expirationSeconds": 600,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pod-uid"}}]
    clock.now = 1000.0 + 479
    assert get() == "token-1"  # 79.8 % of its 10 minutes
    clock.now = 1000.0 + 480
    assert get() == "token-2"  # 80 %: a new one
    # A token of two days is renewed after a day at the latest.
    assert get(2 * 86400) == "token-3"
    clock.now += 86400
    assert get(2 * 86400) == "token-4"
    manager.forget("pod-uid")
    assert get() == "token-5"
