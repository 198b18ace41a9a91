"""Cluster DNS as a process against a real ``kubelite up``: objects made through the API, answers over UDP and TCP.

``python -m kubelite.dns`` runs on loopback with the cluster's kubeconfig (as it would in
its pod with the in-cluster credentials), forwarding outside names to a fake resolver the
test runs on 127.0.0.1. No node agent runs here, so the tests play the kubelet for pods:
a Node, pods bound to it, pod status written through ``pods/<name>/status``; the
EndpointSlice controller of ``kubelite up`` does the rest.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kubelite.client import NAMESPACES, NODES, PODS, SERVICES, Client
from kubelite.dns import manifests
from tests.integration.cluster import Cluster, free_port
from tests.unit.test_dns_server import FakeUpstream

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
HOST = "127.0.0.1"
ZONE = "cluster.local"


class DNSProcess:
    def __init__(self, cluster: Cluster, upstream: FakeUpstream) -> None:
        self.port, self.metrics_port, self.ready_port = free_port(), free_port(), free_port()
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.dns", "--kubeconfig", str(cluster.kubeconfig),
             "--listen", f"{HOST}:{self.port}", "--upstream", f"{HOST}:{upstream.port}",
             "--metrics", f"{HOST}:{self.metrics_port}", "--health", "", "--ready", f"{HOST}:{self.ready_port}",
             "--lameduck", "0", "-v"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if "ready on port" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 20
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("DNS server did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def query(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        if tcp:
            return await dns.asyncquery.tcp(q, HOST, port=self.port, timeout=3)
        return await dns.asyncquery.udp(q, HOST, port=self.port, timeout=3)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def server(cluster: Cluster, upstream: FakeUpstream) -> Iterator[DNSProcess]:
    p = DNSProcess(cluster, upstream)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Client]:
    client = Client.from_kubeconfig(cluster.kubeconfig)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def ns(api: Client) -> str:
    name = f"dns-{uuid.uuid4().hex[:6]}"
    await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def answers(m: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in m.answer for rd in rrset)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "") -> float:
    """Poll ``check`` until it holds; returns how long that took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def resolves(server: DNSProcess, name: str, expected: list[str], rdtype: str = "A") -> bool:
    m = await server.query(name, rdtype)
    return answers(m) == expected


async def rcode_is(server: DNSProcess, name: str, rcode: int, rdtype: str = "A") -> bool:
    return (await server.query(name, rdtype)).rcode() == rcode


async def test_kubernetes_default_over_udp_and_tcp(server: DNSProcess) -> None:
    for tcp in (False, True):
        m = await server.query(f"kubernetes.default.svc.{ZONE}", tcp=tcp)
        assert answers(m) == ["10.96.0.1"], m
        srv = await server.query(f"_https._tcp.kubernetes.default.svc.{ZONE}", "SRV", tcp=tcp)
        assert answers(srv) == [f"0 100 443 kubernetes.default.svc.{ZONE}."]
        ptr = await server.query("1.0.96.10.in-addr.arpa", "PTR", tcp=tcp)
        assert answers(ptr) == [f"kubernetes.default.svc.{ZONE}."]
    assert await manifests.probe(HOST, server.port, 2.0)
    txt = await server.query(f"dns-version.{ZONE}", "TXT")
    assert answers(txt) == ['"1.0.1"']


async def test_service_lifecycle_a_srv_ptr_and_deletion(server: DNSProcess, api: Client, ns: str) -> None:
    svc = await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"}, "spec": {
        "selector": {"app": "backend"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "stats", "port": 9000, "protocol": "UDP"}]}},
        ns)
    plain = await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain"},
                                        "spec": {"ports": [{"port": 9000}]}}, ns)
    ip = svc["spec"]["clusterIP"]
    fqdn = f"backend.{ns}.svc.{ZONE}"
    await eventually(lambda: resolves(server, fqdn, [ip]), what="the new Service")
    for tcp in (False, True):
        srv = await server.query(f"_http._tcp.{fqdn}", "SRV", tcp=tcp)
        assert answers(srv) == [f"0 100 80 {fqdn}."]
        assert [rd.to_text() for rrset in srv.additional for rd in rrset] == [ip]
    assert answers(await server.query(f"_stats._udp.{fqdn}", "SRV")) == [f"0 100 9000 {fqdn}."]
    # An unnamed port has no _<port>._<proto> name, though the service has its address.
    assert answers(await server.query(f"plain.{ns}.svc.{ZONE}")) == [plain["spec"]["clusterIP"]]
    assert (await server.query(f"_9000._tcp.plain.{ns}.svc.{ZONE}", "SRV")).rcode() == dns.rcode.NXDOMAIN
    reverse = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    assert answers(await server.query(reverse, "PTR")) == [f"{fqdn}."]
    assert (await server.query(f"{ns}.svc.{ZONE}")).rcode() == dns.rcode.NOERROR  # the namespace exists
    assert (await server.query(f"nothing.{ns}.svc.{ZONE}")).rcode() == dns.rcode.NXDOMAIN
    # Deleted: NXDOMAIN within a second.
    await api.delete(SERVICES, "backend", ns)
    took = await eventually(lambda: rcode_is(server, fqdn, dns.rcode.NXDOMAIN), what="NXDOMAIN after deletion")
    assert took < 1.0


