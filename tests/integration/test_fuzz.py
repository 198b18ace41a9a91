"""A bounded fuzz run over the API server's own OpenAPI documents (issue 20).

Schemathesis turns each operation of the served OpenAPI v3 documents into requests: bodies,
path and query parameters generated from the schemas, both valid ones (``positive``) and ones
that break them (``negative``: wrong types, missing fields, out-of-range values), and valid
ones with a null somewhere (which no schema asks for, and every decoder meets). Whatever
comes in, the server must answer: no 5xx, no request left without an answer, and every error
in Kubernetes' Status shape, so that kubectl and client-go can read it.

The run is reproducible: a fixed seed per operation, a fixed number of examples, Hypothesis'
database off and its phases limited to generation (no shrinking, which would multiply the
requests a failure costs). ``KUBELITE_FUZZ_EXAMPLES`` and ``KUBELITE_FUZZ_NEGATIVE_EXAMPLES``
raise the counts for a longer local run, e.g. 12 and 4: about 5,000 requests.
"""

from __future__ import annotations

import base64
import collections
import importlib.util
import os
import pathlib
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import require
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

pytestmark = pytest.mark.integration


SEED = 20260
# Examples per operation and mode, about 2,100 requests over 320 operations (60 s on 2 cores,
# mostly drawing them: 40 ms of CPU a request on average, an invalid Pod up to a second).
EXAMPLES = int(os.environ.get("KUBELITE_FUZZ_EXAMPLES", "6"))
NEGATIVE_EXAMPLES = int(os.environ.get("KUBELITE_FUZZ_NEGATIVE_EXAMPLES", "1"))
REQUEST_TIMEOUT = 10.0  # seconds: every request here is answered in milliseconds, or hangs
NAMESPACE = "fuzz"
NAME = "fuzz"  # each fuzzed kind has an object of this name in NAMESPACE, so updates reach it

# Every group the server serves. Discovery-only documents (apis/apps, …) hold one operation.
DOCUMENTS = (
    "api/v1",
    "apis/apps/v1",
    "apis/apiregistration.k8s.io/v1",
    "apis/certificates.k8s.io/v1",
    "apis/coordination.k8s.io/v1",
    "apis/discovery.k8s.io/v1",
    "apis/events.k8s.io/v1",
    "apis/flowcontrol.apiserver.k8s.io/v1",
    "apis/networking.k8s.io/v1",
    "apis/policy/v1",
    "apis/scheduling.k8s.io/v1",
    "apis/storage.k8s.io/v1",
)

# What is not fuzzed, and why:
# - watches (the /watch/ paths and ?watch=): an answer that streams until its timeout is not a
#   hang, but would be indistinguishable from one here;
# - pods/log's ?follow=: the same, a stream that stays open;
# - the proxy subresources (pods, services, nodes): they relay to a backend, and a 502/503 is
#   the answer Kubernetes gives when the backend is not there (no agent runs here);
# - exec, attach and portforward stay in: without an upgrade they must answer a 400.
EXCLUDED_PATHS = re.compile(r"/watch/|/proxy(/|$)")
EXCLUDED_QUERY = frozenset({"watch", "follow"})

# kube-apiserver's componentstatus storage answers an unknown name with a plain error, which
# it serves as this 500 (pkg/registry/core/componentstatus/rest.go); we answer as it does.
KUBERNETES_OWN_5XX = re.compile(r"^Component not found: ")


@dataclass
class Finding:
    operation: str
    problem: str
    request: str
    response: str = ""


@dataclass
class Run:
    requests: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    findings: list[Finding] = field(default_factory=list)
    not_generated: list[str] = field(default_factory=list)


class Client:
    """The admin's client certificate and the cluster CA, for requests and for schemathesis."""

    def __init__(self, cluster: Cluster, tmp: pathlib.Path) -> None:
        kc = yaml.safe_load(cluster.kubeconfig.read_text())
        user = kc["users"][0]["user"]
        self.ca = str(tmp / "ca.crt")
        self.cert = (str(tmp / "admin.crt"), str(tmp / "admin.key"))
        pathlib.Path(self.ca).write_bytes(base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]))
        pathlib.Path(self.cert[0]).write_bytes(base64.b64decode(user["client-certificate-data"]))
        pathlib.Path(self.cert[1]).write_bytes(base64.b64decode(user["client-key-data"]))
        self.base = cluster.server
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the cluster's CA
        self.session.verify = self.ca
        self.session.cert = self.cert

    def get_json(self, path: str) -> dict[str, Any]:
        r = self.session.get(self.base + path, timeout=REQUEST_TIMEOUT)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc


