"""Hostile and malformed request bodies and parameters (issue 20, points 1, 2, 3 and 7).

A YAML alias bomb is refused before it expands, on every path that reads YAML; unknown fields
of built-in kinds are dropped with a warning, as decoding into Go types drops them; a
wrong-typed body is a 400 on every subresource, never a 500; list and watch parameters are
checked as kube-apiserver checks them.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid

import orjson
import pytest

from tests.integration.cluster import Cluster, Raw

pytestmark = pytest.mark.integration

NS = "default"
CM = f"/api/v1/namespaces/{NS}/configmaps"


def alias_bomb(levels: int, name: str) -> bytes:
    """A ConfigMap whose annotations hold ``levels`` nested levels of nine aliases each."""
    lines = ["apiVersion: v1", "kind: ConfigMap", f"metadata: {{name: {name}}}", "data: {}", "x:",
             '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for i in range(levels):
        lines.append(f"  b{i}: &b{i} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = f"b{i}"
    return ("\n".join(lines) + "\n").encode()


def uid() -> str:
    return uuid.uuid4().hex[:8]


def test_yaml_alias_bombs_are_refused_before_expanding(cluster: Cluster) -> None:
    raw = Raw(cluster)
    name = f"bomb-{uid()}"
    status, created = raw.json("POST", CM, {"metadata": {"name": name}, "data": {"k": "v"}})
    assert status == 201, created
    for levels in (7, 8):
        body = alias_bomb(levels, name)
        assert len(body) < 600
        # Server-side apply of the bomb: refused, the stored object untouched.
        status, resp = raw.request("PATCH", f"{CM}/{name}?fieldManager=x", body, "application/apply-patch+yaml")
        assert status == 400, (levels, status, resp)
        assert resp["reason"] == "BadRequest" and "yaml: document contains excessive aliasing" in resp["message"]
        # Creating it from YAML: refused, nothing stored.
        other = f"bomb-{uid()}"
        status, resp = raw.request("POST", CM, alias_bomb(levels, other), "application/yaml")
        assert status == 400, (levels, status, resp)
        assert "excessive aliasing" in resp["message"]
        assert raw.request("GET", f"{CM}/{other}")[0] == 404
        # Replacing it with YAML: refused too.
        status, resp = raw.request("PUT", f"{CM}/{name}", body, "application/yaml")
        assert status == 400 and "excessive aliasing" in resp["message"], (status, resp)
    status, stored = raw.request("GET", f"{CM}/{name}")
    assert status == 200 and stored["data"] == {"k": "v"} and "x" not in stored
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # A few aliases are fine (anchors in manifests are common).
    ok = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: &d {a: b}\nbinaryData: {}\n" % f"al-{uid()}".encode()
    assert raw.request("POST", CM, ok, "application/yaml")[0] == 201


def test_decoded_objects_are_bounded_in_size(cluster: Cluster) -> None:
    raw = Raw(cluster)
    # 1,000 references to a 10 kB string: 10 MB once decoded, from a 20 kB body, within go-yaml's
    # ratio, in a field no validation measures (it used to be stored, 10 MB).
    name = f"big-{uid()}"
    value = "v" * 10_000
    refs = "\n".join(f"  k{i}: *big" for i in range(1000))
    body = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\nbinaryData: {{}}\ny: &big {value}\nx:\n{refs}\n"
    status, resp = raw.request("POST", CM, body.encode(), "application/yaml")
    assert status == 413 and resp["reason"] == "RequestEntityTooLarge", (status, resp)
    assert raw.request("GET", f"{CM}/{name}")[0] == 404
    # YAML nested deeper than a stack: a 400, not a 500.
    deep = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    status, resp = raw.request("POST", CM, deep, "application/yaml")
    assert status == 400, (status, resp)


def test_unknown_fields_of_built_in_kinds_are_dropped_with_a_warning(cluster: Cluster) -> None:
    raw = Raw(cluster)
    name = f"unk-{uid()}"
    body = orjson.dumps({"metadata": {"name": name, "bogus": 1}, "foo": {"bar": 1}, "data": {"a": "b"}})
    r = raw.http.request("POST", raw.base + CM, body=body, headers={"Content-Type": "application/json"})
    assert r.status == 201, r.data
    # In document order, as Go's decoder meets them.
    assert r.headers.getlist("Warning") == ['299 - "unknown field \\"metadata.bogus\\""', '299 - "unknown field \\"foo\\""']
    created = orjson.loads(r.data)
    assert "foo" not in created and "bogus" not in created["metadata"]
    status, got = raw.request("GET", f"{CM}/{name}")
    assert status == 200 and "foo" not in got and "bogus" not in got["metadata"] and got["data"] == {"a": "b"}
    # Ignore: dropped without a word.
    quiet = f"unk-{uid()}"
    r = raw.http.request("POST", raw.base + CM + "?fieldValidation=Ignore", headers={"Content-Type": "application/json"},
                         body=orjson.dumps({"metadata": {"name": quiet}, "foo": 1}))
    assert r.status == 201 and not r.headers.getlist("Warning")
    assert "foo" not in raw.request("GET", f"{CM}/{quiet}")[1]
    # A merge patch and an update: the same.
    r = raw.http.request("PATCH", raw.base + f"{CM}/{name}", body=b'{"foo2": 1}',
                         headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and r.headers.getlist("Warning") == ['299 - "unknown field \\"foo2\\""']
    got = raw.request("GET", f"{CM}/{name}")[1]
    assert "foo2" not in got
    got["foo3"] = [1]
    r = raw.http.request("PUT", raw.base + f"{CM}/{name}", body=orjson.dumps(got), headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.headers.getlist("Warning") == ['299 - "unknown field \\"foo3\\""']
    assert "foo3" not in raw.request("GET", f"{CM}/{name}")[1]
    # Duplicate fields warn as well.
    dup = f"unk-{uid()}"
    body = b'{"metadata": {"name": "%s"}, "data": {"a": "1"}, "data": {"a": "2"}}' % dup.encode()
    r = raw.http.request("POST", raw.base + CM, body=body, headers={"Content-Type": "application/json"})
    assert r.status == 201 and r.headers.getlist("Warning") == ['299 - "duplicate field \\"data\\""']
    # Server-side apply drops them too.
    applied = f"unk-{uid()}"
    r = raw.http.request("PATCH", raw.base + f"{CM}/{applied}?fieldManager=t",
                         body=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\nfoo: 1\n" % applied.encode(),
                         headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status == 201 and r.headers.getlist("Warning") == ['299 - "unknown field \\"foo\\""']
    assert "foo" not in raw.request("GET", f"{CM}/{applied}")[1]


def test_kubectl_prints_the_unknown_field_warning(cluster: Cluster) -> None:
    name = f"unk-{uid()}"
    manifest = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "foo": {"bar": 1}}).decode()
    res = cluster.kubectl("create", "-f", "-", "--validate=warn", "-n", NS, input=manifest)
    assert res.returncode == 0, res.stderr
    assert 'Warning: unknown field "foo"' in res.stderr
    got = orjson.loads(cluster.kubectl("get", "cm", name, "-n", NS, "-o", "json", check=True).stdout)
    assert "foo" not in got


def test_wrong_typed_bodies_are_400_on_every_subresource(cluster: Cluster) -> None:
    raw = Raw(cluster)
    pod = f"typed-{uid()}"
    status, resp = raw.json("POST", f"/api/v1/namespaces/{NS}/pods", {
        "metadata": {"name": pod}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, resp
    dep = f"typed-{uid()}"
    status, resp = raw.json("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", {
        "metadata": {"name": dep}, "spec": {"selector": {"matchLabels": {"a": dep}}, "template": {
            "metadata": {"labels": {"a": dep}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    assert status == 201, resp
    status, resp = raw.json("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": pod}})
    assert status == 201, resp
    p = f"/api/v1/namespaces/{NS}/pods/{pod}"
    cases: list[tuple[str, str, object, str, str]] = [
        ("POST", f"{p}/binding", {"target": {"kind": "Node", "name": ["a"]}}, "application/json",
         'Binding in version "v1" cannot be handled as a Binding: json: cannot unmarshal array into Go struct '
         "field ObjectReference.target.name of type string"),
        ("POST", f"{p}/binding", {"target": {"kind": "Node", "name": 5}}, "application/json",
         "cannot unmarshal number into Go struct field ObjectReference.target.name of type string"),
        ("POST", f"{p}/binding", {"target": "node-a"}, "application/json",
         "cannot unmarshal string into Go struct field Binding.target of type v1.ObjectReference"),
        ("POST", f"{p}/eviction", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod},
                                   "deleteOptions": {"gracePeriodSeconds": "soon"}}, "application/json",
         "cannot unmarshal string into Go struct field DeleteOptions.deleteOptions.gracePeriodSeconds of type int64"),
        ("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{pod}/token", {"spec": {"audiences": "x"}}, "application/json",
         "cannot unmarshal string into Go struct field TokenRequestSpec.spec.audiences of type []string"),
        ("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{pod}/token", {"spec": {"expirationSeconds": "1h"}},
         "application/json", "of type int64"),
        ("PUT", f"/apis/apps/v1/namespaces/{NS}/deployments/{dep}/scale", {"spec": {"replicas": "3"}}, "application/json",
         "cannot unmarshal string into Go struct field ScaleSpec.spec.replicas of type int32"),
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{dep}/scale", {"spec": {"replicas": [3]}},
         "application/merge-patch+json", "of type int32"),
        ("PUT", f"{p}/status", {"metadata": {"name": pod}, "status": {"phase": 1}}, "application/json",
         "cannot unmarshal number into Go struct field PodStatus.status.phase of type string"),
        ("PATCH", f"{p}/status", {"status": {"podIP": ["x"]}}, "application/merge-patch+json", "of type string"),
        ("DELETE", p, {"gracePeriodSeconds": "now"}, "application/json", "of type int64"),
    ]
    for method, path, body, ctype, words in cases:
        status, resp = raw.request(method, path, orjson.dumps(body), ctype)
        assert 400 <= status < 500, (method, path, body, status, resp)
        assert words in resp.get("message", ""), (method, path, resp)
    # Nothing happened to the pod: not bound, not deleted.
    status, got = raw.request("GET", p)
    assert status == 200 and not got["spec"].get("nodeName") and "deletionTimestamp" not in got["metadata"]


def test_list_and_watch_parameters_are_checked(cluster: Cluster) -> None:
    raw = Raw(cluster)
    message = 'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax'
    for query in ("resourceVersion=abc", "watch=1&resourceVersion=abc"):
        status, resp = raw.request("GET", f"{CM}?{query}")
        assert (status, resp.get("reason"), resp.get("message")) == (400, "BadRequest", message), (query, resp)
    # A negative timeout has expired already: the watch ends at once (it used to run for 30 minutes).
    started = time.monotonic()
    r = raw.http.request("GET", raw.base + f"{CM}?watch=1&timeoutSeconds=-5&resourceVersion=1", timeout=20.0)
    assert r.status == 200 and time.monotonic() - started < 15
    # Control characters in the namespace: refused, not an empty list.
    status, resp = raw.request("GET", "/api/v1/namespaces/%00%00/configmaps")
    assert status == 400 and resp.get("kind") == "Status", (status, resp)
    status, _ = raw.request("GET", CM + "/%00")
    assert status == 400


def test_an_over_long_request_line_is_refused_and_logged_in_one_line(cluster: Cluster) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    before = len(cluster.output)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as sock, \
            ctx.wrap_socket(sock) as tls:
        tls.sendall(b"GET /api/v1/namespaces?" + b"x" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        head = tls.recv(4096)
    assert head.split(b" ", 2)[1] in (b"400", b"414"), head[:200]
    time.sleep(0.5)
    logged = "".join(cluster.output[before:])
    assert "Traceback" not in logged and "ERROR" not in logged, logged[-2000:]
    assert Raw(cluster).request("GET", "/api/v1/namespaces")[0] == 200
