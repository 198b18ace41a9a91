"""Clients other than kubectl on a real cluster: streams and proxies as the official Python client uses them.

A real ``kubelite up`` with its node agent runs an agnhost ``netexec`` pod behind a Service and
a busybox shell that reads its stdin. The official ``kubernetes`` client then does what its own
end-to-end suite does (issue 15): exec and attach writing stdin as text frames, port-forward
over a plain websocket (``kubernetes.stream.portforward``), the ``proxy`` subresources of pods,
services and nodes; ``kubectl proxy`` reaches the Service from the host by its URL; and raw
websockets check each channel protocol version and the log stream.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import portforward, stream

from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, Raw, free_port, kubectl_binary, new_cluster

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
SHELL_COMMAND = ["sh", "-c", "echo started; while read line; do echo got $line; done"]
# A server that switches to an "upcase" protocol when asked (as a websocket server would), else says no.
UPGRADER = """
import socket, threading
def serve(c):
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        head += c.recv(1024)
    if b"\\r\\nupgrade: upcase\\r\\n" in head.lower():
        c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: upcase\\r\\nConnection: Upgrade\\r\\n\\r\\n")
        while data := c.recv(1024):
            c.sendall(data.upper())
    else:
        c.sendall(b"HTTP/1.1 400 Bad Request\\r\\nContent-Length: 7\\r\\n\\r\\nupgrade")
    c.close()
srv = socket.create_server(("0.0.0.0", 8090))
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


wait_for = functools.partial(waiting.wait_for, timeout=90.0, interval=0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    c = new_cluster(tmp_path_factory.mktemp("clientstreams"))
    try:
        c.start(agent=True, timeout=60)
        web = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                   "name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                   "ports": [{"containerPort": 8080, "name": "http"}],
                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}
        shell = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                     "name": "c", "image": "busybox", "stdin": True, "command": SHELL_COMMAND}]}}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [
                   {"name": "http", "port": 80, "targetPort": 8080},
                   {"name": "alt", "port": 81, "targetPort": "http"}]}}
        upgrader = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "upgrader"},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                        "name": "c", "image": "python:3.12", "command": ["python3", "-c", UPGRADER]}]}}
        c.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([web, shell, svc, upgrader]), check=True)
        c.kubectl("wait", "--for=condition=Ready", "pod/web", "pod/shell", "pod/upgrader", "--timeout=90s",
                  check=True, timeout=100)

        def endpoints_ready() -> bool:
            res = c.kubectl("get", "endpoints", "web", "-o", "json")
            subsets = json.loads(res.stdout).get("subsets") or [] if res.returncode == 0 else []
            return any(s.get("addresses") for s in subsets)

        wait_for("the Service's endpoints", endpoints_ready)
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[k8s.CoreV1Api]:
    api_client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield k8s.CoreV1Api(api_client)
    finally:
        api_client.close()


def _ssl_options(api: k8s.CoreV1Api) -> dict[str, Any]:
    conf = api.api_client.configuration
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": conf.ssl_ca_cert, "certfile": conf.cert_file,
            "keyfile": conf.key_file, "check_hostname": False}


def _wss(api: k8s.CoreV1Api, path: str, protocols: list[str] | None) -> websocket.WebSocket:
    host = api.api_client.configuration.host.replace("https://", "wss://")
    return websocket.create_connection(host + path, subprotocols=protocols, sslopt=_ssl_options(api), timeout=20)


# ---------------------------------------------------------------------------- exec and attach


