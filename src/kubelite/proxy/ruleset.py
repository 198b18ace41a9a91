"""The Service datapath as nftables text: desired state in, one transaction out. Pure.

This is the rule-writing half of kube-proxy's nftables proxier (KEP-3866), kept free of
I/O so that every byte it writes can be unit-tested. The shapes and names are
kube-proxy's, so that ``nft list table ip kube-proxy`` reads the same on kubelite as on a
real node:

* dispatch is one lookup, ``ip daddr . meta l4proto . th dport vmap @service-ips``,
  whatever the number of Services (the reason nftables mode is flat where iptables mode
  walks a list);
* each service port has a chain ``service-<hash>-<ns>/<svc>/<proto>/<port>`` that picks
  an endpoint at random (after the ClientIP affinity checks); ports with ClientIP affinity
  or a NodePort send it on to a chain per endpoint, ``endpoint-<hash>-...__<ip>/<port>``,
  that marks hairpin traffic for masquerade, records affinity and DNATs; plain ClusterIP
  ports (the many) DNAT in the service chain itself (see below);
* ports without usable endpoints are entries of ``no-endpoint-services``, which jumps to
  ``reject-chain`` from the filter hooks, so clients are refused at once (TCP with a reset,
  see ``reject-chain``); other ports of a ClusterIP are rejected and unallocated addresses
  of the service CIDR dropped (``cluster-ips-check``).

The table is built from :class:`Fragment`\\ s, one per Service. A full sync writes them
all after recreating the table; a partial sync diffs the old and new fragments of the
Services that changed and writes only the differences. Chains that fall out of use are
flushed at once but deleted by a later transaction: before Linux 6.2 the kernel
notices only a moment after a commit that a verdict-map element no longer points at a
chain, and deleting the chain in the same transaction fails (kube-proxy does the same).

One deliberate difference from kube-proxy: the random pick. kube-proxy writes
``numgen random mod N vmap { 0 : goto endpoint-A, 1 : goto endpoint-B, ... }``, and every
such inline map is an anonymous set in the kernel, whose name (``__map%d``) the kernel
allocates by scanning every set of the table: quadratic. Measured on Linux 6.18 with
nft 1.0.6, a full sync of 10,000 Services x 2 endpoints took 36-59 s that way, against 2 s
without the maps. So a service chain picks with the iptables-mode cascade instead:
``numgen random mod N == 0 goto endpoint-1``, ``numgen random mod N-1 == 0 goto
endpoint-2``, ..., ``goto endpoint-N`` (uniform: each endpoint has probability 1/N), which
costs nothing at programming time and O(endpoints) only on a connection's first packet;
dispatch to the service chain stays one map lookup.

A second difference, for programming latency at scale: no endpoint chains for plain
ClusterIP ports. nft 1.0.6 lists every chain of the table before each transaction that
adds a rule or an element (``NFT_MSG_GETCHAIN``; only ``add chain``/``flush chain`` skip
it), the kernel's chain dump restarts its walk from the first chain at every batch
(quadratic), and the commit validates every chain reachable from the base chains. With an
endpoint chain per endpoint, 10,000 Services x 2 endpoints are 30,000 chains and a one-
Service partial sync took 150-330 ms on a loaded 2-core machine; with the DNAT inline,
10,000 chains and 35-45 ms, side by side (a full sync: 2.5-4.3 s against 1.1-1.7 s). The
service chain then reads ``numgen random mod 2 == 0 meta l4proto tcp dnat to A``, ``meta
l4proto tcp dnat to B``. Hairpin traffic (a pod reaching itself through its Service) is
marked for masquerade in ``masquerading`` instead, by one lookup after DNAT in
``hairpin-connections``, keyed ``ip saddr . ip daddr . ct original ip daddr``: an element
``<pod> . <pod> . <ClusterIP>`` per endpoint of each such port, so a Service's elements are
its own (the ClusterIP is in the key) and a partial sync adds and deletes them like any
other. Affinity (a set per endpoint, checked and refreshed around the DNAT) and NodePorts
(whose hairpin does not go through the ClusterIP) keep kube-proxy's endpoint chains.

Per-endpoint packet/byte counters live in one dynamic set, ``endpoint-stats``, keyed
``ct original ip daddr . meta l4proto . ip daddr . th dport`` (ClusterIP, protocol,
endpoint address and port) and updated after DNAT, so they count every packet from
clients to each endpoint of each ClusterIP, not only the first one the nat chains see.
The kernel adds the entries itself: no per-endpoint object to write or delete on a sync
(named counters made every partial sync twice as slow at 10,000 Services, because nft
fetches all objects before each transaction). Entries idle for an hour expire. NodePort
traffic is not counted.

IPv4 only: the pod network is IPv4-only, so there is no ``ip6 kube-proxy`` table yet.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TABLE = "ip kube-proxy"
# kube-proxy's default --masquerade-bit 14.
MASQUERADE_MARK = "0x00004000"

# Chains, sets and maps of the table, named as kube-proxy names them.
SERVICES = "services"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
CLUSTER_IPS = "cluster-ips"
HAIRPIN_CONNECTIONS = "hairpin-connections"
ENDPOINT_STATS = "endpoint-stats"
REJECT_CHAIN = "reject-chain"
MARK_FOR_MASQUERADE = "mark-for-masquerade"
MASQUERADING = "masquerading"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
CLUSTER_IPS_CHECK = "cluster-ips-check"

SERVICE_CHAIN_PREFIX = "service-"
LOCAL_CHAIN_PREFIX = "local-"
EXTERNAL_CHAIN_PREFIX = "external-"
ENDPOINT_CHAIN_PREFIX = "endpoint-"
AFFINITY_SET_PREFIX = "affinity-"

# nftables names are at most 256 bytes; leave room for the longest prefix, as kube-proxy.
_NAME_BASE_MAX = 256 - 16

# Base chains: (name, type, hook, priority). Filtering sees pre-DNAT addresses (dstnat - 10),
# except the post-DNAT output check and the counters; numbers because nft 1.0.6 only
# accepts the priority keyword "dstnat" on nat chains.
_BASE_CHAINS = (
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)

_COUNT = (
    "ct status dnat ct direction original "
    f"update @{ENDPOINT_STATS} {{ ct original ip daddr . meta l4proto . ip daddr . th dport }}"
)

# Regular chains of the base ruleset and their rules (service-cidr drop added per node).
_BASE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("filter-input", (
        f"ct state new jump {NODEPORT_ENDPOINTS_CHECK}",
        f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",
        _COUNT,
    )),
    ("filter-forward", (
        f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",
        f"ct state new jump {CLUSTER_IPS_CHECK}",
        _COUNT,
    )),
    ("filter-output", (f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",)),
    ("filter-output-post-dnat", (f"ct state new jump {CLUSTER_IPS_CHECK}", _COUNT)),
    ("nat-prerouting", (f"jump {SERVICES}",)),
    ("nat-output", (f"jump {SERVICES}",)),
    ("nat-postrouting", (f"jump {MASQUERADING}",)),
    (SERVICES, (
        f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
        f"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS}",
    )),
    (MARK_FOR_MASQUERADE, (f"meta mark set meta mark | {MASQUERADE_MARK}",)),
    (MASQUERADING, (
        f"ip saddr . ip daddr . ct original ip daddr @{HAIRPIN_CONNECTIONS} jump {MARK_FOR_MASQUERADE}",
        f"meta mark & {MASQUERADE_MARK} == 0 return",
        f"meta mark set meta mark ^ {MASQUERADE_MARK}",
        "masquerade fully-random",
    )),
    # TCP is refused with a reset rather than kube-proxy's ICMP port-unreachable: the kernel
    # rate-limits ICMP errors per destination (about one a second after a burst of six), so
    # a client retrying a Service without endpoints would mostly see its SYNs vanish and wait
    # a second per retransmission instead of being refused at once.
    (REJECT_CHAIN, ("meta l4proto tcp reject with tcp reset", "reject")),
    (SERVICE_ENDPOINTS_CHECK, (f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}",)),
    (NODEPORT_ENDPOINTS_CHECK, (
        f"ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}",
    )),
    (CLUSTER_IPS_CHECK, (f"ip daddr @{CLUSTER_IPS} goto {REJECT_CHAIN}",)),
)

_BASE_CONTAINERS = (
    f'set {CLUSTER_IPS} {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
    f"set {HAIRPIN_CONNECTIONS} {{ type ipv4_addr . ipv4_addr . ipv4_addr ; "
    'comment "pod . pod . ClusterIP: a pod reaching itself through a Service, to masquerade" ; }',
    f"map {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
    'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
    f'map {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }}',
    f"map {NO_ENDPOINT_SERVICES} {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
    'comment "vmap to drop or reject packets to services with no endpoints" ; }',
    f"map {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict ; "
    'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
    f"set {ENDPOINT_STATS} {{ type ipv4_addr . inet_proto . ipv4_addr . inet_service ; "
    "flags dynamic,timeout ; timeout 1h ; size 65535 ; counter ; "
    'comment "packets and bytes from clients to each endpoint of each ClusterIP" ; }',
)


# --------------------------------------------------------------------------- desired state


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    local: bool = True  # on this proxy's node


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, with its endpoints, as the datapath needs it."""

    namespace: str
    service: str
    name: str  # the port's name; "" for the single unnamed port
    protocol: str  # TCP, UDP or SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    affinity_seconds: int = 0  # ClientIP affinity timeout; 0 without affinity
    internal_local: bool = False  # internalTrafficPolicy: Local
    external_local: bool = False  # externalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @property
    def chain_base(self) -> str:
        return f"{self.namespace}/{self.service}/{self.proto}/{self.name}"


