"""NetworkPolicies as nftables: policies, pods and namespaces in, transactions out. Pure.

The design follows what kube-network-policies (kubernetes-sigs) learned, with one change of
mechanism. kube-network-policies keeps a set of the IPs that some policy selects, lets
established traffic through, and hands every new connection to or from those IPs to
userspace (nfqueue) for a verdict. kubelite decides in the kernel instead: the verdict of
a new connection is a few set lookups, and a policy change is a small transaction rather
than a code path every connection waits on. The pieces, in ``table inet kubelite-netpol``
of the node's namespace:

* Two base chains on the **forward** hook: ``forward-egress`` (priority 0) then
  ``forward-ingress`` (priority 1). Both come after the proxy's DNAT (prerouting, -100), so
  policies see the backend pod's IP and the Service's target port, as Kubernetes specifies.
  A connection must pass both: the source pod's egress and the destination pod's ingress.
  Each accepts ``ct state established,related`` first: policies judge new connections only,
  and replies always flow. Traffic from or to the node itself (kubelet probes, the API and
  DNS relays) never crosses the forward hook and is always allowed, as Kubernetes requires
  for the node's own traffic.
* Dispatch is one lookup per direction: ``ip saddr vmap @egress-pods`` and ``ip daddr vmap
  @ingress-pods`` map each *isolated* pod IP (one that some policy selects for that
  direction) to its chain ``pod-<ip>-egress`` / ``pod-<ip>-ingress``. A pod no policy selects
  has no element, so its traffic is not isolated. The pod chain jumps to the chain of each
  policy selecting it (policies are additive: any accept wins) and ends in ``drop``.
* A policy's chain ``np-<hash>-<ns>/<name>-<direction>`` has a rule per (peer, port) pair
  of each of its rules. Pods are looked up in hash sets of the policy's own: ``-peers`` (IPs
  of the pods its podSelector/namespaceSelector peers select) and ``-named`` (pod IP .
  protocol . port of its named ports, resolved per pod). ipBlocks (``ip saddr 10.0.0.0/8 ip
  saddr != 10.1.0.0/16``, each except cut out) and numeric ports and ranges (``tcp dport
  8000-8100``) are comparisons in the rule: no interval sets (see ``_SET_TYPES``). The
  chains depend only on the policy's spec; pods and namespaces only ever change elements.

So a pod starting changes elements only (its IP added to the peer sets that select it, its
dispatch element and chain written), and a policy change rewrites that policy's chain and
sets: :class:`Compiler` keeps the desired objects and which of them changed, and
:func:`transaction` writes the difference from what was last written, as the proxy's
partial syncs do. A full transaction recreates the table (the first sync, after a failure).

IPv4 only, as the pod network: IPv6 ipBlocks select nothing.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.labels import EVERYTHING, Selector, SelectorError, selector_from_label_selector

TABLE = "inet kubelite-netpol"
INGRESS_PODS = "ingress-pods"
EGRESS_PODS = "egress-pods"
INGRESS, EGRESS = "ingress", "egress"
DIRECTIONS = (INGRESS, EGRESS)
_L4 = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_NAME_MAX = 200  # nftables names are at most 256 bytes; suffixes follow


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Pod:
    """What policies need of a pod: where it is, its labels and its named ports."""

    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[tuple[str, str, int], ...] = ()  # (name, protocol, containerPort) of named ports


@dataclass(frozen=True)
class Port:
    protocol: str  # tcp, udp, sctp
    first: int = 0  # 0-65535 when the port is not given
    last: int = 65535
    name: str = ""  # a named port: resolved against each pod's container ports


@dataclass(frozen=True)
class Peer:
    pods: Selector | None = None
    namespaces: Selector | None = None
    block: tuple[str, tuple[str, ...]] | None = None  # an IPv4 ipBlock: (cidr, excepts), normalized

    @property
    def selects_pods(self) -> bool:
        return self.pods is not None or self.namespaces is not None


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] | None  # None: every peer
    ports: tuple[Port, ...] | None  # None: every port


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...] | None  # None: the policy does not isolate for ingress
    egress: tuple[Rule, ...] | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...] | None:
        return self.ingress if direction == INGRESS else self.egress


def _ipv4(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        return False
    return True


def ip_block(cidr: str, excepts: Iterable[str] = ()) -> tuple[str, tuple[str, ...]] | None:
    """An ipBlock as (network, excepts) in canonical form; None for IPv6 (the pod network is IPv4)."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
        nets = [ipaddress.ip_network(e, strict=False) for e in excepts]
    except ValueError:
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        return None
    return str(net), tuple(sorted({str(e) for e in nets if isinstance(e, ipaddress.IPv4Network)}))