async def test_headless_service_with_pod_hostnames(server: DNSProcess, api: Client, ns: str) -> None:
    node = f"node-{uuid.uuid4().hex[:6]}"
    await api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    try:
        await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}, "spec": {
            "clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}}, ns)
        fqdn = f"db.{ns}.svc.{ZONE}"
        assert await rcode_is(server, fqdn, dns.rcode.NXDOMAIN)  # no ready endpoint yet
        ips = {"db-0": "10.244.9.10", "db-1": "10.244.9.11"}
        for name in ips:
            await api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "db"}},
                                    "spec": {"nodeName": node, "hostname": name, "subdomain": "db",
                                             "containers": [{"name": "c", "image": "busybox"}]}}, ns)
        for name, ip in ips.items():
            await set_status(api, ns, name, ip, ready=True)
        await eventually(lambda: resolves(server, fqdn, sorted(ips.values())), what="headless A records")
        assert answers(await server.query(f"db-0.{fqdn}")) == ["10.244.9.10"]
        srv = await server.query(f"_pg._tcp.{fqdn}", "SRV", tcp=True)
        assert answers(srv) == [f"0 50 5432 db-0.{fqdn}.", f"0 50 5432 db-1.{fqdn}."]
        assert answers(await server.query("11.9.244.10.in-addr.arpa", "PTR")) == [f"db-1.{fqdn}."]
        # One pod stops being ready, then the other: the name goes away with the last one.
        await set_status(api, ns, "db-0", ips["db-0"], ready=False)
        await eventually(lambda: resolves(server, fqdn, ["10.244.9.11"]), what="one endpoint left")
        await set_status(api, ns, "db-1", ips["db-1"], ready=False)
        await eventually(lambda: rcode_is(server, fqdn, dns.rcode.NXDOMAIN), what="NXDOMAIN without ready endpoints")
    finally:
        await api.delete(NODES, node)


async def set_status(api: Client, ns: str, name: str, ip: str, *, ready: bool) -> None:
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
    await api.patch(PODS, name, {"status": status}, ns, subresource="status")


async def test_external_name_and_its_update(server: DNSProcess, api: Client, ns: str, upstream: FakeUpstream) -> None:
    await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                                "spec": {"type": "ExternalName", "externalName": "www.example.test"}}, ns)
    fqdn = f"ext.{ns}.svc.{ZONE}"

    async def cname_to(target: str) -> bool:
        m = await server.query(fqdn)
        return bool(m.answer) and m.answer[0].rdtype == dns.rdatatype.CNAME and m.answer[0][0].to_text() == target

    await eventually(lambda: cname_to("www.example.test."), what="the CNAME")
    m = await server.query(fqdn)
    assert [rd.to_text() for rrset in m.answer[1:] for rd in rrset] == ["192.0.2.1"]  # the target, via upstream
    await api.patch(SERVICES, "ext", {"spec": {"externalName": "other.example.test"}}, ns)
    took = await eventually(lambda: cname_to("other.example.test."), what="the updated CNAME")
    assert took < 1.0


async def test_pod_records_and_outside_names(server: DNSProcess, ns: str, upstream: FakeUpstream) -> None:
    # (pods insecure: any address, once the namespace is known)
    await eventually(lambda: resolves(server, f"10-244-0-7.{ns}.pod.{ZONE}", ["10.244.0.7"]), what="pod record")
    assert (await server.query(f"10-244-0-7.no-such-ns.pod.{ZONE}")).rcode() == dns.rcode.NXDOMAIN
    before = upstream.count("cached.example.test.")
    for tcp in (False, True, False):
        assert answers(await server.query("cached.example.test", tcp=tcp)) == ["192.0.2.1"]
    assert upstream.count("cached.example.test.") - before <= 2  # UDP once, TCP at most once more


async def test_metrics_and_ready(server: DNSProcess) -> None:
    await server.query(f"kubernetes.default.svc.{ZONE}")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{server.ready_port}/ready") as r:
            assert r.status == 200
        async with http.get(f"http://{HOST}:{server.metrics_port}/metrics") as r:
            text = await r.text()
    assert 'coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="udp",family="1",type="A"}' in text
    assert "coredns_dns_request_duration_seconds_bucket" in text and "coredns_cache_hits_total" in text
