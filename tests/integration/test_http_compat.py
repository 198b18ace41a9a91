"""The API server's HTTP as real clients see it (issue 15): trailing slashes, exact error bytes,
empty statuses, protobuf bodies and unconditional updates, each as kube-apiserver 1.33 answers."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import urllib3

from tests.integration.cluster import KUBECTL, Cluster, Raw

pytestmark = pytest.mark.integration


def _get(raw: Raw, path: str, accept: str = "application/json") -> urllib3.BaseHTTPResponse:
    return raw.http.request("GET", raw.base + path, headers={"Accept": accept})


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    ns = f"http-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


# ------------------------------------------------------------------ point 1: trailing slashes


def test_trailing_slashes_are_routed_as_kube_apiserver_routes_them(cluster: Cluster) -> None:
    raw = Raw(cluster)
    kinds = {
        "/version": None, "/api": "APIVersions", "/apis": "APIGroupList", "/api/v1": "APIResourceList",
        "/apis/apps": "APIGroup", "/apis/apps/v1": "APIResourceList",
        "/api/v1/namespaces/default/configmaps": "ConfigMapList", "/api/v1/namespaces": "NamespaceList",
        "/api/v1/namespaces/default": "Namespace",
    }
    for path, kind in kinds.items():
        for variant in (path, path + "/"):
            r = _get(raw, variant)
            assert r.status == 200, (variant, r.status, r.data[:200])
            body = orjson.loads(r.data)
            assert body.get("kind") == kind, (variant, body.get("kind"))
    # go-restful trims every trailing slash; /apis is matched by exact path (one slash at most).
    assert _get(raw, "/api/v1//").status == 200
    assert _get(raw, "/version//").status == 200
    not_found = _get(raw, "/apis//")
    assert not_found.status == 404 and not_found.data == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not '
        b'find the requested resource","reason":"NotFound","details":{},"code":404}\n'
    )
    assert _get(raw, "/apis/nosuch.example.com/").status == 404
    # The health endpoints are exact paths of a plain mux.
    assert _get(raw, "/livez/ping").status == 200
    assert _get(raw, "/healthz/").status == 404 and _get(raw, "/livez/ping/").status == 404


def test_trailing_slashes_through_kubectl_proxy(cluster: Cluster) -> None:
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "proxy", "--port=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert m, line
        http = urllib3.PoolManager()
        for path in ("/api/", "/version/", "/apis/", "/api/v1/", "/apis/apps/v1/"):
            r = http.request("GET", f"http://127.0.0.1:{m.group(1)}{path}")
            assert r.status == 200, (path, r.status, r.data[:200])
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------ point 4: bytes of bodies


def test_status_bodies_are_byte_identical_to_kube_apiservers(cluster: Cluster, namespace: str) -> None:
    raw = Raw(cluster)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cm = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}})
    first = raw.http.request("POST", raw.base + path, body=cm, headers={"Content-Type": "application/json"})
    assert first.status == 201 and first.data.endswith(b"}\n") and not first.data.endswith(b"\n\n")
    again = raw.http.request("POST", raw.base + path, body=cm, headers={"Content-Type": "application/json"})
    assert again.status == 409
    assert again.data == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"configmaps \\"dup\\" already exists","reason":"AlreadyExists",'
        b'"details":{"name":"dup","kind":"configmaps"},"code":409}\n'
    )
    missing = _get(raw, f"{path}/nope")
    assert missing.data == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"configmaps \\"nope\\" not found","reason":"NotFound",'
        b'"details":{"name":"nope","kind":"configmaps"},"code":404}\n'
    )
    # Every object goes through json.Encoder (a newline after it); /version is MarshalIndent'ed.
    for p in (f"{path}/dup", path, "/api", "/apis", "/api/v1", "/apis/apps"):
        data = _get(raw, p).data
        assert data.endswith(b"}\n"), (p, data[-20:])
    version = _get(raw, "/version").data
    assert version.startswith(b'{\n  "major": "') and version.endswith(b'"\n}')


# ------------------------------------------------------------------ point 5: empty statuses


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }


def test_empty_status_is_served_as_go_serialises_it(cluster: Cluster, namespace: str) -> None:
    from kubernetes import client, config

    apps = client.AppsV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    created = apps.create_namespaced_deployment(namespace, _deployment("fresh"))  # type: ignore[arg-type]
    assert created.status is not None  # the client read obj.status right after the create
    raw = Raw(cluster)
    base = f"/apis/apps/v1/namespaces/{namespace}"
    status, body = raw.json("POST", f"{base}/deployments", _deployment("raw"))
    assert status == 201 and "status" in body, body
    status, rs = raw.json("POST", f"{base}/replicasets", {
        **_deployment("rs"), "kind": "ReplicaSet"})
    assert status == 201 and rs["status"] == {"replicas": 0}, rs
    status, got = raw.request("GET", f"{base}/deployments/raw")
    assert "status" in got
    status, listed = raw.request("GET", f"{base}/deployments")
    assert all("status" in item for item in listed["items"])
    status, cm = raw.json("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nostatus"}})
    assert status == 201 and "status" not in cm
    # An update without status keeps the stored one.
    got.pop("status")
    got["metadata"].pop("resourceVersion")
    status, updated = raw.json("PUT", f"{base}/deployments/raw", got)
    assert status == 200 and "status" in updated, updated


# ------------------------------------------------------------------ point 8: protobuf bodies


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return b"k8s\x00" + _field(1, type_meta) + _field(2, raw)


def test_protobuf_delete_options_are_accepted(cluster: Cluster, namespace: str) -> None:
    raw = Raw(cluster)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name in ("pb-a", "pb-b"):
        status, _ = raw.json("POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
        assert status == 201
    # DeleteOptions{gracePeriodSeconds: 0, propagationPolicy: "Background"} as client-go writes it.
    options = _varint(1 << 3 | 0) + _varint(0) + _field(4, b"Background")
    for name, body in (("pb-a", _envelope("v1", "DeleteOptions", options)), ("pb-b", _envelope("v1", "DeleteOptions", b""))):
        status, resp = raw.request("DELETE", f"{path}/{name}", body, "application/vnd.kubernetes.protobuf")
        assert status == 200, resp
        assert raw.request("GET", f"{path}/{name}")[0] == 404
    # A protobuf DeleteOptions with a failing precondition is read, not ignored.
    assert raw.json("POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb-c"}})[0] == 201
    preconditions = _field(1, b"not-the-uid")
    body = _envelope("meta.k8s.io/v1", "DeleteOptions", _field(2, preconditions))
    status, resp = raw.request("DELETE", f"{path}/pb-c", body, "application/vnd.kubernetes.protobuf")
    assert status == 409 and "Precondition failed: UID in precondition: not-the-uid" in resp["message"], resp


def test_protobuf_scale_and_binding_bodies(cluster: Cluster, namespace: str) -> None:
    raw = Raw(cluster)
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    status, _ = raw.json("POST", base, _deployment("scaled"))
    assert status == 201
    # autoscaling/v1 Scale{metadata{name}, spec{replicas: 2}}
    scale = _field(1, _field(1, b"scaled")) + _field(2, _varint(1 << 3) + _varint(2))
    status, resp = raw.request("PUT", f"{base}/scaled/scale", _envelope("autoscaling/v1", "Scale", scale),
                               "application/vnd.kubernetes.protobuf")
    assert status == 200 and resp["spec"]["replicas"] == 2, resp
    res = cluster.kubectl("delete", "deployment", "scaled", "-n", namespace, check=True)
    assert "deleted" in res.stdout
    # v1 Binding{metadata{name}, target: ObjectReference{kind, name}} for a pod no scheduler takes.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
           "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}}
    assert raw.json("POST", f"/api/v1/namespaces/{namespace}/pods", pod)[0] == 201
    binding = _field(1, _field(1, b"bound")) + _field(2, _field(1, b"Node") + _field(3, b"node-x"))
    status, resp = raw.request("POST", f"/api/v1/namespaces/{namespace}/pods/bound/binding",
                               _envelope("v1", "Binding", binding), "application/vnd.kubernetes.protobuf")
    assert status == 201, resp
    status, got = raw.request("GET", f"/api/v1/namespaces/{namespace}/pods/bound")
    assert got["spec"]["nodeName"] == "node-x"
    raw.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/bound?gracePeriodSeconds=0")


PROTOBUF = "application/vnd.kubernetes.protobuf"
CLIENT_GO_ACCEPT = "application/vnd.kubernetes.protobuf, application/json"


def test_protobuf_answers_for_clients_that_prefer_it(cluster: Cluster, namespace: str) -> None:
    from kubelite.api.protobuf import decode_envelope

    raw = Raw(cluster)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb", "labels": {"a": "b"}},
          "data": {"k": "v"}}
    created = raw.http.request("POST", raw.base + path, body=orjson.dumps(cm),
                               headers={"Content-Type": "application/json", "Accept": CLIENT_GO_ACCEPT})
    assert created.status == 201 and created.headers["Content-Type"] == PROTOBUF
    as_json = orjson.loads(_get(raw, f"{path}/pb").data)
    assert decode_envelope(created.data) == as_json
    got = _get(raw, f"{path}/pb", CLIENT_GO_ACCEPT)
    assert got.headers["Content-Type"] == PROTOBUF and decode_envelope(got.data) == as_json
    listed = decode_envelope(_get(raw, path, CLIENT_GO_ACCEPT).data)
    assert listed["kind"] == "ConfigMapList" and "pb" in [i["metadata"]["name"] for i in listed["items"]]
    missing = _get(raw, f"{path}/nope", CLIENT_GO_ACCEPT)
    assert missing.status == 404 and missing.headers["Content-Type"] == PROTOBUF
    assert decode_envelope(missing.data)["message"] == 'configmaps "nope" not found'
    # A watch streams length-delimited WatchEvents, each object in its envelope.
    from kubelite.api.protobuf import decode_watch_frames

    watched = _get(raw, f"{path}?watch=1&resourceVersion=0&timeoutSeconds=1", CLIENT_GO_ACCEPT)
    assert watched.headers["Content-Type"] == "application/vnd.kubernetes.protobuf;stream=watch"
    events = decode_watch_frames(watched.data)
    assert ("ADDED", as_json) in events, events
    # JSON first, a Table, or a kind without a wire table: JSON.
    assert _get(raw, f"{path}/pb", "application/json, application/vnd.kubernetes.protobuf").data.startswith(b"{")
    table = _get(raw, path, "application/json;as=Table;v=v1;g=meta.k8s.io, application/json")
    assert orjson.loads(table.data)["kind"] == "Table"
    # kubectl's typed commands send protobuf and accept it back.
    res = cluster.kubectl("create", "configmap", "typed", "-n", namespace, "--from-literal=x=y", check=True)
    assert "configmap/typed created" in res.stdout
    res = cluster.kubectl("create", "deployment", "typed", "-n", namespace, "--image=busybox", check=True)
    assert "deployment.apps/typed created" in res.stdout
    res = cluster.kubectl("create", "configmap", "typed", "-n", namespace, "--from-literal=x=y")
    assert res.returncode != 0 and 'configmaps "typed" already exists' in res.stderr


def test_kubectl_events_watch_reads_a_protobuf_stream(cluster: Cluster, namespace: str) -> None:
    """kubectl events --watch is a client-go typed watch: it asks for protobuf and decodes the frames."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen([KUBECTL, "events", "--watch", "-n", namespace], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        time.sleep(2)  # its (empty) list, then the watch
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
                 "involvedObject": {"kind": "Pod", "name": "foo", "namespace": namespace},
                 "reason": "Hello", "message": "over a protobuf watch", "type": "Normal", "count": 1,
                 "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
        assert Raw(cluster).json("POST", f"/api/v1/namespaces/{namespace}/events", event)[0] == 201
        seen = ""
        deadline = time.monotonic() + 20
        while "over a protobuf watch" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:  # unbuffered reads: a buffered readline would hide the next line from select
                seen += os.read(proc.stdout.fileno(), 65536).decode()
        assert "over a protobuf watch" in seen, seen
    finally:
        proc.terminate()
        proc.wait(10)


