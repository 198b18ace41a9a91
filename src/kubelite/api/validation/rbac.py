"""RBAC validation, after ``pkg/apis/rbac/validation`` (rbac.authorization.k8s.io/v1).

Role names only need to be usable in a URL (``system:aggregate-to-admin`` is a valid name);
every rule grants verbs either on resources of API groups or on non-resource URLs, never
both, and a namespaced Role cannot grant URLs; a binding's roleRef names a Role or
ClusterRole of this API group and never changes; subjects are Users, Groups or
ServiceAccounts (which need a namespace in a ClusterRoleBinding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelite.api.errors import ErrorType, FieldError, invalid, not_supported, required
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import KindValidator, StringerError, validate_label_selector
from kubelite.api.validation.names import name_is_dns_subdomain, path_segment_name

Obj = Mapping[str, Any]
GROUP = "rbac.authorization.k8s.io"


def _meta(obj: Obj, old: Obj | None, namespaced: bool) -> list[FieldError]:
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        return object_meta(meta, namespaced=namespaced, name_validator=path_segment_name)
    return object_meta_update(meta, old.get("metadata") or {})


def policy_rule(rule: Obj, namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not rule.get("verbs"):
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            errs.append(invalid(f"{path}.nonResourceURLs", list(urls), "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errs.append(invalid(f"{path}.nonResourceURLs", list(urls),
                                "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not rule.get("apiGroups"):
        errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return errs


def _rules(obj: Obj, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(obj.get("rules") or []):
        if isinstance(rule, Mapping):
            errs += policy_rule(rule, namespaced, f"rules[{i}]")
    return errs


def validate_role(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _meta(obj, old, True) + _rules(obj, True)


def validate_cluster_role(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = _meta(obj, old, False) + _rules(obj, False)
    agg = obj.get("aggregationRule")
    if isinstance(agg, Mapping):
        selectors = agg.get("clusterRoleSelectors") or []
        if not selectors:
            errs.append(required("aggregationRule.clusterRoleSelectors",
                                 "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, s in enumerate(selectors):
            errs += validate_label_selector(s, f"aggregationRule.clusterRoleSelectors[{i}]")
    return errs


def _subjects(obj: Obj, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, s in enumerate(obj.get("subjects") or []):
        if not isinstance(s, Mapping):
            continue
        path = f"subjects[{i}]"
        name, kind, group = s.get("name", ""), s.get("kind", ""), s.get("apiGroup", "")
        if not name:
            errs.append(required(f"{path}.name", ""))
        if kind == "ServiceAccount":
            if name:
                errs += [invalid(f"{path}.name", name, m) for m in name_is_dns_subdomain(name, False)]
            if group != "":
                errs.append(not_supported(f"{path}.apiGroup", group, [""]))
            if not namespaced and not s.get("namespace"):
                errs.append(required(f"{path}.namespace", ""))
        elif kind in ("User", "Group"):
            if group != GROUP:
                errs.append(not_supported(f"{path}.apiGroup", group, [GROUP]))
        else:
            errs.append(not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return errs


def _binding(obj: Obj, old: Obj | None, namespaced: bool) -> list[FieldError]:
    errs = _meta(obj, old, namespaced)
    ref: Obj = obj.get("roleRef") or {}
    if ref.get("apiGroup") != GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name", ""))
    else:
        errs += [invalid("roleRef.name", ref["name"], m) for m in path_segment_name(ref["name"], False)]
    errs += _subjects(obj, namespaced)
    if old is not None and (old.get("roleRef") or {}) != ref:
        errs.append(StringerError(ErrorType.INVALID, "roleRef", _role_ref(ref), "cannot change roleRef"))
    return errs


def _role_ref(ref: Obj) -> str:
    return (f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
            f'Name:"{ref.get("name", "")}"}}')


def validate_role_binding(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _binding(obj, old, True)


def validate_cluster_role_binding(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _binding(obj, old, False)


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    (GROUP, "Role"): validate_role,
    (GROUP, "ClusterRole"): validate_cluster_role,
    (GROUP, "RoleBinding"): validate_role_binding,
    (GROUP, "ClusterRoleBinding"): validate_cluster_role_binding,
}
