"""Cluster DNS end to end: a real ``kubelite up``, names resolved from inside real pods over UDP and TCP.

Pods use the resolv.conf the agent writes (``nameserver 10.96.0.10``, the namespace's search
path, ``ndots:5``), so every query goes pod → kube-dns ClusterIP (nftables DNAT) → the
``coredns`` pod. Three kinds of client, as users have them:
- busybox ``nslookup`` and ``wget``. busybox's nslookup (1.29 and later) applies the search
  path only to names without a dot: ``nslookup backend.default`` asks for ``backend.default.``
  as is, on a real cluster too (why Kubernetes' DNS debugging page pins busybox:1.28). So
  nslookup is used with short names and FQDNs; partial names go through ``wget``, which
  resolves with glibc's ``getaddrinfo`` and its ndots/search rules; glibc's
  ``RES_OPTIONS=use-vc`` makes the same lookups over TCP;
- dnspython (``dns.query.udp`` / ``dns.query.tcp`` to 10.96.0.10) for exact records;
- the official Kubernetes Python client with its in-cluster configuration.
The Python clients run the interpreter running these tests, which has dnspython and the client
installed (pods see the host's files; a virtualenv under /tmp is mounted in, as containers have
their own /tmp). The ``python`` image's own ``python3`` is the system one, without them.

No query may leave this machine: before any pod asks anything, the ``coredns`` Deployment is
pointed (``--upstream``) at a fake resolver the test runs on the node's address inside the
node's namespace, answering ``*.example.test`` only (``kubelite up`` gives no way to point
the agent's DNS relay at it, so the relay itself is not on this path).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from kubelite.linux.netns import in_netns
from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import KUBECTL, Cluster, Raw, kubectl_binary, new_cluster
from tests.unit.test_dns_server import FakeUpstream

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
DNS_IP = "10.96.0.10"
NODE_IP = "10.244.0.1"
ZONE = "cluster.local"
Obj = dict[str, Any]

# Runs inside the python pod (with the tests' interpreter). Modes:
#   ask JSON      [[name, type, "udp"|"tcp"], ...] -> one {rcode, answer, additional} per question
#   addr NAME...  glibc's getaddrinfo (search path, ndots) -> the IPv4 addresses of each name
#   watch NAME TYPE SECONDS  asks every 20 ms; prints "ready" after the first answer, then
#                            [[wall time, rcode, answer], ...]
QUERY = r"""
import json, socket, sys, time
import dns.message, dns.query, dns.rcode, dns.rdatatype
def rrs(section):  # in the server's order of RRsets, each one's records sorted
    return [f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}" for rrset in section
            for rd in sorted(rrset, key=str)]
def ask(name, rdtype, proto="udp"):
    q = dns.message.make_query(name, rdtype)
    r = (dns.query.tcp if proto == "tcp" else dns.query.udp)(q, "10.96.0.10", timeout=2)
    return {"rcode": dns.rcode.to_text(r.rcode()), "answer": rrs(r.answer), "additional": sorted(rrs(r.additional))}
mode = sys.argv[1]
if mode == "ask":
    print(json.dumps([ask(*q) for q in json.loads(sys.argv[2])]))
elif mode == "addr":
    out = {}
    for name in sys.argv[2:]:
        try:
            out[name] = sorted({i[4][0] for i in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)})
        except OSError as e:
            out[name] = "ERR " + type(e).__name__
    print(json.dumps(out))
else:
    name, rdtype, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
    samples, end = [], time.time() + seconds
    while time.time() < end:
        r = ask(name, rdtype)
        samples.append([time.time(), r["rcode"], r["answer"]])
        if len(samples) == 1:
            print("ready", flush=True)
        time.sleep(0.02)
    print(json.dumps(samples))
