"""Service validation, as kube-apiserver's ``ValidateService`` / ``ValidateServiceUpdate`` do it.

Services are what kubelite is about, and their error messages are the ones its users meet
first (``spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive``),
so this is a faithful port of the Service part of ``pkg/apis/core/validation``: the same
checks in the same order, with the same field paths (including Kubernetes' quirks, such as
``spec.LoadBalancerSourceRanges`` and a top-level ``allocateLoadBalancerNodePorts``) and
values printed the way Go prints them (``[]string{"None"}``, ``core.ServicePort{...}``).

It validates the object as the API server holds it when its strategy validates: defaults
applied and ``clusterIP``/``clusterIPs`` normalized (see ``kubelite.api.defaults``). The
field validators shared by the core kinds (port numbers and names, IP addresses) live here
too, since Services are their first user; Pods, Endpoints and EndpointSlices import them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubelite.api.errors import (
    ErrorType,
    FieldError,
    duplicate,
    forbidden,
    go_value,
    invalid,
    not_supported,
    required,
)
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import StringerError, go_string_slice, validate_labels
from kubelite.api.validation.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    max_len_error,
    name_is_dns1035_label,
)

Obj = Mapping[str, Any]

PROTOCOLS = ("SCTP", "TCP", "UDP")  # sorted, as sets.List prints them
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_SESSION_AFFINITIES = ("ClientIP", "None")
_TRAFFIC_POLICIES = ("Cluster", "Local")
_IP_FAMILIES = ("IPv4", "IPv6")
_IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400
_TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"
_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
_LB_SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"
_IMMUTABLE = "field is immutable"
_IP_EXAMPLE = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


# -- field validators shared by the core kinds --------------------------------------------


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


_PORT_NAME_CHARSET = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")


def is_valid_port_name(name: str) -> list[str]:
    """IANA_SVC_NAME, as validation.IsValidPortName words each broken rule."""
    errs = []
    if len(name.encode()) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def validate_port_num_or_name(port: int | str, path: str) -> list[FieldError]:
    """ValidatePortNumOrName: an IntOrString is checked as a number or as a port name."""
    if isinstance(port, str):
        return [invalid(path, port, m) for m in is_valid_port_name(port)]
    return [invalid(path, port, m) for m in is_valid_port_num(port)]


def validate_dns1123_label(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_dns1123_label(value)]


def validate_dns1123_subdomain(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_dns1123_subdomain(value)]


def validate_qualified_name(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_qualified_name(value)]


def validate_nonnegative(value: int, path: str) -> list[FieldError]:
    return [invalid(path, value, "must be greater than or equal to 0")] if value < 0 else []


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SLOPPY_V4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


def parse_ip_sloppy(text: str) -> IPAddress | None:
    """netutils.ParseIPSloppy: Go's net.ParseIP, which also reads IPv4 octets with leading zeros."""
    m = _SLOPPY_V4.fullmatch(text)
    if m:
        octets = [int(g) for g in m.groups()]
        return ipaddress.IPv4Address(bytes(octets)) if all(o <= 255 for o in octets) else None
    if ":" not in text or "%" in text:  # Go accepts no zone and no bare integers
        return None
    try:
        v6 = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    # Go treats an IPv4-mapped IPv6 address as IPv4 (To4() is not nil).
    return v6.ipv4_mapped or v6


def is_ipv6(text: str) -> bool:
    return isinstance(parse_ip_sloppy(text), ipaddress.IPv6Address)


def validate_ip(value: str, path: str) -> list[FieldError]:
    """validation.IsValidIP."""
    return [] if parse_ip_sloppy(value) is not None else [invalid(path, value, _IP_EXAMPLE)]


