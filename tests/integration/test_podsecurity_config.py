"""PodSecurity's configuration, as kube-apiserver takes it (issue 18): an AdmissionConfiguration
given by ``kubelite up --admission-control-config-file`` whose PodSecurity entry sets the
default policy of namespaces without labels and exempts usernames, runtime classes and
namespaces; an exempt request is not evaluated and its audit event says why. A file
kube-apiserver would refuse keeps the cluster from starting, with kube-apiserver's message.
The cluster runs an API server worker beside `up`'s own, each reading the file.
"""

from __future__ import annotations

import base64
import json
import pathlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.integration.cluster import Cluster, free_port, kubectl_binary, new_cluster
from tests.integration.test_podsecurity import audit_events

ADMISSION = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
             "plugins": [{"name": "PodSecurity", "path": "podsecurity.yaml"}]}
POD_SECURITY = {
    "apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration",
    "defaults": {"enforce": "baseline", "audit": "restricted", "warn": "restricted"},
    "exemptions": {"usernames": ["alice"], "runtimeClasses": ["kata"], "namespaces": ["psa-exempt"]},
}
BASELINE_PRIVILEGED = ('violates PodSecurity "baseline:latest": privileged (container "c" must not set '
                       "securityContext.privileged=true)")


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, pathlib.Path]]:
    require(kubectl_binary() is not None, "kubectl is not installed")
    base = tmp_path_factory.mktemp("psaconfig")
    (base / "conf").mkdir()
    (base / "conf" / "admission.yaml").write_text(yaml.safe_dump(ADMISSION))
    (base / "conf" / "podsecurity.yaml").write_text(yaml.safe_dump(POD_SECURITY))  # relative to admission.yaml
    log = base / "audit.log"
    c = new_cluster(base)
    c.start(extra=["--admission-control-config-file", str(base / "conf" / "admission.yaml"), "--audit-log", str(log),
                   "--api-workers", "1", "--service-account-extend-token-expiration=false"])
    try:
        yield c, log
    finally:
        c.stop()
        shutil.rmtree(c.data_dir, ignore_errors=True)


def pod(name: str, *, runtime_class: str = "", **sc: Any) -> str:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                            **({"securityContext": sc} if sc else {})}]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def namespace(cluster: Cluster, name: str = "", **labels: str) -> str:
    name = name or f"psa-{uuid.uuid4().hex[:6]}"
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {f"pod-security.kubernetes.io/{k}": v for k, v in labels.items()}}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest), check=True)
    return name


def annotations_of(log: pathlib.Path, ns: str, name: str) -> dict[str, str]:
    [event] = audit_events(log, lambda e: e.get("verb") == "create" and e.get("objectRef", {}).get("namespace") == ns
                           and e.get("objectRef", {}).get("name") == name
                           and e.get("objectRef", {}).get("resource") == "pods")
    return {k: v for k, v in (event.get("annotations") or {}).items() if k.startswith("pod-security.kubernetes.io/")}