"""

# The in-cluster Python client: config from the service-account mount and KUBERNETES_SERVICE_*.
INCLUSTER = r"""
from kubernetes import client, config
config.load_incluster_config()
print(" ".join(sorted(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod("default").items)))
"""

# The same path without the client: the mounted token and CA, the kubernetes Service, the relay.
BEARER = r"""
import json, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
ctx = ssl.create_default_context(cafile=sa + "ca.crt")
req = urllib.request.Request("https://kubernetes.default.svc/api/v1/namespaces/default/pods",
                             headers={"Authorization": "Bearer " + open(sa + "token").read()})
with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
    print(" ".join(sorted(p["metadata"]["name"] for p in json.load(r)["items"])))
"""


wait_for = functools.partial(waiting.wait_for, timeout=30.0)


def fqdn(name: str, ns: str = "default") -> str:
    return f"{name}.{ns}.svc.{ZONE}."


def reverse(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


class NodeUpstream(FakeUpstream):
    """The unit tests' fake resolver (``*.example.test``), listening on the node's address
    inside the node's network namespace, where the ``coredns`` pod can reach it."""

    def __init__(self, netns_path: str) -> None:
        self.silent, self.delay = False, 0.0
        self.queries: list[tuple[str, str, str]] = []
        with in_netns(netns_path):
            while True:  # one port free for both UDP and TCP
                self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.udp.bind((NODE_IP, 0))
                self.port = self.udp.getsockname()[1]
                self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    self.tcp.bind((NODE_IP, self.port))
                    break
                except OSError:
                    self.udp.close()
                    self.tcp.close()
        self.tcp.listen(16)
        self._stop = False
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self._threads:
            t.start()


def is_ready(p: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


@dataclass
class Env:
    cluster: Cluster
    raw: Raw
    upstream: NodeUpstream

    @property
    def node_netns(self) -> str:
        return f"{self.cluster.name}-node"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=input, check=True).stdout

    def apply(self, *objs: Obj) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))

    def get(self, path: str) -> Obj:
        code, body = self.raw.request("GET", path)
        assert code == 200, (path, body)
        return body

    def pods(self, selector: str, ns: str = "default") -> list[Obj]:
        return list(self.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"])

    def pod_ip(self, name: str) -> str:
        return str(self.get(f"/api/v1/namespaces/default/pods/{name}")["status"]["podIP"])

    def cluster_ip(self, name: str) -> str:
        return str(self.get(f"/api/v1/namespaces/default/services/{name}")["spec"]["clusterIP"])

    def backends(self) -> set[str]:
        return {p["metadata"]["name"] for p in self.pods("app=backend") if is_ready(p)}

    def table(self) -> str:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.node_netns}", "nft", "list", "table", "ip",
                               "kube-proxy"], capture_output=True, text=True).stdout

    # -- in pods

    def sh(self, script: str, *, env: str = "") -> str:
        """A shell script in the busybox pod (stdout; failures of single commands are fine)."""
        return self.cluster.kubectl("exec", "bb", "--", "sh", "-c", f"export {env}; {script}" if env else script,
                                    timeout=60).stdout

    def py(self, *args: str, script: str = QUERY, env: dict[str, str] | None = None) -> str:
        argv = ["env", *(f"{k}={v}" for k, v in (env or {}).items()), sys.executable, "-c", script, *args]
        return self.cluster.kubectl("exec", "py", "--", *argv, check=True, timeout=60).stdout

    def ask(self, *questions: tuple[str, str, str]) -> list[Obj]:
        result: list[Obj] = json.loads(self.py("ask", json.dumps(questions)))
        return result

    def addresses(self, *names: str, tcp: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.py("addr", *names, env={"RES_OPTIONS": "use-vc"} if tcp else None))
        return result

    @contextlib.contextmanager
    def watching(self, name: str, rdtype: str, seconds: float) -> Iterator[list[list[Any]]]:
        """Ask ``name`` every 20 ms from the python pod while the block runs; the samples
        ([time, rcode, answer]) fill the yielded list when the block ends."""
        samples: list[list[Any]] = []
        proc = subprocess.Popen(
            [KUBECTL, "exec", "py", "--", sys.executable, "-c", QUERY, "watch", name, rdtype, str(seconds)],
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            yield samples
            out, _ = proc.communicate(timeout=seconds + 30)
            samples.extend(json.loads(out))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def metric(self, prefix: str) -> float:
        """The sum of the coredns pod's Prometheus samples whose line starts with ``prefix``."""
        text = self.sh(f"wget -qO- http://{DNS_IP}:9153/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def agnhost(name: str, labels: dict[str, str], probe_port: int = 8080, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": {
        "containers": [{"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": probe_port},
                                           "periodSeconds": 1}}],
        **spec}}


