"""Pod Security admission and the audit log against a real API server and the real kubectl
(issue 18): a namespace's ``pod-security.kubernetes.io/*`` labels refuse, warn and annotate
as kube-apiserver's PodSecurity plugin does, word for word; ``kubelite up --audit-log``
records who asked for which write and what the answer was."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.integration.cluster import Cluster, audited_cluster, free_port, kubectl_binary
from tests.waiting import eventually

RESTRICTED_PRIVILEGED_POD = (
    'violates PodSecurity "restricted:latest": privileged (container "c" must not set '
    'securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set '
    'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set '
    'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set '
    'securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set '
    'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
)
RESTRICTED_PLAIN = (
    'allowPrivilegeEscalation != false (container "{c}" must set securityContext.allowPrivilegeEscalation=false), '
    'unrestricted capabilities (container "{c}" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (pod or container "{c}" must set securityContext.runAsNonRoot=true), '
    'seccompProfile (pod or container "{c}" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
    '"Localhost")'
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, pathlib.Path]]:
    """A cluster of this module's own, with its audit log in a directory of the test's choosing."""
    require(kubectl_binary() is not None, "kubectl is not installed")
    base = tmp_path_factory.mktemp("podsecurity")
    log = base / "logs" / "audit.log"
    with audited_cluster(base, log) as c:
        yield c, log


def namespace(cluster: Cluster, **labels: str) -> str:
    name = f"psa-{uuid.uuid4().hex[:6]}"
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {f"pod-security.kubernetes.io/{k.replace('_', '-')}": v for k, v in labels.items()}}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest), check=True)
    return name


def pod_manifest(name: str, *, privileged: bool = False, compliant: bool = False, image: str = "busybox") -> str:
    container: dict[str, Any] = {"name": "c", "image": image, "command": ["sleep", "3600"]}
    spec: dict[str, Any] = {"containers": [container]}
    if privileged:
        container["securityContext"] = {"privileged": True}
    if compliant:
        container["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})




def test_enforce_restricted_refuses_a_privileged_pod_and_admits_a_compliant_one(
        audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = audited
    ns = namespace(cluster, enforce="restricted")
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("priv", privileged=True))
    assert res.returncode == 1
    assert res.stderr.strip() == f'Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: ' \
                                 f"{RESTRICTED_PRIVILEGED_POD}"
    assert cluster.kubectl("get", "pod", "priv", "-n", ns).returncode == 1  # nothing was stored
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("ok", compliant=True))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "pod/ok created" and res.stderr == ""  # and no warning: it complies
    # Dry runs are judged the same.
    res = cluster.kubectl("run", "dry", "-n", ns, "--image=busybox", "--privileged", "--dry-run=server")
    assert res.returncode == 1 and 'pods "dry" is forbidden: violates PodSecurity "restricted:latest"' in res.stderr


def test_warn_label_makes_kubectl_print_the_warning(audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = audited
    ns = namespace(cluster, warn="restricted")
    res = cluster.kubectl("run", "plain", "-n", ns, "--image=busybox")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "pod/plain created"
    assert res.stderr.strip() == 'Warning: would violate PodSecurity "restricted:latest": ' + \
        RESTRICTED_PLAIN.format(c="plain")
    # A version label picks an older standard: v1.18 had neither the seccomp nor the capabilities check.
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/warn-version=v1.18", check=True)
    eventually(lambda: 'restricted:v1.18' in cluster.kubectl("run", f"old-{uuid.uuid4().hex[:4]}", "-n", ns,
                                                             "--image=busybox").stderr,
               "the version label was never applied")
    res = cluster.kubectl("run", "older", "-n", ns, "--image=busybox")
    assert res.stderr.strip() == 'Warning: would violate PodSecurity "restricted:v1.18": ' \
        'allowPrivilegeEscalation != false (container "older" must set securityContext.allowPrivilegeEscalation=false), ' \
        'runAsNonRoot != true (pod or container "older" must set securityContext.runAsNonRoot=true)'


def test_a_deployment_in_an_enforce_namespace_is_created_with_a_warning(audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = audited
    ns = namespace(cluster, enforce="restricted")
    res = cluster.kubectl("create", "deployment", "web", "-n", ns, "--image=busybox")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "deployment.apps/web created"
    assert res.stderr.strip() == 'Warning: would violate PodSecurity "restricted:latest": ' + \
        RESTRICTED_PLAIN.format(c="busybox")
    # Its ReplicaSet's pods are refused: the controller reports it, as in Kubernetes.
    eventually(lambda: "violates PodSecurity" in cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "reason=FailedCreate", "-o", "json").stdout,
        "no FailedCreate event for the refused pods")
    assert json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json", check=True).stdout)["items"] == []
    # The scale subresource is not judged (its pod template does not change); an update of the template is.
    res = cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=2")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    res = cluster.kubectl("set", "image", "deployment/web", "-n", ns, "busybox=busybox:1.36")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == 'Warning: would violate PodSecurity "restricted:latest": ' + \
        RESTRICTED_PLAIN.format(c="busybox")


def test_labelling_a_namespace_warns_about_its_existing_pods(audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = audited
    ns = namespace(cluster)
    for manifest in (pod_manifest("a-priv", privileged=True), pod_manifest("b-plain"), pod_manifest("c-plain"),
                     pod_manifest("d-ok", compliant=True)):
        cluster.kubectl("create", "-n", ns, "-f", "-", input=manifest, check=True)
    res = cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"namespace/{ns} labeled"
    assert res.stderr.strip().splitlines() == [
        f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "restricted:latest"',
        "Warning: a-priv: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile",
        "Warning: b-plain (and 1 other pod): allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile",
    ]
    # A pod update that changes an image is judged again; one that does not is left alone.
    res = cluster.kubectl("label", "pod", "a-priv", "-n", ns, "team=x")
    assert res.returncode == 0, res.stderr
    res = cluster.kubectl("set", "image", "pod/a-priv", "-n", ns, "c=busybox:latest")
    assert res.returncode == 1
    assert f'pods "a-priv" is forbidden: {RESTRICTED_PRIVILEGED_POD}' in res.stderr
    # Relaxing the level checks nothing.
    res = cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline", "--overwrite")
    assert res.returncode == 0 and res.stderr == ""


def test_invalid_labels_are_refused(audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = audited
    ns = namespace(cluster)
    res = cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=strict")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f'The Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: '
        '"strict": must be one of privileged, baseline, restricted')
    res = cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/warn-version=1.30")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f'The Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: '
        '"1.30": must be "latest" or "v1.x"')
    manifest = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": f"bad-{uuid.uuid4().hex[:6]}", "labels": {"pod-security.kubernetes.io/audit": "x"}}}
    res = cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    assert res.returncode == 1 and 'Invalid value: "x": must be one of privileged, baseline, restricted' in res.stderr


def audit_events(log: pathlib.Path, match: Callable[[dict[str, Any]], bool], limit: float = 5.0) -> list[dict[str, Any]]:
    """The events that match, once there are some (the log is flushed in the background)."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        nonlocal found
        lines = log.read_bytes().splitlines() if log.exists() else []
        found = [e for e in map(json.loads, lines) if match(e)]
        return bool(found)

    eventually(check, "no such audit event", limit)
    return found


