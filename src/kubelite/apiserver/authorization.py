"""Authorization in the API server: RBAC over cached Roles and bindings, impersonation, reviews.

kube-apiserver runs ``--authorization-mode=Node,RBAC``: after authentication every request's
attributes go to the authorizers, and a refusal is a 403 Status naming the user, verb,
resource and namespace. Here the RBAC objects are read from four informer-like caches
(:class:`~kubelite.apiserver.registry.CachedKind`) and turned into a
:class:`kubelite.api.rbac.Policy` once per change, so the per-request cost is the rule walk
(members of ``system:masters`` skip it, as kube-apiserver's privileged-group authorizer
does). Also here: the ``Impersonate-*`` headers (``kubectl --as``), which need the
``impersonate`` verb on users, groups, service accounts and extras; the bootstrap policy
(created when missing at every start, as kube-apiserver's RBAC post-start hook does); the
escalation check on writes of roles and bindings; and the answers of the review kinds
(SelfSubjectAccessReview, SubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview,
TokenReview), which are computed, never stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from kubelite.api import bootstrappolicy, rbac
from kubelite.api.errors import StatusError
from kubelite.api.registry import ResourceType, lookup
from kubelite.apiserver.auth import API_AUDIENCES, TokenAuthenticator, TokenError, User
from kubelite.apiserver.nodeauthorizer import ALLOW, NodeAuthorizer, NodeGraph, Verdict, node_identity
from kubelite.apiserver.registry import CachedKind
from kubelite.store import Store

log = logging.getLogger(__name__)
Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"
REVIEW_GROUPS = ("authorization.k8s.io", "authentication.k8s.io")
DECISION_CACHE_SIZE = 4096  # remembered RBAC verdicts (forgotten at once when the policy changes)


def _rt(group: str, plural: str) -> ResourceType:
    rt = lookup(group, "v1", plural)
    assert rt is not None, plural
    return rt


class ClusterObjects:
    """What bound-token validation looks up (auth.ObjectGetter): pods from the Node authorizer's
    graph, service accounts from a watch, the rest (and any miss) from the store."""

    def __init__(self, store: Store, graph: NodeGraph) -> None:
        self.store = store
        self.graph = graph
        self.service_accounts = CachedKind(store, _rt("", "serviceaccounts"))

    async def _live(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str] | None:
        kv = await self.store.get(rt.key(namespace, name))
        if kv is None:
            return None
        meta = orjson.loads(kv.value).get("metadata") or {}
        return str(meta.get("uid") or ""), str(meta.get("deletionTimestamp") or "")

    async def service_account(self, namespace: str, name: str) -> tuple[str, str] | None:
        rt = self.service_accounts.rt
        obj = self.service_accounts.objects.get(rt.key(namespace, name)) if self.service_accounts.synced else None
        if obj is not None:
            meta = obj.get("metadata") or {}
            return str(meta.get("uid") or ""), str(meta.get("deletionTimestamp") or "")
        return await self._live(rt, namespace, name)

    async def pod(self, namespace: str, name: str) -> tuple[str, str] | None:
        entry = self.graph.pods.get((namespace, name)) if self.graph.synced else None
        if entry is not None:
            return entry.uid, entry.deletion_timestamp
        return await self._live(_rt("", "pods"), namespace, name)

    async def secret(self, namespace: str, name: str) -> tuple[str, str] | None:
        return await self._live(_rt("", "secrets"), namespace, name)

    async def node(self, name: str) -> tuple[str, str] | None:
        return await self._live(_rt("", "nodes"), None, name)

    def version(self) -> tuple[int, int] | None:
        if not (self.service_accounts.synced and self.graph.synced):
            return None
        return self.service_accounts.generation, self.graph.pod_identities


class Authorizer:
    """The authorizers of one API server process: Node, then RBAC (``--authorization-mode=Node,RBAC``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens: TokenAuthenticator | None = None  # the server sets it: TokenReview answers with it
        self.kinds = {name: _rt(RBAC_GROUP, name) for name in ("clusterroles", "roles", "clusterrolebindings",
                                                              "rolebindings")}
        self.caches = {name: CachedKind(store, rt) for name, rt in self.kinds.items()}
        self.graph = NodeGraph(store)
        self.nodes = NodeAuthorizer(self.graph)
        self.objects = ClusterObjects(store, self.graph)
        self._policy = rbac.Policy()
        self._seen: tuple[int, int, int, int] | None = None
        self._decisions: dict[tuple[Any, ...], bool] = {}
        self._decided_under: rbac.Policy | None = None
        self._requests: dict[tuple[str, tuple[str, ...], str, str, str, str], rbac.Attributes] = {}
        self._requests_under: rbac.Policy | None = None

    async def start(self) -> None:
        for cache in self.caches.values():
            await cache.start()
        await self.objects.service_accounts.start()
        await self.graph.start()

    async def stop(self) -> None:
        for cache in self.caches.values():
            await cache.stop()
        await self.objects.service_accounts.stop()
        await self.graph.stop()

    def policy(self) -> rbac.Policy:
        c = self.caches
        generations = (c["clusterroles"].generation, c["roles"].generation, c["clusterrolebindings"].generation,
                       c["rolebindings"].generation)
        if generations != self._seen:
            self._policy = rbac.Policy.of(*(list(self.caches[n].objects.values()) for n in
                                             ("clusterroles", "roles", "clusterrolebindings", "rolebindings")))
            self._seen = generations
        return self._policy

    def decide(self, attrs: rbac.Attributes) -> Verdict:
        """The union of the authorizers: the first that allows, else the reasons they gave."""
        if rbac.SUPER_GROUP in attrs.groups:
            return ALLOW
        node = self.nodes.authorize(attrs)
        if node.allowed or self._rbac_allows(attrs):
            return ALLOW
        return node

    def _rbac_allows(self, attrs: rbac.Attributes) -> bool:
        """RBAC's verdict, remembered until the policy changes: the same identity asks the same
        thing over and over (a controller's writes, a client's creates), and the walk over the
        bindings' subjects and their roles' rules is most of what authorization costs."""
        policy = self.policy()
        if policy is not self._decided_under:
            self._decisions.clear()
            self._decided_under = policy
        # What RBAC reads of the attributes (rules match groups, resources, names, verbs, paths).
        key = (attrs.user, attrs.groups, attrs.verb, attrs.resource_request, attrs.path if not attrs.resource_request
               else "", attrs.api_group, attrs.resource, attrs.subresource, attrs.namespace, attrs.name)
        verdict = self._decisions.get(key)
        if verdict is None:
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()
            verdict = self._decisions[key] = policy.allows(attrs)
        return verdict

    def allows(self, attrs: rbac.Attributes) -> bool:
        return self.decide(attrs).allowed

    async def check_request(self, user: User, method: str, path: str, query: Mapping[str, str]) -> rbac.Attributes:
        """The attributes of an HTTP request, once :meth:`check` lets it through. The same client
        sends the same request over and over: an allowed one is remembered under the policy
        (not a node's, whose verdicts follow the graph), so most requests cost one lookup."""
        policy = self.policy()
        if policy is not self._requests_under:
            self._requests.clear()
            self._requests_under = policy
        key = (user.name, user.groups, method, path, query.get("watch", ""), query.get("fieldSelector", ""))
        attrs = self._requests.get(key)
        if attrs is not None:
            return attrs
        attrs = rbac.request_attributes(user.name, user.groups, method, path, query)
        await self.check(attrs)
        if not node_identity(user.name, user.groups)[1]:
            if len(self._requests) >= DECISION_CACHE_SIZE:
                self._requests.clear()
            self._requests[key] = attrs
        return attrs

    async def check(self, attrs: rbac.Attributes) -> None:
        """Raise kube-apiserver's 403 unless the request is allowed. A node's request refused for
        want of a path in the graph is asked again as the graph catches up with the store."""
        verdict = self.decide(attrs)
        if not verdict.allowed and verdict.graph:
            if await self.graph.wait_until(lambda: self.decide(attrs).allowed):
                return
            verdict = self.decide(attrs)
        if not verdict.allowed:
            raise StatusError(403, "Forbidden", rbac.forbidden_message(attrs, verdict.reason),
                              rbac.forbidden_details(attrs))

    # -- impersonation

    def impersonate(self, user: User, headers: Mapping[str, str], all_values: Any) -> User:
        """``Impersonate-User``/``-Group``/``-Uid``/``-Extra-*``: the identity the request acts as,
        once ``user`` may impersonate each part (``impersonate`` on users, serviceaccounts,
        groups, uids, userextras/KEY), as kube-apiserver's impersonation filter checks."""
        name = headers.get("Impersonate-User", "")
        groups = list(all_values("Impersonate-Group"))
        uid = headers.get("Impersonate-Uid", "")
        extra: dict[str, list[str]] = {}
        for key in headers:
            if key.lower().startswith("impersonate-extra-"):
                extra.setdefault(key[len("impersonate-extra-"):].lower(), []).extend(all_values(key))
        if not name:
            if groups or uid or extra:
                raise StatusError(500, "InternalError",
                                  "Internal error occurred: requested impersonation of groups or extras without "
                                  "impersonating a user", {})
            return user

        def need(resource: str, target: str, namespace: str = "", subresource: str = "",
                 group: str = "") -> None:
            attrs = rbac.Attributes(user.name, user.groups, "impersonate", True, "", group, "", resource,
                                    subresource, namespace, target)
            if not self.allows(attrs):
                raise StatusError(403, "Forbidden", rbac.forbidden_message(attrs), rbac.forbidden_details(attrs))

        sa = name.removeprefix("system:serviceaccount:") if name.startswith("system:serviceaccount:") else ""
        if sa and ":" in sa:
            ns, _, sa_name = sa.partition(":")
            need("serviceaccounts", sa_name, ns)
        else:
            need("users", name)
        for g in groups:
            need("groups", g)
        if uid:
            need("uids", uid, group="authentication.k8s.io")
        for key, values in extra.items():
            for v in values:
                need("userextras", v, subresource=key, group="authentication.k8s.io")
        implied = ["system:authenticated"]
        if sa and ":" in sa:
            implied = ["system:serviceaccounts", f"system:serviceaccounts:{sa.partition(':')[0]}", *implied]
        all_groups = tuple(dict.fromkeys([*groups, *([] if name == "system:anonymous" else implied)]))
        return User(name, all_groups, uid, extra)

    # -- escalation

    def check_escalation(self, user: User | None, rt: ResourceType, obj: Obj, namespace: str | None) -> None:
        """Creating or updating a role needs its rules held (or ``escalate``); a binding needs
        its role's rules held (or ``bind`` on it), as the RBAC registry strategies check."""
        if user is None or rbac.SUPER_GROUP in user.groups or rt.group != RBAC_GROUP:
            return
        ns = namespace or ""
        name = (obj.get("metadata") or {}).get("name", "")
        policy = self.policy()
        held = policy.rules_for(user.name, user.groups, ns)
        if rt.plural in ("roles", "clusterroles"):
            if self.allows(rbac.Attributes(user.name, user.groups, "escalate", True, "", RBAC_GROUP, "v1",
                                           rt.plural, "", ns, name)):
                return
            rules = obj.get("rules") or []
            if rt.plural == "clusterroles" and obj.get("aggregationRule"):
                return  # its rules are the controller's to write
            missing = rbac.uncovered_rules(held, rules)
        else:
            ref = obj.get("roleRef") or {}
            if self.allows(rbac.Attributes(user.name, user.groups, "bind", True, "", RBAC_GROUP, "v1",
                                           "clusterroles" if ref.get("kind") == "ClusterRole" else "roles", "",
                                           "" if ref.get("kind") == "ClusterRole" else ns, ref.get("name", ""))):
                return
            if ref.get("kind") == "ClusterRole":
                role = policy.cluster_roles.get(ref.get("name", ""))
            else:
                role = policy.roles.get((ns, ref.get("name", "")))
            if role is None:
                kind = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
                raise StatusError(404, "NotFound", f'{kind}.{RBAC_GROUP} "{ref.get("name", "")}" not found',
                                  {"name": ref.get("name", ""), "group": RBAC_GROUP, "kind": kind})
            missing = rbac.uncovered_rules(held, role.get("rules") or [])
        if missing:
            message = f'{rt.plural}.{RBAC_GROUP} "{name}" is forbidden: ' + \
                rbac.escalation_message(user.name, user.groups, missing)
            raise StatusError(403, "Forbidden", message, {"name": name, "group": RBAC_GROUP, "kind": rt.plural})

    # -- reviews

    def access_review(self, spec: Obj, user: str, groups: tuple[str, ...], namespace: str = "") -> Obj:
        """The status of a (Self|Local)SubjectAccessReview."""
        ra = spec.get("resourceAttributes")
        if ra is not None:
            attrs = rbac.Attributes(user, groups, ra.get("verb", ""), True, "", ra.get("group", ""),
                                    ra.get("version", ""), ra.get("resource", ""), ra.get("subresource", ""),
                                    namespace or ra.get("namespace", ""), ra.get("name", ""))
        else:
            nra = spec.get("nonResourceAttributes") or {}
            attrs = rbac.Attributes(user, groups, nra.get("verb", ""), False, nra.get("path", ""))
        if self.allows(attrs):
            reason = "" if rbac.SUPER_GROUP in groups else "RBAC: allowed"
            return {"allowed": True, **({"reason": reason} if reason else {})}
        return {"allowed": False}

    def rules_review(self, user: User, namespace: str) -> Obj:
        """SelfSubjectRulesReview's status: every rule that applies in the namespace."""
        if node_identity(user.name, user.groups)[1]:
            # The Node authorizer cannot enumerate what a node may do (NodeAuthorizer.RulesFor).
            return {"resourceRules": [], "nonResourceRules": [], "incomplete": True,
                    "evaluationError": "node authorizer does not support user rule resolution"}
        rules = self.policy().rules_for(user.name, user.groups, namespace)
        if rbac.SUPER_GROUP in user.groups:
            rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]},
                     *rules]
        resource_rules = [{k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if r.get(k)}
                          for r in rules if not r.get("nonResourceURLs")]
        nonresource = [{"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}
                       for r in rules if r.get("nonResourceURLs")]
        return {"resourceRules": resource_rules, "nonResourceRules": nonresource, "incomplete": False}


    async def answer(self, rt: ResourceType, body: Obj, user: User, namespace: str | None) -> Obj:
        """The object a review kind's create returns: the request, with its status filled."""
        raw_spec, raw_meta = body.get("spec"), body.get("metadata")
        spec: Obj = raw_spec if isinstance(raw_spec, dict) else {}
        meta: Obj = raw_meta if isinstance(raw_meta, dict) else {}
        out: Obj = {"kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {k: v for k, v in meta.items() if k in ("name", "namespace")}}
        out["metadata"]["creationTimestamp"] = None
        if rt.plural == "selfsubjectreviews":
            info: Obj = {"username": user.name, "groups": list(user.groups)}
            if user.uid:
                info["uid"] = user.uid
            if user.extra:
                info["extra"] = user.extra
            out["status"] = {"userInfo": info}
            return out
        if rt.plural == "tokenreviews":
            token = str(spec.get("token", ""))
            if not token:
                raise StatusError(422, "Invalid", 'TokenReview.authentication.k8s.io "" is invalid: spec.token: '
                                  "Required value: token must not be empty", {"group": "authentication.k8s.io",
                                                                             "kind": "TokenReview"})
            wanted = tuple(spec.get("audiences") or API_AUDIENCES)
            status: Obj = {"user": {}}
            try:
                who = await self.tokens.review(token, wanted) if self.tokens is not None else None
            except TokenError as e:
                who, status["error"] = None, f"[invalid bearer token, {e}]"
            if who is not None:
                token_auds = (self.tokens.signer.claims(token) or {}).get("aud") if self.tokens else None
                auds = [token_auds] if isinstance(token_auds, str) else list(token_auds or [])
                status = {"authenticated": True, "user": {"username": who.name, "uid": who.uid,
                                                          "groups": list(who.groups)},
                          "audiences": [a for a in wanted if a in auds]}
                if who.extra:
                    status["user"]["extra"] = who.extra
            out["spec"] = spec
            out["status"] = status
            return out
        if rt.plural == "selfsubjectrulesreviews":
            ns = str(spec.get("namespace", ""))
            out["spec"] = spec
            out["status"] = self.rules_review(user, ns)
            return out
        if rt.plural == "selfsubjectaccessreviews":
            name, groups = user.name, user.groups
        else:  # subjectaccessreviews, localsubjectaccessreviews: someone else
            name, groups = str(spec.get("user", "")), tuple(spec.get("groups") or ())
            if rt.plural == "localsubjectaccessreviews":
                ra = spec.get("resourceAttributes") or {}
                if ra.get("namespace", namespace) != namespace:
                    raise StatusError(
                        422, "Invalid",
                        f'LocalSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes.namespace: '
                        f'Invalid value: "{ra.get("namespace")}": must match metadata.namespace',
                        {"group": "authorization.k8s.io", "kind": "LocalSubjectAccessReview"})
        if not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes"):
            raise StatusError(
                422, "Invalid",
                f'{rt.kind}.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": '
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                {"group": "authorization.k8s.io", "kind": rt.kind})
        out["spec"] = spec
        out["status"] = self.access_review(spec, name, groups, namespace or "")
        return out


async def bootstrap(registry: Any) -> None:
    """Create the bootstrap ClusterRoles and ClusterRoleBindings that are missing (kube-apiserver's
    ``rbac/bootstrap-roles`` post-start hook; existing ones are left as their owners edited them)."""
    roles_rt, bindings_rt = _rt(RBAC_GROUP, "clusterroles"), _rt(RBAC_GROUP, "clusterrolebindings")
    for rt, objects in ((roles_rt, bootstrappolicy.bootstrap_cluster_roles()),
                        (bindings_rt, bootstrappolicy.CLUSTER_ROLE_BINDINGS)):
        for obj in objects:
            if await registry.store.get(rt.key(None, obj["metadata"]["name"])) is not None:
                continue
            try:
                await registry.create_object(rt, None, obj, manager="kube-apiserver")
            except StatusError as e:
                if e.code != 409:
                    raise