def service(name: str, selector: dict[str, str] | None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {
        **({"selector": selector} if selector is not None else {}),
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec}}


def sleeper(name: str, image: str, host_paths: Sequence[str] = ()) -> Obj:
    volumes = [{"name": f"host-{i}", "hostPath": {"path": p, "type": "Directory"}} for i, p in enumerate(host_paths)]
    mounts = [{"name": f"host-{i}", "mountPath": p, "readOnly": True} for i, p in enumerate(host_paths)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "volumes": volumes, "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"],
                                            "volumeMounts": mounts}]}}


def interpreter_paths() -> list[str]:
    """Where the tests' interpreter lives, if pods would not see it: each container has its own
    /tmp, so a virtualenv under /tmp (as CI makes) is mounted into the pod at the same path."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    return sorted(p for p in prefixes if p.startswith("/tmp/"))


def use_fake_upstream(env: Env) -> None:
    """Roll ``coredns`` to forward outside names to the fake resolver, and make sure nothing
    is left of the pod that forwarded to the host's resolvers (neither pod nor proxy rule)."""
    old = {p["metadata"]["name"]: p["status"]["podIP"] for p in env.pods("k8s-app=kube-dns", "kube-system")}
    args = ["--upstream", f"{NODE_IP}:{env.upstream.port}"]
    env.kubectl("-n", "kube-system", "patch", "deployment", "coredns", "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a} for a in args]))
    new = wait_for("the new coredns pod", lambda: [p for p in env.pods("k8s-app=kube-dns", "kube-system")
                                                   if p["metadata"]["name"] not in old and is_ready(p)])
    assert new[0]["spec"]["containers"][0]["args"][-2:] == args
    env.kubectl("-n", "kube-system", "delete", "pod", *old, "--grace-period=0", "--force")
    new_ip = new[0]["status"]["podIP"]
    wait_for("kube-dns through the new pod only", lambda: (t := env.table()) and
             f"{new_ip}:53" in t and not any(f"{ip}:" in t for ip in old.values()))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_root_netns()
    require(shutil.which("nft") is not None, "nft (nftables) is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    require(kubectl_binary() is not None, "kubectl is not installed")
    cluster = new_cluster(tmp_path_factory.mktemp("dns"))
    upstream: NodeUpstream | None = None
    try:
        cluster.start(agent=True, timeout=60)
        upstream = NodeUpstream(f"/run/netns/{cluster.name}-node")
        env = Env(cluster, Raw(cluster), upstream)
        use_fake_upstream(env)
        backend = {"app": "backend"}
        env.apply(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend"},
             "spec": {"replicas": 2, "selector": {"matchLabels": backend},
                      "template": {"metadata": {"labels": backend}, "spec": agnhost("x", backend)["spec"]}}},
            service("backend", backend),
            # A StatefulSet's shape: a headless governing Service, pods named by hostname + subdomain.
            service("peers", {"app": "peer"}, clusterIP="None"),
            agnhost("peer-a", {"app": "peer"}, hostname="peer-0", subdomain="peers"),
            agnhost("peer-b", {"app": "peer"}, hostname="peer-1", subdomain="peers"),
            service("unready", {"app": "unready"}, clusterIP="None"),
            agnhost("never-ready", {"app": "unready"}, probe_port=9),  # nothing listens there
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
             "spec": {"type": "ExternalName", "externalName": "www.example.test"}},
            sleeper("bb", "busybox"),
            sleeper("py", "python", interpreter_paths()),
        )
        wait_for("every pod but one Ready", lambda: len([p for p in env.pods("") if is_ready(p)]) == 6)

        def slices_settled() -> bool:
            slices = env.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")["items"]
            by_svc = {s["metadata"]["labels"]["kubernetes.io/service-name"]: s.get("endpoints") or [] for s in slices}
            ready = {svc: sum(bool(e["conditions"].get("ready")) for e in eps) for svc, eps in by_svc.items()}
            # The unready pod is listed (not ready): its Service is NXDOMAIN for that reason alone.
            return ready.get("backend") == 2 and ready.get("peers") == 2 and len(by_svc.get("unready", [])) == 1

        wait_for("the EndpointSlices", slices_settled)
        yield env
    finally:
        cluster.stop(timeout=60)
        subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", cluster.name,
                        "--data-dir", str(cluster.data_dir)], capture_output=True)
        if upstream is not None:
            upstream.close()
        assert not [n for n in netns_names() if n.startswith(f"{cluster.name}-")]