def _no_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _no_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_no_nulls(v) for v in obj]
    return obj


def test_protobuf_answers_keep_each_group_view_and_cover_the_added_kinds(cluster: Cluster, namespace: str) -> None:
    """A core Event read through events.k8s.io/v1 in protobuf is that group's object (get, list,
    watch), and the kinds served alongside (apiservices, flowcontrol, priorityclasses) answer in
    protobuf the same objects as in JSON."""
    from kubelite.api.protobuf import decode_envelope, decode_watch_frames

    raw = Raw(cluster)
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "view"},
             "involvedObject": {"kind": "Pod", "name": "foo", "namespace": namespace},
             "reason": "Hello", "message": "seen through events.k8s.io", "type": "Normal", "count": 1,
             "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
    assert raw.json("POST", f"/api/v1/namespaces/{namespace}/events", event)[0] == 201
    path = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    as_json = orjson.loads(_get(raw, f"{path}/view").data)
    assert as_json["apiVersion"] == "events.k8s.io/v1" and as_json["note"] == "seen through events.k8s.io"
    # The zero eventTime is JSON's null; protobuf has no null (a Go client gets nil or the zero
    # time either way) and protobuf.py decodes it as absent.
    as_json = _no_nulls(as_json)
    got = _get(raw, f"{path}/view", CLIENT_GO_ACCEPT)
    assert got.headers["Content-Type"] == PROTOBUF and decode_envelope(got.data) == as_json
    listed = decode_envelope(_get(raw, path, CLIENT_GO_ACCEPT).data)
    assert listed["apiVersion"] == "events.k8s.io/v1" and listed["kind"] == "EventList"
    assert [i["note"] for i in listed["items"]] == ["seen through events.k8s.io"]
    watched = _get(raw, f"{path}?watch=1&resourceVersion=0&timeoutSeconds=1", CLIENT_GO_ACCEPT)
    assert ("ADDED", as_json) in decode_watch_frames(watched.data)
    for kind_path in ("/apis/apiregistration.k8s.io/v1/apiservices/v1.apps",
                      "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/exempt",
                      "/apis/flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations/catch-all",
                      "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical"):
        got = _get(raw, kind_path, CLIENT_GO_ACCEPT)
        assert got.headers["Content-Type"] == PROTOBUF, kind_path
        assert decode_envelope(got.data) == _no_nulls(orjson.loads(_get(raw, kind_path).data)), kind_path


