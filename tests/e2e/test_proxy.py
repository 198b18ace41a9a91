"""The Service proxy end to end: a real ``kubelite up`` with its agent, real pods, real traffic.

The proxy is the one ``kubelite up`` supervises (``kubelite proxy``): tests restart it by
SIGTERM (the supervisor starts it again) and pause it with SIGSTOP while one test runs a
proxy in-process to compare a partial-sync history with a full sync. Clients are pods running the host's python (``image: python``) with a small
script, :data:`CLIENT`, that makes HTTP/UDP requests and reports bodies or error types, so
one ``kubectl exec`` makes many requests. Everything lives in the cluster's namespaces;
teardown stops the cluster and checks that no namespace is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from pyroute2 import IPRoute

from kubelite.cli.supervisor import component_pids
from kubelite.client import ENDPOINTSLICES, SERVICES, Client
from kubelite.linux import syscalls
from kubelite.linux.netns import (
    BRIDGE,
    NETNS_DIR,
    in_netns,
    named_netns_path,
    open_connection_in,
    remove_netns,
    returning_netns,
)
from kubelite.proxy.proxier import NFTables, Proxier, _route_service_cidrs, endpoint_counters
from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import KUBECTL, Cluster, Raw, new_cluster

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
Obj = dict[str, Any]

# Runs inside client pods: prints a JSON list of [result, seconds] per request, where result
# is the body (HTTP), the answer (UDP), "OK" (connect) or "ERR <exception type>".
CLIENT = r"""
import json, socket, sys, time
def http(ip, port, path, timeout):
    with socket.create_connection((ip, int(port)), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()
def udp(ip, port, msg, timeout):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg.encode(), (ip, int(port)))
        return s.recv(65536).decode().strip()
def connect(ip, port, timeout):
    socket.create_connection((ip, int(port)), timeout=timeout).close()
    return "OK"
def one(fn, *args):
    start = time.time()
    try:
        result = fn(*args)
    except OSError as e:
        result = "ERR " + type(e).__name__
    return [result, time.time() - start]
cmd, target, port, arg, count, timeout = sys.argv[1:7]
timeout = float(timeout)
if cmd == "http":
    out = [one(http, target, port, arg, timeout) for _ in range(int(count))]
elif cmd == "udp":
    out = [one(udp, target, port, arg, timeout) for _ in range(int(count))]
elif cmd == "connect":
    out = [one(connect, target, port, timeout) for _ in range(int(count))]
else:  # watch: HTTP requests for `count` seconds, each with the wall-clock time it was answered
    end = time.time() + float(count)
    out = []
    while time.time() < end:
        r = one(http, target, port, arg, timeout)
        out.append([r[0], time.time()])
