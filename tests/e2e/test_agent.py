"""The node agent end to end: a real ``kubelite up``, a real agent process, real pods.

The agent runs as its own process (``python -m kubelite.node``) next to ``kubelite up
--no-agent``, so the tests can kill and restart it; it has a cluster name of its own, so its
namespaces never collide with anything else, and its pods are bound to its node by
``spec.nodeName``. Whatever happens, teardown kills the
agent, every container it started, the cluster, and removes the network namespaces.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
Obj = dict[str, Any]


wait_for = functools.partial(waiting.wait_for, timeout=20.0, interval=0.1)


@dataclass
class Node:
    cluster: Cluster
    name: str  # the agent's cluster name (netns prefix)
    node: str
    state_dir: pathlib.Path
    proc: subprocess.Popen[bytes] | None = None
    dns_upstream: str = ""

    def start_agent(self) -> None:
        log = open(self.state_dir.parent / f"{self.name}-agent.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.node", "-v", "--kubeconfig", str(self.cluster.kubeconfig),
             "--cluster-name", self.name, "--node-name", self.node, "--state-dir", str(self.state_dir),
             *(["--dns-upstream", self.dns_upstream] if self.dns_upstream else [])],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=input, check=True).stdout

    def apply(self, *objs: Obj) -> None:
        for obj in objs:
            obj.setdefault("spec", {})["nodeName"] = self.node
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))

    def pod(self, name: str, ns: str = "default") -> Obj | None:
        res = self.cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json")
        return json.loads(res.stdout) if res.returncode == 0 else None

    def wait_pod(self, name: str, what: str, predicate: Callable[[Obj], bool], timeout: float = 20.0) -> Obj:
        """The pod once ``predicate`` holds for it."""

        def check() -> Obj | None:
            p = self.pod(name)
            return p if p is not None and predicate(p) else None

        result: Obj = wait_for(f"{name}: {what}", check, timeout=timeout)
        return result

    def node_object(self) -> Obj | None:
        res = self.cluster.kubectl("get", "node", self.node, "-o", "json")
        return json.loads(res.stdout) if res.returncode == 0 else None

    def log(self, pod: Obj, container: str, restart: int = 0) -> str:
        path = self.state_dir / "pods" / pod["metadata"]["uid"] / "logs" / container / f"{restart}.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return "\n".join(line.split(" ", 3)[3] if line.count(" ") >= 3 else "" for line in lines)


def status_of(pod: Obj | None, container: str) -> Obj:
    for s in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if s["name"] == container:
            return dict(s)
    return {}


def condition(pod: Obj | None, type_: str) -> str:
    for c in ((pod or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return str(c["status"])
    return ""


def pod(name: str, containers: list[Obj], **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": containers, **spec}}


class FakeResolver:
    """A resolver on the host's loopback answering every A query with 192.0.2.44 (TEST-NET-1):
    the DNS relay is tested without sending a single packet off this machine."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import dns.message
        import dns.rrset

        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            q = query.question[0]
            if q.rdtype == 1:  # A
                answer.answer.append(dns.rrset.from_text(q.name, 5, "IN", "A", "192.0.2.44"))
            self.sock.sendto(answer.to_wire(), addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    from kubelite.node.network import cleanup_cluster
    from kubelite.node.runtime import kill_all
    from kubelite.node.volumes import unmount_under

    base = tmp_path_factory.mktemp("agent")
    cluster = new_cluster(base)
    agent_cluster = f"{cluster.name}-a"
    n = Node(cluster, agent_cluster, f"{agent_cluster}-node", cluster.data_dir / "agent-e2e")
    before = [ns for ns in netns_names() if ns.startswith(agent_cluster)]
    upstream = FakeResolver()
    n.dns_upstream = f"127.0.0.1:{upstream.port}"
    try:
        cluster.start(extra=["--no-agent"])  # this module runs (and kills) its own agent
        n.state_dir.mkdir(parents=True, exist_ok=True)
        n.start_agent()
        wait_for("node Ready", lambda: condition(n.node_object(), "Ready") == "True")
        yield n
    finally:
        upstream.close()
        n.stop_agent()
        kill_all(n.state_dir)
        unmount_under(n.state_dir / "pods")  # memory-backed emptyDirs a failed test left
        cluster.stop()
        cleanup_cluster(agent_cluster)
        assert [ns for ns in netns_names() if ns.startswith(agent_cluster)] == before


# ---------------------------------------------------------------------------------- tests


def test_node_registration(node: Node) -> None:
    obj = node.node_object()
    assert obj is not None
    labels = obj["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == node.node
    assert labels["kubernetes.io/os"] == "linux"
    assert {"type": "InternalIP", "address": "10.244.0.1"} in obj["status"]["addresses"]
    assert obj["spec"]["podCIDR"] == "10.244.0.0/24"
    assert obj["status"]["nodeInfo"]["kubeletVersion"] == "v1.33.0-kubelite"
    assert obj["metadata"]["annotations"]["kubelite.io/kubelet-socket"] == str(node.state_dir / "kubelet.sock")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("KubeletReady", "kubelet is posting ready status")
    lease = json.loads(node.kubectl("get", "lease", "-n", "kube-node-lease", node.node, "-o", "json"))
    assert lease["spec"]["holderIdentity"] == node.node
    assert lease["spec"]["leaseDurationSeconds"] == 40


def test_pods_get_their_own_ips_and_serve_traffic(node: Node) -> None:
    web = {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}
    node.apply(pod("web-a", [web]), pod("web-b", [web]))
    pods = [node.wait_pod(n, "Ready", lambda p: condition(p, "Ready") == "True") for n in ("web-a", "web-b")]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2 and all(ip.startswith("10.244.0.") for ip in ips)
    script = "; ".join(f"wget -qO- http://{ip}:8080/hostname; echo" for ip in ips) + "; hostname"
    node.apply(pod("fetch", [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}],
                   restartPolicy="Never", hostname="fetcher"))
    done = node.wait_pod("fetch", "Succeeded", lambda p: p["status"].get("phase") == "Succeeded")
    assert node.log(done, "c").split("\n") == ["web-a", "web-b", "fetcher"]
    assert condition(done, "Ready") == "False"
    assert status_of(done, "c")["state"]["terminated"]["reason"] == "Completed"


def test_readiness_gates_ready(node: Node) -> None:
    c = {"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 2; touch /state/ready; sleep 3600"],
         "readinessProbe": {"exec": {"command": ["cat", "/state/ready"]}, "periodSeconds": 1},
         "volumeMounts": [{"name": "state", "mountPath": "/state"}]}
    node.apply(pod("ready", [c], terminationGracePeriodSeconds=1, volumes=[{"name": "state", "emptyDir": {}}]))
    running = node.wait_pod("ready", "running", lambda p: "running" in status_of(p, "c").get("state", {}))
    assert condition(running, "Ready") == "False"
    assert condition(running, "ContainersReady") == "False"
    ready = node.wait_pod("ready", "Ready", lambda p: condition(p, "Ready") == "True", timeout=10)
    assert status_of(ready, "c")["ready"] is True