def _selector(obj: Mapping[str, Any] | None) -> Selector | None:
    if obj is None:
        return None
    try:
        return selector_from_label_selector(obj)
    except SelectorError:
        return Selector(nothing=True)  # validation refuses these; select nothing rather than fail


def compile_policy(obj: Mapping[str, Any]) -> Policy:
    """A NetworkPolicy object as the ruleset needs it (policyTypes defaulted as the API does)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    rules: dict[str, tuple[Rule, ...] | None] = {}
    for direction, peers_key, type_ in ((INGRESS, "from", "Ingress"), (EGRESS, "to", "Egress")):
        if type_ not in types:
            rules[direction] = None
            continue
        out = []
        for r in spec.get(direction) or []:
            peers: tuple[Peer, ...] | None = None
            if r.get(peers_key):
                peers = tuple(
                    Peer(_selector(p.get("podSelector")), _selector(p.get("namespaceSelector")),
                         ip_block(p["ipBlock"].get("cidr") or "", p["ipBlock"].get("except") or ())
                         if p.get("ipBlock") else None)
                    for p in r[peers_key]
                )
            ports: tuple[Port, ...] | None = None
            if r.get("ports"):
                ports = tuple(_port(p) for p in r["ports"])
            out.append(Rule(peers, ports))
        rules[direction] = tuple(out)
    return Policy(meta.get("namespace") or "default", meta["name"],
                  _selector(spec.get("podSelector") or {}) or EVERYTHING, rules[INGRESS], rules[EGRESS])


def _port(p: Mapping[str, Any]) -> Port:
    protocol = _L4.get(p.get("protocol") or "TCP", "tcp")
    number = p.get("port")
    if number is None:
        return Port(protocol)
    if isinstance(number, str) and not number.isdigit():
        return Port(protocol, name=number)
    first = int(number)
    return Port(protocol, first, int(p.get("endPort") or first))


def pod_from_object(obj: Mapping[str, Any]) -> Pod | None:
    """The pod as policies see it; None when policies do not apply (no IP yet, host network,
    finished: its IP may already be another pod's)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ip = status.get("podIP") or ""
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed") or not _ipv4(ip):
        return None
    ports = tuple(
        (str(p["name"]), str(p.get("protocol") or "TCP"), int(p["containerPort"]))
        for c in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
        for p in c.get("ports") or ()
        if p.get("name") and p.get("containerPort")
    )
    return Pod(meta.get("namespace") or "default", meta["name"], ip, dict(meta.get("labels") or {}), ports)


# --------------------------------------------------------------------------- names


def policy_base(key: str) -> str:
    """``np-<8 base32 of sha256(key)>-<ns>/<name>``: unique, readable, within nft's limits."""
    digest = base64.b32encode(hashlib.sha256(key.encode()).digest()[:5]).decode().lower()
    base = f"np-{digest}-{key}"
    return base if len(base) <= _NAME_MAX else base[: _NAME_MAX - 3] + "..."


def policy_chain(key: str, direction: str) -> str:
    return f"{policy_base(key)}-{direction}"


def pod_chain(ip: str, direction: str) -> str:
    return f"pod-{ip}-{direction}"


def _rule_sets(key: str, direction: str, i: int) -> tuple[str, str]:
    base = f"{policy_base(key)}-{direction[:2]}{i}"
    return f"{base}-peers", f"{base}-named"


# Hash sets only. nft 1.0.6 fetches every element of every *interval* set of the table before
# a transaction that adds an element (to merge ranges in userspace): with an interval set per
# policy, one new pod cost ~250 ms at 1,000 policies. ipBlocks and port ranges are written as
# plain comparisons in the rules instead, which depend on the spec alone anyway.
_SET_TYPES = {
    "peers": "type ipv4_addr ;",
    "named": "type ipv4_addr . inet_proto . inet_service ;",
}


def _block_match(addr: str, block: tuple[str, tuple[str, ...]]) -> str:
    """``ip saddr 10.0.0.0/8 ip saddr != 10.1.0.0/16``: the block, its excepts cut out."""
    cidr, excepts = block
    parts = [] if cidr == "0.0.0.0/0" else [f"{addr} {cidr}"]
    parts += [f"{addr} != {e}" for e in excepts]
    return " ".join(parts) or "meta nfproto ipv4"


def _port_match(port: Port) -> str:
    if port.first == 0 and port.last == 65535:
        return f"meta l4proto {port.protocol}"
    if port.first == port.last:
        return f"{port.protocol} dport {port.first}"
    return f"{port.protocol} dport {port.first}-{port.last}"


@dataclass
class PolicyObjects:
    """What one policy puts in the table, apart from pod-dependent set elements."""

    chains: dict[str, tuple[str, ...]]
    sets: dict[str, str]  # name -> declaration


def render_policy(policy: Policy) -> PolicyObjects:
    """The chains and sets of ``policy``; their rules depend on its spec only."""
    objs = PolicyObjects({}, {})
    for direction in DIRECTIONS:
        rules = policy.rules(direction)
        if rules is None:
            continue
        addr = "ip saddr" if direction == INGRESS else "ip daddr"
        lines: list[str] = []
        for i, rule in enumerate(rules):
            peers, named = _rule_sets(policy.key, direction, i)
            peer_matches = [""]
            if rule.peers is not None:
                peer_matches = []
                if any(p.selects_pods for p in rule.peers):
                    objs.sets[peers] = _SET_TYPES["peers"]
                    peer_matches.append(f"{addr} @{peers}")
                blocks = dict.fromkeys(p.block for p in rule.peers if p.block is not None)
                peer_matches += [_block_match(addr, b) for b in blocks]
            port_matches = [""]
            if rule.ports is not None:
                port_matches = list(dict.fromkeys(_port_match(p) for p in rule.ports if not p.name))
                if any(p.name for p in rule.ports):
                    objs.sets[named] = _SET_TYPES["named"]
                    port_matches.append(f"ip daddr . meta l4proto . th dport @{named}")
            lines += [" ".join(x for x in (pm, qm, "accept") if x) for pm in peer_matches for qm in port_matches]
        objs.chains[policy_chain(policy.key, direction)] = tuple(lines)
    return objs


def _selected(policy: Policy, pod: Pod) -> bool:
    return pod.namespace == policy.namespace and policy.pod_selector.matches(pod.labels)


def _peer_matches(peer: Peer, policy: Policy, pod: Pod, ns_labels: Mapping[str, str] | None) -> bool:
    if not peer.selects_pods:
        return False
    if peer.namespaces is None:
        if pod.namespace != policy.namespace:
            return False
    elif ns_labels is None or not peer.namespaces.matches(ns_labels):
        return False
    return peer.pods is None or peer.pods.matches(pod.labels)


def pod_elements(policy: Policy, pod: Pod, ns_labels: Mapping[str, str] | None) -> dict[str, set[str]]:
    """The set elements ``pod`` contributes to ``policy``'s sets."""
    out: dict[str, set[str]] = {}
    for direction in DIRECTIONS:
        for i, rule in enumerate(policy.rules(direction) or ()):
            peers, named = _rule_sets(policy.key, direction, i)
            if rule.peers is not None and any(_peer_matches(p, policy, pod, ns_labels) for p in rule.peers):
                out.setdefault(peers, set()).add(pod.ip)
            for port in rule.ports or ():
                if not port.name:
                    continue
                for name, proto, number in pod.ports:
                    if name == port.name and _L4.get(proto) == port.protocol:
                        out.setdefault(named, set()).add(f"{pod.ip} . {port.protocol} . {number}")
    return out


# --------------------------------------------------------------------------- desired state


@dataclass
class Objects:
    """Table contents besides the base: regular chains, sets and the elements of sets and maps."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)
    elements: dict[str, set[str]] = field(default_factory=dict)

    def copy_of(self, chains: Iterable[str], sets: Iterable[str]) -> Objects:
        """A copy of the named objects (what a partial sync records as written)."""
        out = Objects()
        for c in chains:
            if c in self.chains:
                out.chains[c] = self.chains[c]
        for s in sets:
            if s in self.sets:
                out.sets[s] = self.sets[s]
            if s in self.elements:
                out.elements[s] = set(self.elements[s])
        return out


class Compiler:
    """The desired table, kept up to date change by change, with what each change touched.

    A pod or namespace change costs one selector match per policy peer (not a recomputation of
    every policy); a policy change, one pass over the pods. ``dirty_chains``/``dirty_sets``
    name what :func:`transaction` must compare with what was written.
    """

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}  # by IP
        self.namespaces: dict[str, Mapping[str, str]] = {}
        self.policies: dict[str, Policy] = {}
        self._rendered: dict[str, PolicyObjects] = {}
        self._selecting: dict[str, dict[str, set[str]]] = {}  # ip -> direction -> policy keys
        self.desired = Objects(elements={INGRESS_PODS: set(), EGRESS_PODS: set()})
        self.dirty_chains: set[str] = set()
        self.dirty_sets: set[str] = set()

    # -- element bookkeeping

    def _add(self, name: str, elements: Iterable[str]) -> None:
        self.desired.elements.setdefault(name, set()).update(elements)
        self.dirty_sets.add(name)

    def _discard(self, name: str, elements: Iterable[str]) -> None:
        have = self.desired.elements.get(name)
        if have is not None:
            have.difference_update(elements)
        self.dirty_sets.add(name)

    def _apply_pod(self, pod: Pod, add: bool) -> None:
        """Add (or withdraw) what ``pod`` contributes to every policy's sets and its isolation."""
        ns_labels = self.namespaces.get(pod.namespace)
        for policy in self.policies.values():
            for name, elements in pod_elements(policy, pod, ns_labels).items():
                (self._add if add else self._discard)(name, elements)
            if _selected(policy, pod):
                for d in DIRECTIONS:
                    if policy.rules(d) is not None:
                        self._select(pod.ip, d, policy.key, add)

    def _select(self, ip: str, direction: str, key: str, add: bool) -> None:
        keys = self._selecting.setdefault(ip, {}).setdefault(direction, set())
        if add:
            keys.add(key)
        else:
            keys.discard(key)
        self._render_pod(ip, direction)

    def _render_pod(self, ip: str, direction: str) -> None:
        keys = self._selecting.get(ip, {}).get(direction) or set()
        chain = pod_chain(ip, direction)
        dispatch = INGRESS_PODS if direction == INGRESS else EGRESS_PODS
        element = f"{ip} : goto {chain}"
        if keys:
            self.desired.chains[chain] = (*(f"jump {policy_chain(k, direction)}" for k in sorted(keys)), "drop")
            self._add(dispatch, [element])
        else:
            self.desired.chains.pop(chain, None)
            self._discard(dispatch, [element])
        self.dirty_chains.add(chain)

    # -- changes

    def set_pod(self, ip: str, pod: Pod | None) -> None:
        """The pod now at ``ip`` (None: no pod there any more)."""
        old = self.pods.pop(ip, None)
        if old is not None:
            self._apply_pod(old, add=False)
        if pod is not None:
            self.pods[ip] = pod
            self._apply_pod(pod, add=True)

    def set_namespace(self, name: str, labels: Mapping[str, str] | None) -> None:
        if self.namespaces.get(name) == labels:
            return
        pods = [p for p in self.pods.values() if p.namespace == name]
        for p in pods:
            self._apply_pod(p, add=False)
        if labels is None:
            self.namespaces.pop(name, None)
        else:
            self.namespaces[name] = dict(labels)
        for p in pods:
            self._apply_pod(p, add=True)

    def set_policy(self, key: str, policy: Policy | None) -> None:
        old = self.policies.pop(key, None)
        if old == policy and old is not None:
            self.policies[key] = old
            return
        if old is not None:
            objs = self._rendered.pop(key)
            for c in objs.chains:
                self.desired.chains.pop(c, None)
                self.dirty_chains.add(c)
            for s in objs.sets:
                self.desired.sets.pop(s, None)
                self.desired.elements.pop(s, None)
                self.dirty_sets.add(s)
            for pod in self.pods.values():
                if _selected(old, pod):
                    for d in DIRECTIONS:
                        if old.rules(d) is not None:
                            self._select(pod.ip, d, key, add=False)
        if policy is None:
            return
        self.policies[key] = policy
        objs = render_policy(policy)
        self._rendered[key] = objs
        self.desired.chains.update(objs.chains)
        self.dirty_chains.update(objs.chains)
        for s, decl in objs.sets.items():
            self.desired.sets[s] = decl
            self.desired.elements[s] = set()
            self.dirty_sets.add(s)
        for pod in self.pods.values():
            for name, elements in pod_elements(policy, pod, self.namespaces.get(pod.namespace)).items():
                self._add(name, elements)
            if _selected(policy, pod):
                for d in DIRECTIONS:
                    if policy.rules(d) is not None:
                        self._select(pod.ip, d, key, add=True)

    def take_dirty(self) -> tuple[set[str], set[str]]:
        chains, sets = self.dirty_chains, self.dirty_sets
        self.dirty_chains, self.dirty_sets = set(), set()
        return chains, sets


# --------------------------------------------------------------------------- transactions


BASE = (
    f"add map {TABLE} {INGRESS_PODS} {{ type ipv4_addr : verdict ; "
    'comment "pods isolated for ingress -> their chain" ; }',
    f"add map {TABLE} {EGRESS_PODS} {{ type ipv4_addr : verdict ; "
    'comment "pods isolated for egress -> their chain" ; }',
    # After the proxy's DNAT (prerouting -100): policies judge the backend pod and its port.
    f"add chain {TABLE} forward-egress {{ type filter hook forward priority 0 ; policy accept ; }}",
    f"add rule {TABLE} forward-egress ct state established,related accept",
    f"add rule {TABLE} forward-egress ip saddr vmap @{EGRESS_PODS}",
    f"add chain {TABLE} forward-ingress {{ type filter hook forward priority 1 ; policy accept ; }}",
    f"add rule {TABLE} forward-ingress ct state established,related accept",
    f"add rule {TABLE} forward-ingress ip daddr vmap @{INGRESS_PODS}",
)
_BASE_SETS = (INGRESS_PODS, EGRESS_PODS)


def _key(element: str) -> str:
    """A map element is deleted by its key alone."""
    return element.split(" : ", 1)[0]


def _elements(verb: str, name: str, elements: Iterable[str]) -> list[str]:
    items = sorted(elements)
    return [f"{verb} element {TABLE} {name} {{ {', '.join(items)} }}"] if items else []


def full_transaction(desired: Objects) -> str:
    """Recreate the table with everything in ``desired``."""
    lines = [f"add table {TABLE}", f"delete table {TABLE}", f"add table {TABLE}", *BASE]
    for name, decl in sorted(desired.sets.items()):
        lines.append(f"add set {TABLE} {name} {{ {decl} }}")
    for name in sorted(desired.chains):
        lines.append(f"add chain {TABLE} {name}")
    for name, elements in sorted(desired.elements.items()):
        if name in desired.sets or name in _BASE_SETS:
            lines += _elements("add", name, elements)
    for name, rules in sorted(desired.chains.items()):
        lines += [f"add rule {TABLE} {name} {r}" for r in rules]
    return "\n".join(lines) + "\n"


def transaction(written: Objects, desired: Objects, chains: Iterable[str], sets: Iterable[str]) -> str:
    """The commands that turn ``written`` into ``desired`` for the named chains and sets.

    Order matters within the one transaction: new sets and chains exist before anything refers
    to them; elements change before the rules are rewritten; removed chains are flushed before
    any is deleted, and sets are deleted once no rule refers to them.
    """
    chains, sets = sorted(set(chains)), sorted(set(sets))
    lines: list[str] = []
    for s in sets:
        if s in desired.sets and s not in written.sets:
            lines.append(f"add set {TABLE} {s} {{ {desired.sets[s]} }}")
    for c in chains:
        if c in desired.chains and c not in written.chains:
            lines.append(f"add chain {TABLE} {c}")
    for s in sets:
        if s not in desired.sets and s not in _BASE_SETS:
            continue
        old = written.elements.get(s, set())
        new = desired.elements.get(s, set())
        lines += _elements("delete", s, {_key(e) for e in old - new})
        lines += _elements("add", s, new - old)
    for c in chains:
        rules = desired.chains.get(c)
        if rules is None or written.chains.get(c) == rules:
            continue
        if c in written.chains:
            lines.append(f"flush chain {TABLE} {c}")
        lines += [f"add rule {TABLE} {c} {r}" for r in rules]
    gone = [c for c in chains if c in written.chains and c not in desired.chains]
    lines += [f"flush chain {TABLE} {c}" for c in gone]
    lines += [f"delete chain {TABLE} {c}" for c in gone]
    lines += [f"delete set {TABLE} {s}" for s in sets if s in written.sets and s not in desired.sets]
    return "\n".join(lines) + "\n" if lines else ""


def record(written: Objects, desired: Objects, chains: Iterable[str], sets: Iterable[str]) -> None:
    """After a successful transaction: ``written`` holds the named objects as ``desired`` has them."""
    for c in chains:
        if c in desired.chains:
            written.chains[c] = desired.chains[c]
        else:
            written.chains.pop(c, None)
    for s in sets:
        if s in desired.sets:
            written.sets[s] = desired.sets[s]
        else:
            written.sets.pop(s, None)
        if s in desired.elements and (s in desired.sets or s in _BASE_SETS):
            written.elements[s] = set(desired.elements[s])
        else:
            written.elements.pop(s, None)


def snapshot(desired: Objects) -> Objects:
    """A deep copy: what a full transaction wrote."""
    return Objects(dict(desired.chains), dict(desired.sets), {k: set(v) for k, v in desired.elements.items()})
