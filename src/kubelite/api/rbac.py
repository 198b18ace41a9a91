"""RBAC: what a request asks for, and whether Roles and bindings allow it (pure logic).

kube-apiserver authorizes every request after authenticating it: the request's attributes
(user, verb, API group, resource, subresource, namespace, name, or a non-resource path)
come from its URL (``RequestInfoFactory``), and the RBAC authorizer allows it when a rule
of a role bound to the user, one of the user's groups or its service account covers them.
This module is that, written after ``k8s.io/apiserver/pkg/endpoints/request`` and
``plugin/pkg/auth/authorizer/rbac`` (no code of theirs): the attributes, rule matching,
the walk over ClusterRoleBindings then the namespace's RoleBindings, the texts of a
refusal, and the escalation check (a user may only grant what it holds). The objects come
from whoever calls (the API server's caches); nothing here does I/O.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

# Paths under /api and /apis whose second part is not a resource (kube-apiserver's list).
_API_PREFIXES = ("api", "apis")
_GROUPLESS_PREFIXES = ("api",)
SUPER_GROUP = "system:masters"


@dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes: who asks for what."""

    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    extra: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # A list's or watch's field selector as (field, operator, value) requirements (the Node
    # authorizer allows a node's pod list only with spec.nodeName=<itself>).
    fields: tuple[tuple[str, str, str], ...] = ()


def request_attributes(user: str, groups: Sequence[str], method: str, path: str,
                       query: Mapping[str, str] | None = None) -> Attributes:
    """The attributes of an HTTP request, as RequestInfoFactory.NewRequestInfo derives them.

    ``/api/v1/namespaces/ns/pods/x/log`` → get pods/log "x" in "ns"; ``GET .../pods?watch=1``
    → watch; a list or watch whose field selector names ``metadata.name`` has that name;
    ``/api/v1/watch/...`` (the old watch paths) → watch; anything else (``/healthz``,
    ``/version``, ``/apis``) is a non-resource request whose verb is the method, lowercased.
    """
    query = query or {}
    watch = str(query.get("watch", "")).lower() in ("1", "true")
    parsed = _parse_request(method.upper(), path, watch, str(query.get("fieldSelector", "")))
    if parsed is None:
        return Attributes(user, tuple(groups), method.lower(), False, path)
    verb, group, version, resource, subresource, namespace, name, fields = parsed
    return Attributes(user, tuple(groups), verb, True, path, group, version, resource, subresource, namespace, name,
                      fields=fields)


_Parsed = tuple[str, str, str, str, str, str, str, tuple[tuple[str, str, str], ...]]


