"""EndpointSlice and Endpoints validation (``pkg/apis/discovery/validation`` and core's Endpoints).

These objects are written by the EndpointSlice controller and, for Services without a
selector, by users by hand; both must get Kubernetes' answers. Their paths have no ``spec.``
prefix (``endpoints[0].addresses[0]``, ``subsets[0].ports[0].port``). EndpointSlice
addresses are checked against the slice's ``addressType`` and may not be loopback,
link-local or unspecified addresses, which would let a Service forward to the node itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubelite.api.errors import FieldError, duplicate, invalid, not_supported, required, too_many
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_labels
from kubelite.api.validation.names import is_dns1123_label, is_dns1123_subdomain, name_is_dns_subdomain
from kubelite.api.validation.service import (
    PROTOCOLS,
    is_valid_port_num,
    parse_ip_sloppy,
    validate_dns1123_label,
    validate_ip,
    validate_non_special_ip,
    validate_qualified_name,
)

Obj = Mapping[str, Any]

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
_MAX_TOPOLOGY_LABELS = 16
_MAX_ADDRESSES = 100
_MAX_PORTS = 100
_MAX_ENDPOINTS = 1000


def _validate_fqdn(value: str, path: str) -> list[FieldError]:
    """validation.IsFullyQualifiedDomainName."""
    if not value:
        return [required(path)]
    name = value.removesuffix(".")
    msgs = is_dns1123_subdomain(name)
    if msgs:
        return [invalid(path, name, ",".join(msgs))]
    labels = name.split(".")
    if len(labels) < 2:
        return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    for label in labels:
        msgs = is_dns1123_label(label)
        if msgs:
            return [invalid(path, label, ",".join(msgs))]
    return []


def _validate_slice_address(address: str, address_type: str, path: str) -> list[FieldError]:
    if address_type == "IP":
        return validate_ip(address, path)
    if address_type in ("IPv4", "IPv6"):
        ip = parse_ip_sloppy(address)
        errs = []
        if ip is None or ip.version != int(address_type[-1]):
            errs.append(invalid(path, address, f"must be a valid {address_type} address"))
        return errs + validate_non_special_ip(address, path)
    if address_type == "FQDN":
        return _validate_fqdn(address, path)
    return []  # unknown types are reported on addressType


def _validate_slice_endpoints(endpoints: Sequence[Obj], address_type: str) -> list[FieldError]:
    if len(endpoints) > _MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), _MAX_ENDPOINTS)]
    errs: list[FieldError] = []
    for i, endpoint in enumerate(endpoints):
        path = f"endpoints[{i}]"
        addresses: list[str] = endpoint.get("addresses") or []
        if not addresses:
            errs.append(required(f"{path}.addresses", "must contain at least 1 address"))
        elif len(addresses) > _MAX_ADDRESSES:
            errs.append(too_many(f"{path}.addresses", len(addresses), _MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            errs += _validate_slice_address(address, address_type, f"{path}.addresses[{j}]")
        # v1's deprecatedTopology is the internal Topology, and errors use the internal name.
        topology: Mapping[str, str] = endpoint.get("deprecatedTopology") or {}
        if len(topology) > _MAX_TOPOLOGY_LABELS:
            errs.append(too_many(f"{path}.topology", len(topology), _MAX_TOPOLOGY_LABELS))
        errs += validate_labels(topology, f"{path}.topology")
        if endpoint.get("hostname") is not None:
            errs += validate_dns1123_label(endpoint["hostname"], f"{path}.hostname")
    return errs


def _validate_slice_ports(ports: Sequence[Obj]) -> list[FieldError]:
    if len(ports) > _MAX_PORTS:
        return [too_many("ports", len(ports), _MAX_PORTS)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            errs += validate_dns1123_label(name, f"{path}.name")
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            errs.append(required(f"{path}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
        if port.get("appProtocol") is not None:
            errs += validate_qualified_name(port["appProtocol"], f"{path}.appProtocol")
    return errs


def validate_endpointslice(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateEndpointSliceCreate / ValidateEndpointSliceUpdate (metadata included)."""
    meta: Obj = obj.get("metadata") or {}
    errs = object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain) if old is None else (
        object_meta_update(meta, old.get("metadata") or {})
        + object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    )
    address_type = obj.get("addressType") or ""
    # The deprecated "IP" type is still accepted on update, for slices stored long ago.
    allowed = ADDRESS_TYPES if old is None else ("FQDN", "IP", "IPv4", "IPv6")
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in allowed:
        errs.append(not_supported("addressType", address_type, allowed))
    errs += _validate_slice_endpoints(obj.get("endpoints") or [], address_type)
    errs += _validate_slice_ports(obj.get("ports") or [])
    if old is not None and address_type != (old.get("addressType") or ""):
        errs.append(invalid("addressType", address_type, "field is immutable"))
    return errs


def _validate_endpoint_address(address: Obj, path: str) -> list[FieldError]:
    ip = address.get("ip") or ""
    errs = validate_ip(ip, f"{path}.ip")
    if address.get("hostname"):
        errs += validate_dns1123_label(address["hostname"], f"{path}.hostname")
    if address.get("nodeName") is not None:
        node = address["nodeName"]
        errs += [invalid(f"{path}.nodeName", node, m) for m in name_is_dns_subdomain(node, False)]
    return errs + validate_non_special_ip(ip, f"{path}.ip")


def _validate_endpoint_port(port: Obj, require_name: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs += validate_dns1123_label(name, f"{path}.name")
    number = port.get("port") or 0
    errs += [invalid(f"{path}.port", number, m) for m in is_valid_port_num(number)]
    protocol = port.get("protocol") or ""
    if not protocol:
        errs.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    if port.get("appProtocol") is not None:
        errs += validate_qualified_name(port["appProtocol"], f"{path}.appProtocol")
    return errs


def validate_endpoints(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateEndpoints (create and update alike, besides metadata)."""
    meta: Obj = obj.get("metadata") or {}
    errs = [] if old is None else object_meta_update(meta, old.get("metadata") or {})
    errs += object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    for i, subset in enumerate(obj.get("subsets") or []):
        path = f"subsets[{i}]"
        ready: list[Obj] = subset.get("addresses") or []
        not_ready: list[Obj] = subset.get("notReadyAddresses") or []
        if not ready and not not_ready:
            errs.append(required(path, "must specify `addresses` or `notReadyAddresses`"))
        for j, address in enumerate(ready):
            errs += _validate_endpoint_address(address, f"{path}.addresses[{j}]")
        for j, address in enumerate(not_ready):
            errs += _validate_endpoint_address(address, f"{path}.notReadyAddresses[{j}]")
        ports: list[Obj] = subset.get("ports") or []
        for j, port in enumerate(ports):
            errs += _validate_endpoint_port(port, len(ports) > 1, f"{path}.ports[{j}]")
    return errs