def test_the_audit_log_records_who_what_and_the_verdict(audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, log = audited
    ns = namespace(cluster, enforce="restricted", audit="restricted")
    cluster.kubectl("create", "configmap", "allowed", "-n", ns, "--from-literal=a=b", check=True)
    res = cluster.kubectl("create", "configmap", "refused", "-n", ns, "--from-literal=a=b",
                          f"--as=system:serviceaccount:{ns}:default")
    assert res.returncode == 1
    cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("priv", privileged=True))
    cluster.kubectl("create", "serviceaccount", "editor", "-n", ns, check=True)
    cluster.kubectl("create", "rolebinding", "editor", "--clusterrole=edit", f"--serviceaccount={ns}:editor", "-n", ns,
                    check=True)
    eventually(lambda: cluster.kubectl("create", "configmap", "by-editor", "-n", ns,
                                       f"--as=system:serviceaccount:{ns}:editor").returncode == 0,
               "the binding was never seen")

    [allowed] = audit_events(log, lambda e: e.get("objectRef", {}).get("name") == "allowed")
    assert allowed["apiVersion"] == "audit.k8s.io/v1" and allowed["kind"] == "Event"
    assert allowed["level"] == "Metadata" and allowed["stage"] == "ResponseComplete"
    assert allowed["verb"] == "create"
    assert allowed["requestURI"].startswith(f"/api/v1/namespaces/{ns}/configmaps?")
    assert allowed["user"]["username"] == "kubernetes-admin" and "system:masters" in allowed["user"]["groups"]
    assert "impersonatedUser" not in allowed
    assert allowed["sourceIPs"] == ["127.0.0.1"] and allowed["userAgent"].startswith("kubectl/")
    assert allowed["objectRef"] == {"resource": "configmaps", "namespace": ns, "name": "allowed", "apiVersion": "v1"}
    assert allowed["responseStatus"] == {"metadata": {}, "code": 201}
    assert allowed["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert allowed["requestReceivedTimestamp"] <= allowed["stageTimestamp"]

    [refused] = audit_events(log, lambda e: e.get("impersonatedUser", {}).get("username")
                             == f"system:serviceaccount:{ns}:default")
    assert refused["user"]["username"] == "kubernetes-admin"
    assert refused["objectRef"] == {"resource": "configmaps", "namespace": ns, "apiVersion": "v1"}
    assert refused["responseStatus"]["code"] == 403 and refused["responseStatus"]["reason"] == "Forbidden"
    assert refused["responseStatus"]["message"] == (
        f'configmaps is forbidden: User "system:serviceaccount:{ns}:default" cannot create resource "configmaps" '
        f'in API group "" in the namespace "{ns}"')
    assert refused["annotations"]["authorization.k8s.io/decision"] == "forbid"

    [editor] = audit_events(log, lambda e: e.get("objectRef", {}).get("name") == "by-editor"
                            and e["responseStatus"]["code"] == 201)
    assert editor["annotations"]["authorization.k8s.io/reason"] == (
        f'RBAC: allowed by RoleBinding "editor/{ns}" of ClusterRole "edit" to ServiceAccount "editor/{ns}"')
    assert editor["impersonatedUser"]["username"] == f"system:serviceaccount:{ns}:editor"

    [pod] = audit_events(log, lambda e: e.get("objectRef", {}).get("name") == "priv"
                         and e["objectRef"].get("namespace") == ns)
    assert pod["responseStatus"]["code"] == 403
    assert pod["responseStatus"]["message"] == f'pods "priv" is forbidden: {RESTRICTED_PRIVILEGED_POD}'
    assert pod["annotations"]["authorization.k8s.io/decision"] == "allow"  # RBAC allowed; admission refused
    assert pod["annotations"]["pod-security.kubernetes.io/enforce-policy"] == "restricted:latest"
    assert pod["annotations"]["pod-security.kubernetes.io/audit-violations"] == \
        "would " + RESTRICTED_PRIVILEGED_POD.replace("violates", "violate", 1)
    # Reads are not audited.
    cluster.kubectl("get", "configmap", "allowed", "-n", ns, check=True)
    assert not [e for e in map(json.loads, log.read_bytes().splitlines()) if e["verb"] in ("get", "list", "watch")]


def test_no_audit_event_is_lost_on_a_clean_stop(fresh_cluster: Cluster) -> None:
    """With an API server worker beside `up`'s own server, both appending to the default file."""
    fresh_cluster.start(extra=["--audit-log", "--api-workers", "1"])
    names = [f"cm-{i}" for i in range(20)]
    for name in names:
        fresh_cluster.kubectl("create", "configmap", name, "-n", "default", check=True)
    assert fresh_cluster.stop() == 0
    log = fresh_cluster.data_dir / "audit.log"
    events = [json.loads(line) for line in log.read_bytes().splitlines()]
    created = sorted(e["objectRef"]["name"] for e in events
                     if e["verb"] == "create" and e["objectRef"].get("resource") == "configmaps"
                     and e["objectRef"].get("namespace") == "default" and e["responseStatus"]["code"] == 201
                     and e["objectRef"].get("name", "").startswith("cm-"))
    assert created == sorted(names)


def test_an_audit_log_that_cannot_be_written_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "logs" / "audit.log"
    res = subprocess.run([sys.executable, "-m", "kubelite", "up", "--name", f"kl-{uuid.uuid4().hex[:6]}",
                          "--data-dir", str(tmp_path / "data"), "--api-port", str(free_port()), "--no-agent",
                          "--no-kubeconfig-merge", "--audit-log", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == f"kubelite: cannot write the audit log {path}: Not a directory"
