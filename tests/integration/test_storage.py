"""PersistentVolumes, claims and StorageClasses through the real kubectl (control plane only).

No node runs here, so the default class (WaitForFirstConsumer) binds nothing; an Immediate
class of the same provisioner provisions at once (a hostPath volume: there is no node to tie
it to). Pre-made volumes bind to claims without a class; Retain leaves a volume Released, and
Delete without a provisioner to delete it fails it, as Kubernetes does.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.e2e.test_images_services import wait_for
from tests.integration.cluster import Cluster, audited_cluster, kubectl_binary
from tests.integration.test_podsecurity import audit_events

Obj = dict[str, Any]


def _apply(cluster: Cluster, *objs: Obj) -> None:
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all(objs))


def _json(cluster: Cluster, *args: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl(*args, "-o", "json", check=True).stdout)
    return out


def _claim(name: str, size: str = "1Gi", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}}


def _volume(name: str, size: str, path: str, policy: str = "Retain") -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": path}}}


def _phase(cluster: Cluster, kind: str, name: str) -> str:
    return cluster.kubectl("get", kind, name, "-o", "jsonpath={.status.phase}").stdout


def test_the_default_class_is_local_path(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "sc", "local-path", check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]
    assert out[1].split()[:6] == ["local-path", "(default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer",
                                  "true"]
    claim = _claim("int-wffc")
    _apply(cluster, claim)
    pvc = _json(cluster, "get", "pvc", "int-wffc")
    assert pvc["spec"]["storageClassName"] == "local-path"
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert pvc["status"] == {"phase": "Pending"}
    wait_for("WaitForFirstConsumer", lambda: "waiting for first consumer to be created before binding" in
             cluster.kubectl("describe", "pvc", "int-wffc").stdout, timeout=30)
    assert _phase(cluster, "pvc", "int-wffc") == "Pending"
    cluster.kubectl("delete", "pvc", "int-wffc", check=True)


def test_provisioning_expansion_and_deletion(cluster: Cluster) -> None:
    _apply(cluster, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "int-now"},
                     "provisioner": "rancher.io/local-path", "volumeBindingMode": "Immediate",
                     "allowVolumeExpansion": True},
           _claim("int-dyn", storageClassName="int-now"))
    wait_for("the claim bound", lambda: _phase(cluster, "pvc", "int-dyn") == "Bound", timeout=30)
    pvc = _json(cluster, "get", "pvc", "int-dyn")
    pv_name = pvc["spec"]["volumeName"]
    assert pv_name == "pvc-" + pvc["metadata"]["uid"]
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "rancher.io/local-path"
    pv = _json(cluster, "get", "pv", pv_name)
    directory = pathlib.Path(pv["spec"]["hostPath"]["path"])
    assert directory == cluster.data_dir / "storage" / f"{pv_name}_default_int-dyn"
    assert directory.is_dir()
    assert pv["spec"]["claimRef"]["name"] == "int-dyn" and pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    row = cluster.kubectl("get", "pvc", "int-dyn", "--no-headers", check=True).stdout.split()
    assert row[:6] == ["int-dyn", "Bound", pv_name, "1Gi", "RWO", "int-now"]
    events = cluster.kubectl("describe", "pvc", "int-dyn", check=True).stdout
    assert f"Successfully provisioned volume {pv_name}" in events
    assert 'External provisioner is provisioning volume for claim "default/int-dyn"' in events

    cluster.kubectl("patch", "pvc", "int-dyn", "-p", '{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}', check=True)
    wait_for("the new capacity", lambda: _json(cluster, "get", "pvc", "int-dyn")["status"]
             .get("capacity", {}).get("storage") == "3Gi", timeout=30)
    assert _json(cluster, "get", "pv", pv_name)["spec"]["capacity"]["storage"] == "3Gi"
    shrink = cluster.kubectl("patch", "pvc", "int-dyn", "-p", '{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}')
    assert "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity" in shrink.stderr
    modes = cluster.kubectl("patch", "pvc", "int-dyn", "-p", '{"spec":{"accessModes":["ReadWriteMany"]}}')
    assert "spec: Forbidden: spec is immutable after creation except resources.requests" in modes.stderr

    cluster.kubectl("delete", "pvc", "int-dyn", check=True)
    wait_for("the volume deleted", lambda: cluster.kubectl("get", "pv", pv_name).returncode != 0, timeout=30)
    assert not directory.exists()
    cluster.kubectl("delete", "sc", "int-now", check=True)


def test_static_volumes_bind_smallest_first_and_are_reclaimed_by_policy(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    _apply(cluster, _volume("int-big", "10Gi", str(tmp_path / "big")),
           _volume("int-small", "2Gi", str(tmp_path / "small"), policy="Delete"))
    wait_for("volumes Available", lambda: _phase(cluster, "pv", "int-big") == "Available"
             and _phase(cluster, "pv", "int-small") == "Available", timeout=30)
    row = cluster.kubectl("get", "pv", "int-big", "--no-headers", check=True).stdout.split()
    assert row[:5] == ["int-big", "10Gi", "RWO", "Retain", "Available"]
    _apply(cluster, _claim("int-static", "1Gi", storageClassName=""))
    wait_for("the claim bound", lambda: _phase(cluster, "pvc", "int-static") == "Bound", timeout=30)
    assert _json(cluster, "get", "pvc", "int-static")["spec"]["volumeName"] == "int-small"
    # Resizing needs a class that allows it.
    resize = cluster.kubectl("patch", "pvc", "int-static", "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}')
    assert ('persistentvolumeclaims "int-static" is forbidden: only dynamically provisioned pvc can be resized and '
            "the storageclass that provisions the pvc must support resize") in resize.stderr
    _apply(cluster, _claim("int-static2", "3Gi", storageClassName=""))
    wait_for("the second claim bound", lambda: _phase(cluster, "pvc", "int-static2") == "Bound", timeout=30)
    assert _json(cluster, "get", "pvc", "int-static2")["spec"]["volumeName"] == "int-big"
    assert "default/int-static2" in cluster.kubectl("get", "pv", "int-big", check=True).stdout

    cluster.kubectl("delete", "pvc", "int-static", "int-static2", check=True)
    wait_for("Released", lambda: _phase(cluster, "pv", "int-big") == "Released", timeout=30)
    wait_for("Failed", lambda: _phase(cluster, "pv", "int-small") == "Failed", timeout=30)
    assert "no deletable volume plugin matched" in cluster.kubectl("describe", "pv", "int-small", check=True).stdout
    cluster.kubectl("delete", "pv", "int-big", "int-small", check=True)


def test_validation_in_kubernetes_words(cluster: Cluster) -> None:
    bad = _claim("int-bad")
    bad["spec"]["resources"] = {}
    out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert 'The PersistentVolumeClaim "int-bad" is invalid: spec.resources[storage]: Required value' in out.stderr
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "int-frozen"},
          "provisioner": "example.com/a"}
    _apply(cluster, sc)
    out = cluster.kubectl("patch", "sc", "int-frozen", "-p", '{"reclaimPolicy":"Retain"}')
    assert "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden." in out.stderr
    cluster.kubectl("delete", "sc", "int-frozen", check=True)


def test_a_claim_made_before_any_default_gets_the_default_later(cluster: Cluster) -> None:
    annotation = "storageclass.kubernetes.io/is-default-class"
    cluster.kubectl("annotate", "sc", "local-path", f"{annotation}-", check=True)
    try:
        _apply(cluster, _claim("int-late"))
        assert "storageClassName" not in _json(cluster, "get", "pvc", "int-late")["spec"]
    finally:
        cluster.kubectl("annotate", "sc", "local-path", f"{annotation}=true", check=True)
    wait_for("the default class given", lambda: _json(cluster, "get", "pvc", "int-late")["spec"]
             .get("storageClassName") == "local-path", timeout=30)
    cluster.kubectl("delete", "pvc", "int-late", check=True)


def test_a_claim_of_a_missing_class_fails_to_provision(cluster: Cluster) -> None:
    _apply(cluster, _claim("int-noclass", storageClassName="int-nope"))
    wait_for("ProvisioningFailed", lambda: 'storageclass.storage.k8s.io "int-nope" not found' in
             cluster.kubectl("describe", "pvc", "int-noclass").stdout, timeout=30)
    assert _phase(cluster, "pvc", "int-noclass") == "Pending"
    cluster.kubectl("delete", "pvc", "int-noclass", check=True)


def test_a_claim_whose_volume_is_gone_is_lost(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    _apply(cluster, _volume("int-lost", "1Gi", str(tmp_path / "lost")),
           _claim("int-lost", storageClassName="", volumeName="int-lost"))
    wait_for("the claim bound", lambda: _phase(cluster, "pvc", "int-lost") == "Bound", timeout=30)
    # pv-protection keeps a bound volume: only with its finalizer removed does it go.
    cluster.kubectl("delete", "pv", "int-lost", "--wait=false", check=True)
    assert "Terminating" in cluster.kubectl("get", "pv", "int-lost", check=True).stdout
    cluster.kubectl("patch", "pv", "int-lost", "-p", '{"metadata":{"finalizers":null}}', check=True)
    wait_for("the claim Lost", lambda: _phase(cluster, "pvc", "int-lost") == "Lost", timeout=30)
    assert "Bound claim has lost its PersistentVolume. Data on the volume is lost!" in \
        cluster.kubectl("describe", "pvc", "int-lost", check=True).stdout
    cluster.kubectl("delete", "pvc", "int-lost", check=True)


def test_a_volume_pre_bound_to_a_claim_by_name_gets_its_uid(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    volume = _volume("int-pre", "1Gi", str(tmp_path / "pre"))
    volume["spec"]["claimRef"] = {"namespace": "default", "name": "int-pre"}
    _apply(cluster, volume, _volume("int-decoy", "1Gi", str(tmp_path / "decoy")),
           _claim("int-pre", storageClassName=""))
    wait_for("the claim bound", lambda: _phase(cluster, "pvc", "int-pre") == "Bound", timeout=30)
    pvc = _json(cluster, "get", "pvc", "int-pre")
    assert pvc["spec"]["volumeName"] == "int-pre"
    pv = _json(cluster, "get", "pv", "int-pre")
    assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    # An administrator's binding is not the controller's.
    assert "pv.kubernetes.io/bound-by-controller" not in pv["metadata"].get("annotations", {})
    assert _phase(cluster, "pv", "int-decoy") == "Available"
    cluster.kubectl("delete", "pvc", "int-pre", check=True)
    wait_for("Released", lambda: _phase(cluster, "pv", "int-pre") == "Released", timeout=30)
    cluster.kubectl("delete", "pv", "int-pre", "int-decoy", check=True)


PROVISIONER_SA = "system:serviceaccount:kube-system:local-path-provisioner-service-account"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, pathlib.Path]]:
    """A cluster of this module's own whose audit log says who wrote each volume."""
    require(kubectl_binary() is not None, "kubectl is not installed")
    base = tmp_path_factory.mktemp("localpath")
    log = base / "audit.log"
    with audited_cluster(base, log) as c:
        yield c, log