@functools.lru_cache(maxsize=4096)
def _parse_request(method: str, path: str, watch: bool, field_selector: str) -> _Parsed | None:
    """The resource part of a request's attributes (None: a non-resource request). Cached: a
    client sends the same few paths over and over, and this runs on every request."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 2 or parts[0] not in _API_PREFIXES:
        return None
    rest = parts[1:]
    group = ""
    if parts[0] not in _GROUPLESS_PREFIXES:
        if len(rest) < 2:  # /apis/GROUP: discovery
            return None
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if not rest:  # /api/v1, /apis/GROUP/VERSION: discovery
        return None
    verb = ""
    fields: tuple[tuple[str, str, str], ...] = ()
    if rest[0] == "watch":  # the deprecated /watch/ paths
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = rest[1]
            # /namespaces/NS/KIND/... is a namespaced resource; /namespaces/NS, its /status and
            # /finalize are the namespace itself.
            if len(rest) > 2 and rest[2] not in ("status", "finalize"):
                rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not verb:
        verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "")
        if not name and verb == "get":
            verb = "watch" if watch else "list"
            requirements = []
            for selector in field_selector.split(","):
                key, op, value = _split_selector(selector)
                if key == "metadata.name" and op in ("=", "==") and value:
                    name = value
                if key:
                    requirements.append((key, op, value))
            fields = tuple(requirements)
        elif not name and verb == "delete":
            verb = "deletecollection"
    return verb, group, version, resource, subresource, namespace, name, fields


def _split_selector(selector: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        key, sep, value = selector.partition(op)
        if sep:
            return key.strip(), op, value.strip()
    return selector.strip(), "", ""


# ---------------------------------------------------------------------------- rules


def _has(values: Iterable[str], wanted: str) -> bool:
    return any(v == "*" or v == wanted for v in values)


def rule_allows(attrs: Attributes, rule: Mapping[str, Any]) -> bool:
    """rbac.RuleAllows: verbs, then groups/resources/names, or non-resource URLs."""
    if not _has(rule.get("verbs") or (), attrs.verb):
        return False
    if attrs.resource_request:
        if not _has(rule.get("apiGroups") or (), attrs.api_group):
            return False
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        resources = rule.get("resources") or ()
        if not any(r in ("*", combined) or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources):
            return False
        names = rule.get("resourceNames") or ()
        return not names or (bool(attrs.name) and attrs.name in names)
    for url in rule.get("nonResourceURLs") or ():
        if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
            return True
    return False


def _service_account(user: str) -> tuple[str, str] | None:
    if user.startswith("system:serviceaccount:"):
        ns, _, name = user[len("system:serviceaccount:"):].partition(":")
        if ns and name:
            return ns, name
    return None


def subject_matches(subject: Mapping[str, Any], user: str, groups: Sequence[str], binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return bool(subject.get("name") == user)
    if kind == "Group":
        return subject.get("name") in groups
    if kind == "ServiceAccount":
        sa = _service_account(user)
        namespace = subject.get("namespace") or binding_namespace
        return sa is not None and sa == (namespace, subject.get("name"))
    return False


@dataclass
class Policy:
    """The RBAC objects an authorizer reads: roles by (namespace, name), bindings in order."""

    cluster_roles: dict[str, Obj] = field(default_factory=dict)
    roles: dict[tuple[str, str], Obj] = field(default_factory=dict)
    cluster_role_bindings: list[Obj] = field(default_factory=list)
    role_bindings: dict[str, list[Obj]] = field(default_factory=dict)  # by namespace

    @classmethod
    def of(cls, cluster_roles: Iterable[Obj], roles: Iterable[Obj], cluster_role_bindings: Iterable[Obj],
           role_bindings: Iterable[Obj]) -> Policy:
        p = cls()
        for r in cluster_roles:
            p.cluster_roles[r["metadata"]["name"]] = r
        for r in roles:
            p.roles[(r["metadata"].get("namespace", ""), r["metadata"]["name"])] = r
        p.cluster_role_bindings = sorted(cluster_role_bindings, key=lambda b: b["metadata"]["name"])
        for b in sorted(role_bindings, key=lambda b: b["metadata"]["name"]):
            p.role_bindings.setdefault(b["metadata"].get("namespace", ""), []).append(b)
        return p

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[Mapping[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.get(ref.get("name", ""))
        elif ref.get("kind") == "Role":
            role = self.roles.get((namespace, ref.get("name", "")))
        else:
            role = None
        return list((role or {}).get("rules") or [])

    def rules_for(self, user: str, groups: Sequence[str], namespace: str) -> list[Mapping[str, Any]]:
        """Every rule that applies to the user in ``namespace`` ("" for cluster-wide only)."""
        rules: list[Mapping[str, Any]] = []
        for b in self.cluster_role_bindings:
            if any(subject_matches(s, user, groups, "") for s in b.get("subjects") or ()):
                rules += self._role_rules(b.get("roleRef") or {}, "")
        if namespace:
            for b in self.role_bindings.get(namespace, ()):
                if any(subject_matches(s, user, groups, namespace) for s in b.get("subjects") or ()):
                    rules += self._role_rules(b.get("roleRef") or {}, namespace)
        return rules

    def allows(self, attrs: Attributes) -> bool:
        """RBACAuthorizer.Authorize: the first binding whose role has a covering rule allows."""
        if SUPER_GROUP in attrs.groups:
            return True  # the super-user group, as kube-apiserver's privileged-group authorizer
        for b in self.cluster_role_bindings:
            if any(subject_matches(s, attrs.user, attrs.groups, "") for s in b.get("subjects") or ()):
                if any(rule_allows(attrs, r) for r in self._role_rules(b.get("roleRef") or {}, "")):
                    return True
        if attrs.namespace:
            for b in self.role_bindings.get(attrs.namespace, ()):
                if any(subject_matches(s, attrs.user, attrs.groups, attrs.namespace) for s in b.get("subjects") or ()):
                    if any(rule_allows(attrs, r) for r in self._role_rules(b.get("roleRef") or {}, attrs.namespace)):
                        return True
        return False


    def allowed_by(self, attrs: Attributes) -> str:
        """The authorizer's reason for an allowed request (the audit event's
        ``authorization.k8s.io/reason``): the binding, role and subject that allowed it, in
        RBACAuthorizer's words; "" when nothing (or the super-user group) did."""
        if SUPER_GROUP in attrs.groups:
            return ""
        for b in self.cluster_role_bindings:
            for s in b.get("subjects") or ():
                if subject_matches(s, attrs.user, attrs.groups, "") and any(
                        rule_allows(attrs, r) for r in self._role_rules(b.get("roleRef") or {}, "")):
                    ref = b.get("roleRef") or {}
                    return (f'RBAC: allowed by ClusterRoleBinding "{b["metadata"]["name"]}" of {ref.get("kind", "")} '
                            f'"{ref.get("name", "")}" to {_describe_subject(s, "")}')
        if attrs.namespace:
            for b in self.role_bindings.get(attrs.namespace, ()):
                for s in b.get("subjects") or ():
                    if subject_matches(s, attrs.user, attrs.groups, attrs.namespace) and any(
                            rule_allows(attrs, r) for r in self._role_rules(b.get("roleRef") or {}, attrs.namespace)):
                        ref = b.get("roleRef") or {}
                        return (f'RBAC: allowed by RoleBinding "{b["metadata"]["name"]}/{attrs.namespace}" of '
                                f'{ref.get("kind", "")} "{ref.get("name", "")}" to '
                                f"{_describe_subject(s, attrs.namespace)}")
        return ""


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name", "")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind", "")} "{subject.get("name", "")}"'


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """The message of kube-apiserver's 403 (``responsewriters.forbiddenMessage`` + NewForbidden)."""
    user = attrs.user
    if not attrs.resource_request:
        text = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
        return f"forbidden: {text}" + (f": {reason}" if reason else "")
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    text = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}"'
    text += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    if reason:
        text += f": {reason}"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if attrs.name:
        return f'{qualified} "{attrs.name}" is forbidden: {text}'
    return f"{qualified} is forbidden: {text}"