def test_a_namespace_without_labels_gets_the_configured_defaults(configured: tuple[Cluster, pathlib.Path]) -> None:
    cluster, log = configured
    ns = namespace(cluster)
    for _ in range(4):  # every API server process has the configuration (connections go to either)
        res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("priv", privileged=True))
        assert res.returncode == 1
        assert res.stderr.strip() == (f'Error from server (Forbidden): error when creating "STDIN": pods "priv" is '
                                      f"forbidden: {BASELINE_PRIVILEGED}")
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("plain"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().startswith('Warning: would violate PodSecurity "restricted:latest": '
                                         'allowPrivilegeEscalation != false')
    notes = annotations_of(log, ns, "plain")
    assert notes["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest"
    assert notes["pod-security.kubernetes.io/audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false')
    # A label overrides the default of its own mode only.
    labelled = namespace(cluster, enforce="privileged")
    res = cluster.kubectl("create", "-n", labelled, "-f", "-", input=pod("priv", privileged=True))
    assert res.returncode == 0, res.stderr
    assert 'Warning: would violate PodSecurity "restricted:latest": privileged' in res.stderr


def test_exempt_namespaces_users_and_runtime_classes_are_not_evaluated(
        configured: tuple[Cluster, pathlib.Path]) -> None:
    cluster, log = configured
    exempt = namespace(cluster, "psa-exempt")
    res = cluster.kubectl("create", "-n", exempt, "-f", "-", input=pod("priv", privileged=True))
    assert (res.returncode, res.stderr) == (0, "")
    assert annotations_of(log, exempt, "priv") == {"pod-security.kubernetes.io/exempt": "namespace"}

    ns = namespace(cluster)
    cluster.kubectl("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "--user=bob",
                    "-n", ns, check=True)
    res = cluster.kubectl("create", "-n", ns, "--as=alice", "-f", "-", input=pod("by-alice", privileged=True))
    assert (res.returncode, res.stderr) == (0, "")
    assert annotations_of(log, ns, "by-alice") == {"pod-security.kubernetes.io/exempt": "user"}
    res = cluster.kubectl("create", "-n", ns, "--as=bob", "-f", "-", input=pod("by-bob", privileged=True))
    assert res.returncode == 1 and BASELINE_PRIVILEGED in res.stderr

    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("vm", runtime_class="kata", privileged=True))
    assert (res.returncode, res.stderr) == (0, "")
    assert annotations_of(log, ns, "vm") == {"pod-security.kubernetes.io/exempt": "runtimeClass"}
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("other", runtime_class="runc", privileged=True))
    assert res.returncode == 1 and BASELINE_PRIVILEGED in res.stderr

    # Workloads of an exempt namespace get no warnings either.
    res = cluster.kubectl("create", "deployment", "web", "--image=busybox", "-n", exempt)
    assert (res.returncode, res.stderr) == (0, "")
    res = cluster.kubectl("create", "deployment", "web", "--image=busybox", "-n", ns)
    assert res.returncode == 0 and 'Warning: would violate PodSecurity "restricted:latest"' in res.stderr


def test_labelling_an_exempt_namespace_says_the_policy_is_ignored(configured: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = configured
    exempt = "psa-exempt"
    if cluster.kubectl("get", "namespace", exempt).returncode != 0:
        namespace(cluster, exempt)
    res = cluster.kubectl("label", "--overwrite", "namespace", exempt, "pod-security.kubernetes.io/enforce=restricted")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == (f'Warning: namespace "{exempt}" is exempt from Pod Security, and the policy '
                                  "(enforce=restricted:latest) will be ignored")
    res = cluster.kubectl("create", "-n", exempt, "-f", "-", input=pod("still", privileged=True))
    assert (res.returncode, res.stderr) == (0, "")


def test_the_extension_flag_off_leaves_the_kubelets_token_at_its_hour(configured: tuple[Cluster, pathlib.Path]) -> None:
    cluster, _ = configured
    ns = namespace(cluster)
    cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("holder"), check=True)
    token = cluster.kubectl("create", "token", "default", "-n", ns, "--bound-object-kind=Pod",
                            "--bound-object-name=holder", "--duration=3607s", check=True).stdout.strip()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 3607 and "warnafter" not in claims["kubernetes.io"]


@pytest.mark.parametrize(("files", "message"), [
    ({"admission.yaml": {**ADMISSION, "plugins": [{"name": "PodSecurity", "configuration": {
        **POD_SECURITY, "defaults": {"enforce": "strict"}, "exemptions": {"namespaces": ["a", "a"]}}}]}},
     'failed to initialize admission plugin "PodSecurity": [defaults.enforce: Invalid value: "strict": must be one '
     'of privileged, baseline, restricted, exemptions.namespaces[1]: Duplicate value: "a"]'),
    ({"admission.yaml": {**ADMISSION, "plugins": [{"name": "PodSecurity", "configuration": {
        **POD_SECURITY, "kind": "PodSecurityPolicy"}}]}},
     'couldn\'t init admission plugin "PodSecurity": failed to decode: no kind "PodSecurityPolicy" is registered '
     'for version "pod-security.admission.config.k8s.io/v1" in scheme '
     '"k8s.io/pod-security-admission/admission/api/scheme/scheme.go:28"'),
    ({}, 'unable to read admission control configuration from "{dir}/admission.yaml" '
         "[open {dir}/admission.yaml: no such file or directory]"),
])
def test_a_configuration_kube_apiserver_refuses_keeps_the_cluster_from_starting(
        tmp_path: pathlib.Path, files: dict[str, Any], message: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content))
    res = subprocess.run([sys.executable, "-m", "kubelite", "up", "--name", f"kl-{uuid.uuid4().hex[:6]}",
                          "--data-dir", str(tmp_path / "data"), "--api-port", str(free_port()), "--no-agent",
                          "--no-kubeconfig-merge", "--admission-control-config-file",
                          str(tmp_path / "admission.yaml")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == "kubelite: " + message.format(dir=tmp_path)
