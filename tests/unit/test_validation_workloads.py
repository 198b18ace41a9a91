"""Deployment, ReplicaSet, EndpointSlice and Endpoints validation: Kubernetes' exact texts."""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api.defaults import apply_defaults
from kubelite.api.validation.discovery import validate_endpoints, validate_endpointslice
from kubelite.api.validation.workloads import validate_deployment, validate_replicaset


def deployment(**spec: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
            **spec,
        },
    }
    return d


def errors(d: dict[str, Any], kind: str = "Deployment") -> list[str]:
    apply_defaults("apps", kind, d)
    validate = validate_deployment if kind == "Deployment" else validate_replicaset
    return [str(e) for e in validate(d, None)]


def test_valid_deployment_and_replicaset() -> None:
    assert errors(deployment()) == []
    rs = deployment()
    rs["kind"] = "ReplicaSet"
    assert errors(rs, "ReplicaSet") == []


def test_selector_must_match_template_labels() -> None:
    d = deployment(selector={"matchLabels": {"app": "api"}})
    assert errors(d) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"
    ]


def test_selector_required() -> None:
    d = deployment()
    del d["spec"]["selector"]
    assert errors(d) == [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`",
    ]


def test_empty_selector() -> None:
    d = deployment(selector={})
    assert errors(d) == [
        "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},"
        "MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment"
    ]


def test_negative_replicas() -> None:
    assert errors(deployment(replicas=-1)) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]


def test_template_spec_paths() -> None:
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert errors(d) == [
        "spec.template.spec.containers[0].image: Required value",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
    ]


def test_rolling_update_both_zero() -> None:
    d = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert errors(d) == ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]


def test_rolling_update_percent() -> None:
    d = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "1x"}})
    assert errors(d) == [
        "spec.strategy.rollingUpdate.maxSurge: Invalid value: 1x: a valid percent string must be a numeric string "
        "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%",
    ]


def test_recreate_with_rolling_update() -> None:
    d = deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
    assert errors(d) == ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]


def test_progress_deadline_after_min_ready() -> None:
    d = deployment(minReadySeconds=600)
    assert errors(d) == ["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"]


def test_selector_is_immutable() -> None:
    old = deployment()
    apply_defaults("apps", "Deployment", old)
    old["metadata"].update(resourceVersion="5", uid="5d3b8a92-7f0e-4c1a-b9d2-6e4f3a2c1b0d")
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "front"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
    assert [str(e) for e in validate_deployment(new, old)] == [
        "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: web,tier: front,},"
        "MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable"
    ]
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    assert validate_deployment(new, old) == []


def slice_(address_type: str, *addresses: str, **extra: Any) -> dict[str, Any]:
    es: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "backend-abc12", "namespace": "default"},
        "addressType": address_type,
        "endpoints": [{"addresses": list(addresses)}],
        "ports": [{"port": 80}],
        **extra,
    }
    apply_defaults("discovery.k8s.io", "EndpointSlice", es)
    return es


def test_valid_endpoint_slice() -> None:
    assert validate_endpointslice(slice_("IPv4", "10.244.0.5"), None) == []


def test_endpoint_slice_address_type() -> None:
    assert [str(e) for e in validate_endpointslice(slice_("IP", "10.244.0.5"), None)] == [
        'addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"'
    ]


def test_endpoint_slice_addresses_match_type() -> None:
    es = slice_("IPv4", "fd00::5", "127.0.0.1")
    assert [str(e) for e in validate_endpointslice(es, None)] == [
        'endpoints[0].addresses[0]: Invalid value: "fd00::5": must be a valid IPv4 address',
        'endpoints[0].addresses[1]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
    ]


def test_endpoint_slice_needs_an_address() -> None:
    assert [str(e) for e in validate_endpointslice(slice_("IPv4"), None)] == [
        "endpoints[0].addresses: Required value: must contain at least 1 address"
    ]


def test_endpoint_slice_port_protocol() -> None:
    es = slice_("IPv4", "10.244.0.5", ports=[{"port": 80, "protocol": "HTTP"}])
    assert [str(e) for e in validate_endpointslice(es, None)] == [
        'ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'
    ]


def test_endpoint_slice_address_type_is_immutable() -> None:
    old = slice_("IPv4", "10.244.0.5")
    old["metadata"].update(resourceVersion="2", uid="1f0e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
    new = copy.deepcopy(old)
    new["addressType"] = "IPv6"
    new["endpoints"] = [{"addresses": ["fd00::5"]}]
    assert [str(e) for e in validate_endpointslice(new, old)] == ['addressType: Invalid value: "IPv6": field is immutable']


def endpoints(*subsets: dict[str, Any]) -> dict[str, Any]:
    ep: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "backend", "namespace": "default"},
        "subsets": list(subsets),
    }
    apply_defaults("", "Endpoints", ep)
    return ep


def test_valid_endpoints() -> None:
    ep = endpoints({"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]})
    assert validate_endpoints(ep, None) == []


def test_endpoints_subset_needs_addresses() -> None:
    ep = endpoints({"ports": [{"port": 80}]})
    assert [str(e) for e in validate_endpoints(ep, None)] == [
        "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"
    ]


def test_endpoints_bad_ip_and_port() -> None:
    ep = endpoints({"addresses": [{"ip": "10.244.0"}], "ports": [{"name": "a", "port": 0}, {"port": 81}]})
    assert [str(e) for e in validate_endpoints(ep, None)] == [
        'subsets[0].addresses[0].ip: Invalid value: "10.244.0": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
        'subsets[0].addresses[0].ip: Invalid value: "10.244.0": must be a valid IP address',
        "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "subsets[0].ports[1].name: Required value",
    ]