def forbidden_details(attrs: Attributes) -> Obj:
    details: Obj = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.resource_request:
        if attrs.api_group:
            details["group"] = attrs.api_group
        details["kind"] = attrs.resource
    return details


# ---------------------------------------------------------------------------- escalation


def _expand(rule: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """A rule as the atoms it grants: (group, resource, name, verb) or ("url", path, verb)."""
    atoms: list[tuple[str, ...]] = []
    verbs = rule.get("verbs") or ()
    if rule.get("nonResourceURLs"):
        atoms += [("url", u, v) for u in rule["nonResourceURLs"] for v in verbs]
        return atoms
    names = rule.get("resourceNames") or [""]
    for g in rule.get("apiGroups") or ():
        for r in rule.get("resources") or ():
            for n in names:
                for v in verbs:
                    atoms.append((g, r, n, v))
    return atoms


def _atom_covered(atom: tuple[str, ...], owner: Sequence[Mapping[str, Any]]) -> bool:
    if atom[0] == "url":
        _, url, verb = atom
        for r in owner:
            if not _has(r.get("verbs") or (), verb):
                continue
            for u in r.get("nonResourceURLs") or ():
                if u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1])):
                    return True
        return False
    group, resource, name, verb = atom
    for r in owner:
        if not _has(r.get("verbs") or (), verb) or not _has(r.get("apiGroups") or (), group):
            continue
        sub = resource.partition("/")[2]
        if not any(x == "*" or x == resource or (sub and x == f"*/{sub}") for x in r.get("resources") or ()):
            continue
        names = r.get("resourceNames") or ()
        if not names or (name and name in names):
            return True
    return False


def uncovered_rules(owner: Sequence[Mapping[str, Any]], requested: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """validation.Covers: the requested rules (one per atom) that the owner's rules do not grant."""
    missing: list[Mapping[str, Any]] = []
    for rule in requested:
        for atom in _expand(rule):
            if not _atom_covered(atom, owner):
                if atom[0] == "url":
                    missing.append({"nonResourceURLs": [atom[1]], "verbs": [atom[2]]})
                else:
                    m: Obj = {"apiGroups": [atom[0]], "resources": [atom[1]], "verbs": [atom[3]]}
                    if atom[2]:
                        m["resourceNames"] = [atom[2]]
                    missing.append(m)
    return missing


def _go_list(values: Sequence[str]) -> str:
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def format_rule(rule: Mapping[str, Any]) -> str:
    """rbacv1helpers.CompactString: ``{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}``."""
    parts = []
    for key, label in (("apiGroups", "APIGroups"), ("resources", "Resources"), ("resourceNames", "ResourceNames"),
                       ("nonResourceURLs", "NonResourceURLs"), ("verbs", "Verbs")):
        if rule.get(key):
            parts.append(f"{label}:{_go_list(rule[key])}")
    return "{" + ", ".join(parts) + "}"


def escalation_message(user: str, groups: Sequence[str], missing: Sequence[Mapping[str, Any]]) -> str:
    """The reason kube-apiserver gives when a role or binding would grant what the user lacks."""
    group_list = "[" + " ".join(f'"{g}"' for g in groups) + "]"
    lines = "\n".join(format_rule(r) for r in missing)
    return (f'user "{user}" (groups={group_list}) is attempting to grant RBAC permissions not currently held:\n'
            f"{lines}")