@dataclass(frozen=True)
class Fragment:
    """Everything one Service puts into the table."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # chain -> rules
    sets: Mapping[str, str] = field(default_factory=dict)  # affinity set -> its spec
    elements: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (set/map, key) -> value


EMPTY = Fragment()


def hashed_name(prefix: str, name: str) -> str:
    """``<prefix><8 base32 of sha256(name)>-<name>``, truncated as kube-proxy truncates."""
    # Base32 turns each 5 bytes into 8 characters on their own: encoding only the first 5
    # gives the same 8 as kube-proxy's encode-then-truncate, at a fraction of the cost
    # (Python 3.11's b32encode is pure Python; a full sync names ~30,000 chains and sets).
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode()
    base = f"{digest}-{name}"
    if len(base) > _NAME_BASE_MAX:
        base = base[: _NAME_BASE_MAX - 3] + "..."
    return prefix + base


def endpoint_name(sp: ServicePort, ep: Endpoint) -> str:
    return f"{sp.chain_base}__{ep.ip}/{ep.port}"


@dataclass(frozen=True)
class EndpointUse:
    """Which endpoints a service port sends to (kube-proxy's CategorizeEndpoints, no topology)."""

    uses_cluster: bool  # a chain over all usable endpoints is needed
    uses_local: bool  # a chain over this node's usable endpoints is needed
    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]  # union of the two: the endpoints that get a chain
    has_any: bool  # some endpoint anywhere can serve


