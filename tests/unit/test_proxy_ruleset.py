"""The proxy's pure parts: API objects -> desired state -> nftables text, and partial-sync diffs.

The diffs are checked by executing them: :class:`Table` is a small model of an nftables
table that applies our commands with nft's own rules (a chain must exist before a rule
goes into it, a set referenced by a rule cannot be deleted, a chain cannot be deleted
while anything points at it, an element cannot be added twice with different values...).
A history of partial syncs must leave exactly the table a single full sync writes.
"""

from __future__ import annotations

import random
import re
from typing import Any, cast

import pytest

from kubelite.api.types import EndpointSlice, Service
from kubelite.proxy.conntrack import stale_udp_filters
from kubelite.proxy.proxier import service_ports
from kubelite.proxy.ruleset import (
    CLUSTER_IPS,
    EMPTY,
    HAIRPIN_CONNECTIONS,
    NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    Endpoint,
    Fragment,
    ServicePort,
    cleanup_transaction,
    endpoints_in_use,
    full_transaction,
    hashed_name,
    partial_transaction,
    render_service,
)

CIDRS = ["10.96.0.0/12"]
PREFIX = "ip kube-proxy "


# --------------------------------------------------------------------------- a model of nft


class NftError(Exception):
    pass


class Table:
    """Applies ``nft -f`` commands of the shapes ``ruleset`` writes, checking nft's rules."""

    def __init__(self) -> None:
        self.exists = False
        self.chains: dict[str, list[str]] = {}
        self.sets: dict[str, str] = {}
        self.elements: dict[str, dict[str, str]] = {}

    def apply(self, text: str) -> None:
        # A transaction is atomic: work on a copy, keep it only if every command passed.
        trial = Table()
        trial.exists = self.exists
        trial.chains = {k: list(v) for k, v in self.chains.items()}
        trial.sets = dict(self.sets)
        trial.elements = {k: dict(v) for k, v in self.elements.items()}
        for line in text.splitlines():
            trial._command(line)
        self.__dict__.update(trial.__dict__)

    def _refs(self) -> tuple[set[str], set[str]]:
        texts = [r for rules in self.chains.values() for r in rules]
        texts += [v for elems in self.elements.values() for v in elems.values()]
        chains = {m for t in texts for m in re.findall(r"(?:goto|jump) (\S+?)(?:,|$| )", t + " ")}
        sets = {m for t in texts for m in re.findall(r"@(\S+)", t)}
        return chains, sets

    def _command(self, line: str) -> None:
        verb, kind, rest = line.split(" ", 2)
        if kind == "table":
            if verb == "add":
                self.exists = True
            else:
                if not self.exists:
                    raise NftError("no such table")
                self.__init__()  # type: ignore[misc]
            return
        if not self.exists:
            raise NftError(f"no table for {line}")
        assert rest.startswith(PREFIX), line
        name, _, body = rest[len(PREFIX):].partition(" ")
        if kind == "chain":
            if verb == "add":
                self.chains.setdefault(name, [])
            elif name not in self.chains:
                raise NftError(f"no chain {name}")
            elif verb == "flush":
                self.chains[name] = []
            else:  # delete
                if self.chains[name] or name in self._refs()[0]:
                    raise NftError(f"chain {name} is busy")
                del self.chains[name]
        elif kind == "rule":
            if name not in self.chains:
                raise NftError(f"rule for missing chain {name}")
            self.chains[name].append(body)
            chains, sets = self._refs()
            if missing := (chains - set(self.chains)) | (sets - set(self.sets) - set(self.elements)):
                raise NftError(f"rule refers to missing {missing}")
        elif (kind == "set" and name in ("cluster-ips", "endpoint-stats", "hairpin-connections")) or kind == "map":
            self.elements.setdefault(name, {})
        elif kind == "set":
            if verb == "add":
                if name in self.sets and self.sets[name] != body:
                    raise NftError(f"set {name} exists with other properties")
                self.sets[name] = body
            else:
                if name not in self.sets or name in self._refs()[1]:
                    raise NftError(f"cannot delete set {name}")
                del self.sets[name]
        elif kind == "element":
            elems = self.elements[name]
            for entry in body.strip("{} ").split(", "):
                key, _, value = entry.partition(" : ")
                if verb == "add":
                    if elems.get(key, value) != value:
                        raise NftError(f"element {key} exists in {name}")
                    if target := re.match(r"goto (\S+)$", value):
                        if target.group(1) not in self.chains:
                            raise NftError(f"element refers to missing chain {target.group(1)}")
                    elems[key] = value
                elif elems.pop(key, None) is None:
                    raise NftError(f"no element {key} in {name}")
        else:
            raise AssertionError(f"unexpected command {line}")

    def state(self) -> tuple[Any, ...]:
        return self.chains, self.sets, self.elements