def test_the_provisioner_has_k3s_identity_and_nothing_more(cluster: Cluster) -> None:
    sa = _json(cluster, "get", "serviceaccount", "local-path-provisioner-service-account", "-n", "kube-system")
    assert sa["metadata"]["name"] == "local-path-provisioner-service-account"
    role = _json(cluster, "get", "clusterrole", "local-path-provisioner-role")
    assert role["rules"] == [  # k3s's manifests/local-storage.yaml
        {"apiGroups": [""], "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods/log"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["endpoints", "persistentvolumes", "pods"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
    ]
    bind = _json(cluster, "get", "clusterrolebinding", "local-path-provisioner-bind")
    assert bind["roleRef"]["name"] == "local-path-provisioner-role"
    assert bind["subjects"] == [{"kind": "ServiceAccount", "name": "local-path-provisioner-service-account",
                                 "namespace": "kube-system"}]
    as_sa = f"--as={PROVISIONER_SA}"
    for question, answer in ((["create", "persistentvolumes"], "yes"), (["delete", "persistentvolumes"], "yes"),
                             (["watch", "persistentvolumeclaims", "-A"], "yes"), (["create", "events", "-n", "x"], "yes"),
                             (["list", "storageclasses.storage.k8s.io"], "yes"),
                             (["get", "secrets", "-n", "kube-system"], "no"),
                             (["update", "persistentvolumeclaims", "--subresource=status"], "no"),
                             (["delete", "persistentvolumeclaims"], "no"),
                             (["create", "deployments.apps"], "no"), (["update", "events"], "no")):
        assert cluster.kubectl("auth", "can-i", *question, as_sa).stdout.strip() == answer, question
    refused = cluster.kubectl("get", "secrets", "-n", "kube-system", as_sa)
    assert refused.stderr.strip() == (
        f'Error from server (Forbidden): secrets is forbidden: User "{PROVISIONER_SA}" cannot list resource '
        '"secrets" in API group "" in the namespace "kube-system"')


def test_the_provisioner_writes_as_its_own_service_account(audited: tuple[Cluster, pathlib.Path]) -> None:
    cluster, log = audited
    _apply(cluster, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "who-now"},
                     "provisioner": "rancher.io/local-path", "volumeBindingMode": "Immediate",
                     "allowVolumeExpansion": True},
           _claim("who", storageClassName="who-now"))
    wait_for("the claim bound", lambda: _phase(cluster, "pvc", "who") == "Bound", timeout=30)
    pv_name = _json(cluster, "get", "pvc", "who")["spec"]["volumeName"]
    cluster.kubectl("patch", "pvc", "who", "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}', check=True)
    wait_for("the new capacity", lambda: _json(cluster, "get", "pvc", "who")["status"]
             .get("capacity", {}).get("storage") == "2Gi", timeout=30)
    cluster.kubectl("delete", "pvc", "who", check=True)
    wait_for("the volume deleted", lambda: cluster.kubectl("get", "pv", pv_name).returncode != 0, timeout=30)

    def writers(resource: str, name: str, verb: str, subresource: str = "") -> set[str]:
        def match(e: dict[str, Any]) -> bool:
            ref = e.get("objectRef") or {}
            return (ref.get("resource"), ref.get("name"), ref.get("subresource", ""), e.get("verb")) == (
                resource, name, subresource, verb) and e["responseStatus"]["code"] < 300
        return {e["user"]["username"] for e in audit_events(log, match)}

    assert writers("persistentvolumes", pv_name, "create") == {PROVISIONER_SA}
    assert writers("persistentvolumes", pv_name, "delete") == {PROVISIONER_SA}
    resizer = "system:serviceaccount:kube-system:expand-controller"
    assert writers("persistentvolumeclaims", "who", "update", "status") >= {resizer}
    assert resizer in writers("persistentvolumes", pv_name, "update")