# ------------------------------------------------------------------ point 9: unconditional updates


def test_updates_without_resource_version(cluster: Cluster, namespace: str) -> None:
    raw = Raw(cluster)
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    status, _ = raw.json("POST", cms, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}})
    status, updated = raw.json("PUT", f"{cms}/u", {"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": {"name": "u"}, "data": {"k": "v"}})
    assert status == 200 and updated["data"] == {"k": "v"}, updated
    deploys = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    status, dep = raw.json("POST", deploys, _deployment("st"))
    dep["metadata"].pop("resourceVersion")
    dep["status"] = {"observedGeneration": 1, "replicas": 0}
    status, resp = raw.json("PUT", f"{deploys}/st/status", dep)
    assert status == 200 and resp["status"]["observedGeneration"] == 1, resp
    # Lease's strategy refuses an unconditional update, in the store's words.
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {}}
    assert raw.json("POST", leases, lease)[0] == 201
    r = raw.http.request("PUT", raw.base + f"{leases}/l", body=orjson.dumps(lease),
                         headers={"Content-Type": "application/json"})
    assert r.status == 422
    assert r.data == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"leases.coordination.k8s.io \\"l\\" is invalid: metadata.resourceVersion: '
        b'Invalid value: 0x0: must be specified for an update","reason":"Invalid",'
        b'"details":{"name":"l","group":"coordination.k8s.io","kind":"leases","causes":[{"reason":'
        b'"FieldValueInvalid","message":"Invalid value: 0x0: must be specified for an update",'
        b'"field":"metadata.resourceVersion"}]},"code":422}\n'
    )
    assert raw.json("PUT", f"{leases}/missing", {**lease, "metadata": {"name": "missing"}})[0] == 404
    # So does PodDisruptionBudget's, on its status too.
    pdbs = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "b"}}}}
    assert raw.json("POST", pdbs, pdb)[0] == 201
    for path in (f"{pdbs}/b", f"{pdbs}/b/status"):
        status, resp = raw.json("PUT", path, pdb)
        assert status == 422 and resp["message"] == (
            'poddisruptionbudgets.policy "b" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
            "must be specified for an update"
        ), resp


def test_a_deployment_status_write_keeps_its_labels(cluster: Cluster, namespace: str) -> None:
    # deploymentStatusStrategy resets spec and metadata.labels; annotations are the writer's.
    raw = Raw(cluster)
    deploys = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    dep = _deployment("labels")
    dep["metadata"]["labels"] = {"stage": "created"}
    assert raw.json("POST", deploys, dep)[0] == 201
    patch = {"metadata": {"labels": {"stage": "patched-status"}, "annotations": {"note": "from-status"}},
             "status": {"readyReplicas": 0}}
    status, resp = raw.json("PATCH", f"{deploys}/labels/status", patch, "application/strategic-merge-patch+json")
    assert status == 200, resp
    assert resp["metadata"]["labels"] == {"stage": "created"}
    assert resp["metadata"]["annotations"]["note"] == "from-status"