# --------------------------------------------------------------------------- names from busybox


def nslookup(env: Env, name: str) -> list[tuple[str, str]]:
    """busybox nslookup's (name, address) pairs."""
    out = env.sh(f"nslookup {name}")
    pairs, current = [], ""
    for line in out.splitlines():
        if line.startswith("Name:"):
            current = line.split(None, 1)[1]
        elif line.startswith("Address:") and current:
            pairs.append((current, line.split(None, 1)[1]))
    return pairs


def test_busybox_nslookup_by_short_name_and_fqdn(env: Env) -> None:
    ip = env.cluster_ip("backend")
    assert nslookup(env, "backend") == [(f"backend.default.svc.{ZONE}", ip)]
    assert nslookup(env, f"backend.default.svc.{ZONE}") == [(f"backend.default.svc.{ZONE}", ip)]
    assert nslookup(env, f"kubernetes.default.svc.{ZONE}") == [(f"kubernetes.default.svc.{ZONE}", "10.96.0.1")]
    assert nslookup(env, f"peer-0.peers.default.svc.{ZONE}") == [(f"peer-0.peers.default.svc.{ZONE}",
                                                                  env.pod_ip("peer-a"))]
    assert nslookup(env, "no-such-service") == []


def test_wget_by_short_partial_and_full_names_over_udp_and_tcp(env: Env) -> None:
    names = ["backend", "backend.default", "backend.default.svc", f"backend.default.svc.{ZONE}",
             f"backend.default.svc.{ZONE}.", "peer-1.peers:8080"]  # headless: straight to the pod's port
    script = "; ".join(f"echo $(wget -qO- http://{n}/hostname)" for n in names)
    tcp_before = env.metric('coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="tcp"')
    for env_vars in ("", "RES_OPTIONS=use-vc"):  # glibc: UDP, then the same lookups over TCP
        got = env.sh(script, env=env_vars).splitlines()
        assert len(got) == len(names), got
        assert set(got[:-1]) <= env.backends(), (env_vars, got)
        assert got[-1] == "peer-1", (env_vars, got)  # the pod's hostname, reached by hostname.subdomain
    tcp_after = env.metric('coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="tcp"')
    assert tcp_after - tcp_before >= 2 * len(names)  # A and AAAA per name at least, over TCP


def test_kubernetes_default_resolves_to_the_api_service(env: Env) -> None:
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "backend.default"]
    expected = {n: ["10.96.0.1"] for n in names[:-1]} | {"backend.default": [env.cluster_ip("backend")]}
    assert env.addresses(*names) == expected
    assert env.addresses(*names, tcp=True) == expected


# --------------------------------------------------------------------------- records, over UDP and TCP