def validate_non_special_ip(value: str, path: str) -> list[FieldError]:
    """ValidateNonSpecialIP: no unspecified, loopback or link-local addresses as endpoints."""
    ip = parse_ip_sloppy(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local and not ip.is_multicast:
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    packed = ip.packed
    if (ip.version == 4 and packed[:3] == b"\xe0\x00\x00") or (
        ip.version == 6 and packed[0] == 0xFF and packed[1] & 0x0F == 0x02
    ):
        errs.append(invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


def validate_cidr(value: str, path: str) -> list[FieldError]:
    """validation.IsValidCIDR."""
    addr, _, bits = value.partition("/")
    ok = parse_ip_sloppy(addr) is not None and bits.isdigit() and len(bits) <= 3
    if ok:
        ok = int(bits) <= (32 if isinstance(parse_ip_sloppy(addr), ipaddress.IPv4Address) else 128)
    return [] if ok else [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]


def go_literal(kind: ErrorType, path: str, rendered: str, detail: str = "") -> FieldError:
    """An error whose bad value is a Go composite printed with %#v (slices, maps, structs)."""
    return StringerError(kind, path, rendered, detail)


def go_typed_slice(type_name: str, values: Sequence[str] | None) -> str:
    """%#v of a slice of a string type: ``[]core.IPFamily{"IPv4"}``, nil as ``[]T(nil)``."""
    if values is None:
        return f"[]{type_name}(nil)"
    if type_name == "string":
        return go_string_slice(values)
    return f"[]{type_name}{{" + ", ".join(go_value(v) for v in values) + "}"


def go_string_map(values: Mapping[str, str] | None) -> str:
    """%#v of a map[string]string: keys sorted, ``{"k":"v", "k2":"v2"}``, nil as ``(nil)``."""
    if values is None:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{go_value(k)}:{go_value(values[k])}" for k in sorted(values)) + "}"


# -- Service --------------------------------------------------------------------------------


def _spec(svc: Obj) -> Obj:
    return svc.get("spec") or {}


def is_headless(svc: Obj) -> bool:
    ips = _spec(svc).get("clusterIPs") or []
    return len(ips) == 1 and ips[0] == "None"


def externally_accessible(svc: Obj) -> bool:
    spec = _spec(svc)
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_health_check(svc: Obj) -> bool:
    spec = _spec(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _go_service_port(protocol: str, port: int) -> str:
    # The duplicate-port error prints the internal map key, a core.ServicePort with only
    # Protocol and Port set, with %#v.
    return (
        f'core.ServicePort{{Name:"", Protocol:{go_value(protocol)}, AppProtocol:(*string)(nil), Port:{port}, '
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def _validate_service_port(
    sp: Obj, require_name: bool, all_names: set[str], path: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    name = sp.get("name") or ""
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs += validate_dns1123_label(name, f"{path}.name")
        if name in all_names:
            errs.append(duplicate(f"{path}.name", name))
        else:
            all_names.add(name)
    port = sp.get("port") or 0
    errs += [invalid(f"{path}.port", port, m) for m in is_valid_port_num(port)]
    protocol = sp.get("protocol") or ""
    if not protocol:
        errs.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    errs += validate_port_num_or_name(sp.get("targetPort", 0), f"{path}.targetPort")
    if sp.get("appProtocol") is not None:
        errs += validate_qualified_name(sp["appProtocol"], f"{path}.appProtocol")
    return errs


def _validate_client_ip_affinity(config: Obj | None, path: str) -> list[FieldError]:
    when = "when session affinity type is ClientIP"
    if config is None:
        return [required(path, when)]
    if config.get("clientIP") is None:
        return [required(f"{path}.clientIP", when)]
    timeout = config["clientIP"].get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", when)]
    if timeout <= 0 or timeout > MAX_CLIENT_IP_AFFINITY_SECONDS:
        detail = f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
        return [invalid(f"{path}.clientIP.timeoutSeconds", timeout, detail)]
    return []


def validate_cluster_ips_related_fields(svc: Obj) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields; the allocator runs it too, before allocating."""
    spec = _spec(svc)
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    cluster_ip = spec.get("clusterIP") or ""
    cluster_ips: list[str] | None = spec.get("clusterIPs")
    ips = cluster_ips or []
    families: list[str] = spec.get("ipFamilies") or []
    rendered_ips = go_typed_slice("string", cluster_ips)
    if cluster_ip:
        if not ips:
            errs.append(required("spec.clusterIPs"))
        elif ips[0] != cluster_ip:
            errs.append(go_literal(ErrorType.INVALID, "spec.clusterIPs", rendered_ips, "first value must match `clusterIP`"))
    elif ips:
        errs.append(
            go_literal(ErrorType.INVALID, "spec.clusterIPs", rendered_ips, "must be empty when `clusterIP` is not specified")
        )
    seen: set[str] = set()
    for i, family in enumerate(families):
        if family not in _IP_FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, _IP_FAMILIES))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in _IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, _IP_FAMILY_POLICIES))
    has_invalid = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                has_invalid = True
                errs.append(
                    go_literal(ErrorType.INVALID, "spec.clusterIPs", rendered_ips, "'None' must be the first and only value")
                )
            continue
        bad = validate_ip(ip, f"spec.clusterIPs[{i}]")
        has_invalid = has_invalid or bool(bad)
        errs += bad
    if len(ips) > 2:
        errs.append(go_literal(ErrorType.INVALID, "spec.clusterIPs", rendered_ips, "may only hold up to 2 values"))
    # Further checks would only repeat what a bad address already says.
    if has_invalid:
        return errs
    if len(ips) > 1 and {is_ipv6(ip) for ip in ips} != {True, False}:
        errs.append(
            go_literal(ErrorType.INVALID, "spec.clusterIPs", rendered_ips, "may specify no more than one IP for each IP family")
        )
    if not is_headless(svc) and ips and families:
        for i, ip in enumerate(ips[: len(families)]):
            if families[i] == "IPv4" and is_ipv6(ip):
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if families[i] == "IPv6" and not is_ipv6(ip):
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def _validate_load_balancer_class(old: Obj | None, svc: Obj) -> list[FieldError]:
    spec = _spec(svc)
    lb_class = spec.get("loadBalancerClass")
    errs: list[FieldError] = []
    both_lb = old is not None and _spec(old).get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer"
    if both_lb and _spec(old or {}).get("loadBalancerClass") != lb_class:
        errs.append(invalid("spec.loadBalancerClass", lb_class, "may not change once set"))
    if spec.get("type") == "LoadBalancer":
        if lb_class is not None:
            errs += validate_qualified_name(lb_class, "spec.loadBalancerClass")
    elif lb_class is not None:
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def _validate_external_traffic_policy(svc: Obj) -> list[FieldError]:
    spec = _spec(svc)
    errs: list[FieldError] = []
    policy = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(svc):
        if policy:
            errs.append(invalid("spec.externalTrafficPolicy", policy, "may only be set for externally-accessible services"))
    elif not policy:
        errs.append(required("spec.externalTrafficPolicy"))
    elif policy not in _TRAFFIC_POLICIES:
        errs.append(not_supported("spec.externalTrafficPolicy", policy, _TRAFFIC_POLICIES))
    hc = spec.get("healthCheckNodePort") or 0
    if not needs_health_check(svc):
        if hc:
            detail = "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
            errs.append(invalid("spec.healthCheckNodePort", hc, detail))
    elif not hc:
        errs.append(required("spec.healthCheckNodePort"))
    else:
        errs += [invalid("spec.healthCheckNodePort", hc, m) for m in is_valid_port_num(hc)]
    return errs


def _validate_service_spec(svc: Obj) -> list[FieldError]:
    spec = _spec(svc)
    annotations: Obj = (svc.get("metadata") or {}).get("annotations") or {}
    errs: list[FieldError] = []
    mode, hints = annotations.get(_TOPOLOGY_MODE), annotations.get(_TOPOLOGY_HINTS)
    if mode is not None and hints is not None and mode != hints:
        detail = f"must match annotations[{_TOPOLOGY_HINTS}] when both are specified"
        errs.append(invalid(f"metadata.annotations[{_TOPOLOGY_MODE}]", mode, detail))
    svc_type = spec.get("type") or ""
    ports: list[Obj] = spec.get("ports") or []
    headless = is_headless(svc)
    if not ports and not headless and svc_type != "ExternalName":
        errs.append(required("spec.ports"))

    if svc_type in ("LoadBalancer", "NodePort") and headless:
        errs.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {svc_type} services"))
    elif svc_type == "ExternalName":
        if spec.get("clusterIPs"):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.get("ipFamilies"):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        # A CNAME may end with a dot to say it is fully qualified.
        cname = (spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs += validate_dns1123_subdomain(cname, "spec.externalName")
        else:
            errs.append(required("spec.externalName"))

    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _validate_service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")

    if spec.get("selector") is not None:
        errs += validate_labels(spec["selector"], "spec.selector")

    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        errs.append(required("spec.sessionAffinity"))
    elif affinity not in _SESSION_AFFINITIES:
        errs.append(not_supported("spec.sessionAffinity", affinity, _SESSION_AFFINITIES))
    if affinity == "ClientIP":
        errs += _validate_client_ip_affinity(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    errs += validate_cluster_ips_related_fields(svc)

    for i, ip in enumerate(spec.get("externalIPs") or []):
        path = f"spec.externalIPs[{i}]"
        errs += validate_ip(ip, path) or validate_non_special_ip(ip, path)

    if not svc_type:
        errs.append(required("spec.type"))
    elif svc_type not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", svc_type, SERVICE_TYPES))

    if svc_type == "ClusterIP":
        for i, port in enumerate(ports):
            if port.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))

    node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        if not port.get("nodePort"):
            continue
        key = (port.get("protocol") or "", port["nodePort"])
        if key in node_ports:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
        node_ports.add(key)

    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol") or "", port.get("port") or 0)
        if key in seen_ports:
            errs.append(go_literal(ErrorType.DUPLICATE, f"spec.ports[{i}]", _go_service_port(*key)))
        seen_ports.add(key)

    ranges: list[str] = spec.get("loadBalancerSourceRanges") or []
    if ranges:
        path = "spec.LoadBalancerSourceRanges"  # sic: Kubernetes' own path for this field
        if svc_type != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, cidr in enumerate(ranges):
            # Historically tolerated: values padded with spaces.
            errs += validate_cidr(cidr.strip(), f"{path}[{i}]")
    elif _LB_SOURCE_RANGES in annotations:
        path = f"metadata.annotations[{_LB_SOURCE_RANGES}]"
        if svc_type != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        value = annotations[_LB_SOURCE_RANGES].strip()
        if value:
            for cidr in value.split(","):
                errs += validate_cidr(cidr.strip(), path)

    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))  # sic: no "spec." in Kubernetes

    errs += _validate_load_balancer_class(None, svc)
    errs += _validate_external_traffic_policy(svc)

    internal = spec.get("internalTrafficPolicy")
    if internal is None:
        if svc_type in ("ClusterIP", "NodePort", "LoadBalancer"):
            errs.append(required("spec.internalTrafficPolicy"))
    elif internal not in _TRAFFIC_POLICIES:
        errs.append(not_supported("spec.internalTrafficPolicy", internal, _TRAFFIC_POLICIES))

    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution != "PreferClose":
        errs.append(not_supported("spec.trafficDistribution", distribution, ["PreferClose"]))
    return errs


def _validate_cluster_ips_update(old: Obj, svc: Obj) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs: the primary address never changes once set."""
    if "ExternalName" in (_spec(svc).get("type"), _spec(old).get("type")):
        return []
    if is_headless(old) and is_headless(svc):
        return []
    old_ips: list[str] = _spec(old).get("clusterIPs") or []
    new_raw: list[str] | None = _spec(svc).get("clusterIPs")
    new_ips = new_raw or []
    rendered = go_typed_slice("string", new_raw)
    changed = "may not change once set"
    errs: list[FieldError] = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(go_literal(ErrorType.INVALID, f"spec.clusterIPs[{i}]", rendered, changed))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(go_literal(ErrorType.INVALID, "spec.clusterIPs[0]", rendered, "primary clusterIP can not be unset"))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(go_literal(ErrorType.INVALID, "spec.clusterIPs[0]", rendered, changed))
        if len(new_ips) == 1 and _spec(svc).get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                invalid(
                    "spec.ipFamilyPolicy",
                    _spec(svc).get("ipFamilyPolicy"),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                )
            )
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(go_literal(ErrorType.INVALID, "spec.clusterIPs[0]", rendered, changed))
    return errs


def _validate_ip_families_update(old: Obj, svc: Obj) -> list[FieldError]:
    """validateUpgradeDowngradeIPFamilies (headless services may change families)."""
    if "ExternalName" in (_spec(svc).get("type"), _spec(old).get("type")):
        return []
    if is_headless(old) or is_headless(svc):
        return []
    old_fams: list[str] = _spec(old).get("ipFamilies") or []
    new_raw: list[str] | None = _spec(svc).get("ipFamilies")
    new_fams = new_raw or []
    families = go_typed_slice("core.IPFamily", new_raw)
    # Kubernetes prints the clusterIPs, not the families, in some of these errors.
    ips = go_typed_slice("string", _spec(svc).get("clusterIPs"))
    changed = "may not change once set"
    errs: list[FieldError] = []
    if len(old_fams) == len(new_fams):
        for i, family in enumerate(old_fams):
            if family != new_fams[i]:
                errs.append(go_literal(ErrorType.INVALID, "spec.ipFamilies[0]", families, changed))
    elif len(old_fams) > len(new_fams):
        if not _spec(svc).get("clusterIPs"):
            errs.append(go_literal(ErrorType.INVALID, "spec.ipFamilies[0]", families, "primary ipFamily can not be unset"))
        if new_fams and new_fams[0] != old_fams[0]:
            errs.append(go_literal(ErrorType.INVALID, "spec.ipFamilies[0]", ips, changed))
        if len(new_fams) == 1 and _spec(svc).get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                invalid(
                    "spec.ipFamilyPolicy",
                    _spec(svc).get("ipFamilyPolicy"),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                )
            )
    elif old_fams and new_fams and new_fams[0] != old_fams[0]:
        errs.append(go_literal(ErrorType.INVALID, "spec.ipFamilies[0]", ips, changed))
    return errs


def validate_service(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateService on create, ValidateServiceUpdate on update (metadata included)."""
    meta: Obj = obj.get("metadata") or {}
    if old is None:
        errs = object_meta(meta, namespaced=True, name_validator=name_is_dns1035_label)
        return errs + _validate_service_spec(obj)
    errs = object_meta_update(meta, old.get("metadata") or {})
    errs += _validate_cluster_ips_update(old, obj)
    errs += _validate_ip_families_update(old, obj)
    errs += _validate_load_balancer_class(old, obj)
    hc_changed = _spec(obj).get("healthCheckNodePort") != _spec(old).get("healthCheckNodePort")
    if needs_health_check(old) and needs_health_check(obj) and hc_changed:
        errs.append(forbidden("spec.healthCheckNodePort", _IMMUTABLE))
    errs += object_meta(meta, namespaced=True, name_validator=name_is_dns1035_label)
    return errs + _validate_service_spec(obj)