print(json.dumps(out))
"""


wait_for = functools.partial(waiting.wait_for, timeout=20.0)


def nft(netns: str, *args: str) -> str:
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "nft", *args],
                          check=True, capture_output=True, text=True).stdout



def proxy_process(kubeconfig: object) -> int | None:
    """The pid of the process that runs the proxy of the cluster of ``kubeconfig``."""
    return next(iter(component_pids(kubeconfig, "proxy")), None)


@dataclass
class Env:
    cluster: Cluster
    raw: Raw

    @property
    def node_netns(self) -> str:
        return f"{self.cluster.name}-node"

    @property
    def node_name(self) -> str:
        return f"{self.cluster.name}-node"

    # -- the proxy process (a child of `kubelite up`, restarted by it when it exits)

    def proxy_pid(self) -> int | None:
        """The process running the proxy: `up`'s node agent (``agent ... --with-proxy``)."""
        return proxy_process(self.cluster.kubeconfig)

    def table_handle(self) -> str | None:
        res = subprocess.run(["nsenter", f"--net=/run/netns/{self.node_netns}", "nft", "-a", "list", "table",
                              "ip", "kube-proxy"], capture_output=True, text=True)
        return res.stdout.split("# handle ", 1)[1].split()[0] if res.returncode == 0 else None

    def restart_proxy(self) -> None:
        """SIGTERM the proxy and wait until its successor has recreated the table (a full sync)."""
        pid, handle = self.proxy_pid(), self.table_handle()
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_for("a new proxy", lambda: self.proxy_pid() not in (None, pid))
        wait_for("the table recreated", lambda: self.table_handle() not in (None, handle))

    @contextlib.contextmanager
    def proxy_paused(self) -> Iterator[None]:
        """The supervised proxy frozen (SIGSTOP), then restarted so it rebuilds from scratch."""
        pid = self.proxy_pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
            self.restart_proxy()

    # -- the API

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=input, check=True).stdout

    def apply(self, *objs: Obj) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))

    def get(self, path: str) -> Obj | None:
        code, body = self.raw.request("GET", path)
        return body if code == 200 else None

    def service(self, name: str) -> Obj:
        svc = self.get(f"/api/v1/namespaces/default/services/{name}")
        assert svc is not None, name
        return svc

    def cluster_ip(self, name: str) -> str:
        return str(self.service(name)["spec"]["clusterIP"])

    def ready_pods(self, selector: str) -> list[Obj]:
        body = self.get(f"/api/v1/namespaces/default/pods?labelSelector={selector}") or {}
        return [p for p in body.get("items", []) if is_ready(p)]

    def wait_ready(self, selector: str, count: int) -> list[Obj]:
        pods: list[Obj] = wait_for(f"{count} ready pods {selector}", lambda: (p := self.ready_pods(selector)) and
                                   len(p) == count and p)
        return pods

    def client(self, pod: str, *args: str, timeout: float = 60.0) -> list[list[Any]]:
        out = self.cluster.kubectl("exec", pod, "--", "python3", "-c", CLIENT, *args, check=True, timeout=timeout)
        result: list[list[Any]] = json.loads(out.stdout)
        return result

    def bodies(self, pod: str, ip: str, port: int, path: str, count: int, timeout: float = 2.0) -> list[str]:
        return [r[0] for r in self.client(pod, "http", ip, str(port), path, str(count), str(timeout))]

    def table(self) -> str:
        return nft(self.node_netns, "list", "table", "ip", "kube-proxy")


def is_ready(p: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


def agnhost(name: str, labels: dict[str, str], *args: str, ports: list[Obj] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{
            "name": "agnhost", "image": AGNHOST, "args": ["netexec", *args], "ports": ports or [],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": int(next(
                (a.split("=")[1] for a in args if a.startswith("--http-port=")), "80"))}, "periodSeconds": 1},
        }], **spec},
    }


def service(name: str, ports: list[Obj], selector: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {**({"selector": selector} if selector is not None else {}), "ports": ports, **spec}}


WEB = {"app": "web"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_root_netns()
    require(shutil.which("nft") is not None, "nft (nftables) is not installed")
    require(shutil.which("conntrack") is not None, "conntrack (conntrack-tools) is not installed")
    require(shutil.which("python3") is not None, "python3 is needed inside client pods")
    base = tmp_path_factory.mktemp("proxy")
    cluster = new_cluster(base)
    env: Env | None = None
    try:
        cluster.start(agent=True)
        env = Env(cluster, Raw(cluster))
        env.apply(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 3, "selector": {"matchLabels": WEB},
                      "template": {"metadata": {"labels": WEB},
                                   "spec": agnhost("x", WEB, "--http-port=80", "--udp-port=8081")["spec"]}}},
            service("web", [{"name": "http", "port": 80}], WEB),
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
             "spec": {"containers": [{"name": "c", "image": "python", "command": ["sleep", "3600"]}]}},
        )
        env.wait_ready("app=web", 3)
        wait_for("the client pod", lambda: env.ready_pods("") and any(
            p["metadata"]["name"] == "client" for p in env.ready_pods("")))
        wait_for("the web Service programmed", lambda: env.table_handle() and
                 "-default/web/tcp/http {" in env.table())
        yield env
    finally:
        cluster.stop()
        subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", cluster.name,
                        "--data-dir", str(cluster.data_dir)], capture_output=True)
        assert not [n for n in netns_names() if n.startswith(f"{cluster.name}-")]


def web_names(env: Env) -> set[str]:
    return {p["metadata"]["name"] for p in env.ready_pods("app=web")}


# --------------------------------------------------------------------------- the basics