# --------------------------------------------------------------------------- names


def test_names_are_kube_proxys() -> None:
    # The examples in kube-proxy's own source (pkg/proxy/nftables/proxier.go).
    assert hashed_name("service-", "ns1/svc1/tcp/p80") == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert hashed_name("endpoint-", "ns1/svc1/tcp/p80__10.180.0.1/80") == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    long = hashed_name("service-", "n" * 63 + "/" + "s" * 63 + "/tcp/" + "p" * 63 + "x" * 100)
    assert len(long) == len("service-") + 240 - 3 + 3 and long.endswith("...")


# --------------------------------------------------------------------------- rendering


def port(*eps: Endpoint, **kw: Any) -> ServicePort:
    base: dict[str, Any] = {"namespace": "ns", "service": "web", "name": "http", "protocol": "TCP",
                            "cluster_ip": "10.96.0.10", "port": 80, "endpoints": eps}
    return ServicePort(**{**base, **kw})


A = Endpoint("10.244.0.2", 8080)
B = Endpoint("10.244.0.3", 8080)
C = Endpoint("10.244.0.4", 8080, local=False)
SVC = hashed_name("service-", "ns/web/tcp/http")


def ep_chain(ep: Endpoint, base: str = "ns/web/tcp/http") -> str:
    return hashed_name("endpoint-", f"{base}__{ep.ip}/{ep.port}")


def test_a_service_picks_uniformly_among_ready_endpoints_and_dnats() -> None:
    f = render_service([port(A, B, C)])
    assert f.elements == {
        (CLUSTER_IPS, "10.96.0.10"): "",
        (SERVICE_IPS, "10.96.0.10 . tcp . 80"): f"goto {SVC}",
        # Hairpin (a pod reaching itself through the Service) is masqueraded after DNAT.
        (HAIRPIN_CONNECTIONS, "10.244.0.2 . 10.244.0.2 . 10.96.0.10"): "",
        (HAIRPIN_CONNECTIONS, "10.244.0.3 . 10.244.0.3 . 10.96.0.10"): "",
        (HAIRPIN_CONNECTIONS, "10.244.0.4 . 10.244.0.4 . 10.96.0.10"): "",
    }
    # A plain ClusterIP port DNATs in its service chain: no chain per endpoint.
    assert f.chains == {SVC: (
        "numgen random mod 3 == 0 meta l4proto tcp dnat to 10.244.0.2:8080",
        "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.0.3:8080",
        "meta l4proto tcp dnat to 10.244.0.4:8080",
    )}
    assert f.sets == {}


def test_affinity_and_nodeports_keep_an_endpoint_chain_that_marks_hairpin_and_dnats() -> None:
    for f in (render_service([port(A, B, affinity_seconds=30)]), render_service([port(A, B, node_port=30080)])):
        assert f.chains[ep_chain(A)][0] == "ip saddr 10.244.0.2 jump mark-for-masquerade"  # hairpin only
        assert f.chains[ep_chain(A)][-1] == "meta l4proto tcp dnat to 10.244.0.2:8080"
        assert f.chains[SVC][-1] == f"goto {ep_chain(B)}"
        assert not [key for key in f.elements if key[0] == HAIRPIN_CONNECTIONS]


def test_no_usable_endpoint_rejects_and_writes_no_chain() -> None:
    unready = Endpoint("10.244.0.5", 8080, ready=False, serving=False)
    f = render_service([port(unready)])
    assert f.chains == {}
    assert f.elements == {(CLUSTER_IPS, "10.96.0.10"): "",
                          (NO_ENDPOINT_SERVICES, "10.96.0.10 . tcp . 80"): "goto reject-chain"}


