"""NetworkPolicy validation, after ``pkg/apis/networking/validation`` (networking.k8s.io/v1).

What the enforcement (``kubelite.networkpolicy``) relies on having been refused before a
policy is stored: ports that are valid numbers or port names, ``endPort`` only after a numeric
``port`` and not below it, peers that name exactly one kind of peer (an ipBlock alone), valid
CIDRs whose ``except`` entries are strict subsets of the block, and known policy types. The
field order of the checks and the messages are Kubernetes', so kubectl prints what users know.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from kubelite.api.errors import FieldError, forbidden, invalid, not_supported, required
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_label_selector
from kubelite.api.validation.names import name_is_dns_subdomain
from kubelite.api.validation.service import (
    is_valid_port_name,
    is_valid_port_num,
    parse_ip_sloppy,
    validate_cidr,
)

Obj = Mapping[str, Any]

PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")


def _parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """netutils.ParseCIDRSloppy: the network containing the address (host bits allowed)."""
    addr, _, bits = value.partition("/")
    ip = parse_ip_sloppy(addr)
    if ip is None or not bits.isdigit():
        return None
    try:
        return ipaddress.ip_network(f"{ip}/{int(bits)}", strict=False)
    except ValueError:
        return None


def validate_port(port: Obj, path: str) -> list[FieldError]:
    """ValidateNetworkPolicyPort."""
    errs: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if number is not None:
        if isinstance(number, int):
            errs += [invalid(f"{path}.port", number, m) for m in is_valid_port_num(number)]
            if end is not None:
                if end < number:
                    errs.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
                errs += [invalid(f"{path}.endPort", end, m) for m in is_valid_port_num(end)]
        else:
            if end is not None:
                errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
            errs += [invalid(f"{path}.port", number, m) for m in is_valid_port_name(str(number))]
    elif end is not None:
        errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    return errs


def validate_ip_block(block: Obj, path: str, existing: Sequence[str] = ()) -> list[FieldError]:
    """ValidateIPBlock: CIDRs already in the old object are not checked again (on update)."""
    cidr = block.get("cidr") or ""
    if not cidr:
        return [required(f"{path}.cidr")]
    errs = [] if cidr in existing else validate_cidr(cidr, f"{path}.cidr")
    net = _parse_cidr(cidr)
    if net is None:
        return errs
    for i, text in enumerate(block.get("except") or []):
        epath = f"{path}.except[{i}]"
        if text not in existing:
            errs += validate_cidr(text, epath)
        ex = _parse_cidr(text)
        if ex is None:
            continue
        if ex.version != net.version or ex.network_address not in net or net.prefixlen >= ex.prefixlen:
            errs.append(invalid(epath, text, "must be a strict subset of `cidr`"))
    return errs


def validate_peer(peer: Obj, path: str, existing: Sequence[str] = ()) -> list[FieldError]:
    """ValidateNetworkPolicyPeer."""
    errs: list[FieldError] = []
    kinds = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            kinds += 1
            errs += validate_label_selector(peer[key], f"{path}.{key}")
    if peer.get("ipBlock") is not None:
        kinds += 1
        errs += validate_ip_block(peer["ipBlock"], f"{path}.ipBlock", existing)
    if kinds == 0:
        errs.append(required(path, "must specify a peer"))
    elif kinds > 1 and peer.get("ipBlock") is not None:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def validate_spec(spec: Obj, path: str = "spec", existing: Sequence[str] = ()) -> list[FieldError]:
    """ValidateNetworkPolicySpec: selector, ingress (ports, then from), egress, policy types."""
    errs = validate_label_selector(spec.get("podSelector") or {}, f"{path}.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            rpath = f"{path}.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                errs += validate_port(port, f"{rpath}.ports[{j}]")
            for j, peer in enumerate(rule.get(peers_key) or []):
                errs += validate_peer(peer, f"{rpath}.{peers_key}[{j}]", existing)
    types = spec.get("policyTypes") or []
    if len(types) > len(POLICY_TYPES):
        errs.append(invalid(f"{path}.policyTypes", types, "may not specify more than two policyTypes"))
        return errs
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            errs.append(not_supported(f"{path}.policyTypes[{i}]", t, POLICY_TYPES))
    return errs


def _cidrs(spec: Obj) -> list[str]:
    out: list[str] = []
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            for peer in rule.get(peers_key) or []:
                block = peer.get("ipBlock") or {}
                if block.get("cidr"):
                    out.append(block["cidr"])
                out += block.get("except") or []
    return out


def validate_network_policy(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateNetworkPolicy / ValidateNetworkPolicyUpdate."""
    meta: Obj = obj.get("metadata") or {}
    spec: Obj = obj.get("spec") or {}
    if old is None:
        return object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain) + validate_spec(spec)
    errs = object_meta_update(meta, old.get("metadata") or {})
    return errs + validate_spec(spec, existing=_cidrs(old.get("spec") or {}))


VALIDATORS = {("networking.k8s.io", "NetworkPolicy"): validate_network_policy}
