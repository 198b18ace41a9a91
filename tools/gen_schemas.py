"""Regenerate src/kubelite/api/data/definitions.json.gz, the OpenAPI schemas of the served kinds.

Why: ``kubectl explain``, kubectl's check that the server does strict field validation, our
strict decoding (``unknown field "spec.notAField"``) and strategic merge patch (merge keys)
all need Kubernetes' own schemas. They are API facts, published as data in the
``kubernetes-validate`` package on PyPI (JSON Schema converted from Kubernetes' OpenAPI).
This script takes the definitions reachable from the kinds kubelite serves, converts them to
the OpenAPI 3.0 shape kube-apiserver publishes (single ``type``, ``allOf`` around a ``$ref``
that has a description, int-or-string), and writes them gzipped. Run it by hand when the
set of served kinds grows:

    python tools/gen_schemas.py [--k8s-version 1.33.0]
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

ROOTS = [
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.Endpoints",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.core.v1.Event",
    "io.k8s.api.core.v1.Node",
    "io.k8s.api.core.v1.Binding",
    "io.k8s.api.discovery.v1.EndpointSlice",
    "io.k8s.api.events.v1.Event",
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.networking.v1.IPAddress",
    "io.k8s.api.networking.v1.ServiceCIDR",
    "io.k8s.api.authentication.v1.TokenRequest",
    "io.k8s.api.policy.v1.Eviction",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
    # Issue 15: the older core kinds, scheduling, storage (CSI), flow control, aggregation.
    "io.k8s.api.core.v1.ReplicationController",
    "io.k8s.api.core.v1.PodTemplate",
    "io.k8s.api.core.v1.ComponentStatus",
    "io.k8s.api.scheduling.v1.PriorityClass",
    "io.k8s.api.storage.v1.CSIStorageCapacity",
    "io.k8s.api.storage.v1.CSIDriver",
    "io.k8s.api.storage.v1.CSINode",
    "io.k8s.api.storage.v1.VolumeAttachment",
    "io.k8s.api.flowcontrol.v1.FlowSchema",
    "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration",
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService",
    "io.k8s.api.core.v1.LimitRange",
    "io.k8s.api.core.v1.ResourceQuota",
    "io.k8s.api.certificates.v1.CertificateSigningRequest",
    # Issue 17: workloads and storage.
    "io.k8s.api.apps.v1.StatefulSet",
    "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.apps.v1.ControllerRevision",
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.batch.v1.CronJob",
    "io.k8s.api.core.v1.PersistentVolume",
    "io.k8s.api.core.v1.PersistentVolumeClaim",
    "io.k8s.api.storage.v1.StorageClass",
    # Issue 18: authorization.
    "io.k8s.api.rbac.v1.ClusterRole",
    "io.k8s.api.rbac.v1.ClusterRoleBinding",
    "io.k8s.api.rbac.v1.Role",
    "io.k8s.api.rbac.v1.RoleBinding",
    "io.k8s.api.authentication.v1.SelfSubjectReview",
    "io.k8s.api.authentication.v1.TokenReview",
    "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
    "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
    "io.k8s.api.authorization.v1.SubjectAccessReview",
    "io.k8s.api.networking.v1.NetworkPolicy",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
]
LISTS = [r for r in ROOTS if ".api." in r or ".apis.apiregistration." in r]  # each kind's <Kind>List too


def _fetch(version: str) -> dict[str, Any]:
    tmp = pathlib.Path(tempfile.mkdtemp())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), "kubernetes-validate"],
        check=True,
    )
    wheel = next(tmp.glob("kubernetes_validate-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        name = f"kubernetes_validate/kubernetes-json-schema/v{version}-local/_definitions.json"
        return json.loads(zf.read(name))["$defs"]


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "$ref":
            out[k] = v.replace("#/$defs/", "#/components/schemas/")
        elif k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            out[k] = types[0] if types else "object"
        elif k in ("properties", "patternProperties"):
            out[k] = {name: _convert(s) for name, s in v.items()}
        else:
            out[k] = _convert(v)
    if "$ref" in out and len(out) > 1:
        # OpenAPI 3.0 ignores siblings of $ref: kube-apiserver wraps the ref in allOf.
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", default="1.33.0")
    args = ap.parse_args()
    defs = _fetch(args.k8s_version)
    wanted: dict[str, Any] = {}
    todo = list(ROOTS) + [r + "List" for r in LISTS if r + "List" in defs]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted[name] = defs[name]
        text = json.dumps(defs[name])
        for part in text.split('"#/$defs/')[1:]:
            todo.append(part.split('"', 1)[0])
    wanted["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "description": defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"].get(
            "description", "IntOrString is a type that can hold an int32 or a string."
        ),
        "type": "string",
        "format": "int-or-string",
    }
    # Quantity is a string on the wire (kube-apiserver publishes it so), not oneOf.
    wanted["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "description": "Quantity is a fixed-point representation of a number, such as 100m or 1Gi.",
        "type": "string",
    }
    converted = {name: _convert(s) for name, s in sorted(wanted.items())}
    converted["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = wanted[
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    ]
    out = pathlib.Path(__file__).resolve().parent.parent / "src/kubelite/api/data/definitions.json.gz"
    payload = json.dumps({"kubernetesVersion": args.k8s_version, "schemas": converted}, sort_keys=True)
    out.write_bytes(gzip.compress(payload.encode(), mtime=0))
    print(f"{len(converted)} schemas, {out.stat().st_size} bytes -> {out}")


if __name__ == "__main__":
    main()