def test_clusterip_spreads_over_all_backends_and_keeps_the_client_ip(env: Env) -> None:
    ip = env.cluster_ip("web")
    bodies = env.bodies("client", ip, 80, "/hostname", 90)
    assert set(bodies) == web_names(env)
    assert min(bodies.count(b) for b in set(bodies)) >= 10  # random, so roughly even

    client_ip = env.get("/api/v1/namespaces/default/pods/client")["status"]["podIP"]  # type: ignore[index]
    seen = env.bodies("client", ip, 80, "/clientip", 3)
    assert {b.rsplit(":", 1)[0] for b in seen} == {client_ip}  # no SNAT between pods

    # The API server's Service reaches the agent's relay on the node.
    assert env.client("client", "connect", "10.96.0.1", "443", "-", "1", "2")[0][0] == "OK"


def test_ruleset_has_kube_proxys_structure(env: Env) -> None:
    ip = env.cluster_ip("web")
    text = env.table()
    for expected in (
        "chain nat-prerouting {", "type nat hook prerouting priority dstnat; policy accept;",
        "chain services {", "ip daddr . meta l4proto . th dport vmap @service-ips",
        "map service-ips {", "map no-endpoint-services {", "set cluster-ips {", "chain reject-chain {",
        "chain cluster-ips-check {", "ip daddr @cluster-ips goto reject-chain", "ip daddr 10.96.0.0/12 drop",
        "chain mark-for-masquerade {", "masquerade fully-random", "set endpoint-stats {",
        "set hairpin-connections {",
        "ip saddr . ip daddr . ct original ip daddr @hairpin-connections jump mark-for-masquerade",
    ):
        assert expected in text, expected
    pods = env.ready_pods("app=web")
    svc_chain = next(line.split()[1] for line in text.splitlines() if line.strip().startswith("chain service-")
                     and line.strip().endswith("-default/web/tcp/http {"))
    assert f"{ip} . tcp . 80 : goto {svc_chain}" in text
    # A plain ClusterIP port DNATs in its service chain (no endpoint chains: see ruleset).
    assert "-default/web/tcp/http__" not in text
    for p in pods:
        pod_ip = p["status"]["podIP"]
        assert f"{pod_ip} . {pod_ip} . {ip}" in text  # hairpin
        assert f"meta l4proto tcp dnat to {pod_ip}:80" in text
    assert re.search(r"numgen random mod 3 (== )?0 meta l4proto tcp dnat to ", text)


def test_endpoint_counters_count_every_packet(env: Env) -> None:
    ip = env.cluster_ip("web")
    env.bodies("client", ip, 80, "/hostname", 30)

    async def read() -> dict[Any, tuple[int, int]]:
        nft = NFTables(f"/run/netns/{env.node_netns}")
        try:
            return await endpoint_counters(nft)
        finally:
            nft.close()

    counts = asyncio.run(read())
    web = {k.endpoint: v for k, v in counts.items() if k.cluster_ip == ip and k.protocol == "tcp"}
    assert set(web) == {f"{p['status']['podIP']}:80" for p in env.ready_pods("app=web")}
    # Each HTTP exchange is several packets from the client (SYN, request, ACKs, FIN).
    assert sum(packets for packets, _ in web.values()) >= 30 * 3
    assert all(nbytes > packets * 40 for packets, nbytes in web.values())


def test_no_endpoints_refuses_at_once_unused_ports_refuse_unallocated_ips_drop(env: Env) -> None:
    env.apply(service("nobody", [{"port": 80}], {"app": "nobody"}))
    ip = env.cluster_ip("nobody")
    wait_for("the reject rule", lambda: f"{ip} . tcp . 80 : goto reject-chain" in env.table())
    # Refused at once, every time: not subject to the kernel's ICMP rate limit.
    results = env.client("client", "http", ip, "80", "/", "50", "5")
    assert all(r == "ERR ConnectionRefusedError" and seconds < 0.1 for r, seconds in results)
    [(result, seconds)] = env.client("client", "http", env.cluster_ip("web"), "81", "/", "1", "5")
    assert result == "ERR ConnectionRefusedError" and seconds < 0.5
    [(result, _)] = env.client("client", "http", "10.111.222.33", "80", "/", "1", "1")
    assert result == "ERR TimeoutError"


