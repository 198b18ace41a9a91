"""Defaulting: what kube-apiserver fills in, field by field."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.defaults import (
    admit_pod_create,
    apply_defaults,
    default_ip_families,
    image_tag,
    prepare_service_create,
)


def test_service_defaults() -> None:
    svc: dict[str, Any] = {"spec": {"selector": {"app": "myapp"}, "ports": [{"port": 80}]}}
    apply_defaults("", "Service", svc)
    assert svc["spec"] == {
        "selector": {"app": "myapp"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "sessionAffinity": "None",
        "type": "ClusterIP",
        "internalTrafficPolicy": "Cluster",
    }


def test_named_target_port_is_kept() -> None:
    svc: dict[str, Any] = {"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}
    apply_defaults("", "Service", svc)
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_client_ip_affinity_timeout() -> None:
    svc: dict[str, Any] = {"spec": {"sessionAffinity": "ClientIP"}}
    apply_defaults("", "Service", svc)
    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_affinity_none_drops_its_config() -> None:
    svc: dict[str, Any] = {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}
    apply_defaults("", "Service", svc)
    assert "sessionAffinityConfig" not in svc["spec"]


def test_node_port_and_load_balancer_defaults() -> None:
    node_port: dict[str, Any] = {"spec": {"type": "NodePort"}}
    apply_defaults("", "Service", node_port)
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in node_port["spec"]
    lb: dict[str, Any] = {"spec": {"type": "LoadBalancer"}}
    apply_defaults("", "Service", lb)
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["internalTrafficPolicy"] == "Cluster"


def test_external_name_gets_no_traffic_policies() -> None:
    svc: dict[str, Any] = {"spec": {"type": "ExternalName", "externalName": "db.example.com"}}
    apply_defaults("", "Service", svc)
    assert "internalTrafficPolicy" not in svc["spec"]
    assert "externalTrafficPolicy" not in svc["spec"]


def test_ip_families_for_a_cluster_ip_service() -> None:
    svc: dict[str, Any] = {"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20"}}
    prepare_service_create(svc)
    default_ip_families(svc)
    assert svc["spec"]["clusterIPs"] == ["10.96.0.20"]
    assert svc["spec"]["ipFamilies"] == ["IPv4"]
    assert svc["spec"]["ipFamilyPolicy"] == "SingleStack"


def test_selectorless_headless_service_is_require_dual_stack() -> None:
    svc: dict[str, Any] = {"spec": {"type": "ClusterIP", "clusterIP": "None"}}
    prepare_service_create(svc)
    default_ip_families(svc)
    assert svc["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert svc["spec"]["ipFamilies"] == ["IPv4", "IPv6"]


def test_external_name_gets_no_ip_families() -> None:
    svc: dict[str, Any] = {"spec": {"type": "ExternalName"}}
    default_ip_families(svc)
    assert svc["spec"] == {"type": "ExternalName"}


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("nginx", "latest"),
        ("nginx:1.27", "1.27"),
        ("nginx:latest", "latest"),
        ("localhost:5000/team/app", "latest"),
        ("localhost:5000/team/app:v2", "v2"),
        ("busybox@sha256:" + "a" * 64, ""),
    ],
)
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx"}], **spec}}


def test_pod_defaults() -> None:
    p = pod()
    apply_defaults("", "Pod", p)
    assert p["spec"] == {
        "containers": [
            {
                "name": "web",
                "image": "nginx",
                "imagePullPolicy": "Always",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "resources": {},
            }
        ],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
    }


def test_tagged_image_is_if_not_present() -> None:
    p = pod(containers=[{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}])
    apply_defaults("", "Pod", p)
    c = p["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_probe_defaults() -> None:
    p = pod(containers=[{"name": "web", "image": "nginx", "readinessProbe": {"httpGet": {"port": 80}}}])
    apply_defaults("", "Pod", p)
    assert p["spec"]["containers"][0]["readinessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_env_field_ref_and_volume_defaults() -> None:
    p = pod(
        containers=[
            {"name": "web", "image": "nginx", "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}
        ],
        volumes=[{"name": "scratch"}, {"name": "conf", "configMap": {"name": "conf"}}, {"name": "s", "secret": {"secretName": "s"}}],
    )
    apply_defaults("", "Pod", p)
    env = p["spec"]["containers"][0]["env"][0]
    assert env["valueFrom"]["fieldRef"] == {"fieldPath": "status.podIP", "apiVersion": "v1"}
    assert p["spec"]["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "conf", "defaultMode": 420}},
        {"name": "s", "secret": {"secretName": "s", "defaultMode": 420}},
    ]


def test_requests_default_to_limits_on_pods_only() -> None:
    resources = {"limits": {"cpu": "500m"}}
    p = pod(containers=[{"name": "web", "image": "nginx", "resources": dict(resources)}])
    apply_defaults("", "Pod", p)
    assert p["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "500m"}
    d: dict[str, Any] = {"spec": {"selector": {}, "template": {"spec": {"containers": [
        {"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "500m"}}}]}}}}
    apply_defaults("apps", "Deployment", d)
    assert "requests" not in d["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert "enableServiceLinks" not in d["spec"]["template"]["spec"]


def test_admission_adds_service_account_priority_and_tolerations() -> None:
    p = pod()
    apply_defaults("", "Pod", p)
    admit_pod_create(p)
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default"
    assert spec["serviceAccount"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]


def test_admission_keeps_existing_toleration() -> None:
    mine = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
    p = pod(tolerations=[dict(mine)])
    admit_pod_create(p)
    assert p["spec"]["tolerations"][0] == mine
    assert [t["key"] for t in p["spec"]["tolerations"]] == ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]


def test_deployment_defaults() -> None:
    d: dict[str, Any] = {"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    apply_defaults("apps", "Deployment", d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert "minReadySeconds" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["containers"][0]["terminationMessagePolicy"] == "File"


def test_recreate_strategy_gets_no_rolling_update() -> None:
    d: dict[str, Any] = {"spec": {"strategy": {"type": "Recreate"}}}
    apply_defaults("apps", "Deployment", d)
    assert d["spec"]["strategy"] == {"type": "Recreate"}


def test_replicaset_defaults() -> None:
    rs: dict[str, Any] = {"spec": {"template": {"spec": {"containers": []}}}}
    apply_defaults("apps", "ReplicaSet", rs)
    assert rs["spec"]["replicas"] == 1
    assert rs["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_endpoint_slice_and_endpoints_port_defaults() -> None:
    es: dict[str, Any] = {"addressType": "IPv4", "ports": [{"port": 80}]}
    apply_defaults("discovery.k8s.io", "EndpointSlice", es)
    assert es["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    ep: dict[str, Any] = {"subsets": [{"ports": [{"port": 80}]}]}
    apply_defaults("", "Endpoints", ep)
    assert ep["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_unknown_kinds_are_left_alone() -> None:
    ns: dict[str, Any] = {"metadata": {"name": "dev"}}
    apply_defaults("", "Namespace", ns)
    assert ns == {"metadata": {"name": "dev"}}


@pytest.mark.parametrize("kind", ["RoleBinding", "ClusterRoleBinding"])
def test_binding_role_ref_and_subject_api_groups(kind: str) -> None:
    binding: dict[str, Any] = {
        "roleRef": {"apiGroup": "", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                     {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                     {"kind": "User", "name": "bob", "apiGroup": "example.com"}],
    }
    apply_defaults("rbac.authorization.k8s.io", kind, binding)
    assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s.get("apiGroup") for s in binding["subjects"]] == [
        None, "rbac.authorization.k8s.io", "rbac.authorization.k8s.io", "example.com"]
