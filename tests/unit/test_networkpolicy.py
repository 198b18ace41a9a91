"""NetworkPolicy: validation messages and defaults, and the nftables the enforcement writes (pure)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from kubelite.api.defaults import apply_defaults
from kubelite.api.validation import validate
from kubelite.client import Client
from kubelite.networkpolicy import controller
from kubelite.networkpolicy.ruleset import (
    EGRESS_PODS,
    INGRESS_PODS,
    Compiler,
    Objects,
    Pod,
    compile_policy,
    full_transaction,
    ip_block,
    policy_base,
    record,
    snapshot,
    transaction,
)

Obj = dict[str, Any]


def netpol(spec: Obj, name: str = "p", ns: str = "default") -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def messages(obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in validate("networking.k8s.io", "NetworkPolicy", obj, old)]


# --------------------------------------------------------------------------- API


def test_valid_policy_has_no_errors() -> None:
    assert messages(netpol({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"a": "b"}}, "namespaceSelector": {}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
        "ports": [{"port": "http"}, {"port": 80, "endPort": 90, "protocol": "UDP"}, {"protocol": "SCTP"}]}]})) == []


@pytest.mark.parametrize(("spec", "expected"), [
    ({"ingress": [{"ports": [{"port": 0}]}]},
     ["spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
     ["spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`"]),
    ({"egress": [{"ports": [{"port": "http", "endPort": 80}]}]},
     ["spec.egress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is non-numeric"]),
    ({"egress": [{"ports": [{"endPort": 80}]}]},
     ["spec.egress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is not specified"]),
    ({"ingress": [{"ports": [{"port": "http_1"}]}]},
     ['spec.ingress[0].ports[0].port: Invalid value: "http_1": must contain only alpha-numeric characters '
      "(a-z, 0-9), and hyphens (-)"]),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
     ['spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"']),
    ({"ingress": [{"from": [{}]}]}, ["spec.ingress[0].from[0]: Required value: must specify a peer"]),
    ({"ingress": [{"from": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
     ["spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"]),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
     ['spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
      "(e.g. 10.9.8.0/24 or 2001:db8::/64)"]),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16", "10.1.0.0/24"]}}]}]},
     ['spec.egress[0].to[0].ipBlock.except[0]: Invalid value: "10.0.0.0/16": must be a strict subset of `cidr`',
      'spec.egress[0].to[0].ipBlock.except[1]: Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`']),
    ({"egress": [{"to": [{"ipBlock": {}}]}]}, ["spec.egress[0].to[0].ipBlock.cidr: Required value"]),
    ({"policyTypes": ["Ingress", "Sideways"]},
     ['spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"']),
])
def test_invalid_policies_get_kubernetes_messages(spec: Obj, expected: list[str]) -> None:
    assert messages(netpol({"podSelector": {}, **spec})) == expected


def test_an_update_keeps_cidrs_it_already_had() -> None:
    old = netpol({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "010.0.0.0/8"}}]}]})
    old["metadata"]["resourceVersion"] = "1"
    new = netpol({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "010.0.0.0/8"}}]}], "ingress": [{}]})
    new["metadata"]["resourceVersion"] = "1"
    assert messages(new, old) == []


def test_defaults_policy_types_and_protocol() -> None:
    p = netpol({"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]})
    apply_defaults("networking.k8s.io", "NetworkPolicy", p)
    assert p["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert p["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    q = netpol({"podSelector": {}})
    apply_defaults("networking.k8s.io", "NetworkPolicy", q)
    assert q["spec"]["policyTypes"] == ["Ingress"]


# --------------------------------------------------------------------------- the ruleset


SERVER = Pod("default", "server", "10.244.0.5", {"app": "server"}, (("http", "TCP", 8080),))
CLIENT = Pod("default", "client", "10.244.0.6", {"app": "client"})
REMOTE = Pod("team", "remote", "10.244.0.7", {"app": "client"})


def cluster(*policies: Obj) -> Compiler:
    c = Compiler()
    c.set_namespace("default", {"kubernetes.io/metadata.name": "default"})
    c.set_namespace("team", {"team": "blue"})
    for pod in (SERVER, CLIENT, REMOTE):
        c.set_pod(pod.ip, pod)
    for p in policies:
        policy = compile_policy(p)
        c.set_policy(policy.key, policy)
    return c


def sets(c: Compiler, key: str = "default/p") -> dict[str, set[str]]:
    """The elements of one policy's sets, by their suffix (``in0-peers``...)."""
    base = policy_base(key) + "-"
    return {name.removeprefix(base): els for name, els in c.desired.elements.items() if name.startswith(base)}