def test_named_target_ports_resolve_per_pod_for_a_multiport_service(env: Env) -> None:
    env.apply(
        agnhost("mp-1", {"app": "mp"}, "--http-port=8080", ports=[{"name": "svc1", "containerPort": 8080}]),
        agnhost("mp-2", {"app": "mp"}, "--http-port=9090", ports=[{"name": "svc2", "containerPort": 9090}]),
        agnhost("mp-3", {"app": "mp"}, "--http-port=9090", ports=[{"name": "svc1", "containerPort": 9090}]),
        service("mp", [{"name": "portname1", "port": 80, "targetPort": "svc1"},
                       {"name": "portname2", "port": 81, "targetPort": "svc2"}], {"app": "mp"}),
    )
    env.wait_ready("app=mp", 3)
    ip = env.cluster_ip("mp")
    wait_for("both ports programmed", lambda: set(env.bodies("client", ip, 81, "/hostname", 1)) == {"mp-2"} and
             set(env.bodies("client", ip, 80, "/hostname", 30)) == {"mp-1", "mp-3"})


def test_udp_and_tcp_on_the_same_port(env: Env) -> None:
    env.apply(service("both", [{"name": "tcp", "port": 53, "protocol": "TCP", "targetPort": 80},
                               {"name": "udp", "port": 53, "protocol": "UDP", "targetPort": 8081}], WEB))
    ip = env.cluster_ip("both")
    names = web_names(env)
    wait_for("TCP through port 53", lambda: set(env.bodies("client", ip, 53, "/hostname", 1)) <= names)
    udp = [r[0] for r in env.client("client", "udp", ip, "53", "hostname", "30", "2")]
    assert set(udp) == names


def test_nodeport_on_the_node_ip_from_a_pod(env: Env) -> None:
    env.apply(service("np", [{"port": 80}], WEB, type="NodePort"))
    node_port = env.service("np")["spec"]["ports"][0]["nodePort"]
    bodies = wait_for("the NodePort", lambda: (b := env.bodies("client", "10.244.0.1", node_port, "/hostname", 20))
                      and all(not x.startswith("ERR") for x in b) and b)
    assert set(bodies) <= web_names(env) and len(set(bodies)) > 1
    # externalTrafficPolicy Cluster: masqueraded to the node, as kube-proxy does.
    assert env.bodies("client", "10.244.0.1", node_port, "/clientip", 1)[0].startswith("10.244.0.1:")


def test_hairpin_a_pod_reaches_itself_through_its_service(env: Env) -> None:
    env.apply(agnhost("solo", {"app": "solo"}, "--http-port=80"), service("solo", [{"port": 80}], {"app": "solo"}))
    env.wait_ready("app=solo", 1)
    ip = env.cluster_ip("solo")

    def through_itself() -> list[str]:
        out = env.cluster.kubectl("exec", "solo", "--", "python3", "-c", CLIENT, "http", ip, "80", "/hostname",
                                  "3", "2", check=True)
        return [r[0] for r in json.loads(out.stdout)]

    assert wait_for("hairpin traffic", lambda: through_itself() == ["solo"] * 3)


def test_session_affinity_sticks_and_spreads_again_when_switched_off(env: Env) -> None:
    env.apply(service("sticky", [{"port": 80}], WEB, sessionAffinity="ClientIP",
                      sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}))
    ip = env.cluster_ip("sticky")
    bodies = wait_for("sticky traffic", lambda: (b := env.bodies("client", ip, 80, "/hostname", 15))
                      and not b[0].startswith("ERR") and b)
    assert len(set(bodies)) == 1
    env.kubectl("patch", "service", "sticky", "--type=merge", "-p", json.dumps({"spec": {"sessionAffinity": "None"}}))
    wait_for("spreading again", lambda: len(set(env.bodies("client", ip, 80, "/hostname", 30))) > 1)


def test_internal_traffic_policy_local_uses_only_this_nodes_endpoints(env: Env) -> None:
    target = env.ready_pods("app=web")[0]
    env.apply(
        service("itp", [{"port": 80}], internalTrafficPolicy="Local"),
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "itp-1", "labels": {"kubernetes.io/service-name": "itp"}},
         "addressType": "IPv4", "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
         "endpoints": [{"addresses": [target["status"]["podIP"]], "nodeName": "another-node",
                        "conditions": {"ready": True}}]},
    )
    ip = env.cluster_ip("itp")
    # Endpoints only on another node: dropped here (kube-proxy drops rather than refuses).
    wait_for("the drop", lambda: f"{ip} . tcp . 80 : drop" in env.table())
    assert env.bodies("client", ip, 80, "/hostname", 1, timeout=1) == ["ERR TimeoutError"]
    env.kubectl("patch", "endpointslice", "itp-1", "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/endpoints/0/nodeName", "value": env.node_name}]))
    wait_for("the local endpoint", lambda: env.bodies("client", ip, 80, "/hostname", 1, timeout=1) ==
             [target["metadata"]["name"]])