def test_serving_terminating_endpoints_are_the_fallback_only() -> None:
    leaving = Endpoint("10.244.0.5", 8080, ready=False, serving=True, terminating=True)
    assert endpoints_in_use(port(A, leaving)).reachable == (A,)
    assert endpoints_in_use(port(leaving)).reachable == (leaving,)
    assert endpoints_in_use(port(Endpoint("10.244.0.6", 1, ready=False, serving=False, terminating=True))).has_any is False


def test_internal_traffic_policy_local() -> None:
    local = hashed_name("local-", "ns/web/tcp/http")
    f = render_service([port(A, C, internal_local=True)])
    assert f.elements[(SERVICE_IPS, "10.96.0.10 . tcp . 80")] == f"goto {local}"
    assert f.chains[local] == ("meta l4proto tcp dnat to 10.244.0.2:8080",)
    assert set(f.chains) == {local}
    # Endpoints elsewhere only: dropped, not refused.
    f = render_service([port(C, internal_local=True)])
    assert f.chains == {}
    assert f.elements[(NO_ENDPOINT_SERVICES, "10.96.0.10 . tcp . 80")] == "drop"


def test_client_ip_affinity_uses_a_timed_set_per_endpoint() -> None:
    f = render_service([port(A, B, affinity_seconds=30)])
    aff_a = hashed_name("affinity-", "ns/web/tcp/http__10.244.0.2/8080")
    assert f.sets[aff_a] == "type ipv4_addr ; flags dynamic,timeout ; timeout 30s ;"
    assert f.chains[SVC][0] == f"ip saddr @{aff_a} goto {ep_chain(A)}"
    assert f.chains[SVC][2:] == (f"numgen random mod 2 == 0 goto {ep_chain(A)}", f"goto {ep_chain(B)}")
    assert f.chains[ep_chain(A)][1] == f"update @{aff_a} {{ ip saddr }}"


def test_nodeports_masquerade_unless_local() -> None:
    ext = hashed_name("external-", "ns/web/tcp/http")
    f = render_service([port(A, node_port=30080)])
    assert f.elements[(SERVICE_NODEPORTS, "tcp . 30080")] == f"goto {ext}"
    assert f.chains[ext] == ("jump mark-for-masquerade", f"goto {SVC}")
    local = hashed_name("local-", "ns/web/tcp/http")
    f = render_service([port(A, C, node_port=30080, external_local=True)])
    assert f.chains[ext] == ("fib saddr type local jump mark-for-masquerade",
                             f"fib saddr type local goto {SVC}", f"goto {local}")
    f = render_service([port(C, node_port=30080, external_local=True)])
    assert f.elements[(NO_ENDPOINT_NODEPORTS, "tcp . 30080")] == "drop"
    assert f.elements[(SERVICE_IPS, "10.96.0.10 . tcp . 80")] == f"goto {SVC}"  # ClusterIP still works


def test_full_transaction_is_accepted_by_the_model_and_holds_everything() -> None:
    t = Table()
    t.apply(full_transaction(CIDRS, [render_service([port(A, B)])]))
    assert t.chains["services"] == ["ip daddr . meta l4proto . th dport vmap @service-ips",
                                    "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
                                    "vmap @service-nodeports"]
    assert t.chains["cluster-ips-check"] == ["ip daddr @cluster-ips goto reject-chain", "ip daddr { 10.96.0.0/12 } drop"]
    assert t.chains["reject-chain"] == ["meta l4proto tcp reject with tcp reset", "reject"]
    assert t.elements[SERVICE_IPS] == {"10.96.0.10 . tcp . 80": f"goto {SVC}"}
    assert t.chains["masquerading"][0] == ("ip saddr . ip daddr . ct original ip daddr @hairpin-connections "
                                           "jump mark-for-masquerade")
    assert set(t.elements[HAIRPIN_CONNECTIONS]) == {"10.244.0.2 . 10.244.0.2 . 10.96.0.10",
                                                     "10.244.0.3 . 10.244.0.3 . 10.96.0.10"}
    t.apply(full_transaction(CIDRS, []))  # again, from an existing table: starts over
    assert t.elements[SERVICE_IPS] == {} and SVC not in t.chains


# --------------------------------------------------------------------------- partial == full