def test_records_over_udp_and_tcp(env: Env) -> None:
    backend_ip, peer_a, peer_b = env.cluster_ip("backend"), env.pod_ip("peer-a"), env.pod_ip("peer-b")
    peer0, peer1 = f"peer-0.{fqdn('peers')}", f"peer-1.{fqdn('peers')}"
    cases: list[tuple[str, str, str, list[str], list[str]]] = [  # name, type, rcode, answer, additional
        (fqdn("backend"), "A", "NOERROR", [f"{fqdn('backend')} A {backend_ip}"], []),
        (fqdn("kubernetes"), "A", "NOERROR", [f"{fqdn('kubernetes')} A 10.96.0.1"], []),
        (f"_http._tcp.{fqdn('backend')}", "SRV", "NOERROR",
         [f"_http._tcp.{fqdn('backend')} SRV 0 100 80 {fqdn('backend')}"], [f"{fqdn('backend')} A {backend_ip}"]),
        (reverse(backend_ip), "PTR", "NOERROR", [f"{reverse(backend_ip)} PTR {fqdn('backend')}"], []),
        # Headless: one A per ready pod; named endpoints; SRV per endpoint (weights share 100).
        (fqdn("peers"), "A", "NOERROR", sorted([f"{fqdn('peers')} A {peer_a}", f"{fqdn('peers')} A {peer_b}"]), []),
        (peer0, "A", "NOERROR", [f"{peer0} A {peer_a}"], []),
        (f"_http._tcp.{fqdn('peers')}", "SRV", "NOERROR",
         [f"_http._tcp.{fqdn('peers')} SRV 0 50 8080 {peer0}", f"_http._tcp.{fqdn('peers')} SRV 0 50 8080 {peer1}"],
         [f"{peer0} A {peer_a}", f"{peer1} A {peer_b}"]),
        (reverse(peer_b), "PTR", "NOERROR", [f"{reverse(peer_b)} PTR {peer1}"], []),
        (fqdn("unready"), "A", "NXDOMAIN", [], []),  # headless without a ready endpoint
        (fqdn("no-such-service"), "A", "NXDOMAIN", [], []),
        (fqdn("backend"), "AAAA", "NOERROR", [], []),  # exists, no IPv6: NODATA
        (f"dns-version.{ZONE}.", "TXT", "NOERROR", [f"dns-version.{ZONE}. TXT \"1.0.1\""], []),
    ]
    questions = [(name, rdtype, proto) for proto in ("udp", "tcp") for name, rdtype, *_ in cases]
    answers = env.ask(*questions)
    for (name, rdtype, proto), got in zip(questions, answers, strict=True):
        _, _, rcode, answer, additional = next(c for c in cases if c[:2] == (name, rdtype))
        assert (got["rcode"], got["answer"], got["additional"]) == (rcode, answer, additional), (name, rdtype, proto)


def test_externalname_is_a_cname_and_follows_its_update(env: Env) -> None:
    ext = fqdn("ext")
    assert env.ask((ext, "A", "udp"), (ext, "A", "tcp")) == [{
        "rcode": "NOERROR", "additional": [],
        "answer": [f"{ext} CNAME www.example.test.", "www.example.test. A 192.0.2.1"],  # the target via upstream
    }] * 2
    updated = [f"{ext} CNAME {fqdn('backend')}", f"{fqdn('backend')} A {env.cluster_ip('backend')}"]
    with env.watching(ext, "A", 4) as samples:
        changed_at = time.time()
        code, body = env.raw.json("PATCH", "/api/v1/namespaces/default/services/ext",
                                  {"spec": {"externalName": f"backend.default.svc.{ZONE}"}},
                                  "application/merge-patch+json")
        assert code == 200, body
    first = next(t for t, _, answer in samples if answer == updated)
    print(f"ExternalName update answered {first - changed_at:.3f} s after the PATCH was sent")
    assert first - changed_at < 2.0
    assert all(answer == updated for t, _, answer in samples if t > first)