def prepare(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what is excluded above, its parameters narrowed to reach our objects.

    Random names nearly always miss (a 404 before any interesting code runs): valid requests
    name the objects made beforehand, invalid ones anything (a name outside the enum). A
    namespace's own name is left random: deleting ours would leave nothing to update.
    """
    paths = doc["paths"]
    for path in list(paths):
        if EXCLUDED_PATHS.search(path):
            del paths[path]
            continue
        item = paths[path]
        for key, op in item.items():
            if key == "parameters":
                item[key] = [_lean(p, path) for p in op]
            elif isinstance(op, dict):
                op["parameters"] = [
                    _lean(p, path) for p in op.get("parameters", []) if p.get("name") not in EXCLUDED_QUERY
                ]
                content = (op.get("requestBody") or {}).get("content") or {}
                if "application/json-patch+json" in content:
                    content["application/json-patch+json"] = {"schema": JSON_PATCH}
                if "*/*" in content:
                    # Any media type: schemathesis would send images and forms, each a 415 at once.
                    content["application/json"] = content.pop("*/*")
    return doc


# The documents give every patch type meta/v1's Patch, "an object", which a JSON patch never
# is: without this, JSON patches would only ever be refused whole, their operations untried.
_POINTER = {"anyOf": [
    {"enum": ["", "/metadata", "/metadata/labels", "/metadata/labels/a", "/metadata/name", "/spec",
              "/spec/replicas", "/spec/ports/0", "/spec/containers/0/image", "/data", "/data/a", "/status"]},
    {"type": "string"},
]}
JSON_PATCH = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": _POINTER,
            "from": _POINTER,
            "value": {},
        },
    },
}


# Query parameters whose wrong values are refused before anything else is looked at: valid
# values only when generating valid requests, so that those reach the body and the store;
# the invalid requests bring the rest.
QUERY_VALUES = {
    "dryRun": ["All"],
    "fieldValidation": ["Strict", "Warn", "Ignore"],
    "pretty": ["true", "false"],
    "propagationPolicy": ["Orphan", "Background", "Foreground"],
}


def _lean(param: dict[str, Any], path: str) -> dict[str, Any]:
    if param.get("in") == "query" and param["name"] in QUERY_VALUES:
        return {**param, "schema": {"type": "string", "enum": QUERY_VALUES[param["name"]]}}
    if param.get("in") != "path":
        return param
    wanted = {"namespace": [NAMESPACE], "name": [NAME] if "{namespace}" in path else None}.get(param["name"])
    if wanted is None:
        return param
    return {**param, "schema": {"type": "string", "enum": wanted}}


def check_response(label: str, case: Any, resp: requests.Response, run: Run) -> None:
    run.statuses[resp.status_code] += 1
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = None
    message = body.get("message", "") if isinstance(body, dict) else ""
    if resp.status_code >= 500 and not KUBERNETES_OWN_5XX.match(str(message)):
        run.findings.append(Finding(label, f"{resp.status_code}", case.as_curl_command(), resp.text[:500]))
    elif not (isinstance(body, dict) and body.get("kind") == "Status" and body.get("code") == resp.status_code):
        run.findings.append(Finding(label, f"{resp.status_code} not a Status", case.as_curl_command(), resp.text[:500]))


def null_one(body: Any, pick: int) -> None:
    """Replace one value of ``body`` (the ``pick``-th, counting depth first) with null.

    Schemas never ask for null where they name a type, so generated bodies never hold one;
    clients send them all the same (a YAML key without a value), and Go decodes them into zero
    values. A third of the valid requests carry one.
    """
    spots: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            spots.append((node, key))
            collect(value)

    collect(body)
    if spots:
        container, key = spots[pick % len(spots)]
        container[key] = None


def fuzz_operation(client: Client, operation: Any, mode: Any, run: Run) -> None:
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable

    label = f"{operation.label} ({mode.value})"
    examples = EXAMPLES if mode.value == "positive" else NEGATIVE_EXAMPLES

    @seed(SEED)
    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 1 << 30))
    def one(case: Any, pick: int) -> None:
        run.requests += 1
        if mode.value == "positive" and pick % 3 == 0 and isinstance(case.body, (dict, list)):
            null_one(case.body, pick // 3)
        try:
            resp = case.call(
                base_url=client.base, session=client.session, timeout=REQUEST_TIMEOUT,
                verify=client.ca, cert=client.cert,
            )
        except requests.Timeout:
            run.findings.append(Finding(label, f"no answer in {REQUEST_TIMEOUT:.0f} s", case.as_curl_command()))
            return
        except requests.ConnectionError as e:
            run.findings.append(Finding(label, f"connection failed: {e}", case.as_curl_command()))
            return
        check_response(label, case, resp, run)

    try:
        one()
    except Unsatisfiable:
        if mode.value == "positive":
            run.not_generated.append(f"{label}: nothing satisfies the schema")
        # else: nothing to make invalid (an operation without parameters or body)
    except Exception as e:  # the schema gave nothing to send (e.g. a media type it cannot serialize)
        run.not_generated.append(f"{label}: {type(e).__name__}: {str(e)[:200]}")


def fuzz(client: Client, documents: tuple[str, ...] = DOCUMENTS) -> Run:
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core.result import Err

    run = Run()
    for name in documents:
        schema = schemathesis.openapi.from_dict(prepare(client.get_json(f"/openapi/v3/{name}")))
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # an operation schemathesis cannot read: the document's defect
                run.findings.append(Finding(name, "invalid operation", str(result.err())))
                continue
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_operation(client, operation, mode, run)
    return run


def seed_objects(cluster: Cluster) -> None:
    """One object of each kind the documents cover most, named so that updates find it."""
    manifests = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
data: {{a: b}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
stringData: {{a: b}}
---
apiVersion: v1
kind: Service
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
spec: {{selector: {{app: fuzz}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {NAME}, namespace: {NAMESPACE}, labels: {{app: fuzz}}}}
spec: {{containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: fuzz}}}}
  template:
    metadata: {{labels: {{app: fuzz}}}}
    spec: {{containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]}}
"""
    cluster.kubectl("apply", "-f", "-", input=manifests, check=True)


@pytest.fixture
def fuzz_cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    """A cluster of its own: the fuzzer deletes collections and patches whatever it finds."""
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(importlib.util.find_spec("schemathesis") is not None, "schemathesis is not installed (the test extras)")
    c = new_cluster(tmp_path)
    c.start()
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.data_dir, ignore_errors=True)