def test_no_policy_isolates_nothing() -> None:
    c = cluster()
    assert c.desired.chains == {} and c.desired.elements == {INGRESS_PODS: set(), EGRESS_PODS: set()}


def test_default_deny_ingress_isolates_the_selected_pods_only() -> None:
    c = cluster(netpol({"podSelector": {"matchLabels": {"app": "server"}}}))
    assert c.desired.elements[INGRESS_PODS] == {"10.244.0.5 : goto pod-10.244.0.5-ingress"}
    assert c.desired.elements[EGRESS_PODS] == set()
    chain = policy_base("default/p") + "-ingress"
    assert c.desired.chains == {chain: (), "pod-10.244.0.5-ingress": (f"jump {chain}", "drop")}


def test_peers_ports_named_ports_and_ip_blocks() -> None:
    c = cluster(netpol({"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{
        "from": [{"podSelector": {"matchLabels": {"app": "client"}}},
                 {"ipBlock": {"cidr": "192.168.0.1/24", "except": ["192.168.0.128/25"]}}],
        "ports": [{"port": "http"}, {"port": 80, "endPort": 90}, {"port": 85}, {"protocol": "UDP"}]}]}))
    assert sets(c) == {
        "in0-peers": {"10.244.0.6"},  # a podSelector alone: the policy's own namespace only
        "in0-named": {"10.244.0.5 . tcp . 8080"},
    }
    base = policy_base("default/p")
    peers = f"ip saddr @{base}-in0-peers"
    block = "ip saddr 192.168.0.0/24 ip saddr != 192.168.0.128/25"
    named = f"ip daddr . meta l4proto . th dport @{base}-in0-named"
    assert c.desired.chains[base + "-ingress"] == tuple(
        f"{p} {q} accept" for p in (peers, block)
        for q in ("tcp dport 80-90", "tcp dport 85", "meta l4proto udp", named))


def test_namespace_selector_alone_and_combined() -> None:
    c = cluster(netpol({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]},
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "server"}}}]},
    ]}))
    assert sets(c) == {"eg0-peers": {"10.244.0.7"}, "eg1-peers": {"10.244.0.5"}}
    assert c.desired.elements[INGRESS_PODS] == set()  # Egress only
    assert len(c.desired.elements[EGRESS_PODS]) == 2  # both pods of default
    c.set_namespace("team", {"team": "red"})
    assert sets(c)["eg0-peers"] == set()


def test_policies_are_additive() -> None:
    c = cluster(netpol({"podSelector": {}}, "a"), netpol({"podSelector": {"matchLabels": {"app": "server"}}}, "b"))
    assert c.desired.chains["pod-10.244.0.5-ingress"] == (
        f"jump {policy_base('default/a')}-ingress", f"jump {policy_base('default/b')}-ingress", "drop")
    assert c.desired.chains["pod-10.244.0.6-ingress"] == (f"jump {policy_base('default/a')}-ingress", "drop")


def test_ip_blocks_normalized_and_ipv6_selecting_nothing() -> None:
    assert ip_block("10.0.0.1/8", ["10.2.0.0/16", "10.1.0.0/16"]) == ("10.0.0.0/8", ("10.1.0.0/16", "10.2.0.0/16"))
    assert ip_block("2001:db8::/64") is None
    c = cluster(netpol({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                                               "except": ["10.0.0.0/8"]}}]}]}))
    assert c.desired.chains[policy_base("default/p") + "-ingress"] == ("ip saddr != 10.0.0.0/8 accept",)


def written_after(c: Compiler) -> Objects:
    w = snapshot(c.desired)
    c.take_dirty()
    return w


def partial(c: Compiler, w: Objects) -> str:
    chains, sets_ = c.take_dirty()
    text = transaction(w, c.desired, chains, sets_)
    record(w, c.desired, chains, sets_)
    return text