def test_publish_not_ready_addresses_reaches_unready_pods(env: Env) -> None:
    unready = agnhost("unready", {"app": "unready"}, "--http-port=80")
    # Never ready: nothing listens on the probed port (agnhost's netexec answers 200 on any path).
    unready["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 81
    env.apply(
        unready,
        service("unready", [{"port": 80}], {"app": "unready"}, publishNotReadyAddresses=True),
        service("unready-hidden", [{"port": 80}], {"app": "unready"}),
    )
    ip = env.cluster_ip("unready")
    wait_for("the unready pod through the Service", lambda: env.bodies("client", ip, 80, "/hostname", 1) == ["unready"])
    assert env.bodies("client", env.cluster_ip("unready-hidden"), 80, "/", 1) == ["ERR ConnectionRefusedError"]


def test_headless_externalname_and_other_proxies_services_get_no_rules(env: Env) -> None:
    env.apply(
        service("headless", [{"port": 80}], WEB, clusterIP="None"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "external"},
         "spec": {"type": "ExternalName", "externalName": "example.invalid"}},
        {**service("elsewhere", [{"port": 80}], WEB),
         "metadata": {"name": "elsewhere", "labels": {"service.kubernetes.io/service-proxy-name": "other"}}},
        {**service("nohead", [{"port": 80}], WEB),
         "metadata": {"name": "nohead", "labels": {"service.kubernetes.io/headless": ""}}},
        service("marker", [{"port": 80}], WEB),
    )
    wait_for("a later Service programmed", lambda: "-default/marker/tcp/ {" in env.table())
    text = env.table()
    for name in ("headless", "external", "elsewhere", "nohead"):
        assert f"-default/{name}/" not in text
    assert env.cluster_ip("elsewhere") not in text


# --------------------------------------------------------------------------- change


def test_a_new_ready_pod_gets_traffic_within_a_second_and_a_deleted_one_none_too_late(env: Env) -> None:
    env.apply(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "churn"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "churn"}},
                  "template": {"metadata": {"labels": {"app": "churn"}},
                               "spec": agnhost("x", {}, "--http-port=80")["spec"]}}},
        service("churn", [{"port": 80}], {"app": "churn"}),
    )
    env.wait_ready("app=churn", 3)
    ip = env.cluster_ip("churn")
    watcher = subprocess.Popen(
        [KUBECTL, "exec", "client", "--", "python3", "-c", CLIENT, "watch", ip, "80", "/hostname", "6", "2"],
        env={**os.environ, "KUBECONFIG": str(env.cluster.kubeconfig)}, stdout=subprocess.PIPE, text=True,
    )
    time.sleep(1.0)
    env.apply(agnhost("churn-4th", {"app": "churn"}, "--http-port=80"))
    wait_for("the 4th pod Ready", lambda: is_ready(env.get("/api/v1/namespaces/default/pods/churn-4th") or {}),
             interval=0.01)
    ready_at = time.time()
    victim = sorted(web for web in {p["metadata"]["name"] for p in env.ready_pods("app=churn")} if web != "churn-4th")[0]
    env.kubectl("delete", "pod", victim, "--wait=false")
    deleted_at = time.time()
    out, _ = watcher.communicate(timeout=30)
    answers = json.loads(out)
    assert answers and not [a for a in answers if a[0].startswith("ERR")]  # no request failed
    first = min(t for body, t in answers if body == "churn-4th")
    assert first - ready_at < 1.0
    # The deleted pod drains: nothing reaches it once its endpoint left the Service.
    last = max(t for body, t in answers if body == victim)
    assert last - deleted_at < 1.0


