"""RBAC's pure logic: request attributes from URLs, rule matching, bindings, refusal texts,
escalation and aggregation, as kube-apiserver's RequestInfoFactory and RBAC authorizer do them."""

from __future__ import annotations

import pytest

from kubelite.api import bootstrappolicy, rbac


def attrs(method: str, path: str, query: dict[str, str] | None = None, user: str = "u",
          groups: tuple[str, ...] = ()) -> rbac.Attributes:
    return rbac.request_attributes(user, groups, method, path, query)


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "pods", "", "ns", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "", "pods", "", "ns", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"fieldSelector": "metadata.name=x"}, ("list", "", "pods", "", "ns", "x")),
    ("GET", "/api/v1/namespaces/ns/pods/x/log", {}, ("get", "", "pods", "log", "ns", "x")),
    ("POST", "/api/v1/namespaces/ns/pods/x/exec", {}, ("create", "", "pods", "exec", "ns", "x")),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", {}, ("deletecollection", "apps", "deployments", "", "ns", "")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {}, ("patch", "apps", "deployments", "scale", "ns", "d")),
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "namespaces", "", "ns", "ns")),
    ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "", "namespaces", "finalize", "ns", "ns")),
    ("GET", "/api/v1/nodes", {}, ("list", "", "nodes", "", "", "")),
    ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "", "pods", "", "ns", "")),
    ("HEAD", "/api/v1/namespaces/ns/pods/x", {}, ("get", "", "pods", "", "ns", "x")),
])
def test_resource_request_attributes(method: str, path: str, query: dict[str, str],
                                     expected: tuple[str, ...]) -> None:
    a = attrs(method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == expected


@pytest.mark.parametrize("path", ["/healthz", "/version", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1",
                                  "/openapi/v2", "/metrics"])
def test_non_resource_requests_use_the_lowercased_method(path: str) -> None:
    a = attrs("GET", path)
    assert not a.resource_request and a.verb == "get" and a.path == path


def test_rules_match_verbs_groups_resources_subresources_and_names() -> None:
    pods_get = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}
    assert rbac.rule_allows(attrs("GET", "/api/v1/namespaces/n/pods/x"), pods_get)
    assert not rbac.rule_allows(attrs("GET", "/api/v1/namespaces/n/pods/x/log"), pods_get)
    assert rbac.rule_allows(attrs("GET", "/api/v1/namespaces/n/pods/x/log"),
                            {"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]})
    named = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]}
    assert rbac.rule_allows(attrs("GET", "/api/v1/namespaces/n/pods/x"), named)
    assert not rbac.rule_allows(attrs("GET", "/api/v1/namespaces/n/pods"), named)  # a list names no object
    assert not rbac.rule_allows(attrs("GET", "/apis/apps/v1/namespaces/n/deployments"),
                                {"verbs": ["*"], "apiGroups": [""], "resources": ["*"]})
    assert rbac.rule_allows(attrs("GET", "/healthz/etcd"), {"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]})
    assert not rbac.rule_allows(attrs("GET", "/healthz/etcd"), {"verbs": ["get"], "nonResourceURLs": ["/healthz"]})


def policy(*bindings: dict[str, object], roles: list[dict[str, object]] | None = None) -> rbac.Policy:
    cluster_roles = roles if roles is not None else bootstrappolicy.bootstrap_cluster_roles()
    crbs = [b for b in bindings if b["kind"] == "ClusterRoleBinding"]
    rbs = [b for b in bindings if b["kind"] == "RoleBinding"]
    return rbac.Policy.of(cluster_roles, [], crbs, rbs)


def role_binding(ns: str, role: str, subject: dict[str, str]) -> dict[str, object]:
    return {"kind": "RoleBinding", "metadata": {"name": "b", "namespace": ns},
            "roleRef": {"kind": "ClusterRole", "name": role}, "subjects": [subject]}


def test_a_service_account_holds_only_what_is_bound_to_it_in_its_namespace() -> None:
    sa = ("system:serviceaccount:default:default", ("system:serviceaccounts", "system:authenticated"))
    p = policy(*bootstrappolicy.CLUSTER_ROLE_BINDINGS)
    secrets = attrs("GET", "/api/v1/namespaces/kube-system/secrets", user=sa[0], groups=sa[1])
    assert not p.allows(secrets)
    assert rbac.forbidden_message(secrets) == (
        'secrets is forbidden: User "system:serviceaccount:default:default" cannot list resource "secrets" '
        'in API group "" in the namespace "kube-system"')
    assert p.allows(attrs("GET", "/version", user=sa[0], groups=sa[1]))  # system:public-info-viewer
    assert p.allows(attrs("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", user=sa[0], groups=sa[1]))
    p = policy(*bootstrappolicy.CLUSTER_ROLE_BINDINGS,
               role_binding("default", "view", {"kind": "ServiceAccount", "name": "default", "namespace": "default"}))
    assert p.allows(attrs("GET", "/api/v1/namespaces/default/pods", user=sa[0], groups=sa[1]))
    assert not p.allows(attrs("GET", "/api/v1/namespaces/default/secrets", user=sa[0], groups=sa[1]))  # view: no secrets
    assert not p.allows(attrs("GET", "/api/v1/namespaces/other/pods", user=sa[0], groups=sa[1]))


def test_masters_are_allowed_everything_and_refusals_name_the_scope() -> None:
    assert rbac.Policy().allows(attrs("DELETE", "/api/v1/nodes/n", groups=("system:masters",)))
    a = attrs("GET", "/api/v1/nodes/n1", user="bob")
    assert rbac.forbidden_message(a) == (
        'nodes "n1" is forbidden: User "bob" cannot get resource "nodes" in API group "" at the cluster scope')
    a = attrs("GET", "/apis/apps/v1/namespaces/ns/deployments/d/scale", user="bob")
    assert rbac.forbidden_message(a) == ('deployments.apps "d" is forbidden: User "bob" cannot get resource '
                                         '"deployments/scale" in API group "apps" in the namespace "ns"')
    assert rbac.forbidden_details(a) == {"name": "d", "group": "apps", "kind": "deployments"}
    assert rbac.forbidden_message(attrs("GET", "/metrics", user="bob")) == 'forbidden: User "bob" cannot get path "/metrics"'


def test_escalation_lists_what_is_not_held() -> None:
    held = [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
    assert rbac.uncovered_rules(held, [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]) == []
    missing = rbac.uncovered_rules(held, [{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods", "nodes"]}])
    assert [rbac.format_rule(m) for m in missing] == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}',
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}',
        '{APIGroups:[""], Resources:["nodes"], Verbs:["delete"]}',
    ]
    assert rbac.uncovered_rules([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                                [{"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments/scale"]}]) == []


def test_admin_edit_view_are_aggregated_and_nest() -> None:
    roles = {r["metadata"]["name"]: r for r in bootstrappolicy.bootstrap_cluster_roles()}
    view, edit, admin = (roles[n]["rules"] for n in ("view", "edit", "admin"))
    assert view and all(r in edit for r in view) and all(r in admin for r in edit)
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["namespaces"]} in view
    assert not any("secrets" in r.get("resources", []) for r in view)
    assert any("secrets" in r.get("resources", []) for r in edit)
