"""The official Python client's streams (``kubernetes.stream``) against pods of a real cluster.

The stream half of what kubernetes-client/python's e2e suite covers (see
tests/integration/test_python_client.py for the rest): exec with text and binary output,
exit codes from the error channel, interactive stdin, closing stdin (v5.channel.k8s.io),
attach, and port-forward over WebSocket, raw sockets and HTTP. A real ``kubelite up`` with
its node agent runs the pods (root, network namespaces); the images are our catalog's
``busybox`` and ``python``.
"""

from __future__ import annotations

import functools
import gzip
import json
import select
import shutil
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream
from kubernetes.stream.ws_client import ERROR_CHANNEL

from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]

# A TCP echo server on each port named on its command line (what the client suite's
# port_server.py does), for the raw port-forward test.
PORT_SERVER = """\
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept()
        def echo(c=c):
            while True:
                d = c.recv(1024)
                if not d:
                    c.close(); return
                c.sendall(d)
        threading.Thread(target=echo, daemon=True).start()
threads = [threading.Thread(target=serve, args=(int(p),)) for p in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
"""


wait_for = functools.partial(waiting.wait_for, timeout=90.0, interval=0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    c = new_cluster(tmp_path_factory.mktemp("pystream"))
    try:
        c.start(agent=True, timeout=60)
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> Iterator[Any]:
    api = config.new_client_from_config(str(cluster.kubeconfig))
    yield client.CoreV1Api(api)
    api.close()


def running(core: Any, manifest: Obj, ns: str = "default") -> str:
    name = str(manifest["metadata"]["name"])
    core.create_namespaced_pod(ns, manifest)

    def ready() -> bool:
        pod = core.read_namespaced_pod(name, ns)
        statuses = pod.status.container_statuses or []
        return pod.status.phase == "Running" and all(s.ready for s in statuses)

    wait_for(f"pod {name} to run", ready)
    return name


@pytest.fixture(scope="module")
def busybox(core: Any) -> Iterator[str]:
    name = f"busybox-test-{uuid.uuid4().hex[:6]}"
    running(core, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"containers": [{"name": "sleep", "image": "busybox",
                                            "args": ["/bin/sh", "-c", "while true; do date; sleep 5; done"]}]}})
    yield name
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_exec_text_and_binary_output(core: Any, busybox: str) -> None:
    out = stream(core.connect_get_namespaced_pod_exec, busybox, "default",
                 command=["/bin/sh", "-c", "for i in $(seq 1 3); do date; done"],
                 stderr=False, stdin=False, stdout=True, tty=False)
    assert isinstance(out, str) and len(out.splitlines()) == 3
    require(shutil.which("gzip") is not None, "gzip is not installed")
    out = stream(core.connect_get_namespaced_pod_exec, busybox, "default",
                 command=["/bin/sh", "-c", 'echo -n "This is a test string" | gzip'],
                 stderr=False, stdin=False, stdout=True, tty=False, binary=True)
    assert isinstance(out, bytes) and gzip.decompress(out) == b"This is a test string"
    out = stream(core.connect_post_namespaced_pod_exec, busybox, "default", command=["uname", "-s"],
                 stderr=False, stdin=False, stdout=True, tty=False)
    assert out.splitlines() == ["Linux"]