def test_stale_udp_flows_follow_the_endpoint_change(env: Env) -> None:
    env.apply(
        agnhost("udp-a", {"udp": "yes"}, "--http-port=80", "--udp-port=8081"),
        agnhost("udp-b", {"udp": "no"}, "--http-port=80", "--udp-port=8081"),
        service("dns-ish", [{"port": 53, "protocol": "UDP", "targetPort": 8081}], {"udp": "yes"}),
    )
    wait_for("both UDP pods", lambda: {"udp-a", "udp-b"} <= {p["metadata"]["name"] for p in env.ready_pods("")})
    ip = env.cluster_ip("dns-ish")
    with in_netns(f"/run/netns/{env.node_netns}"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)

    def ask() -> str:
        try:
            sock.sendto(b"hostname", (ip, 53))
            return sock.recv(1000).decode().strip()
        except OSError:  # a timeout, or refused while the Service has no endpoint
            return ""

    try:
        assert wait_for("udp-a", lambda: ask() == "udp-a")
        # One source port throughout: without the conntrack flush the kernel would keep
        # sending these datagrams to udp-a, which is still alive.
        env.kubectl("label", "pod", "udp-a", "udp=no", "--overwrite")
        env.kubectl("label", "pod", "udp-b", "udp=yes", "--overwrite")
        assert wait_for("udp-b", lambda: ask() == "udp-b", timeout=5)
    finally:
        sock.close()


def test_proxy_restart_rebuilds_without_dropping_established_connections(env: Env) -> None:
    env.apply(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo", "labels": {"app": "echo"}},
         "spec": {"containers": [{"name": "echo", "image": "busybox",
                                  "command": ["nc", "-ll", "-p", "9000", "-e", "/bin/cat"]}]}},
        service("echo", [{"port": 9000}], {"app": "echo"}),
    )
    wait_for("the echo pod", lambda: any(p["metadata"]["name"] == "echo" for p in env.ready_pods("app=echo")))
    ip = env.cluster_ip("echo")
    netns = f"/run/netns/{env.node_netns}"

    async def session() -> None:
        # From the node itself: its packets take the nat-output path.
        reader, writer = await asyncio.wait_for(open_connection_in(netns, ip, 9000), 5)
        try:
            writer.write(b"before\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"before\n"
            await asyncio.to_thread(env.restart_proxy)  # a full sync: the table is recreated
            writer.write(b"after\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"after\n"
        finally:
            writer.close()

    for _ in range(50):  # the Service may not be programmed yet
        try:
            asyncio.run(session())
            break
        except (ConnectionRefusedError, TimeoutError):
            time.sleep(0.1)
    else:
        raise AssertionError("no connection through the echo Service")
    assert env.bodies("client", env.cluster_ip("web"), 80, "/hostname", 1)[0] in web_names(env)


# --------------------------------------------------------------------------- full == partial


def canonical(table_json: str) -> dict[str, Any]:
    """The table's content without handles and traffic-made elements, in a stable order."""
    chains: dict[str, list[Any]] = {}
    containers: dict[str, Any] = {}
    for item in json.loads(table_json)["nftables"]:
        if "chain" in item:
            c = item["chain"]
            chains.setdefault(c["name"], [])
            chains[c["name"] + " (hook)"] = [c.get("type"), c.get("hook"), c.get("prio")]
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"]["expr"])
        elif "set" in item or "map" in item:
            kind = "set" if "set" in item else "map"
            s = item[kind]
            dynamic = s["name"] == "endpoint-stats" or s["name"].startswith("affinity-")
            elems = [] if dynamic else sorted(json.dumps(e, sort_keys=True) for e in s.get("elem", []))
            containers[f"{kind} {s['name']}"] = [s.get("type"), s.get("timeout"), elems]
    return {"chains": chains, "containers": containers}


async def test_a_history_of_partial_syncs_and_one_full_sync_write_the_same_table(env: Env) -> None:
    with env.proxy_paused():  # this test runs its own proxy in-process
        await history_then_full(env)


async def history_then_full(env: Env) -> None:
    client = Client.from_kubeconfig(env.cluster.kubeconfig)
    netns = f"/run/netns/{env.node_netns}"

    async def run_proxy() -> tuple[Proxier, asyncio.Task[None]]:
        proxier = Proxier(client, node_name=env.node_name, netns_path=netns)
        task = asyncio.create_task(proxier.run())
        await asyncio.wait_for(proxier.synced.wait(), 20)
        return proxier, task

    async def settled(proxier: Proxier) -> str:
        # Quiet for a while (informer events delivered) and nothing pending (stale chains gone).
        quiet = 0
        while quiet < 10:
            await asyncio.sleep(0.2)
            quiet = quiet + 1 if not proxier.pending() else 0
        return await asyncio.to_thread(nft, env.node_netns, "-j", "list", "table", "ip", "kube-proxy")

    def slice_of(name: str, *ips: str, ready: bool = True) -> Obj:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "UDP"}],
                "endpoints": [{"addresses": [ip], "nodeName": env.node_name, "conditions": {"ready": ready}}
                              for ip in ips]}

    try:
        proxier, task = await run_proxy()
        assert proxier.last_sync is not None and proxier.last_sync.full
        # Create, grow, shrink, re-target, switch affinity on, change its timeout, delete.
        for i in range(3):
            await client.create(SERVICES, service(f"hist-{i}", [{"name": "p", "port": 53, "protocol": "UDP"}]),
                                "default")
            await client.create(ENDPOINTSLICES, slice_of(f"hist-{i}", "10.244.0.200", "10.244.0.201"), "default")
        await client.update(ENDPOINTSLICES, {**slice_of("hist-0", "10.244.0.201", "10.244.0.202", "10.244.0.203"),
                                             "metadata": (await client.get(ENDPOINTSLICES, "hist-0-1", "default"))[
                                                 "metadata"]})
        await client.patch(SERVICES, "hist-1", {"spec": {"sessionAffinity": "ClientIP"}}, "default")
        await client.patch(SERVICES, "hist-1", {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}}}},
                           "default")
        await client.update(ENDPOINTSLICES, {**slice_of("hist-1", "10.244.0.201", ready=False),
                                             "metadata": (await client.get(ENDPOINTSLICES, "hist-1-1", "default"))[
                                                 "metadata"]})
        await client.delete(SERVICES, "hist-2", "default")
        partial = await settled(proxier)
        assert proxier.last_sync is not None and not proxier.last_sync.full
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        proxier, task = await run_proxy()
        full = await settled(proxier)
        assert proxier.last_sync is not None and proxier.last_sync.full
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert '{"dnat": {"addr": "10.244.0.203", "port": 8080}}' in partial  # hist-0's new endpoint
        assert "-default/hist-2/" not in partial
        assert canonical(partial) == canonical(full)
    finally:
        await client.close()