def test_crashing_container_backs_off(node: Node) -> None:
    node.apply(pod("crash", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"]}]))

    def crashlooping() -> Obj | None:
        s = status_of(node.pod("crash"), "c")
        return s if (s.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff" else None

    s = wait_for("CrashLoopBackOff", crashlooping, timeout=15)
    assert s["restartCount"] >= 1
    assert s["lastState"]["terminated"]["exitCode"] == 3
    assert s["lastState"]["terminated"]["reason"] == "Error"
    uid = node.pod("crash")["metadata"]["uid"]  # type: ignore[index]
    assert s["state"]["waiting"]["message"] == f"back-off 10s restarting failed container=c pod=crash_default({uid})"
    assert node.pod("crash")["status"]["phase"] == "Running"  # type: ignore[index]


def test_liveness_failure_restarts(node: Node) -> None:
    c = {"name": "c", "image": "busybox", "command": ["sh", "-c", "touch /state/ok; sleep 1; rm /state/ok; sleep 3600"],
         "livenessProbe": {"exec": {"command": ["cat", "/state/ok"]}, "periodSeconds": 1, "failureThreshold": 1},
         "volumeMounts": [{"name": "state", "mountPath": "/state"}]}
    node.apply(pod("live", [c], terminationGracePeriodSeconds=1, volumes=[{"name": "state", "emptyDir": {}}]))
    s = status_of(node.wait_pod("live", "a restart", lambda p: status_of(p, "c").get("restartCount", 0) >= 1, 15), "c")
    assert s["lastState"]["terminated"]["exitCode"] == 137  # sh as PID 1 ignores SIGTERM: killed after grace
    events = json.loads(node.kubectl("get", "events", "--field-selector", "involvedObject.name=live", "-o", "json"))
    messages = {(e["reason"], e["message"]) for e in events["items"]}
    assert ("Killing", "Container c failed liveness probe, will be restarted") in messages
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed:") for r, m in messages)


def test_deletion_runs_prestop_then_sigterm_within_grace(node: Node, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    c = {
        "name": "c", "image": "busybox",
        "command": ["sh", "-c", "trap 'echo term >> /out/trace; exit 0' TERM; while true; do sleep 0.1; done"],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/trace"]}}},
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    }
    stubborn = {"name": "s", "image": "busybox", "command": ["sleep", "3600"]}  # PID 1: SIGTERM ignored
    node.apply(pod("stop", [c, stubborn], terminationGracePeriodSeconds=3,
                   volumes=[{"name": "out", "hostPath": {"path": str(out)}}]))
    p = node.wait_pod("stop", "Ready", lambda p: condition(p, "Ready") == "True")
    pod_dir = node.state_dir / "pods" / p["metadata"]["uid"]
    started = time.monotonic()
    node.kubectl("delete", "pod", "stop", "--wait=false")
    wait_for("Ready=False", lambda: condition(node.pod("stop"), "Ready") in ("False", ""), timeout=3)
    wait_for("pod gone", lambda: node.pod("stop") is None, timeout=15)
    elapsed = time.monotonic() - started
    assert (out / "trace").read_text().split() == ["prestop", "term"]
    assert 2.5 <= elapsed < 8, elapsed  # the stubborn container got its full grace period, then SIGKILL
    assert not pod_dir.exists()
    assert not any(ns.endswith(p["metadata"]["uid"].replace("-", "")[:12]) for ns in netns_names())


def test_agent_restart_readopts_running_pods(node: Node) -> None:
    before = {n: node.pod(n) for n in ("web-a", "web-b")}
    pids_before = [s for s in node.state_dir.glob("containers/*/status.json")]
    node.stop_agent(signal.SIGKILL)
    time.sleep(0.5)
    for p in before.values():
        assert p is not None and condition(node.pod(p["metadata"]["name"]), "Ready") == "True"
    node.start_agent()
    renewed = json.loads(node.kubectl("get", "lease", "-n", "kube-node-lease", node.node, "-o", "json"))["spec"]["renewTime"]
    wait_for("lease renewed", lambda: json.loads(node.kubectl(
        "get", "lease", "-n", "kube-node-lease", node.node, "-o", "json"))["spec"]["renewTime"] != renewed, timeout=15)
    # A sync has run: a fresh pod starts, so the old ones have been looked at too.
    node.apply(pod("after", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
                   terminationGracePeriodSeconds=1))
    wait_for("new pod Ready", lambda: condition(node.pod("after"), "Ready") == "True")
    for name, old in before.items():
        new = node.pod(name)
        assert status_of(new, "agnhost")["containerID"] == status_of(old, "agnhost")["containerID"]
        assert status_of(new, "agnhost")["restartCount"] == 0
        assert condition(new, "Ready") == "True"
    assert len(list(node.state_dir.glob("containers/*/status.json"))) >= len(pids_before)


def test_init_containers_run_first_and_unknown_images_back_off(node: Node) -> None:
    init = {"name": "init", "image": "busybox", "command": ["sh", "-c", "echo from-init > /state/x"],
            "volumeMounts": [{"name": "state", "mountPath": "/state"}]}
    main = {"name": "main", "image": "busybox", "command": ["sh", "-c", "cat /state/x"],
            "volumeMounts": [{"name": "state", "mountPath": "/state"}]}
    node.apply(pod("init", [main], initContainers=[init], restartPolicy="Never",
                   volumes=[{"name": "state", "emptyDir": {}}]),
               pod("noimage", [{"name": "c", "image": "example.com/no/such:1"}]))
    done = node.wait_pod("init", "Succeeded", lambda p: p["status"].get("phase") == "Succeeded")
    assert node.log(done, "main") == "from-init"
    init_status = done["status"]["initContainerStatuses"][0]
    assert init_status["state"]["terminated"]["reason"] == "Completed" and init_status["ready"] is True
    assert condition(done, "Initialized") == "True"

    def pull_failed(p: Obj) -> bool:
        reason = (status_of(p, "c").get("state", {}).get("waiting") or {}).get("reason")
        return reason in ("ErrImagePull", "ImagePullBackOff")

    bad = node.wait_pod("noimage", "image pull failure", pull_failed, timeout=10)
    assert 'Failed to pull image "example.com/no/such:1"' in status_of(bad, "c")["state"]["waiting"]["message"]
    assert bad["status"]["phase"] == "Pending"


def test_security_context_and_in_image_agnhost_path(node: Node) -> None:
    ids = {"name": "c", "image": "busybox", "command": ["sh", "-c", "id -u; id -g"],
           "securityContext": {"runAsUser": 1234, "runAsGroup": 5678}}
    nonroot = {"name": "c", "image": "busybox", "command": ["true"]}
    # Manifests written for the real agnhost image call its binary by path.
    agn = {"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
           "command": ["/agnhost", "serve-hostname", "--port=9376"]}
    node.apply(pod("ids", [ids], restartPolicy="Never"),
               pod("nonroot", [nonroot], securityContext={"runAsNonRoot": True}),
               pod("agnpath", [agn]))
    done = node.wait_pod("ids", "Succeeded", lambda p: p["status"].get("phase") == "Succeeded")
    assert node.log(done, "c").split() == ["1234", "5678"]

    def refused(p: Obj) -> bool:
        return (status_of(p, "c").get("state", {}).get("waiting") or {}).get("reason") == "CreateContainerConfigError"

    bad = node.wait_pod("nonroot", "CreateContainerConfigError", refused, timeout=10)
    assert "container has runAsNonRoot and image will run as root" in status_of(bad, "c")["state"]["waiting"]["message"]
    running = node.wait_pod("agnpath", "Running", lambda p: p["status"].get("phase") == "Running")
    assert status_of(running, "c").get("restartCount") == 0


def test_the_service_account_token_is_the_kubelets_extended_one(node: Node) -> None:
    """The kubelet asks 3607 s for the kube-api-access token; the API server (with
    --service-account-extend-token-expiration, its default) signs it for a year with warnafter
    at the hour, bound to the pod and its node."""
    node.apply(pod("sa-token", [{"name": "c", "image": "busybox", "command": [
        "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]}], restartPolicy="Never"))
    done = node.wait_pod("sa-token", "Succeeded", lambda p: p["status"].get("phase") == "Succeeded")
    payload = node.log(done, "c").strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    k8s = claims["kubernetes.io"]
    assert k8s["warnafter"] - claims["iat"] == 3607
    assert (k8s["pod"]["name"], k8s["pod"]["uid"], k8s["node"]["name"]) == (
        "sa-token", done["metadata"]["uid"], node.node)


def test_default_dns_policy_resolves_through_the_node_relay(node: Node) -> None:
    c = {"name": "c", "image": "busybox",
         "command": ["sh", "-c", "cat /etc/resolv.conf; nslookup relay.example.test"]}
    node.apply(pod("dnsdefault", [c], restartPolicy="Never", dnsPolicy="Default"))
    done = node.wait_pod("dnsdefault", "finished", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))
    out = node.log(done, "c")
    assert "nameserver 10.244.0.1" in out, out
    assert "192.0.2.44" in out, out


async def test_pods_deleted_while_their_workers_sync_leave_no_traceback(node: Node) -> None:
    """Issue 15: pods deleted while their worker syncs (while the sandbox is made, as they
    complete) end cleanly, without a traceback in the agent's log. Deleted through the API
    directly, within milliseconds: as a client does that waits for Succeeded, then deletes."""
    from kubelite.client import PODS, ApiError, Client

    log_path = node.state_dir.parent / f"{node.name}-agent.log"
    offset = log_path.stat().st_size
    label = f"churn-{int(time.time() * 1000) % 100000}"
    deleted: set[str] = set()
    uids: list[str] = []

    async def delete(client: Client, name: str) -> None:
        deleted.add(name)
        with contextlib.suppress(ApiError):
            await client.delete(PODS, name, "default", grace_period_seconds=0)

    async def delete_when_done(client: Client) -> None:
        # A pod that has Succeeded is deleted at once (no grace): while its worker frees the sandbox.
        async for _, obj in client.watch(PODS, "default", label_selector=f"churn={label}"):
            name = obj["metadata"]["name"]
            if (obj.get("status") or {}).get("phase") == "Succeeded" and name not in deleted:
                await delete(client, name)

    def manifest(name: str, command: list[str]) -> Obj:
        obj = pod(name, [{"name": "c", "image": "busybox", "command": command}], restartPolicy="Never",
                  terminationGracePeriodSeconds=1, nodeName=node.node)
        obj["metadata"]["labels"] = {"churn": label}
        return obj

    async with Client.from_kubeconfig(node.cluster.kubeconfig) as client:
        watcher = asyncio.create_task(delete_when_done(client))
        try:
            for i in range(10):
                done = await client.create(PODS, manifest(f"{label}-done-{i}", ["true"]), "default")
                sleeper = await client.create(PODS, manifest(f"{label}-gone-{i}", ["sleep", "3600"]), "default")
                uids += [done["metadata"]["uid"], sleeper["metadata"]["uid"]]
                await asyncio.sleep(0.01 * i)  # force-deleted at a different moment of its sandbox each
                await delete(client, sleeper["metadata"]["name"])
            deadline = time.monotonic() + 30
            while (await client.list(PODS, "default", label_selector=f"churn={label}"))["items"]:
                assert time.monotonic() < deadline, "pods not gone after 30s"
                await asyncio.sleep(0.2)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await watcher
    wait_for("their directories removed", lambda: not any((node.state_dir / "pods" / uid).exists() for uid in uids),
             timeout=15)
    with log_path.open("rb") as f:
        f.seek(offset)
        log = f.read().decode(errors="replace")
    assert "Traceback" not in log, log


def test_agnhost_as_conformance_runs_it(node: Node) -> None:
    """Issue 19: the agnhost image as Kubernetes' tests use it. Its CMD is ``pause`` (no command
    or args pauses), ``/agnhost-2`` runs it under another argv[0], and ``mounttest`` runs as a
    non-root user although this Python may live where that user cannot go (under /root)."""
    vol = [{"name": "v", "emptyDir": {}}]
    mt = {"name": "c", "image": AGNHOST, "securityContext": {"runAsUser": 1001, "runAsGroup": 1002},
          "args": ["mounttest", "--new_file_0644=/vol/f", "--file_perm=/vol/f", "--file_owner=/vol/f",
                   "--file_mode=/vol"],
          "volumeMounts": [{"name": "v", "mountPath": "/vol"}]}
    ep = {"name": "c", "image": AGNHOST, "command": ["/agnhost-2"], "args": ["entrypoint-tester", "override", "arguments"]}
    node.apply(pod("mt", [mt], restartPolicy="Never", volumes=vol), pod("ep", [ep], restartPolicy="Never"),
               pod("paused", [{"name": "c", "image": AGNHOST}]))
    done = node.wait_pod("mt", "finished", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))
    out = node.log(done, "c")
    assert done["status"]["phase"] == "Succeeded", out
    assert 'content of file "/vol/f": mount-tester new file' in out
    assert 'perms of file "/vol/f": -rw-r--r--' in out
    assert 'owner UID of "/vol/f": 1001' in out and 'owner GID of "/vol/f": 1002' in out
    assert 'mode of file "/vol": drwxrwxrwx' in out
    done = node.wait_pod("ep", "Succeeded", lambda p: p["status"].get("phase") == "Succeeded")
    assert node.log(done, "c") == "[/agnhost-2 entrypoint-tester override arguments]"
    paused = node.wait_pod("paused", "Running", lambda p: p["status"].get("phase") == "Running")
    wait_for("Paused in the log", lambda: node.log(paused, "c") == "Paused", timeout=10)
