"""The Kubernetes DNS specification's records, from the resolver alone (no sockets)."""

from __future__ import annotations

from typing import Any

import dns.name
import pytest

from kubelite.dns.records import (
    AAAA,
    CNAME,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Answer,
    ClusterState,
    Resolver,
    reverse_ip,
)
from kubelite.dns.wire import NOERROR, NXDOMAIN

Obj = dict[str, Any]


def svc(ns: str, name: str, **spec: Any) -> Obj:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def eps(ns: str, name: str, service: str, endpoints: list[Obj], ports: list[Obj] | None = None,
        address_type: str = "IPv4") -> Obj:
    return {"metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": address_type, "endpoints": endpoints, "ports": ports}


def ep(ip: str, ready: bool | None = True, hostname: str | None = None) -> Obj:
    out: Obj = {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    for ns in ("default", "prod"):
        s.set_namespace({"metadata": {"name": ns}})
    s.set_service(svc("default", "kubernetes", clusterIP="10.96.0.1", clusterIPs=["10.96.0.1"],
                      ports=[{"name": "https", "port": 443, "protocol": "TCP"}]))
    s.set_service(svc("prod", "web", clusterIP="10.96.0.20", clusterIPs=["10.96.0.20", "fd00::20"],
                      ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                             {"name": "dns", "port": 53, "protocol": "UDP"},
                             {"port": 9000, "protocol": "TCP"}]))
    s.set_service(svc("prod", "db", clusterIP="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    s.set_slice(eps("prod", "db-abc", "db", [ep("10.244.0.5", hostname="db-0"), ep("10.244.0.6", ready=None),
                                             ep("10.244.0.7", ready=False)],
                    [{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    return s


def lb(name: str) -> list[str]:
    return name.lower().rstrip(".").split(".")


def q(r: Resolver, name: str, qtype: int) -> Answer:
    return r.resolve(lb(name), qtype)


def texts(rrs: list[Any]) -> list[str]:
    return [f"{owner} {ttl} {rd.to_text()}" for owner, ttl, rd in rrs]


def rdata(ans: Answer) -> list[str]:
    return [rd.to_text() for _, _, rd in ans.answer]


def assert_soa(ans: Answer, zone: str = "cluster.local") -> None:
    assert len(ans.authority) == 1
    owner, _, rd = ans.authority[0]
    soa: Any = rd
    assert owner == dns.name.from_text(zone) and soa.rdtype == SOA
    assert str(soa.mname) == f"ns.dns.{zone}." and str(soa.rname) == f"hostmaster.{zone}."
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (7200, 1800, 86400, 5)


def test_cluster_ip_service_a_record(state: ClusterState) -> None:
    r = Resolver(state)
    ans = q(r, "kubernetes.default.svc.cluster.local", A)
    assert ans.rcode == NOERROR
    assert texts(ans.answer) == ["kubernetes.default.svc.cluster.local. 5 10.96.0.1"]
    assert not ans.authority and ans.chase is None


def test_dual_stack_aaaa_and_nodata(state: ClusterState) -> None:
    r = Resolver(state)
    assert rdata(q(r, "web.prod.svc.cluster.local", AAAA)) == ["fd00::20"]
    assert rdata(q(r, "web.prod.svc.cluster.local", A)) == ["10.96.0.20"]
    nodata = q(r, "kubernetes.default.svc.cluster.local", AAAA)
    assert nodata.rcode == NOERROR and nodata.answer == []
    assert_soa(nodata)


@pytest.mark.parametrize("name, rcode", [
    ("missing.default.svc.cluster.local", NXDOMAIN),      # no such Service
    ("web.nowhere.svc.cluster.local", NXDOMAIN),          # no such namespace
    ("prod.svc.cluster.local", NOERROR),                  # a namespace exists as a name
    ("nowhere.svc.cluster.local", NXDOMAIN),
    ("svc.cluster.local", NOERROR),
    ("pod.cluster.local", NOERROR),
    ("cluster.local", NOERROR),
    ("foo.cluster.local", NXDOMAIN),                      # neither svc nor pod
    ("a.b.c.web.prod.svc.cluster.local", NXDOMAIN),       # too many labels
    ("x.kubernetes.default.svc.cluster.local", NXDOMAIN),  # no endpoint of that name
])
def test_nxdomain_versus_nodata(state: ClusterState, name: str, rcode: int) -> None:
    ans = q(Resolver(state), name, A)
    assert ans.rcode == rcode and ans.answer == []
    assert_soa(ans)


def test_any_type_of_a_missing_name_is_nxdomain(state: ClusterState) -> None:
    r = Resolver(state)
    for qtype in (TXT, SRV, CNAME, PTR, 15):
        assert q(r, "missing.default.svc.cluster.local", qtype).rcode == NXDOMAIN
        assert q(r, "kubernetes.default.svc.cluster.local", qtype if qtype != SRV else TXT).rcode == NOERROR


def test_headless_answers_ready_endpoints_only(state: ClusterState) -> None:
    r = Resolver(state)
    # ready=None is "unknown", read as ready; ready=False is left out.
    assert sorted(rdata(q(r, "db.prod.svc.cluster.local", A))) == ["10.244.0.5", "10.244.0.6"]
    assert rdata(q(r, "db-0.db.prod.svc.cluster.local", A)) == ["10.244.0.5"]
    # An endpoint without hostname is named by its dashed address (CoreDNS).
    assert rdata(q(r, "10-244-0-6.db.prod.svc.cluster.local", A)) == ["10.244.0.6"]
    assert q(r, "10-244-0-7.db.prod.svc.cluster.local", A).rcode == NXDOMAIN


def test_headless_without_ready_endpoints_is_nxdomain(state: ClusterState) -> None:
    state.set_slice(eps("prod", "db-abc", "db", [ep("10.244.0.5", ready=False)]))
    assert q(Resolver(state), "db.prod.svc.cluster.local", A).rcode == NXDOMAIN
    state.delete_slice(eps("prod", "db-abc", "db", []))
    assert q(Resolver(state), "db.prod.svc.cluster.local", A).rcode == NXDOMAIN


def test_srv_for_named_ports(state: ClusterState) -> None:
    r = Resolver(state)
    ans = q(r, "_https._tcp.kubernetes.default.svc.cluster.local", SRV)
    assert texts(ans.answer) == ["_https._tcp.kubernetes.default.svc.cluster.local. 5 0 100 443 "
                                 "kubernetes.default.svc.cluster.local."]
    assert texts(ans.additional) == ["kubernetes.default.svc.cluster.local. 5 10.96.0.1"]
    # Dual stack: CoreDNS counts one item per address, so the weights split even though one SRV remains.
    assert rdata(q(r, "_dns._udp.web.prod.svc.cluster.local", SRV)) == ["0 50 53 web.prod.svc.cluster.local."]
    # Wrong protocol, or a port name that does not exist: the name does not exist.
    assert q(r, "_dns._tcp.web.prod.svc.cluster.local", SRV).rcode == NXDOMAIN
    assert q(r, "_nope._tcp.web.prod.svc.cluster.local", SRV).rcode == NXDOMAIN
    # A/AAAA of a port name are the service's addresses (CoreDNS).
    assert rdata(q(r, "_http._tcp.web.prod.svc.cluster.local", A)) == ["10.96.0.20"]


def test_srv_of_the_service_name_lists_every_port(state: ClusterState) -> None:
    ans = q(Resolver(state), "web.prod.svc.cluster.local", SRV)
    ports = sorted(int(t.split()[2]) for t in rdata(ans))
    assert ports == [53, 80, 9000]
    # Two addresses (dual stack) for one target: one SRV per port, both addresses as additional records.
    assert sorted(rd.to_text() for _, _, rd in ans.additional) == ["10.96.0.20", "fd00::20"]


def test_srv_per_endpoint_for_headless(state: ClusterState) -> None:
    ans = q(Resolver(state), "_pg._tcp.db.prod.svc.cluster.local", SRV)
    assert sorted(rdata(ans)) == ["0 50 5432 10-244-0-6.db.prod.svc.cluster.local.",
                                  "0 50 5432 db-0.db.prod.svc.cluster.local."]
    assert sorted(texts(ans.additional)) == ["10-244-0-6.db.prod.svc.cluster.local. 5 10.244.0.6",
                                             "db-0.db.prod.svc.cluster.local. 5 10.244.0.5"]


def test_ptr_for_cluster_ips_and_endpoints(state: ClusterState) -> None:
    r = Resolver(state)
    ans = r.reverse(lb("1.0.96.10.in-addr.arpa"), PTR)
    assert ans is not None and texts(ans.answer) == ["1.0.96.10.in-addr.arpa. 5 kubernetes.default.svc.cluster.local."]
    ans = r.reverse(lb("5.0.244.10.in-addr.arpa"), PTR)
    assert ans is not None and rdata(ans) == ["db-0.db.prod.svc.cluster.local."]
    v6 = ".".join(reversed("fd000000000000000000000000000020")) + ".ip6.arpa"
    ans = r.reverse(v6.split("."), PTR)
    assert ans is not None and rdata(ans) == ["web.prod.svc.cluster.local."]
    # Unknown addresses, partial names and other types fall through to the upstream resolvers.
    assert r.reverse(lb("9.9.9.9.in-addr.arpa"), PTR) is None
    assert r.reverse(lb("7.0.244.10.in-addr.arpa"), PTR) is None  # not ready
    assert r.reverse(lb("0.96.10.in-addr.arpa"), PTR) is None
    assert r.reverse(lb("1.0.96.10.in-addr.arpa"), A) is None


def test_reverse_ip_parsing() -> None:
    assert reverse_ip(lb("4.3.2.1.in-addr.arpa")) == "1.2.3.4"
    assert reverse_ip(lb("300.3.2.1.in-addr.arpa")) is None
    assert reverse_ip(["1", "ip6", "arpa"]) is None
    assert reverse_ip([*("0" * 31 + "1")[::-1], "ip6", "arpa"]) == "::1"


def test_external_name(state: ClusterState) -> None:
    state.set_service(svc("prod", "ext", type="ExternalName", externalName="www.example.com"))
    r = Resolver(state)
    ans = q(r, "ext.prod.svc.cluster.local", A)
    assert texts(ans.answer) == ["ext.prod.svc.cluster.local. 5 www.example.com."]
    assert ans.answer[0][2].rdtype == CNAME and ans.chase == dns.name.from_text("www.example.com")
    assert rdata(q(r, "ext.prod.svc.cluster.local", CNAME)) == ["www.example.com."]
    assert q(r, "ext.prod.svc.cluster.local", SRV).answer == []
    # Updated: the next answer follows.
    state.set_service(svc("prod", "ext", type="ExternalName", externalName="other.example.org"))
    assert rdata(q(Resolver(state), "ext.prod.svc.cluster.local", CNAME)) == ["other.example.org."]


def test_external_name_inside_the_zone_is_followed_here(state: ClusterState) -> None:
    state.set_service(svc("prod", "alias", type="ExternalName", externalName="kubernetes.default.svc.cluster.local"))
    state.set_service(svc("prod", "loop", type="ExternalName", externalName="loop.prod.svc.cluster.local"))
    r = Resolver(state)
    ans = q(r, "alias.prod.svc.cluster.local", A)
    assert rdata(ans) == ["kubernetes.default.svc.cluster.local.", "10.96.0.1"] and ans.chase is None
    loop = q(r, "loop.prod.svc.cluster.local", A)
    assert loop.rcode == NOERROR and loop.answer == []


def test_pod_records(state: ClusterState) -> None:
    r = Resolver(state)
    assert rdata(q(r, "10-244-0-9.prod.pod.cluster.local", A)) == ["10.244.0.9"]
    assert q(r, "10-244-0-9.nowhere.pod.cluster.local", A).rcode == NXDOMAIN
    assert q(r, "not-an-ip.prod.pod.cluster.local", A).rcode == NXDOMAIN
    assert rdata(q(r, "fd00--1.prod.pod.cluster.local", AAAA)) == ["fd00::1"]
    verified = Resolver(state, pods="verified")
    assert q(verified, "10-244-0-9.prod.pod.cluster.local", A).rcode == NXDOMAIN
    pod = {"metadata": {"namespace": "prod", "name": "p"}, "status": {"podIP": "10.244.0.9",
                                                                       "podIPs": [{"ip": "10.244.0.9"}]}}
    state.set_pod(pod)
    assert rdata(q(verified, "10-244-0-9.prod.pod.cluster.local", A)) == ["10.244.0.9"]
    assert q(verified, "10-244-0-9.default.pod.cluster.local", A).rcode == NXDOMAIN
    state.delete_pod(pod)
    assert q(verified, "10-244-0-9.prod.pod.cluster.local", A).rcode == NXDOMAIN
    assert q(Resolver(state, pods="disabled"), "10-244-0-9.prod.pod.cluster.local", A).rcode == NXDOMAIN


def test_schema_version_soa_and_ns(state: ClusterState) -> None:
    state.set_namespace({"metadata": {"name": "kube-system"}})
    state.set_service(svc("kube-system", "kube-dns", clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"],
                          ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]))
    r = Resolver(state)
    assert texts(q(r, "dns-version.cluster.local", TXT).answer) == ['dns-version.cluster.local. 28800 "1.0.1"']
    assert q(r, "dns-version.cluster.local", A).rcode == NOERROR
    soa = q(r, "cluster.local", SOA)
    assert soa.answer[0][2].rdtype == SOA
    ns = q(r, "cluster.local", NS)
    assert rdata(ns) == ["ns.dns.cluster.local."] and texts(ns.additional) == ["ns.dns.cluster.local. 5 10.96.0.10"]
    assert rdata(q(r, "ns.dns.cluster.local", A)) == ["10.96.0.10"]


def test_custom_zone_and_ttl(state: ClusterState) -> None:
    r = Resolver(state, "Corp.Example", ttl=30)
    assert r.in_zone(lb("kubernetes.default.svc.corp.example"))
    assert not r.in_zone(lb("kubernetes.default.svc.cluster.local"))
    assert texts(q(r, "kubernetes.default.svc.corp.example", A).answer) == [
        "kubernetes.default.svc.corp.example. 30 10.96.0.1"]


def test_changes_bump_generation_and_notify(state: ClusterState) -> None:
    seen: list[int] = []
    state.listeners.append(lambda: seen.append(state.generation))
    before = state.generation
    state.set_service(svc("default", "kubernetes", clusterIP="10.96.0.1", clusterIPs=["10.96.0.1"],
                          ports=[{"name": "https", "port": 443, "protocol": "TCP"}]))
    assert state.generation == before and not seen  # unchanged object: nothing to invalidate
    state.delete_service(svc("default", "kubernetes"))
    assert seen == [before + 1]
    r = Resolver(state)
    assert q(r, "kubernetes.default.svc.cluster.local", A).rcode == NXDOMAIN
    assert r.reverse(lb("1.0.96.10.in-addr.arpa"), PTR) is None


def test_slices_merge_dedupe_and_ignore_foreign_ones(state: ClusterState) -> None:
    state.set_slice(eps("prod", "db-def", "db", [ep("10.244.0.5", hostname="db-0"), ep("10.244.0.8")],
                        [{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    state.set_slice(eps("prod", "db-fqdn", "db", [ep("db.example.com")], address_type="FQDN"))
    unlabeled = eps("prod", "stray", "db", [ep("10.244.0.99")])
    del unlabeled["metadata"]["labels"]
    state.set_slice(unlabeled)
    assert sorted(rdata(q(Resolver(state), "db.prod.svc.cluster.local", A))) == [
        "10.244.0.5", "10.244.0.6", "10.244.0.8"]


def test_service_without_ports_still_has_addresses_but_no_srv(state: ClusterState) -> None:
    state.set_service(svc("prod", "bare", clusterIP="None"))
    state.set_slice(eps("prod", "bare-1", "bare", [ep("10.244.1.1")]))
    r = Resolver(state)
    assert rdata(q(r, "bare.prod.svc.cluster.local", A)) == ["10.244.1.1"]
    srv = q(r, "bare.prod.svc.cluster.local", SRV)
    assert srv.rcode == NOERROR and srv.answer == []
