"""Service validation: each rule's exact text, as kube-apiserver prints it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.defaults import (
    apply_defaults,
    default_ip_families,
    prepare_service_create,
    prepare_service_update,
)
from kubelite.api.errors import invalid_error
from kubelite.api.validation.service import validate_service


def service(**spec: Any) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend", "namespace": "default"},
        "spec": {"selector": {"app": "myapp"}, "ports": [{"port": 80}], **spec},
    }
    return svc


def prepared(svc: dict[str, Any]) -> dict[str, Any]:
    """What the API server holds when it validates a new Service (after allocation of families)."""
    apply_defaults("", "Service", svc)
    prepare_service_create(svc)
    default_ip_families(svc)
    return svc


def errors(svc: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in validate_service(prepared(svc) if old is None else svc, old)]


def test_lecture_service_is_valid_after_defaulting() -> None:
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend"},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"port": 80, "targetPort": 80}],
            "selector": {"app": "myapp", "type": "back-end"},
        },
    }
    svc["metadata"]["namespace"] = "default"
    assert errors(svc) == []


def test_port_out_of_range() -> None:
    svc = service(ports=[{"port": 70000, "targetPort": 80}])
    assert errors(svc) == ["spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"]


def test_kubectl_message_for_port_out_of_range() -> None:
    svc = prepared(service(ports=[{"port": 70000, "targetPort": 80}]))
    err = invalid_error("Service", "backend", validate_service(svc, None))
    assert err.message == (
        'Service "backend" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive'
    )


def test_missing_port_also_defaults_target_port_to_zero() -> None:
    svc = service(ports=[{"name": "http"}])
    assert errors(svc) == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
    ]


def test_ports_required() -> None:
    assert errors(service(ports=[])) == ["spec.ports: Required value"]


def test_headless_and_external_name_need_no_ports() -> None:
    assert errors(service(ports=[], clusterIP="None")) == []
    assert errors(service(ports=[], type="ExternalName", externalName="db.example.com")) == []


def test_name_required_with_several_ports() -> None:
    svc = service(ports=[{"name": "http", "port": 80}, {"port": 443}])
    assert errors(svc) == ["spec.ports[1].name: Required value"]


def test_duplicate_port_name() -> None:
    svc = service(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}])
    assert errors(svc) == ['spec.ports[1].name: Duplicate value: "http"']


def test_port_name_must_be_dns_label() -> None:
    svc = service(ports=[{"name": "HTTP", "port": 80}])
    assert errors(svc) == [
        'spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
        "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    ]


def test_unsupported_protocol() -> None:
    svc = service(ports=[{"port": 80, "protocol": "FOO"}])
    assert errors(svc) == ['spec.ports[0].protocol: Unsupported value: "FOO": supported values: "SCTP", "TCP", "UDP"']


def test_duplicate_port_and_protocol() -> None:
    svc = service(ports=[{"name": "a", "port": 443}, {"name": "b", "port": 443}])
    assert errors(svc) == [
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:443, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    ]


def test_same_port_with_tcp_and_udp_is_fine() -> None:
    svc = service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}])
    assert errors(svc) == []


def test_target_port_number_range() -> None:
    svc = service(ports=[{"port": 80, "targetPort": 65536}])
    assert errors(svc) == ["spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"]


@pytest.mark.parametrize(
    ("name", "messages"),
    [
        ("http-alternate-port", ["must be no more than 15 characters"]),
        ("HTTP", [
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "must contain at least one letter (a-z)",
        ]),
        ("8080", ["must contain at least one letter (a-z)"]),
        ("web--x", ["must not contain consecutive hyphens"]),
        ("-web", ["must not begin or end with a hyphen"]),
    ],
)
def test_target_port_names(name: str, messages: list[str]) -> None:
    svc = service(ports=[{"port": 80, "targetPort": name}])
    assert errors(svc) == [f'spec.ports[0].targetPort: Invalid value: "{name}": {m}' for m in messages]


def test_named_target_port_is_fine() -> None:
    assert errors(service(ports=[{"port": 80, "targetPort": "http-web"}])) == []


def test_invalid_cluster_ip() -> None:
    svc = service(clusterIP="10.96.0.300")
    assert errors(svc) == [
        'spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'
    ]


def test_cluster_ips_must_start_with_cluster_ip() -> None:
    svc = service(clusterIP="10.96.0.5", clusterIPs=["10.96.0.6"])
    assert errors(svc) == ['spec.clusterIPs: Invalid value: []string{"10.96.0.6"}: first value must match `clusterIP`']


def test_cluster_ips_without_cluster_ip() -> None:
    svc = service(clusterIPs=["10.96.0.6"])
    assert errors(svc) == [
        'spec.clusterIPs: Invalid value: []string{"10.96.0.6"}: must be empty when `clusterIP` is not specified'
    ]


def test_two_cluster_ips_of_one_family() -> None:
    svc = service(clusterIP="10.96.0.5", clusterIPs=["10.96.0.5", "10.96.0.6"], ipFamilyPolicy="PreferDualStack")
    assert 'spec.clusterIPs: Invalid value: []string{"10.96.0.5", "10.96.0.6"}: may specify no more than one IP for each IP family' in errors(svc)


def test_headless_not_allowed_for_node_port() -> None:
    svc = service(type="NodePort", clusterIP="None")
    assert errors(svc) == ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]


def test_headless_not_allowed_for_load_balancer() -> None:
    svc = service(type="LoadBalancer", clusterIP="None")
    assert errors(svc) == [
        "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"
    ]


def test_external_name_required() -> None:
    assert errors(service(type="ExternalName")) == ["spec.externalName: Required value"]


def test_external_name_must_be_subdomain_trailing_dot_allowed() -> None:
    assert errors(service(type="ExternalName", externalName="db.example.com.")) == []
    assert errors(service(type="ExternalName", externalName="DB_host")) == [
        'spec.externalName: Invalid value: "DB_host": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]


def test_external_name_forbids_cluster_ip() -> None:
    svc = service(type="ExternalName", externalName="db.example.com", clusterIP="10.96.0.5")
    assert errors(svc) == ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]


def test_node_port_forbidden_for_cluster_ip() -> None:
    svc = service(ports=[{"port": 80, "nodePort": 30080}])
    assert errors(svc) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_node_port_allowed_for_node_port_type() -> None:
    assert errors(service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == []


def test_duplicate_node_port() -> None:
    svc = service(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}])
    assert errors(svc) == ["spec.ports[1].nodePort: Duplicate value: 30080"]


def test_unsupported_session_affinity() -> None:
    assert errors(service(sessionAffinity="Sticky")) == [
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'
    ]


@pytest.mark.parametrize("timeout", [0, 86401])
def test_client_ip_timeout_range(timeout: int) -> None:
    svc = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": timeout}})
    assert errors(svc) == [
        f"spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: {timeout}: "
        "must be greater than 0 and less than 86400"
    ]


def test_client_ip_timeout_bounds_are_inclusive_of_86400() -> None:
    svc = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}})
    assert errors(svc) == []


def test_selector_label_value() -> None:
    svc = service(selector={"app": "my app"})
    assert errors(svc) == [
        'spec.selector: Invalid value: "my app": a valid label must be an empty string or consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    ]


def test_unsupported_type() -> None:
    assert errors(service(type="Magic")) == [
        'spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'
    ]


def test_external_traffic_policy_only_for_external_services() -> None:
    svc = service(externalTrafficPolicy="Local")
    assert errors(svc) == [
        'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'
    ]


def test_unsupported_internal_traffic_policy() -> None:
    assert errors(service(internalTrafficPolicy="Node")) == [
        'spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local"'
    ]


def test_unsupported_ip_family_and_policy() -> None:
    svc = service(ipFamilies=["IPv5"], ipFamilyPolicy="Single")
    assert errors(svc) == [
        'spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
        'spec.ipFamilyPolicy: Unsupported value: "Single": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"',
    ]


def test_ip_family_must_match_cluster_ip() -> None:
    svc = service(clusterIP="10.96.0.5", ipFamilies=["IPv6"])
    assert errors(svc) == ['spec.clusterIPs[0]: Invalid value: "10.96.0.5": expected an IPv6 value as indicated by `ipFamilies[0]`']


def test_external_ip_may_not_be_loopback() -> None:
    svc = service(externalIPs=["127.0.0.1"])
    assert errors(svc) == [
        'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)'
    ]


def test_load_balancer_fields_only_for_load_balancers() -> None:
    svc = service(allocateLoadBalancerNodePorts=True, loadBalancerSourceRanges=["10.0.0.0/8"])
    assert errors(svc) == [
        "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
        "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
    ]


def test_load_balancer_is_valid_after_defaulting() -> None:
    assert errors(service(type="LoadBalancer")) == []


def stored(svc: dict[str, Any], ip: str = "10.96.0.5") -> dict[str, Any]:
    """A Service as the store holds it after create: defaulted and allocated."""
    prepared(svc)
    svc["spec"]["clusterIP"] = ip
    svc["spec"]["clusterIPs"] = [ip]
    svc["metadata"].update(resourceVersion="7", uid="9b2c5f3e-1d7a-4c61-9f3e-0f6a2b1c4d5e")
    return svc


def update(old: dict[str, Any], change: dict[str, Any]) -> list[str]:
    new = copy.deepcopy(old)
    new["spec"].update(change)
    apply_defaults("", "Service", new)
    prepare_service_update(new, old)
    return [str(e) for e in validate_service(new, old)]


def test_cluster_ip_may_not_change() -> None:
    old = stored(service())
    assert update(old, {"clusterIP": "10.96.0.6"}) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.6"}: may not change once set'
    ]


def test_resending_without_cluster_ip_keeps_it() -> None:
    old = stored(service())
    new = copy.deepcopy(old)
    del new["spec"]["clusterIP"], new["spec"]["clusterIPs"]
    apply_defaults("", "Service", new)
    prepare_service_update(new, old)
    assert new["spec"]["clusterIPs"] == ["10.96.0.5"]
    assert validate_service(new, old) == []


def test_change_to_external_name_drops_cluster_ip() -> None:
    old = stored(service())
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="db.example.com")
    apply_defaults("", "Service", new)
    prepare_service_update(new, old)
    assert "clusterIP" not in new["spec"]
    assert "ipFamilies" not in new["spec"]
    assert validate_service(new, old) == []


def test_change_from_external_name_allocates_anew() -> None:
    old = prepared(service(type="ExternalName", externalName="db.example.com"))
    old["metadata"]["resourceVersion"] = "7"
    new = copy.deepcopy(old)
    new["spec"].update(type="ClusterIP", clusterIP="10.96.0.7")
    apply_defaults("", "Service", new)
    prepare_service_update(new, old)
    default_ip_families(new)
    assert new["spec"]["clusterIPs"] == ["10.96.0.7"]
    assert validate_service(new, old) == []


def test_ip_families_may_not_change() -> None:
    old = stored(service())
    assert update(old, {"ipFamilies": ["IPv6"]}) == [
        'spec.ipFamilies[0]: Invalid value: []core.IPFamily{"IPv6"}: may not change once set',
        'spec.clusterIPs[0]: Invalid value: "10.96.0.5": expected an IPv6 value as indicated by `ipFamilies[0]`',
    ]


def test_service_name_must_be_dns1035_label() -> None:
    svc = service()
    svc["metadata"]["name"] = "1backend"
    assert errors(svc) == [
        'metadata.name: Invalid value: "1backend": a DNS-1035 label must consist of lower case alphanumeric '
        "characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. "
        "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    ]