def random_service(rng: random.Random, i: int) -> list[ServicePort]:
    pool = [Endpoint(f"10.244.0.{n}", 8080, ready=rng.random() > 0.2, serving=rng.random() > 0.3,
                     terminating=rng.random() > 0.7, local=rng.random() > 0.3) for n in range(2, 8)]
    eps = tuple(sorted(rng.sample(pool, rng.randint(0, 4))))
    ports = [("http", "TCP", 80)] + ([("dns", "UDP", 53)] if rng.random() > 0.5 else [])
    affinity = rng.choice([0, 0, 30, 60])
    node_ports = rng.random() > 0.6
    return [ServicePort("ns", f"s{i}", name, proto, f"10.96.1.{i}", num, node_port=30000 + i * 2 + j if node_ports else 0,
                        affinity_seconds=affinity, internal_local=rng.random() > 0.7,
                        external_local=node_ports and rng.random() > 0.5, endpoints=eps)
            for j, (name, proto, num) in enumerate(ports)]


@pytest.mark.parametrize("seed", range(20))
def test_partial_sync_histories_end_where_a_full_sync_starts(seed: int) -> None:
    rng = random.Random(seed)
    desired: dict[str, Fragment] = {f"s{i}": render_service(random_service(rng, i)) for i in range(6)}
    table = Table()
    table.apply(full_transaction(CIDRS, desired.values()))
    stale: set[str] = set()
    for _ in range(15):
        changes = {}
        for key in rng.sample([*sorted(desired), "s6", "s7"], rng.randint(1, 3)):
            i = int(key[1:])
            new = EMPTY if rng.random() < 0.2 else render_service(random_service(rng, i))
            changes[key] = (desired.get(key, EMPTY), new)
        tx = partial_transaction(changes.values())
        table.apply(tx.text)
        for key, (_, new) in changes.items():
            desired[key] = new
        stale = (stale | tx.stale_chains) - {c for f in desired.values() for c in f.chains}
        if rng.random() < 0.3:  # the proxy deletes stale chains a second later, in its own transaction
            table.apply(cleanup_transaction(stale))
            stale = set()
    table.apply(cleanup_transaction(stale))
    fresh = Table()
    fresh.apply(full_transaction(CIDRS, [f for f in desired.values() if f is not EMPTY]))
    assert table.state() == fresh.state()


def test_a_partial_sync_touches_only_what_changed() -> None:
    before = render_service([port(A, B, node_port=30080)])
    after = render_service([port(A, B, C, node_port=30080)])
    tx = partial_transaction([(before, after)])
    lines = tx.text.splitlines()
    assert f"add chain ip kube-proxy {ep_chain(C)}" in lines
    assert f"flush chain ip kube-proxy {SVC}" in lines
    assert not [line for line in lines if ep_chain(A) in line and "goto" not in line]  # A's chain untouched
    assert not [line for line in lines if "element" in line]  # the dispatch entry did not change
    assert partial_transaction([(after, after)]).text == ""

    tx = partial_transaction([(after, EMPTY)])
    assert tx.stale_chains == {SVC, hashed_name("external-", "ns/web/tcp/http"), ep_chain(A), ep_chain(B), ep_chain(C)}
    assert "delete element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 }" in tx.text.splitlines()
    assert "delete chain" not in tx.text  # only later: see ruleset's docstring

    # Inline DNAT: one chain flushed and rewritten, one hairpin element added.
    tx = partial_transaction([(render_service([port(A, B)]), render_service([port(A, B, C)]))])
    assert tx.text.splitlines() == [
        f"flush chain ip kube-proxy {SVC}",
        f"add rule ip kube-proxy {SVC} numgen random mod 3 == 0 meta l4proto tcp dnat to 10.244.0.2:8080",
        f"add rule ip kube-proxy {SVC} numgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.0.3:8080",
        f"add rule ip kube-proxy {SVC} meta l4proto tcp dnat to 10.244.0.4:8080",
        "add element ip kube-proxy hairpin-connections { 10.244.0.4 . 10.244.0.4 . 10.96.0.10 }",
    ]


def test_changing_the_affinity_timeout_replaces_the_sets_and_rewrites_their_users() -> None:
    table = Table()
    table.apply(full_transaction(CIDRS, [render_service([port(A, affinity_seconds=30)])]))
    tx = partial_transaction([(render_service([port(A, affinity_seconds=30)]),
                               render_service([port(A, affinity_seconds=60)]))])
    table.apply(tx.text)
    aff_a = hashed_name("affinity-", "ns/web/tcp/http__10.244.0.2/8080")
    assert "timeout 60s ;" in table.sets[aff_a]
    tx = partial_transaction([(render_service([port(A, affinity_seconds=60)]), render_service([port(A)]))])
    table.apply(tx.text)
    assert table.sets == {}