@pytest.mark.parametrize(("command", "code"), [
    (["false"], 1), (["/bin/sh", "-c", "sleep 1; exit 3"], 3), (["true"], 0), (["/bin/sh", "-c", "ls /"], 0),
])
def test_exit_code(core: Any, busybox: str, command: list[str], code: int) -> None:
    resp = stream(core.connect_get_namespaced_pod_exec, busybox, "default", command=command,
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    assert resp.returncode is None
    resp.run_forever(timeout=10)
    assert resp.returncode == code and resp.returncode == code


def _interactive(core: Any, pod: str, binary: bool) -> None:
    def enc(s: str) -> Any:
        return s.encode() if binary else s

    resp = stream(core.connect_post_namespaced_pod_exec, pod, "default", command=["/bin/sh"],
                  stderr=True, stdin=True, stdout=True, tty=False, binary=binary, _preload_content=False)
    resp.write_stdin(enc("echo test string 1\n"))
    assert resp.readline_stdout(timeout=5) == enc("test string 1")
    assert not resp.peek_stderr()
    resp.write_stdin(enc("echo test string 2 >&2\n"))
    assert resp.readline_stderr(timeout=5) == enc("test string 2")
    resp.write_stdin(enc("exit\n"))
    resp.update(timeout=5)
    line = wait_for("the exec status", lambda: resp.read_channel(ERROR_CHANNEL) or (resp.update(timeout=1) and None),
                    timeout=15)
    assert json.loads(line)["status"] == "Success"
    resp.update(timeout=5)
    assert not resp.is_open()


def test_exec_interactive_text_stdin(core: Any, busybox: str) -> None:
    _interactive(core, busybox, binary=False)


def test_exec_interactive_binary_stdin(core: Any, busybox: str) -> None:
    _interactive(core, busybox, binary=True)


def test_exec_close_stdin_channel(core: Any, busybox: str) -> None:
    resp = stream(core.connect_post_namespaced_pod_exec, busybox, "default", command=["/bin/sh", "-c", "cat"],
                  stderr=True, stdin=True, stdout=True, tty=False, binary=True, _preload_content=False)
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"
        resp.write_stdin(b"test-close\n")
        assert resp.readline_stdout(timeout=5) == b"test-close"
        resp.close_channel(0)  # EOF on cat's stdin: it exits, and the stream ends
        resp.run_forever(timeout=15)
        assert not resp.is_open() and resp.returncode == 0
    finally:
        if resp.is_open():
            resp.close()


def test_attach(core: Any) -> None:
    name = running(core, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"attach-{uuid.uuid4().hex[:6]}"},
                          "spec": {"containers": [{"name": "c", "image": "busybox", "stdin": True,
                                                   "args": ["/bin/sh", "-c", "while read l; do echo got $l; done"]}]}})
    try:
        resp = stream(core.connect_get_namespaced_pod_attach, name, "default", stdin=True, stdout=True, stderr=True,
                      tty=False, binary=True, _preload_content=False)
        resp.write_stdin(b"hello\n")
        assert resp.readline_stdout(timeout=10) == b"got hello"
        resp.close()
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_portforward_raw(core: Any) -> None:
    name = f"portforward-raw-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"port-server.py": PORT_SERVER}})
    running(core, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "port-server", "image": "python",
                        "command": ["python", "-u", "/opt/port-server.py", "1234", "1235"],
                        "volumeMounts": [{"name": "srv", "mountPath": "/opt", "readOnly": True}],
                        "startupProbe": {"tcpSocket": {"port": 1235}, "periodSeconds": 1, "failureThreshold": 30}}],
        "volumes": [{"name": "srv", "configMap": {"name": name}}]}})
    try:
        for i in range(3):
            pf = portforward(core.connect_get_namespaced_pod_portforward, name, "default", ports="1234,1235,1236")
            assert pf.connected
            socks = {p: pf.socket(p) for p in (1234, 1235)}
            for port, sock in socks.items():
                sock.setblocking(True)
                sent = b"Test %d port %d forwarding" % (i, port)
                sock.sendall(sent)
                reply = b""
                deadline = time.monotonic() + 30
                while reply != sent:
                    assert time.monotonic() < deadline
                    r, _, _ = select.select([sock], [], [], 1)
                    if r:
                        data = sock.recv(1024)
                        assert data, "unexpected close"
                        reply += data
            unbound = pf.socket(1236)
            unbound.setblocking(True)
            assert unbound.recv(1024) == b"" and pf.error(1236) is not None
            unbound.close()
            for sock in socks.values():
                sock.close()
            time.sleep(1)
            assert not pf.connected and pf.error(1234) is None and pf.error(1235) is None
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        core.delete_namespaced_config_map(name, "default")


def test_portforward_http(core: Any) -> None:
    # The client's suite serves nginx's welcome page; the python image's http.server serves it
    # here (our nginx image runs the host's nginx, which CI does not install).
    name = f"portforward-http-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map("default", {"metadata": {"name": name},
                                                  "data": {"index.html": "<h1>Welcome to nginx!</h1>\n"}})
    running(core, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "containers": [{"name": "web", "image": "python", "workingDir": "/srv",
                        "command": ["python", "-m", "http.server", "80"],
                        "volumeMounts": [{"name": "html", "mountPath": "/srv"}],
                        "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 1}}],
        "volumes": [{"name": "html", "configMap": {"name": name}}]}})
    original = socket.create_connection

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host = address[0].decode() if isinstance(address[0], bytes) else address[0]
        parts = host.split(".")
        if len(parts) != 3 or parts[2] != "kubernetes":
            return original(address, *args, **kwargs)
        pf = portforward(core.connect_get_namespaced_pod_portforward, parts[0], parts[1], ports=str(address[1]))
        sock: socket.socket = pf.socket(address[1])
        return sock

    try:
        socket.create_connection = create_connection
        with urllib.request.urlopen(f"http://{name}.default.kubernetes/") as response:
            html = response.read().decode()
            assert response.status == 200 and "<h1>Welcome to nginx!</h1>" in html
    finally:
        socket.create_connection = original
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        core.delete_namespaced_config_map(name, "default")


def test_pod_and_service_proxy(core: Any) -> None:
    name = f"proxied-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"index.html": "hello\n"}})
    core.create_namespaced_service("default", {"metadata": {"name": name}, "spec": {
        "selector": {"app": name}, "ports": [{"name": "http", "port": 8080, "targetPort": 80}]}})
    running(core, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": {
        "containers": [{"name": "web", "image": "python", "workingDir": "/srv",
                        "command": ["python", "-m", "http.server", "80"],
                        "volumeMounts": [{"name": "html", "mountPath": "/srv"}],
                        "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 1}}],
        "volumes": [{"name": "html", "configMap": {"name": name}}]}})
    try:
        assert core.connect_get_namespaced_pod_proxy_with_path(f"{name}:80", "default", "index.html") == "hello\n"
        assert core.connect_get_namespaced_service_proxy_with_path(
            f"{name}:http", "default", "index.html") == "hello\n"
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        core.delete_namespaced_service(name, "default")
        core.delete_namespaced_config_map(name, "default")