def report(run: Run, elapsed: float) -> str:
    first: dict[tuple[str, str], Finding] = {}
    for f in run.findings:
        first.setdefault((f.operation, f.problem.split(":")[0]), f)
    lines = [f"{run.requests} requests in {elapsed:.0f} s, statuses {dict(sorted(run.statuses.items()))}"]
    lines += [f"{f.operation}: {f.problem}\n  {f.request}\n  {f.response}" for f in first.values()]
    lines += [f"not generated: {line}" for line in run.not_generated]
    return "\n".join(lines)


@pytest.mark.timeout(600)
def test_fuzz_served_openapi_no_5xx_no_hang(fuzz_cluster: Cluster, tmp_path: pathlib.Path) -> None:
    seed_objects(fuzz_cluster)
    client = Client(fuzz_cluster, tmp_path)
    started = time.monotonic()
    run = fuzz(client)
    elapsed = time.monotonic() - started
    print(report(run, elapsed))
    assert not run.findings, report(run, elapsed)
    # The fuzzer did reach the server, for every document (a schema that generates nothing
    # would make this test pass without testing).
    assert run.requests > 20 * len(DOCUMENTS), report(run, elapsed)
    assert sum(n for s, n in run.statuses.items() if s < 300) > 100, report(run, elapsed)
    assert len(run.not_generated) < 10, report(run, elapsed)
    assert client.session.get(client.base + "/readyz", timeout=REQUEST_TIMEOUT).status_code == 200