def endpoints_in_use(sp: ServicePort) -> EndpointUse:
    """Ready endpoints are used; when none is ready, serving-and-terminating ones are, so a
    Service keeps answering through the last moments of a rolling update."""
    externally_accessible = sp.node_port != 0
    # With externalTrafficPolicy Local the cluster endpoints are still needed: traffic from
    # the node itself short-circuits to them.
    uses_cluster = not sp.internal_local or externally_accessible
    uses_local = sp.internal_local or (externally_accessible and sp.external_local)
    eps = sp.endpoints
    cluster: tuple[Endpoint, ...] = ()
    has_any = False
    if uses_cluster:
        cluster = tuple(e for e in eps if e.ready) or tuple(e for e in eps if e.serving and e.terminating)
        has_any = bool(cluster)
    local: tuple[Endpoint, ...] = ()
    if uses_local:
        local = tuple(e for e in eps if e.local and e.ready) or tuple(
            e for e in eps if e.local and e.serving and e.terminating
        )
        has_any = has_any or any(e.ready or (e.serving and e.terminating) for e in eps)
    reachable = cluster + tuple(e for e in local if e not in cluster)
    return EndpointUse(uses_cluster, uses_local, cluster, local, reachable, has_any)


def render_service(ports: Iterable[ServicePort]) -> Fragment:
    """The chains, affinity sets and map elements of one Service."""
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, str] = {}
    elements: dict[tuple[str, str], str] = {}
    for sp in ports:
        _render_port(sp, chains, sets, elements)
    return Fragment(chains, sets, elements)


