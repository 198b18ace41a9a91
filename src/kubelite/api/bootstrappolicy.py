"""The bootstrap RBAC policy: the ClusterRoles and ClusterRoleBindings every cluster starts with.

Facts from kube-apiserver's ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy`` (its
testdata/cluster-roles.yaml lists them): the user-facing roles (``cluster-admin``, and
``admin``/``edit``/``view`` aggregated from the ``system:aggregate-to-*`` roles), what every
authenticated user may do (``system:basic-user``, ``system:discovery``,
``system:public-info-viewer``), and the roles of the components (controller-manager,
scheduler, node, kube-proxy, DNS). kube-apiserver reconciles them at every start
(``rbac.authorization.kubernetes.io/autoupdate: "true"``): missing ones are created, and
kubelite does the same. The per-controller ``system:controller:*`` roles (testdata/
controller-roles.yaml), each bound to the service account ``kube-system/<controller>`` that the
controller acts as (``--use-service-account-credentials``), are here for the controllers
kubelite runs.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
BOOTSTRAPPING = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> Obj:
    r: Obj = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if names:
        r["resourceNames"] = names
    return r


def urls(paths: list[str], verbs: list[str]) -> Obj:
    return {"verbs": verbs, "nonResourceURLs": paths}


def cluster_role(name: str, rules: list[Obj] | None, labels: dict[str, str] | None = None,
                 aggregate: str = "") -> Obj:
    role: Obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {**BOOTSTRAPPING, **(labels or {})}, "annotations": dict(AUTOUPDATE)},
    }
    if aggregate:
        role["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{aggregate}": "true"}}]}
    role["rules"] = rules if rules is not None else []
    return role


def binding(name: str, role: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(BOOTSTRAPPING), "annotations": dict(AUTOUPDATE)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def group(name: str) -> Obj:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def user(name: str) -> Obj:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def service_account(namespace: str, name: str) -> Obj:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _to(role: str) -> dict[str, str]:
    return {f"rbac.authorization.k8s.io/aggregate-to-{role}": "true"}


EVENTS = rule(["", "events.k8s.io"], ["events"], ["create", "patch", "update"])

CLUSTER_ROLES: list[Obj] = [
    cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), urls(["*"], ["*"])]),
    cluster_role("admin", None, aggregate="admin"),
    cluster_role("edit", None, _to("admin"), aggregate="edit"),
    cluster_role("view", None, _to("edit"), aggregate="view"),
    cluster_role("system:aggregate-to-admin", [
        rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        rule(["rbac.authorization.k8s.io"], ["rolebindings", "roles"], ALL),
    ], _to("admin")),
    cluster_role("system:aggregate-to-edit", [
        rule([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
        rule([""], ["serviceaccounts"], ["impersonate"]),
        rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
        rule([""], ["pods/eviction"], ["create"]),
        rule([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                    "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], WRITE),
        rule([""], ["serviceaccounts/token"], ["create"]),
        rule(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                        "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
        rule(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
        rule(["batch"], ["cronjobs", "jobs"], WRITE),
        rule(["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                              "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"],
             WRITE),
        rule(["policy"], ["poddisruptionbudgets"], WRITE),
        rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
        rule(["coordination.k8s.io"], ["leases"], ALL),
    ], _to("edit")),
    cluster_role("system:aggregate-to-view", [
        rule([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                    "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                    "services/status"], READ),
        rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                    "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
        rule([""], ["namespaces"], READ),
        rule(["discovery.k8s.io"], ["endpointslices"], READ),
        rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                        "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
                        "statefulsets", "statefulsets/scale", "statefulsets/status"], READ),
        rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
        rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        rule(["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                              "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                              "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"], READ),
        rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
        rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
    ], _to("view")),
    cluster_role("system:auth-delegator", [
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
    ]),
    cluster_role("system:basic-user", [
        rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
        rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
    ]),
    cluster_role("system:discovery", [urls(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                            "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]),
    cluster_role("system:public-info-viewer", [urls(["/healthz", "/livez", "/readyz", "/version", "/version/"],
                                                    ["get"])]),
    cluster_role("system:monitoring", [urls(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics",
                                             "/metrics/slis", "/readyz", "/readyz/*"], ["get"])]),
    cluster_role("system:service-account-issuer-discovery", [
        urls(["/.well-known/openid-configuration", "/openid/v1/jwks"], ["get"])]),
    cluster_role("system:kube-controller-manager", [
        EVENTS,
        rule(["coordination.k8s.io"], ["leases"], ["create"]),
        rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["kube-controller-manager"]),
        rule([""], ["secrets", "serviceaccounts"], ["create"]),
        rule([""], ["secrets"], ["delete"]),
        rule([""], ["configmaps", "namespaces", "secrets", "serviceaccounts"], ["get"]),
        rule([""], ["secrets", "serviceaccounts"], ["update"]),
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        rule(["*"], ["*"], ["list", "watch"]),
        rule([""], ["serviceaccounts/token"], ["create"]),
    ]),
    cluster_role("system:kube-scheduler", [
        EVENTS,
        rule(["coordination.k8s.io"], ["leases"], ["create"]),
        rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["kube-scheduler"]),
        rule([""], ["nodes"], READ),
        rule([""], ["pods"], ["delete", "get", "list", "watch"]),
        rule([""], ["bindings", "pods/binding"], ["create"]),
        rule([""], ["pods/status"], ["patch", "update"]),
        rule([""], ["replicationcontrollers", "services"], READ),
        rule(["apps", "extensions"], ["replicasets"], READ),
        rule(["apps"], ["statefulsets"], READ),
        rule(["policy"], ["poddisruptionbudgets"], READ),
        rule([""], ["persistentvolumeclaims", "persistentvolumes"], READ),
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        rule(["storage.k8s.io"], ["csinodes"], READ),
        rule([""], ["namespaces"], READ),
        rule(["storage.k8s.io"], ["csidrivers"], READ),
        rule(["storage.k8s.io"], ["csistoragecapacities"], READ),
    ]),
    cluster_role("system:volume-scheduler", [
        rule([""], ["persistentvolumes"], ["get", "list", "patch", "update", "watch"]),
        rule(["storage.k8s.io"], ["storageclasses"], READ),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "patch", "update", "watch"]),
    ]),
    cluster_role("system:kube-dns", [rule([""], ["endpoints", "services"], ["list", "watch"])]),
    cluster_role("system:node", [
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"], ["create"]),
        rule([""], ["services"], READ),
        rule([""], ["nodes"], ["create", "get", "list", "watch"]),
        rule([""], ["nodes/status"], ["patch", "update"]),
        rule([""], ["nodes"], ["patch", "update"]),
        rule([""], ["events"], ["create", "patch", "update"]),
        rule([""], ["pods"], READ),
        rule([""], ["pods"], ["create", "delete"]),
        rule([""], ["pods/status"], ["patch", "update"]),
        rule([""], ["pods/eviction"], ["create"]),
        rule([""], ["configmaps", "secrets"], READ),
        rule([""], ["persistentvolumeclaims", "persistentvolumes"], ["get"]),
        rule([""], ["endpoints"], ["get"]),
        rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"]),
        rule(["coordination.k8s.io"], ["leases"], ["create", "delete", "get", "patch", "update"]),
        rule(["storage.k8s.io"], ["volumeattachments"], ["get"]),
        rule([""], ["serviceaccounts/token"], ["create"]),
        rule([""], ["persistentvolumeclaims/status"], ["get", "patch", "update"]),
        rule(["storage.k8s.io"], ["csidrivers"], READ),
        rule(["storage.k8s.io"], ["csinodes"], ["create", "delete", "get", "patch", "update"]),
        rule(["node.k8s.io"], ["runtimeclasses"], READ),
    ]),
    cluster_role("system:node-proxier", [
        rule([""], ["endpoints", "services"], ["list", "watch"]),
        rule([""], ["nodes"], READ),
        EVENTS,
        rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
    ]),
    # Not Kubernetes' bootstrap policy: the ClusterRole kube-network-policies' own manifest
    # installs for its service account (what it watches, and nothing it writes).
    cluster_role("system:kube-network-policies", [
        rule([""], ["pods", "namespaces"], ["list", "watch"]),
        rule(["networking.k8s.io"], ["networkpolicies"], ["list", "watch"]),
    ]),
    cluster_role("system:node-bootstrapper", [
        rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"])]),
    cluster_role("system:persistent-volume-provisioner", [
        rule([""], ["persistentvolumes"], ["create", "delete", "get", "list", "watch"]),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "update", "watch"]),
        rule(["storage.k8s.io"], ["storageclasses"], READ),
        rule([""], ["events"], ["watch"]),
        EVENTS,
    ]),
    cluster_role("system:kubelet-api-admin", [
        rule([""], ["nodes"], READ),
        rule([""], ["nodes"], ["proxy"]),
        rule([""], ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"], ["*"]),
    ]),
    cluster_role("system:kube-aggregator", [rule([""], ["endpoints", "services"], READ)]),
    *[cluster_role(f"system:certificates.k8s.io:{name}", [
        rule(["certificates.k8s.io"], ["signers"], ["approve"], [f"kubernetes.io/{signer}"])])
      for name, signer in (("kube-apiserver-client-approver", "kube-apiserver-client"),
                           ("kube-apiserver-client-kubelet-approver", "kube-apiserver-client-kubelet"),
                           ("kubelet-serving-approver", "kubelet-serving"),
                           ("legacy-unknown-approver", "legacy-unknown"))],
    cluster_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", [
        rule(["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"], ["create"])]),
    cluster_role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", [
        rule(["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"], ["create"])]),
]

EVENTS_CREATE = rule(["", "events.k8s.io"], ["events"], ["create", "patch", "update"])
CRUD = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _controller(name: str, rules: list[Obj], events: bool = True) -> Obj:
    return cluster_role(f"system:controller:{name}", [*rules, *([EVENTS_CREATE] if events else [])])


# controller-roles.yaml, for the controllers kubelite runs (each rule as Kubernetes lists it).
CONTROLLER_ROLES: list[Obj] = [
    _controller("certificate-controller", [
        rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["delete", "get", "list", "watch"]),
        rule(["certificates.k8s.io"], ["certificatesigningrequests/approval", "certificatesigningrequests/status"],
             ["update"]),
        rule(["certificates.k8s.io"], ["signers"], ["approve"], ["kubernetes.io/kube-apiserver-client-kubelet"]),
        rule(["certificates.k8s.io"], ["signers"], ["sign"], [
            "kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
            "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
    ]),
    _controller("clusterrole-aggregation-controller", [
        rule(["rbac.authorization.k8s.io"], ["clusterroles"], ["escalate", "get", "list", "patch", "update", "watch"]),
    ], events=False),
    _controller("cronjob-controller", [
        rule(["batch"], ["cronjobs"], ["get", "list", "update", "watch"]),
        rule(["batch"], ["jobs"], CRUD),
        rule(["batch"], ["cronjobs/status"], ["update"]),
        rule(["batch"], ["cronjobs/finalizers"], ["update"]),
        rule([""], ["pods"], ["delete", "list", "watch"]),
    ]),
    _controller("daemon-set-controller", [
        rule(["apps", "extensions"], ["daemonsets"], READ),
        rule(["apps", "extensions"], ["daemonsets/status"], ["update"]),
        rule(["apps", "extensions"], ["daemonsets/finalizers"], ["update"]),
        rule([""], ["nodes"], ["list", "watch"]),
        rule([""], ["pods"], ["create", "delete", "list", "patch", "watch"]),
        rule([""], ["pods/binding"], ["create"]),
        rule(["apps"], ["controllerrevisions"], CRUD),
    ]),
    _controller("deployment-controller", [
        rule(["apps", "extensions"], ["deployments"], ["get", "list", "update", "watch"]),
        rule(["apps", "extensions"], ["deployments/status"], ["update"]),
        rule(["apps", "extensions"], ["deployments/finalizers"], ["update"]),
        rule(["apps", "extensions"], ["replicasets"], CRUD),
        rule([""], ["pods"], ["get", "list", "update", "watch"]),
    ]),
    _controller("disruption-controller", [
        rule(["apps", "extensions"], ["deployments"], READ),
        rule(["apps", "extensions"], ["replicasets"], READ),
        rule([""], ["replicationcontrollers"], READ),
        rule(["policy"], ["poddisruptionbudgets"], READ),
        rule(["apps"], ["statefulsets"], READ),
        rule(["policy"], ["poddisruptionbudgets/status"], ["update"]),
        rule([""], ["pods/status"], ["patch", "update"]),
        rule(["*"], ["*/scale"], ["get"]),
    ]),
    _controller("endpoint-controller", [
        rule([""], ["pods", "services"], READ),
        rule([""], ["endpoints"], ["create", "delete", "get", "list", "update", "watch"]),
        rule([""], ["endpoints/restricted"], ["create"]),
    ]),
    _controller("endpointslice-controller", [
        rule([""], ["nodes", "pods", "services"], READ),
        rule([""], ["services/finalizers"], ["update"]),
        rule(["discovery.k8s.io"], ["endpointslices"], ["create", "delete", "get", "list", "update", "watch"]),
    ]),
    _controller("expand-controller", [
        rule([""], ["persistentvolumes"], ["get", "list", "patch", "update", "watch"]),
        rule([""], ["persistentvolumeclaims/status"], ["patch", "update"]),
        rule([""], ["persistentvolumeclaims"], READ),
        EVENTS_CREATE,
        rule([""], ["services"], ["get"]),
    ], events=False),
    _controller("generic-garbage-collector", [
        rule(["*"], ["*"], ["delete", "get", "list", "patch", "update", "watch"]),
    ]),
    _controller("job-controller", [
        rule(["batch"], ["jobs"], ["get", "list", "patch", "update", "watch"]),
        rule(["batch"], ["jobs/status"], ["update"]),
        rule(["batch"], ["jobs/finalizers"], ["update"]),
        rule([""], ["pods"], ["create", "delete", "list", "patch", "watch"]),
    ]),
    _controller("namespace-controller", [
        rule([""], ["namespaces"], ["delete", "get", "list", "watch"]),
        rule([""], ["namespaces/finalize", "namespaces/status"], ["update"]),
        rule(["*"], ["*"], ["delete", "deletecollection", "get", "list", "watch"]),
    ], events=False),
    _controller("node-controller", [
        rule([""], ["nodes"], ["delete", "get", "list", "patch", "update", "watch"]),
        rule([""], ["nodes/status"], ["patch", "update"]),
        rule([""], ["pods/status"], ["patch", "update"]),
        rule([""], ["pods"], ["delete", "get", "list", "watch"]),
    ]),
    _controller("persistent-volume-binder", [
        rule([""], ["persistentvolumes"], ["create", "delete", "get", "list", "update", "watch"]),
        rule([""], ["persistentvolumes/status"], ["update"]),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "update", "watch"]),
        rule([""], ["persistentvolumeclaims/status"], ["update"]),
        rule([""], ["pods"], ["create", "delete", "get", "list", "watch"]),
        rule(["storage.k8s.io"], ["storageclasses"], READ),
        rule([""], ["nodes"], ["list", "watch"]),
        EVENTS_CREATE,
        rule([""], ["events"], ["watch"]),
    ], events=False),
    _controller("pv-protection-controller", [
        rule([""], ["persistentvolumes"], ["get", "list", "update", "watch"]),
    ]),
    _controller("pvc-protection-controller", [
        rule([""], ["persistentvolumeclaims"], ["get", "list", "update", "watch"]),
        rule([""], ["persistentvolumeclaims/status"], ["update"]),
        rule([""], ["pods"], READ),
    ]),
    _controller("replicaset-controller", [
        rule(["apps", "extensions"], ["replicasets"], ["get", "list", "update", "watch"]),
        rule(["apps", "extensions"], ["replicasets/status"], ["update"]),
        rule(["apps", "extensions"], ["replicasets/finalizers"], ["update"]),
        rule([""], ["pods"], ["create", "delete", "list", "patch", "watch"]),
    ]),
    _controller("replication-controller", [
        rule([""], ["replicationcontrollers"], ["get", "list", "update", "watch"]),
        rule([""], ["replicationcontrollers/status"], ["update"]),
        rule([""], ["replicationcontrollers/finalizers"], ["update"]),
        rule([""], ["pods"], ["create", "delete", "list", "patch", "watch"]),
    ]),
    _controller("resourcequota-controller", [
        rule(["*"], ["*"], ["list", "watch"]),
        rule([""], ["resourcequotas/status"], ["update"]),
    ]),
    _controller("root-ca-cert-publisher", [rule([""], ["configmaps"], ["create", "update"])]),
    _controller("service-account-controller", [rule([""], ["serviceaccounts"], ["create"])]),
    _controller("statefulset-controller", [
        rule([""], ["pods"], ["list", "watch"]),
        rule(["apps"], ["statefulsets"], READ),
        rule(["apps"], ["statefulsets/status"], ["update"]),
        rule(["apps"], ["statefulsets/finalizers"], ["update"]),
        rule([""], ["pods"], ["create", "delete", "get", "patch", "update"]),
        rule(["apps"], ["controllerrevisions"], CRUD),
        rule([""], ["persistentvolumeclaims"], ["create", "get", "list", "watch"]),
        rule([""], ["persistentvolumeclaims"], ["delete", "update"]),
        rule([""], ["pods/finalizers"], ["update"]),
    ]),
    _controller("taint-eviction-controller", [
        rule([""], ["pods"], ["delete", "get", "list", "watch"]),
        rule([""], ["pods/status"], ["patch"]),
    ]),
    _controller("ttl-after-finished-controller", [rule(["batch"], ["jobs"], ["delete", "get", "list", "watch"])]),
]

CLUSTER_ROLES += CONTROLLER_ROLES

CLUSTER_ROLE_BINDINGS: list[Obj] = [
    binding("cluster-admin", "cluster-admin", [group("system:masters")]),
    binding("system:basic-user", "system:basic-user", [group("system:authenticated")]),
    binding("system:discovery", "system:discovery", [group("system:authenticated")]),
    binding("system:public-info-viewer", "system:public-info-viewer",
            [group("system:authenticated"), group("system:unauthenticated")]),
    binding("system:monitoring", "system:monitoring", [group("system:monitoring")]),
    binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
            [group("system:serviceaccounts")]),
    binding("system:kube-controller-manager", "system:kube-controller-manager",
            [user("system:kube-controller-manager")]),
    binding("system:kube-scheduler", "system:kube-scheduler", [user("system:kube-scheduler")]),
    binding("system:volume-scheduler", "system:volume-scheduler", [user("system:kube-scheduler")]),
    binding("system:kube-dns", "system:kube-dns", [service_account("kube-system", "kube-dns")]),
    binding("system:node", "system:node", []),  # nodes are authorized by the Node authorizer
    binding("system:node-proxier", "system:node-proxier", [user("system:kube-proxy")]),
    binding("system:kube-network-policies", "system:kube-network-policies", [user("system:kube-network-policies")]),
    # controller-role-bindings.yaml: each controller's role to its service account.
    *[binding(r["metadata"]["name"], r["metadata"]["name"],
              [service_account("kube-system", r["metadata"]["name"].removeprefix("system:controller:"))])
      for r in CONTROLLER_ROLES],
]


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def aggregated_rules(role: Obj, roles: list[Obj]) -> list[Obj]:
    """What the clusterrole-aggregation controller writes into an aggregated role: the rules of
    every ClusterRole its selectors match, in name order, each rule once."""
    selectors = ((role.get("aggregationRule") or {}).get("clusterRoleSelectors")) or []
    rules: list[Obj] = []
    for other in sorted(roles, key=lambda r: r["metadata"]["name"]):
        if other["metadata"]["name"] == role["metadata"]["name"]:
            continue
        labels = other["metadata"].get("labels") or {}
        if any(_selector_matches(s, labels) for s in selectors):
            for r in other.get("rules") or []:
                if r not in rules:
                    rules.append(r)
    return rules


def bootstrap_cluster_roles() -> list[Obj]:
    """The bootstrap ClusterRoles with admin/edit/view already aggregated (the controller keeps
    them so when other roles join)."""
    roles = [dict(r) for r in CLUSTER_ROLES]
    for _ in range(3):  # view feeds edit, edit feeds admin
        for r in roles:
            if r.get("aggregationRule"):
                r["rules"] = aggregated_rules(r, roles)
    return roles