def test_a_new_pod_changes_elements_only() -> None:
    c = cluster(netpol({"podSelector": {"matchLabels": {"app": "server"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}))
    w = written_after(c)
    c.set_pod("10.244.0.9", Pod("default", "c2", "10.244.0.9", {"app": "client"}))
    assert partial(c, w) == (f"add element inet kubelite-netpol {policy_base('default/p')}-in0-peers "
                             "{ 10.244.0.9 }\n")
    c.set_pod("10.244.0.9", None)
    assert partial(c, w) == (f"delete element inet kubelite-netpol {policy_base('default/p')}-in0-peers "
                             "{ 10.244.0.9 }\n")
    assert partial(c, w) == ""


def test_one_policy_change_among_many_writes_that_policy_only() -> None:
    c = cluster(*(netpol({"podSelector": {"matchLabels": {"app": f"x{i}"}}, "ingress": [{}]}, f"p{i}")
                  for i in range(1000)))
    w = written_after(c)
    p = compile_policy(netpol({"podSelector": {"matchLabels": {"app": "server"}},
                               "ingress": [{"ports": [{"port": 80}]}]}, "p7"))
    c.set_policy(p.key, p)
    base = policy_base("default/p7")
    assert partial(c, w).splitlines() == [
        "add chain inet kubelite-netpol pod-10.244.0.5-ingress",
        "add element inet kubelite-netpol ingress-pods { 10.244.0.5 : goto pod-10.244.0.5-ingress }",
        f"flush chain inet kubelite-netpol {base}-ingress",
        f"add rule inet kubelite-netpol {base}-ingress tcp dport 80 accept",
        f"add rule inet kubelite-netpol pod-10.244.0.5-ingress jump {base}-ingress",
        "add rule inet kubelite-netpol pod-10.244.0.5-ingress drop",
    ]
    c.set_policy(p.key, None)
    assert partial(c, w).splitlines() == [
        "delete element inet kubelite-netpol ingress-pods { 10.244.0.5 }",
        f"flush chain inet kubelite-netpol {base}-ingress",
        "flush chain inet kubelite-netpol pod-10.244.0.5-ingress",
        f"delete chain inet kubelite-netpol {base}-ingress",
        "delete chain inet kubelite-netpol pod-10.244.0.5-ingress",
    ]


def test_incremental_changes_reach_what_a_fresh_compile_gives() -> None:
    specs = [
        netpol({"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}, "podSelector": {}}],
             "ports": [{"port": "http"}]}]}, "a"),
        netpol({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]}, "b"),
    ]
    c = cluster(*specs)
    c.set_pod(SERVER.ip, Pod("default", "server", SERVER.ip, {"app": "gone"}))
    c.set_namespace("team", {"team": "red"})
    c.set_pod(SERVER.ip, SERVER)
    c.set_namespace("team", {"team": "blue"})
    c.set_policy("default/a", None)
    a = compile_policy(specs[0])
    c.set_policy(a.key, a)
    fresh = cluster(*specs)
    assert full_transaction(c.desired) == full_transaction(fresh.desired)


# --------------------------------------------------------------------------- the controller's syncs


class FakeNFT:
    """Stands in for libnftables: records transactions; ``gate`` holds one until released."""

    def __init__(self, netns_path: str) -> None:
        self.texts: list[str] = []
        self.gate: asyncio.Event | None = None

    async def run(self, text: str, *, json: bool = False) -> str:
        self.texts.append(text)
        if self.gate is not None:
            await self.gate.wait()
        return ""

    def close(self) -> None:
        pass


async def test_a_change_made_while_nft_runs_is_written_by_the_next_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller, "NFTables", FakeNFT)
    ctl = controller.NetworkPolicyController(cast(Client, None), netns_path="/nonexistent")
    nft = cast(FakeNFT, ctl.nft)
    await ctl.sync()  # the first, full sync
    policy = netpol({"podSelector": {}}, "p")
    ctl._on_policy("ADDED", policy, None)
    nft.gate = asyncio.Event()
    first = asyncio.create_task(ctl.sync())
    await asyncio.sleep(0)
    assert f"add chain inet kubelite-netpol {policy_base('default/p')}-ingress" in nft.texts[-1]
    ctl._on_policy("DELETED", policy, None)  # while the creation is being written
    nft.gate.set()
    await first
    await ctl.sync()
    assert nft.texts[-1] == f"flush chain inet kubelite-netpol {policy_base('default/p')}-ingress\n" \
                            f"delete chain inet kubelite-netpol {policy_base('default/p')}-ingress\n"