def test_cleanup_removes_the_table(env: Env) -> None:
    with env.proxy_paused():
        subprocess.run([sys.executable, "-m", "kubelite", "proxy", "--cleanup", "--kubeconfig",
                        str(env.cluster.kubeconfig), "--cluster-name", env.cluster.name], check=True)
        assert "kube-proxy" not in nft(env.node_netns, "list", "tables")
    assert env.bodies("client", env.cluster_ip("web"), 80, "/hostname", 1)[0] in web_names(env)


def _mount_point(path: str) -> None:
    """The empty file a named namespace is until the namespace is mounted on it."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    with open(path, "x"):
        pass


def _mount_node_namespace(path: str) -> None:
    """What the agent's NodeNetwork.setup does, late: a new namespace with ``kl-br0`` up,
    bind-mounted on ``path`` (which exists already, as pyroute2 and ``ip netns add`` leave it)."""
    with returning_netns():
        syscalls.unshare(syscalls.CLONE_NEWNET)  # this thread only; returning_netns takes it back
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
        with IPRoute(fileno=sock.detach()) as ipr:
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], state="up")
        syscalls.mount("/proc/thread-self/ns/net", path, None, syscalls.MS_BIND)


async def test_the_proxy_waits_while_the_node_namespace_is_only_its_mount_point(cluster_name: str) -> None:
    """Regression: pyroute2 (as ``ip netns add``) creates /run/netns/<name> as an empty file,
    then bind-mounts the namespace on it. A proxy looking in between failed with
    ``setns(CLONE_NEWNET): Invalid argument`` and took the agent's process down with it (seen
    on a fresh machine, where making /run/netns a shared mount first widens the gap)."""
    require_root_netns()
    path = named_netns_path(f"{cluster_name}-node")
    _mount_point(path)
    try:
        task = asyncio.create_task(_route_service_cidrs(path, ["10.96.0.0/12"]))
        await asyncio.sleep(0.5)
        assert not task.done(), task.exception()
        await asyncio.to_thread(_mount_node_namespace, path)
        await asyncio.wait_for(task, 10)
        routes = (await asyncio.to_thread(subprocess.run, ["ip", "-n", f"{cluster_name}-node", "route", "show"],
                                          check=True, capture_output=True, text=True)).stdout
        assert re.search(rf"^10\.96\.0\.0/12 dev {BRIDGE} .*scope link", routes, re.M), routes
    finally:
        remove_netns(f"{cluster_name}-node")
