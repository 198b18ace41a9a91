"""NetworkPolicy end to end: real pods, a real Service, real traffic through the node's nftables.

One cluster for the module: an agnhost server behind the Service ``server`` (port 80 to the
container port named ``http``), busybox clients in ``default`` (``app=client`` and
``app=other``) and in the namespace ``team`` (labelled ``team=blue``). Each test applies its
policies and every test ends with none left. A blocked request is a connection that gets no
answer: ``timeout 2 wget`` gives up after 2 s (busybox 1.35's own ``wget -T`` crashes).
Requests go to the ClusterIP, so each one checks that policies judge the backend pod after
the proxy's DNAT.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster
from tests.waiting import wait_for

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
Obj = dict[str, Any]




@dataclass
class Env:
    cluster: Cluster
    server_ip: str = ""
    cluster_ip: str = ""

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=input, check=True, timeout=60).stdout

    def apply(self, *objs: Obj) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))

    def get(self, *args: str) -> Obj:
        result: Obj = json.loads(self.kubectl("get", "-o", "json", *args))
        return result

    def exec(self, pod: str, *argv: str, ns: str = "default") -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", ns, "exec", pod, "--", *argv, timeout=30)

    def reaches(self, pod: str, ns: str = "default", url: str = "") -> bool:
        """One HTTP request from ``pod`` to the Service (or ``url``), given up after 2 s."""
        r = self.exec(pod, "timeout", "2", "wget", "-qO-", url or f"http://{self.cluster_ip}/hostname", ns=ns)
        return r.returncode == 0 and r.stdout.strip() == "server"

    def resolves(self, pod: str) -> bool:
        r = self.exec(pod, "timeout", "3", "nslookup", "kubernetes.default.svc.cluster.local")
        return r.returncode == 0 and "10.96.0.1" in r.stdout

    def table(self) -> str:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.cluster.name}-node", "nft", "list", "table",
                               "inet", "kubelite-netpol"], capture_output=True, text=True).stdout


def policy(name: str, spec: Obj, ns: str = "default") -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def busybox(name: str, labels: Obj, ns: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


SERVER = {"app": "server"}
DENY_INGRESS = policy("deny-ingress", {"podSelector": {"matchLabels": SERVER}, "policyTypes": ["Ingress"]})


def allow_from(name: str, peer: Obj, port: Any = "http") -> Obj:
    return policy(name, {"podSelector": {"matchLabels": SERVER},
                         "ingress": [{"from": [peer], "ports": [{"port": port}]}]})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_root_netns()
    require(shutil.which("nft") is not None, "nft (nftables) is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    require(kubectl_binary() is not None, "kubectl is not installed")
    cluster = new_cluster(tmp_path_factory.mktemp("netpol"))
    try:
        cluster.start(agent=True, timeout=90)
        env = Env(cluster)
        env.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"team": "blue"}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "labels": SERVER}, "spec": {
                "hostname": "server", "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                                   "periodSeconds": 1}}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server"}, "spec": {
                "selector": SERVER, "ports": [{"port": 80, "targetPort": "http"}]}},
            busybox("client", {"app": "client"}),
            busybox("other", {"app": "other"}),
            busybox("remote", {"app": "client"}, "team"),
            busybox("remote-other", {"app": "other"}, "team"),
        )
        for ns in ("default", "team"):
            env.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s")
        env.server_ip = env.get("pod", "server")["status"]["podIP"]
        env.cluster_ip = env.get("service", "server")["spec"]["clusterIP"]
        wait_for("the Service to answer", lambda: env.reaches("client"))
        yield env
    finally:
        cluster.stop(timeout=60)
        subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", cluster.name,
                        "--data-dir", str(cluster.data_dir)], capture_output=True)
        assert not [n for n in netns_names() if n.startswith(f"{cluster.name}-")]


@pytest.fixture
def clean(env: Env) -> Iterator[Env]:
    """Every test starts and ends with no policy and the traffic flowing."""
    try:
        yield env
    finally:
        env.kubectl("delete", "networkpolicy", "--all", "--all-namespaces", "--wait=true")
        wait_for("no isolated pod left", lambda: "goto pod-" not in env.table(), timeout=10)


def programmed(env: Env, needle: str, present: bool = True) -> float:
    """Seconds until ``needle`` is (or is no longer) in the table, from now."""
    start = time.monotonic()
    pattern = re.compile(re.escape(needle) + r"(?![\d])")  # 10.244.0.1 is not 10.244.0.12
    wait_for(f"{needle!r} {'in' if present else 'out of'} the table",
             lambda: bool(pattern.search(env.table())) == present, timeout=10, interval=0.01)
    return time.monotonic() - start


def test_default_deny_then_allow_by_labels_on_a_named_port(clean: Env) -> None:
    env = clean
    assert env.reaches("client") and env.reaches("other")
    env.apply(DENY_INGRESS)
    programmed(env, f"{env.server_ip} : goto pod-{env.server_ip}-ingress")
    assert not env.reaches("client")  # times out after 2 s
    assert not env.reaches("other")
    client_ip = env.get("pod", "client")["status"]["podIP"]
    env.apply(allow_from("allow-client", {"podSelector": {"matchLabels": {"app": "client"}}}))
    # Programmed within a second of the API's answer: the client's IP is in the policy's peers.
    assert programmed(env, client_ip) < 1.0
    assert env.reaches("client")
    assert not env.reaches("other")
    env.kubectl("delete", "networkpolicy", "allow-client")
    programmed(env, client_ip, present=False)
    assert not env.reaches("client")


def test_numeric_ports_and_port_ranges(clean: Env) -> None:
    env = clean
    env.apply(DENY_INGRESS, allow_from("wrong-port", {"podSelector": {}}, 9999))
    programmed(env, "tcp dport 9999")
    assert not env.reaches("client")
    env.apply(policy("range", {"podSelector": {"matchLabels": SERVER},
                               "ingress": [{"ports": [{"port": 8000, "endPort": 8100, "protocol": "TCP"}]}]}))
    programmed(env, "tcp dport 8000-8100")
    assert env.reaches("client") and env.reaches("other")


def test_namespace_selector_alone_and_with_a_pod_selector(clean: Env) -> None:
    env = clean
    client_ip = env.get("pod", "client")["status"]["podIP"]
    env.apply(DENY_INGRESS, allow_from("allow-client", {"podSelector": {"matchLabels": {"app": "client"}}}))
    programmed(env, client_ip)
    # A podSelector alone selects pods of the policy's own namespace only.
    assert not env.reaches("remote", "team")
    env.apply(allow_from("team-clients", {"namespaceSelector": {"matchLabels": {"team": "blue"}},
                                          "podSelector": {"matchLabels": {"app": "client"}}}))
    remote_ip = env.get("-n", "team", "pod", "remote")["status"]["podIP"]
    programmed(env, remote_ip)
    assert env.reaches("remote", "team")
    assert not env.reaches("remote-other", "team")
    env.apply(allow_from("whole-team", {"namespaceSelector": {"matchLabels": {"team": "blue"}}}))
    other_ip = env.get("-n", "team", "pod", "remote-other")["status"]["podIP"]
    programmed(env, other_ip)
    assert env.reaches("remote-other", "team")
    # The namespace's labels are what selects: relabelled, its pods lose the access.
    env.kubectl("label", "namespace", "team", "team=red", "--overwrite")
    try:
        programmed(env, other_ip, present=False)
        assert not env.reaches("remote-other", "team")
    finally:
        env.kubectl("label", "namespace", "team", "team=blue", "--overwrite")


def test_ip_block_with_except(clean: Env) -> None:
    env = clean
    client_ip = env.get("pod", "client")["status"]["podIP"]
    env.apply(DENY_INGRESS, allow_from("block", {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{client_ip}/32"]}}))
    programmed(env, f"ip saddr 10.244.0.0/16 ip saddr != {client_ip}")
    assert not env.reaches("client")
    assert env.reaches("other")


def test_egress_deny_blocks_dns_until_allowed_to_kube_dns(clean: Env) -> None:
    env = clean
    assert env.resolves("client")
    client_ip = env.get("pod", "client")["status"]["podIP"]
    env.apply(policy("deny-egress", {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"]}))
    programmed(env, f"{client_ip} : goto pod-{client_ip}-egress")
    assert not env.resolves("client")
    assert not env.reaches("client")
    env.apply(policy("dns", {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                             "egress": [{"to": [{"namespaceSelector": {
                                 "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}))
    programmed(env, "udp dport 53")
    assert env.resolves("client")
    assert not env.reaches("client")  # DNS only
    assert env.resolves("other")  # not selected: not isolated


def test_kubectl_shows_policies_and_refuses_invalid_ones(clean: Env) -> None:
    env = clean
    env.apply(DENY_INGRESS)
    out = env.kubectl("get", "netpol")
    assert out.split("\n")[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert out.split("\n")[1].split()[:2] == ["deny-ingress", "app=server"]
    bad = allow_from("bad", {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}, 70000)
    r = env.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad), timeout=30)
    assert r.returncode != 0
    assert r.stderr == (
        'The NetworkPolicy "bad" is invalid: \n'
        "* spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive\n"
        '* spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`\n')