# --------------------------------------------------------------------------- API objects


def svc(**spec: Any) -> Service:
    return cast(Service, {"metadata": {"namespace": "ns", "name": "web"},
                          "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "ClusterIP",
                                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}})


def labelled(labels: dict[str, str]) -> Service:
    s = svc()
    s["metadata"]["labels"] = labels
    return s


def slice_(name: str, ports: list[dict[str, Any]], *endpoints: dict[str, Any], family: str = "IPv4") -> EndpointSlice:
    return cast(EndpointSlice, {"metadata": {"namespace": "ns", "name": name, "labels": {"kubernetes.io/service-name": "web"}},
                                "addressType": family, "ports": ports, "endpoints": list(endpoints)})


def ep(ip: str, node: str = "n1", **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "nodeName": node, "conditions": conditions}


def test_service_ports_from_a_service_and_its_slices() -> None:
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    slices = [
        slice_("web-b", http, ep("10.244.0.3", ready=False, serving=True, terminating=True)),
        slice_("web-a", http, ep("10.244.0.10", node="n2"), ep("10.244.0.3", ready=True)),
        slice_("web-c", [{"name": "other", "port": 9, "protocol": "TCP"}], ep("10.244.0.9")),
        slice_("web-6", http, {"addresses": ["fd00::1"]}, family="IPv6"),
    ]
    [sp] = service_ports(svc(), slices, "n1")
    # Sorted by address, the same address from two slices once (the ready one), other
    # ports' and families' slices ignored, locality from nodeName.
    assert sp.endpoints == (Endpoint("10.244.0.3", 8080, True, True, False, True),
                            Endpoint("10.244.0.10", 8080, True, True, False, False))
    assert (sp.cluster_ip, sp.port, sp.protocol, sp.name, sp.node_port) == ("10.96.0.10", 80, "TCP", "http", 0)


def test_absent_conditions_mean_ready_and_serving() -> None:
    [sp] = service_ports(svc(), [slice_("s", [{"name": "http", "port": 1}], {"addresses": ["10.244.0.2"]})], "n1")
    assert sp.endpoints == (Endpoint("10.244.0.2", 1, ready=True, serving=True, terminating=False, local=False),)


def test_service_settings_reach_the_service_ports() -> None:
    [sp] = service_ports(svc(type="NodePort", sessionAffinity="ClientIP", internalTrafficPolicy="Local",
                             externalTrafficPolicy="Local",
                             ports=[{"name": "", "port": 53, "protocol": "UDP", "nodePort": 30053}]), [], "n1")
    assert (sp.node_port, sp.affinity_seconds, sp.internal_local, sp.external_local, sp.protocol) == (
        30053, 10800, True, True, "UDP")
    [sp] = service_ports(svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}},
                             ports=[{"port": 80, "nodePort": 30080}]), [], "n1")
    assert (sp.affinity_seconds, sp.node_port, sp.protocol, sp.name) == (5, 0, "TCP", "")


@pytest.mark.parametrize("service", [
    svc(type="ExternalName", externalName="example.com", clusterIP=None, clusterIPs=None),
    svc(clusterIP="None", clusterIPs=["None"]),
    labelled({"service.kubernetes.io/headless": ""}),
    labelled({"service.kubernetes.io/service-proxy-name": "other"}),
    svc(clusterIP="fd00::10", clusterIPs=["fd00::10"]),
])
def test_services_the_proxy_leaves_alone(service: Service) -> None:
    assert service_ports(service, [], "n1") == []


# --------------------------------------------------------------------------- conntrack


def test_stale_udp_flows_to_removed_endpoints_and_to_services_that_came_alive() -> None:
    udp = port(A, B, protocol="UDP", port=53, node_port=30053)
    assert stale_udp_filters([udp], [port(A, protocol="UDP", port=53, node_port=30053)]) == [
        ("-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.0.3"),
        ("-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "10.244.0.3"),
    ]
    assert stale_udp_filters([port(protocol="UDP", port=53)], [port(A, protocol="UDP", port=53)]) == [
        ("-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"),
    ]
    assert stale_udp_filters([port(A, B)], [port(A)]) == []  # TCP needs nothing
    assert stale_udp_filters([udp], [udp]) == []