def test_exec_stdin_written_as_text_reaches_the_command(api: k8s.CoreV1Api) -> None:
    """``write_stdin`` with a str sends a TEXT frame: the command must read it (it used to be dropped)."""
    resp = stream(api.connect_get_namespaced_pod_exec, "shell", "default",
                  command=["sh", "-c", "read x; echo got $x; read y; echo and $y >&2"],
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"  # the client offers v5 and v4: v5 wins
        resp.write_stdin("hello\n")
        resp.write_stdin(b"bytes\n")  # and a binary frame, as before
        resp.run_forever(timeout=20)
        assert resp.read_stdout() == "got hello\n"
        assert resp.read_stderr() == "and bytes\n"
        assert resp.returncode == 0
    finally:
        resp.close()


def test_attach_stdin_written_as_text_reaches_the_container(api: k8s.CoreV1Api) -> None:
    resp = stream(api.connect_get_namespaced_pod_attach, "shell", "default",
                  stdin=True, stdout=True, stderr=False, tty=False, _preload_content=False)
    try:
        time.sleep(1.0)  # attached: what is written before is not replayed
        resp.write_stdin("one\n")
        out = ""
        deadline = time.monotonic() + 20
        while "got one" not in out and time.monotonic() < deadline:
            resp.update(timeout=1)
            out += resp.read_stdout(timeout=0) or ""
        assert "got one\n" in out
    finally:
        resp.close()


def _exec_frames(ws: websocket.WebSocket) -> tuple[dict[int, bytes], list[int]]:
    """What an exec session sent, by channel (decoded), and the opcodes it used, until the server closes."""
    b64 = ".base64." in f".{ws.subprotocol}"
    out: dict[int, bytes] = {}
    opcodes: list[int] = []
    while True:
        opcode, data = ws.recv_data(control_frame=False)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return out, opcodes
        opcodes.append(opcode)
        if not data:
            continue
        channel, payload = data[0], data[1:]
        if b64:
            channel, payload = channel - ord("0"), base64.b64decode(payload)
        out[channel] = out.get(channel, b"") + payload


@pytest.mark.parametrize("protocol", ["channel.k8s.io", "base64.channel.k8s.io", "v4.channel.k8s.io",
                                      "v4.base64.channel.k8s.io", "v5.channel.k8s.io"])
@pytest.mark.parametrize("frame", ["text", "binary"])
def test_exec_reads_stdin_in_either_frame_type_in_every_channel_protocol(
    api: k8s.CoreV1Api, protocol: str, frame: str
) -> None:
    b64 = ".base64." in f".{protocol}"
    query = urllib.parse.urlencode([("command", "sh"), ("command", "-c"), ("command", "read x; echo got $x"),
                                    ("stdin", "true"), ("stdout", "true"), ("stderr", "true")])
    ws = _wss(api, f"/api/v1/namespaces/default/pods/shell/exec?{query}", [protocol])
    try:
        assert ws.subprotocol == protocol
        payload = base64.b64encode(b"hi there\n") if b64 else b"hi there\n"
        message = (b"0" if b64 else b"\x00") + payload
        if frame == "text":
            ws.send(message.decode(), opcode=websocket.ABNF.OPCODE_TEXT)
        else:
            ws.send(message, opcode=websocket.ABNF.OPCODE_BINARY)
        out, opcodes = _exec_frames(ws)
    finally:
        ws.close()
    assert out.get(1) == b"got hi there\n", out
    # Base64 protocols answer in text frames only, the others in binary ones.
    expected = websocket.ABNF.OPCODE_TEXT if b64 else websocket.ABNF.OPCODE_BINARY
    assert set(opcodes) == {expected}
    if protocol.startswith(("v4.", "v5.")):
        assert json.loads(out[3])["status"] == "Success"
    else:
        assert 3 not in out  # before v4 a success says nothing on the error channel


def test_exec_v5_close_signal_in_a_text_frame_ends_stdin(api: k8s.CoreV1Api) -> None:
    resp = stream(api.connect_get_namespaced_pod_exec, "shell", "default", command=["sh", "-c", "cat; echo eof"],
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        resp.write_stdin("abc")
        resp.close_channel(0)  # v5's CLOSE: cat sees the end of its input
        resp.run_forever(timeout=20)
        assert resp.read_stdout() == "abceof\n"
    finally:
        resp.close()


# ---------------------------------------------------------------------------- port-forward


def _http_over(sock: Any, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: web\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_port_forward_over_websocket_with_the_official_client(api: k8s.CoreV1Api) -> None:
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080,9")
    try:
        reply = _http_over(pf.socket(8080), "/hostname")
        assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply
        assert reply.endswith(b"\r\n\r\nweb"), reply
        assert pf.error(8080) is None
        # Nothing listens on port 9: its error channel says so and its socket is closed.
        assert pf.socket(9).recv(100) == b""
        error = pf.error(9)
        assert error is not None and "error forwarding port 9 to pod default/web" in error, error
        assert "connection refused" in error
    finally:
        pf.close()


def test_port_forward_websocket_protocol_details(api: k8s.CoreV1Api) -> None:
    """The first frame of each channel is its port, little-endian; base64 too; bad requests as the kubelet answers."""
    ws = _wss(api, "/api/v1/namespaces/default/pods/web/portforward?ports=8080", ["v4.base64.channel.k8s.io"])
    try:
        assert ws.subprotocol == "v4.base64.channel.k8s.io"
        assert [ws.recv(), ws.recv()] == ["0" + base64.b64encode(b"\x90\x1f").decode(),
                                         "1" + base64.b64encode(b"\x90\x1f").decode()]
        ws.send("0" + base64.b64encode(b"GET /echo?msg=b64 HTTP/1.0\r\n\r\n").decode())
        reply = b""
        while True:
            opcode, data = ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert data[:1] == b"0", data
            reply += base64.b64decode(data[1:])
        assert reply.endswith(b"\r\n\r\nb64"), reply
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _wss(api, "/api/v1/namespaces/default/pods/web/portforward", ["v4.channel.k8s.io"])
    assert info.value.status_code == 400 and b'query parameter "port" is required' in (info.value.resp_body or b"")
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _wss(api, "/api/v1/namespaces/default/pods/web/portforward?ports=80", ["v5.channel.k8s.io"])
    assert info.value.status_code == 403  # the kubelet's port-forward speaks v4 and older only


# ---------------------------------------------------------------------------- logs


@pytest.mark.parametrize("protocol", [None, "binary.k8s.io", "base64.binary.k8s.io"])
def test_logs_over_websocket(api: k8s.CoreV1Api, protocol: str | None) -> None:
    ws = _wss(api, "/api/v1/namespaces/default/pods/shell/log", [protocol] if protocol else None)
    log = b""
    try:
        assert ws.subprotocol == protocol
        while True:
            opcode, data = ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if protocol == "base64.binary.k8s.io":
                assert opcode == websocket.ABNF.OPCODE_TEXT
                data = base64.b64decode(data)
            else:
                assert opcode == websocket.ABNF.OPCODE_BINARY
            log += data
    finally:
        ws.close()
    assert log.startswith(b"started\n"), log


# ---------------------------------------------------------------------------- proxy subresources


def test_pod_service_and_node_proxy_with_the_official_client(api: k8s.CoreV1Api) -> None:
    assert api.connect_get_namespaced_pod_proxy_with_path("web", "default", "hostname") == "web"
    assert api.connect_get_namespaced_pod_proxy_with_path("web:8080", "default", "hostname") == "web"
    assert api.connect_get_namespaced_pod_proxy_with_path("http:web:8080", "default", "echo") == ""
    assert api.connect_get_namespaced_service_proxy_with_path("web:80", "default", "hostname") == "web"
    assert api.connect_get_namespaced_service_proxy_with_path("web:alt", "default", "hostname") == "web"
    assert api.connect_get_namespaced_service_proxy_with_path("http:web:http", "default", "hostname") == "web"
    # Every method, the body passed on (netexec reads the form like Go's FormValue).
    posted = api.api_client.rest_client.pool_manager.request(
        "POST", api.api_client.configuration.host + "/api/v1/namespaces/default/services/web:http/proxy/echo",
        body=b"msg=posted", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (posted.status, posted.data) == (200, b"posted")
    meta = api.list_node().items[0].metadata
    assert meta is not None and meta.name
    node = meta.name
    assert api.connect_get_node_proxy_with_path(node, "healthz") == "ok"
    listed = api.api_client.rest_client.pool_manager.request("GET", api.api_client.configuration.host + "/api/v1")
    resources = {r["name"]: r for r in json.loads(listed.data)["resources"]}
    for sub, kind in (("pods/proxy", "PodProxyOptions"), ("services/proxy", "ServiceProxyOptions"),
                      ("nodes/proxy", "NodeProxyOptions")):
        assert resources[sub]["kind"] == kind
        assert resources[sub]["verbs"] == ["create", "delete", "get", "patch", "update"]


def test_proxy_errors_as_kube_apiserver_words_them(cluster: Cluster) -> None:
    raw = Raw(cluster)
    ns = "/api/v1/namespaces/default"
    code, body = raw.request("GET", f"{ns}/services/web:99/proxy/")
    assert (code, body["reason"], body["message"]) == (503, "ServiceUnavailable",
                                                       'no service port 99 found for service "web"')
    # `web` alone names the Service's unnamed port, which it has not.
    code, body = raw.request("GET", f"{ns}/services/web/proxy/")
    assert (code, body["message"]) == (503, 'no endpoints available for service "web"')
    code, body = raw.request("GET", f"{ns}/services/nope:80/proxy/")
    assert (code, body["message"]) == (404, 'services "nope" not found')
    code, body = raw.request("GET", f"{ns}/services/ftp:web:80/proxy/")
    assert (code, body["message"]) == (400, 'invalid service request "ftp:web:80"')
    code, body = raw.request("GET", f"{ns}/pods/web:9/proxy/")
    assert code == 503 and body["message"].startswith("error trying to reach service: dial tcp "), body
    assert body["message"].endswith(":9: connect: connection refused"), body
    code, body = raw.request("GET", f"{ns}/pods/nope/proxy/")
    assert (code, body["message"]) == (404, 'pods "nope" not found')


def test_kubectl_proxy_reaches_a_service_from_the_host(cluster: Cluster) -> None:
    binary = kubectl_binary()
    assert binary
    port = free_port()
    proc = subprocess.Popen([binary, "proxy", f"--port={port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
    try:
        assert proc.stdout is not None
        assert b"Starting to serve" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}/api/v1/namespaces/default"
        with urllib.request.urlopen(f"{base}/services/web:80/proxy/hostname", timeout=20) as r:
            assert r.read() == b"web"
        with urllib.request.urlopen(f"{base}/services/web:http/proxy/echo?msg=hello%20there", timeout=20) as r:
            assert r.read() == b"hello there"
        with urllib.request.urlopen(f"{base}/pods/web:8080/proxy/hostname", timeout=20) as r:
            assert r.read() == b"web"
    finally:
        proc.terminate()
        proc.wait(10)


def test_redirects_from_the_backend_stay_inside_the_proxy(api: k8s.CoreV1Api) -> None:
    path = "/api/v1/namespaces/default/services/web:80/proxy/redirect?location=/hostname"
    host = api.api_client.configuration.host
    resp = api.api_client.rest_client.pool_manager.request("GET", host + path, redirect=False)
    assert resp.status == 302
    # A path on the API server, as kube-apiserver rewrites it.
    assert resp.headers["Location"] == "/api/v1/namespaces/default/services/web:80/proxy/hostname"
    # No path at all: kube-apiserver redirects to the proxy's root.
    resp = api.api_client.rest_client.pool_manager.request(
        "GET", host + "/api/v1/namespaces/default/services/web:80/proxy?a=b", redirect=False)
    assert (resp.status, resp.headers["Location"]) == (301, "/api/v1/namespaces/default/services/web:80/proxy/?a=b")


def test_an_upgrade_through_the_proxy_switches_the_connection(api: k8s.CoreV1Api) -> None:
    """A websocket (here any upgrade) to a pod through pods/NAME:PORT/proxy: the bytes then flow both ways."""
    conf = api.api_client.configuration
    ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert)
    ctx.check_hostname = False
    ctx.load_cert_chain(conf.cert_file, conf.key_file)
    host, port = urllib.parse.urlsplit(conf.host).hostname, urllib.parse.urlsplit(conf.host).port
    with socket.create_connection((host, port), timeout=20) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET /api/v1/namespaces/default/pods/upgrader:8090/proxy/x HTTP/1.1\r\nHost: k\r\n"
                    b"Connection: Upgrade\r\nUpgrade: upcase\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1024)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"\r\nupgrade: upcase\r\n" in head.lower()
        rest = head.split(b"\r\n\r\n", 1)[1]
        tls.sendall(b"ping")
        while len(rest) < 4:
            rest += tls.recv(1024)
        assert rest == b"PING"
    # Refused by the backend: its answer as it gave it.
    resp = api.api_client.rest_client.pool_manager.request(
        "GET", conf.host + "/api/v1/namespaces/default/pods/upgrader:8090/proxy/", redirect=False)
    assert (resp.status, resp.data) == (400, b"upgrade")
