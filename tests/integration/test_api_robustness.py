"""Raw HTTP against the API server: authentication, garbage input, the official Python client,
and durability across ``kill -9``."""

from __future__ import annotations

import signal
import threading
import uuid

import orjson
import pytest
import urllib3

from tests.integration.cluster import Cluster, Raw

pytestmark = pytest.mark.integration


def test_no_credentials_is_401(cluster: Cluster) -> None:
    anon = Raw(cluster, credentials=False)
    status, body = anon.request("GET", "/api/v1/namespaces")
    assert status == 401
    assert body["reason"] == "Unauthorized" and body["kind"] == "Status"
    status, _ = anon.request("GET", "/readyz")
    assert status == 200


def test_garbage_input_gets_4xx_and_server_keeps_serving(cluster: Cluster) -> None:
    raw = Raw(cluster)
    path = "/api/v1/namespaces/default/configmaps"
    junk = [
        (b"{not json", "application/json"),
        (b"key: [unclosed", "application/yaml"),
        (b'{"apiVersion": "v1", "metadata": {"name": "x"}}', "application/json"),  # no kind
        (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 5}}', "application/json"),
        (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": "x"}', "application/json"),
        (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}', "application/json"),
        (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (bytes(range(256)) * 4, "application/json"),
        (bytes(range(256)) * 4, "application/vnd.kubernetes.protobuf"),
        (b"", "application/json"),
        (b"null", "application/json"),
    ]
    for body, ctype in junk:
        status, resp = raw.request("POST", path, body, ctype)
        assert 400 <= status < 500, (body[:60], status, resp)
        assert resp.get("kind") == "Status", resp
    for patch_body, ctype in [(b"{", "application/merge-patch+json"), (b"{}", "text/plain"),
                              (b'{"op": 1}', "application/json-patch+json")]:
        status, resp = raw.request("PATCH", path + "/anything", patch_body, ctype)
        assert 400 <= status < 500, (patch_body, status, resp)
    status, _ = raw.request("GET", "/api/v1/namespaces/default/configmaps?limit=abc")
    assert status == 400
    status, _ = raw.request("GET", "/api/v1/nosuchthing")
    assert status == 404
    status, listing = raw.request("GET", "/api/v1/namespaces")
    assert status == 200 and listing["kind"] == "NamespaceList"


def test_official_python_client_lists_creates_watches(cluster: Cluster) -> None:
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    v1 = client.CoreV1Api(api_client)
    name = f"py-{uuid.uuid4().hex[:6]}"
    seen: list[tuple[str, str]] = []
    started = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        started.set()
        for ev in w.stream(v1.list_namespaced_config_map, "default", field_selector=f"metadata.name={name}",
                           timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    started.wait()
    import time

    time.sleep(0.5)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"via": "python"}), data={"x": "y"})
    created = v1.create_namespaced_config_map("default", body)
    assert created.metadata and created.metadata.uid
    listed = v1.list_namespaced_config_map("default", label_selector="via=python")
    assert name in [i.metadata.name for i in listed.items if i.metadata]
    v1.patch_namespaced_config_map(name, "default", {"data": {"x": "z"}})
    v1.delete_namespaced_config_map(name, "default")
    t.join(15)
    assert seen == [("ADDED", name), ("MODIFIED", name), ("DELETED", name)]
    with pytest.raises(client.ApiException) as exc:
        v1.read_namespaced_config_map(name, "default")
    assert exc.value.status == 404
    api_client.close()


def test_acknowledged_writes_survive_kill_9(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start()
    raw = Raw(c)
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            name = f"k{i}"
            body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                 "data": {"i": str(i)}})
            try:
                status, _ = raw.request("POST", "/api/v1/namespaces/default/configmaps", body)
            except Exception:
                return
            if status == 201:
                acked.append(name)
            i += 1

    threads = [threading.Thread(target=writer) for _ in range(1)]
    for t in threads:
        t.start()
    import time

    deadline = time.monotonic() + 10
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    c.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 50
    c.start()
    raw = Raw(c)
    status, body = raw.request("GET", "/api/v1/namespaces/default/configmaps")
    assert status == 200
    present = {i["metadata"]["name"] for i in body["items"]}
    missing = [n for n in acked if n not in present]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
    urllib3.disable_warnings()


def test_large_bodies_arrive_whole_and_oversized_ones_get_413(cluster: Cluster) -> None:
    raw = Raw(cluster)
    name = f"big-{uuid.uuid4().hex[:6]}"
    value = "x" * 500_000  # arrives over many TCP segments
    status, body = raw.json("POST", "/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}})
    assert status == 201, body
    assert len(body["data"]["k"]) == len(value)
    status, body = raw.json("POST", "/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "x"},
                             "data": {"k": "y" * (4 * 1024 * 1024)}})
    assert status == 413 and body["reason"] == "RequestEntityTooLarge", body