def _render_port(
    sp: ServicePort,
    chains: dict[str, tuple[str, ...]],
    sets: dict[str, str],
    elements: dict[tuple[str, str], str],
) -> None:
    proto = sp.proto
    externally_accessible = sp.node_port != 0
    use = endpoints_in_use(sp)
    # Only the names this port uses (hashing is most of the rendering time).
    cluster_chain = hashed_name(SERVICE_CHAIN_PREFIX, sp.chain_base)
    local_chain = hashed_name(LOCAL_CHAIN_PREFIX, sp.chain_base) if use.uses_local else ""
    external_chain = hashed_name(EXTERNAL_CHAIN_PREFIX, sp.chain_base) if externally_accessible else ""
    has_any, local_eps, reachable = use.has_any, use.local, use.reachable
    has_internal = has_any and (not sp.internal_local or bool(local_eps))
    has_external = has_any and (not sp.external_local or bool(local_eps))
    # No endpoint at all: refuse. Endpoints, but none local for a Local policy: drop, as
    # kube-proxy does (the client would be refused by a node that cannot serve it).
    no_endpoint_verdict = f"goto {REJECT_CHAIN}" if not has_any else "drop"

    # Endpoint chains only where a rule must run around the DNAT (see the module docstring).
    inline = not sp.affinity_seconds and not externally_accessible
    ep_chain = {} if inline else {
        ep: hashed_name(ENDPOINT_CHAIN_PREFIX, endpoint_name(sp, ep)) for ep in reachable}
    affinity = {ep: hashed_name(AFFINITY_SET_PREFIX, endpoint_name(sp, ep))
                for ep in reachable} if sp.affinity_seconds else {}

    service_key = f"{sp.cluster_ip} . {proto} . {sp.port}"
    elements[(CLUSTER_IPS, sp.cluster_ip)] = ""
    if has_internal:
        elements[(SERVICE_IPS, service_key)] = f"goto {local_chain if sp.internal_local else cluster_chain}"
    else:
        elements[(NO_ENDPOINT_SERVICES, service_key)] = no_endpoint_verdict
    if externally_accessible:
        nodeport_key = f"{proto} . {sp.node_port}"
        if has_any:
            elements[(SERVICE_NODEPORTS, nodeport_key)] = f"goto {external_chain}"
        if not has_external:
            elements[(NO_ENDPOINT_NODEPORTS, nodeport_key)] = no_endpoint_verdict

    def to(ep: Endpoint) -> str:
        return f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}" if inline else f"goto {ep_chain[ep]}"

    def policy_chain(eps: tuple[Endpoint, ...]) -> tuple[str, ...]:
        rules = []
        if sp.affinity_seconds:
            rules += [f"ip saddr @{affinity[ep]} goto {ep_chain[ep]}" for ep in eps]
        # Endpoint i of n is taken with probability 1/(n-i) once the ones before it were not.
        rules += [f"numgen random mod {len(eps) - i} == 0 {to(ep)}" for i, ep in enumerate(eps[:-1])]
        rules.append(to(eps[-1]))
        return tuple(rules)

    if use.uses_cluster and use.cluster:
        chains[cluster_chain] = policy_chain(use.cluster)
    if use.uses_local and local_eps:
        chains[local_chain] = policy_chain(local_eps)
    if externally_accessible and has_any:
        rules: list[str] = []
        if not sp.external_local:
            # Cluster policy may send the client to another node: masquerade, as kube-proxy.
            rules.append(f"jump {MARK_FOR_MASQUERADE}")
        else:
            rules += [
                f"fib saddr type local jump {MARK_FOR_MASQUERADE}",
                f"fib saddr type local goto {cluster_chain}",
            ]
        if has_external:
            rules.append(f"goto {local_chain if sp.external_local else cluster_chain}")
        chains[external_chain] = tuple(rules)

    if inline:
        for ep in reachable:
            elements[(HAIRPIN_CONNECTIONS, f"{ep.ip} . {ep.ip} . {sp.cluster_ip}")] = ""
        return
    for ep in reachable:
        name = ep_chain[ep]
        rules = [f"ip saddr {ep.ip} jump {MARK_FOR_MASQUERADE}"]  # hairpin: a pod reaching itself
        if sp.affinity_seconds:
            sets[affinity[ep]] = (
                f"type ipv4_addr ; flags dynamic,timeout ; timeout {sp.affinity_seconds}s ;"
            )
            rules.append(f"update @{affinity[ep]} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
        chains[name] = tuple(rules)


# --------------------------------------------------------------------------- transactions


def _add_elements(items: Iterable[tuple[tuple[str, str], str]]) -> list[str]:
    """One ``add element`` command per set/map (one per element would multiply parse time)."""
    grouped: dict[str, list[str]] = {}
    for (container, key), value in items:
        grouped.setdefault(container, []).append(f"{key} : {value}" if value else key)
    return [f"add element {TABLE} {c} {{ {', '.join(entries)} }}" for c, entries in sorted(grouped.items())]


def _delete_elements(keys: Iterable[tuple[str, str]]) -> list[str]:
    grouped: dict[str, list[str]] = {}
    for container, key in keys:
        grouped.setdefault(container, []).append(key)
    return [f"delete element {TABLE} {c} {{ {', '.join(entries)} }}" for c, entries in sorted(grouped.items())]


def base_commands(service_cidrs: Iterable[str]) -> list[str]:
    """The table's fixed part: hooks, dispatch, masquerading, reject/drop checks."""
    out = [f'add table {TABLE} {{ comment "rules for kube-proxy" ; }}']
    for name, kind, hook, priority in _BASE_CHAINS:
        out.append(f"add chain {TABLE} {name} {{ type {kind} hook {hook} priority {priority} ; policy accept ; }}")
    for spec in _BASE_CONTAINERS:
        kind, rest = spec.split(" ", 1)
        out.append(f"add {kind} {TABLE} {rest}")
    base_chain_names = {name for name, *_ in _BASE_CHAINS}
    for chain, _rules in _BASE_RULES:
        if chain not in base_chain_names:
            out.append(f"add chain {TABLE} {chain}")
    for chain, rules in _BASE_RULES:
        out += [f"add rule {TABLE} {chain} {rule}" for rule in rules]
    cidrs = ", ".join(service_cidrs)
    if cidrs:
        out.append(f"add rule {TABLE} {CLUSTER_IPS_CHECK} ip daddr {{ {cidrs} }} drop")
    return out


def full_transaction(service_cidrs: Iterable[str], fragments: Iterable[Fragment]) -> str:
    """Recreate the table from nothing (start-up, after a failure); one atomic commit.

    Deleting the table does not touch conntrack: established connections keep their NAT.
    """
    frags = list(fragments)
    out = [f"add table {TABLE}", f"delete table {TABLE}", *base_commands(service_cidrs)]
    for f in frags:
        out += [f"add chain {TABLE} {c}" for c in f.chains]
        out += [f"add set {TABLE} {s} {{ {spec} }}" for s, spec in f.sets.items()]
    for f in frags:
        for chain, rules in f.chains.items():
            out += [f"add rule {TABLE} {chain} {rule}" for rule in rules]
    out += _add_elements(item for f in frags for item in f.elements.items())
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Transaction:
    text: str  # empty when nothing changed
    stale_chains: frozenset[str]  # flushed, to delete in a later transaction


def partial_transaction(changes: Iterable[tuple[Fragment, Fragment]]) -> Transaction:
    """Only the differences between the old and new fragments of the Services that changed.

    Order matters inside the transaction: new chains and sets exist before rules use them;
    chains are flushed before the sets they reference are deleted; elements are deleted
    before any are added, so an address moving between Services in one sync is fine.
    """
    new_chains: list[str] = []
    flush: list[str] = []
    rewrite: dict[str, tuple[str, ...]] = {}
    add_sets: dict[str, str] = {}
    delete_sets: list[str] = []
    del_elements: list[tuple[str, str]] = []
    add_elements: list[tuple[tuple[str, str], str]] = []
    stale_chains: set[str] = set()
    for old, new in changes:
        changed_sets = {s for s in old.sets.keys() & new.sets.keys() if old.sets[s] != new.sets[s]}
        for s in old.sets.keys() - new.sets.keys() | changed_sets:
            delete_sets.append(s)
        for s in new.sets.keys() - old.sets.keys() | changed_sets:
            add_sets[s] = new.sets[s]
        for chain, rules in new.chains.items():
            before = old.chains.get(chain)
            if before is None:
                new_chains.append(chain)
                rewrite[chain] = rules
            elif before != rules or changed_sets:
                # A set is only deleted once nothing refers to it: rewrite its users too.
                flush.append(chain)
                rewrite[chain] = rules
        for chain in old.chains.keys() - new.chains.keys():
            flush.append(chain)
            stale_chains.add(chain)
        for key, value in old.elements.items():
            if new.elements.get(key) != value:
                del_elements.append(key)
        for key, value in new.elements.items():
            if old.elements.get(key) != value:
                add_elements.append((key, value))
    out = [f"add chain {TABLE} {c}" for c in new_chains]
    out += [f"flush chain {TABLE} {c}" for c in sorted(flush)]
    out += _delete_elements(del_elements)
    out += [f"delete set {TABLE} {s}" for s in sorted(delete_sets)]
    out += [f"add set {TABLE} {s} {{ {spec} }}" for s, spec in sorted(add_sets.items())]
    for chain, rules in rewrite.items():
        out += [f"add rule {TABLE} {chain} {rule}" for rule in rules]
    out += _add_elements(add_elements)
    return Transaction("\n".join(out) + "\n" if out else "", frozenset(stale_chains))


def cleanup_transaction(chains: Iterable[str]) -> str:
    """Delete chains that earlier transactions left unreferenced."""
    return "".join(f"delete chain {TABLE} {c}\n" for c in sorted(chains))


def delete_table() -> str:
    """Remove everything the proxy made (``kubelite down``, ``kubelite proxy --cleanup``)."""
    return f"add table {TABLE}\ndelete table {TABLE}\n"