def test_a_deleted_service_is_nxdomain_within_a_second(env: Env) -> None:
    env.apply(service("doomed", None))
    name = fqdn("doomed")
    assert wait_for("doomed resolvable", lambda: env.ask((name, "A", "udp"))[0]["answer"], timeout=10)
    with env.watching(name, "A", 3) as samples:
        deleted_at = time.time()
        code, body = env.raw.request("DELETE", "/api/v1/namespaces/default/services/doomed")
        assert code == 200, body
    assert samples[0][1] == "NOERROR"
    first = next(t for t, rcode, _ in samples if rcode == "NXDOMAIN")
    print(f"NXDOMAIN {first - deleted_at:.3f} s after the DELETE was sent")
    assert first - deleted_at < 1.0
    assert all(rcode == "NXDOMAIN" for t, rcode, _ in samples if t > first)


# --------------------------------------------------------------------------- outside names


def test_outside_names_are_forwarded_and_cached(env: Env) -> None:
    assert nslookup(env, "www.busybox.example.test") == [("www.busybox.example.test", "192.0.2.1")]
    assert env.upstream.count("www.busybox.example.test.") >= 1
    once = "once.example.test."
    got = env.ask((once, "A", "udp"), (once, "A", "udp"), ("nx.example.test.", "A", "udp"), ("tcp.example.test.", "A", "tcp"))
    assert [g["answer"] for g in got] == [[f"{once} A 192.0.2.1"]] * 2 + [[], ["tcp.example.test. A 192.0.2.1"]]
    assert got[2]["rcode"] == "NXDOMAIN"
    assert env.upstream.count(once) == 1  # the second answer came from the cache
    assert ("tcp", "tcp.example.test.", "A") in env.upstream.queries  # asked over TCP, forwarded over TCP


# --------------------------------------------------------------------------- the API from a pod


# A pod's service account holds nothing until bound (issue 18): these pods read with "view".
VIEW_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
    "metadata": {"name": "default-view", "namespace": "default"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
}


def test_service_account_token_reaches_the_api_through_the_kubernetes_service(env: Env) -> None:
    env.apply(VIEW_BINDING)
    names = env.py(script=BEARER).split()
    assert {"bb", "py", "peer-a"} <= set(names)


def test_official_python_client_in_cluster_lists_pods(env: Env) -> None:
    env.apply(VIEW_BINDING)
    names = env.py(script=INCLUSTER).split()
    assert {"bb", "py", "peer-a"} <= set(names)


def test_no_query_but_the_tests_own_outside_names_reached_the_upstream(env: Env) -> None:
    asked = {name for _, name, _ in env.upstream.queries}
    assert asked and all(n.endswith(".example.test.") for n in asked), asked


def test_cluster_dns_reads_the_api_as_its_own_service_account(env: Env) -> None:
    """CoreDNS's identity (issue 18): the coredns pod's projected token, bound to that pod, is
    ``system:serviceaccount:kube-system:coredns``, which kubeadm's ``system:coredns`` role lets
    list and watch what DNS serves, and nothing else."""
    [dns] = env.pods("k8s-app=kube-dns", "kube-system")
    token_file = env.cluster.data_dir / "agent" / "pods" / dns["metadata"]["uid"] / "serviceaccount" / "token"
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                         "spec": {"token": token_file.read_text().strip()}})
    out = env.cluster.kubectl("create", "-o", "json", "-f", "-", input=review, check=True).stdout
    user = json.loads(out)["status"]["user"]
    assert user["username"] == "system:serviceaccount:kube-system:coredns"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == [dns["metadata"]["name"]]
    as_dns = "--as=system:serviceaccount:kube-system:coredns"
    assert env.cluster.kubectl("auth", "can-i", "watch", "endpointslices.discovery.k8s.io", as_dns).stdout.strip() \
        == "yes"
    assert env.cluster.kubectl("auth", "can-i", "get", "secrets", "-A", as_dns).stdout.strip() == "no"
