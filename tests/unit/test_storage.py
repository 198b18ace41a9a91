"""Persistent storage logic: printers, validation, admission, binding choice, fsGroup ownership.

Expected texts are Kubernetes' (pkg/printers/internalversion, pkg/apis/core/validation,
pkg/apis/storage/validation, the admission plugins, the PV controller's index, the kubelet's
SetVolumeOwnership and the scheduler's VolumeBinding plugin).
"""

from __future__ import annotations

import os
import pathlib
import stat
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api import storage
from kubelite.api.printers import to_table
from kubelite.api.validation import validate
from kubelite.controllers import volumebinding
from kubelite.controllers.localpath import default_storage_class, persistent_volume, volume_dir
from kubelite.controllers.persistentvolume import claim_in_use
from kubelite.node import persistentvolumes, podspec

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

Obj = dict[str, Any]


def pv(name: str, size: str = "5Gi", modes: tuple[str, ...] = ("ReadWriteOnce",), cls: str = "", **spec: Any) -> Obj:
    body: Obj = {"capacity": {"storage": size}, "accessModes": list(modes), "hostPath": {"path": f"/srv/{name}"},
                 "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem", **spec}
    if cls:
        body["storageClassName"] = cls
    return {"metadata": {"name": name, "creationTimestamp": CREATED, "resourceVersion": "1"}, "spec": body,
            "status": {"phase": "Available"}}


def pvc(name: str, size: str = "1Gi", modes: tuple[str, ...] = ("ReadWriteOnce",), **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": CREATED,
                         "resourceVersion": "1"},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
                     "volumeMode": "Filesystem", **spec},
            "status": {"phase": "Pending"}}


def messages(group: str, kind: str, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in validate(group, kind, obj, old)]


# --- printers ----------------------------------------------------------------------------------


def cells(group: str, kind: str, obj: Obj) -> list[Any]:
    row: list[Any] = to_table(group, kind, [obj], now=NOW)["rows"][0]["cells"]
    return row


def test_persistent_volume_columns_and_cells() -> None:
    table = to_table("", "PersistentVolume", [], now=NOW)
    assert [(c["name"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", 0), ("Capacity", 0), ("Access Modes", 0), ("Reclaim Policy", 0), ("Status", 0), ("Claim", 0),
        ("StorageClass", 0), ("VolumeAttributesClass", 0), ("Reason", 0), ("Age", 0), ("VolumeMode", 1)]
    volume = pv("v1", "5120Mi", ("ReadWriteMany", "ReadWriteOnce"), cls="fast",
                claimRef={"namespace": "ns", "name": "data"})
    volume["status"] = {"phase": "Bound"}
    assert cells("", "PersistentVolume", volume) == [
        "v1", "5Gi", "RWO,RWX", "Retain", "Bound", "ns/data", "fast", "<unset>", "", "5m", "Filesystem"]
    volume["metadata"]["deletionTimestamp"] = CREATED
    assert cells("", "PersistentVolume", volume)[4] == "Terminating"


def test_persistent_volume_claim_cells_show_capacity_only_once_bound() -> None:
    claim = pvc("data", storageClassName="local-path")
    assert cells("", "PersistentVolumeClaim", claim) == [
        "data", "Pending", "", "", "", "local-path", "<unset>", "5m", "Filesystem"]
    claim["spec"]["volumeName"] = "pvc-1"
    claim["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}}
    assert cells("", "PersistentVolumeClaim", claim)[:5] == ["data", "Bound", "pvc-1", "2Gi", "RWO"]
    names = [c["name"] for c in to_table("", "PersistentVolumeClaim", [], now=NOW)["columnDefinitions"]]
    assert names == ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
                     "VolumeAttributesClass", "Age", "VolumeMode"]


def test_storage_class_row_marks_the_default() -> None:
    sc = {**default_storage_class(), "metadata": {**default_storage_class()["metadata"], "creationTimestamp": CREATED}}
    assert cells("storage.k8s.io", "StorageClass", sc) == [
        "local-path (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", True, "5m"]
    plain = {"metadata": {"name": "slow", "creationTimestamp": CREATED}, "provisioner": "example.com/x"}
    assert cells("storage.k8s.io", "StorageClass", plain) == ["slow", "example.com/x", "Delete", "Immediate", False, "5m"]


# --- validation --------------------------------------------------------------------------------


def test_claim_requires_access_modes_and_a_storage_request() -> None:
    claim = pvc("c")
    claim["spec"]["accessModes"] = []
    claim["spec"]["resources"] = {}
    assert messages("", "PersistentVolumeClaim", claim) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]
    claim = pvc("c", "0", ("ReadWriteSometimes",))
    assert messages("", "PersistentVolumeClaim", claim) == [
        'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadWriteOnce", '
        '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"',
        'spec.resources[storage]: Invalid value: "0": must be greater than zero',
    ]


def test_claim_spec_is_immutable_except_expansion_binding_and_a_first_class() -> None:
    old = pvc("c", storageClassName="fast")
    new = pvc("c", modes=("ReadWriteMany",), storageClassName="fast")
    assert messages("", "PersistentVolumeClaim", new, old) == [
        "spec: Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims"]
    bound = pvc("c", storageClassName="fast")
    bound["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    grown = pvc("c", "2Gi", storageClassName="fast", volumeName="pv1")
    grown["status"] = bound["status"]
    assert messages("", "PersistentVolumeClaim", grown, bound) == []
    shrunk = pvc("c", "512Mi", storageClassName="fast")
    shrunk["status"] = bound["status"]
    assert messages("", "PersistentVolumeClaim", shrunk, bound) == [
        "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
    # Retroactive default class: a claim created without a class may be given one.
    assert messages("", "PersistentVolumeClaim", pvc("c", storageClassName="local-path"), pvc("c")) == []


def test_persistent_volume_rules() -> None:
    volume = pv("v")
    volume["spec"].pop("hostPath")
    volume["spec"]["capacity"] = {}
    volume["spec"]["persistentVolumeReclaimPolicy"] = "Recycle-ish"
    assert messages("", "PersistentVolume", volume) == [
        "spec.capacity: Required value",
        'spec.capacity: Unsupported value: {}: supported values: "storage"',
        'spec.persistentVolumeReclaimPolicy: Unsupported value: "Recycle-ish": supported values: '
        '"Delete", "Recycle", "Retain"',
        "spec: Required value: must specify a volume type",
    ]
    local = pv("l", local={"path": "/srv/l"})
    local["spec"].pop("hostPath")
    assert messages("", "PersistentVolume", local) == ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
    moved = pv("v", hostPath={"path": "/elsewhere"})
    assert messages("", "PersistentVolume", moved, pv("v")) == [
        "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]


def test_storage_class_fields_are_frozen() -> None:
    old = {"metadata": {"name": "fast", "resourceVersion": "1"}, "provisioner": "a.io/x", "parameters": {"k": "v"},
           "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}
    new = {**old, "provisioner": "b.io/y", "parameters": {"k": "w"}, "reclaimPolicy": "Retain",
           "volumeBindingMode": "WaitForFirstConsumer"}
    assert messages("storage.k8s.io", "StorageClass", new, old) == [
        "parameters: Forbidden: updates to parameters are forbidden.",
        "provisioner: Forbidden: updates to provisioner are forbidden.",
        "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
        'volumeBindingMode: Invalid value: "WaitForFirstConsumer": field is immutable',
    ]
    assert messages("storage.k8s.io", "StorageClass", {"metadata": {"name": "x"}, "volumeBindingMode": "Immediate"}) == [
        "provisioner: Required value"]


# --- defaults and admission --------------------------------------------------------------------


def test_defaults() -> None:
    volume: Obj = {"spec": {"hostPath": {"path": "/x"}}}
    storage.default_persistent_volume(volume)
    assert volume == {"spec": {"hostPath": {"path": "/x", "type": ""}, "persistentVolumeReclaimPolicy": "Retain",
                               "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}
    sc: Obj = {"provisioner": "x"}
    storage.default_storage_class(sc)
    assert sc == {"provisioner": "x", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}


def test_default_class_admission_picks_the_newest_default_and_leaves_an_empty_class() -> None:
    older = {"metadata": {"name": "a", "creationTimestamp": "2025-01-01T00:00:00Z",
                          "annotations": {storage.DEFAULT_CLASS: "true"}}}
    newer = {"metadata": {"name": "b", "creationTimestamp": "2025-02-01T00:00:00Z",
                          "annotations": {storage.BETA_DEFAULT_CLASS: "true"}}}
    other = {"metadata": {"name": "c", "creationTimestamp": "2025-03-01T00:00:00Z"}}
    claim = pvc("c")
    storage.admit_default_class(claim, [older, newer, other])
    assert claim["spec"]["storageClassName"] == "b"
    empty = pvc("e", storageClassName="")
    storage.admit_default_class(empty, [older])
    assert empty["spec"]["storageClassName"] == ""
    unchanged = pvc("u")
    storage.admit_default_class(unchanged, [other])
    assert "storageClassName" not in unchanged["spec"]


def test_resize_admission() -> None:
    classes = {"grow": {"allowVolumeExpansion": True}, "fixed": {}}
    old = pvc("c", storageClassName="grow")
    old["status"] = {"phase": "Bound"}
    assert storage.admit_resize(pvc("c", "2Gi", storageClassName="grow"), old, classes) is None
    fixed = pvc("c", storageClassName="fixed")
    fixed["status"] = {"phase": "Bound"}
    assert storage.admit_resize(pvc("c", "2Gi", storageClassName="fixed"), fixed, classes) == storage.RESIZE_FORBIDDEN
    assert storage.RESIZE_FORBIDDEN == ("only dynamically provisioned pvc can be resized and the storageclass "
                                        "that provisions the pvc must support resize")
    assert storage.admit_resize(pvc("c", "2Gi", storageClassName="grow"), pvc("c", storageClassName="grow"),
                                classes) == "Only bound persistent volume claims can be expanded"
    assert storage.admit_resize(pvc("c", "1Gi", storageClassName="fixed"), fixed, classes) is None


# --- binding -----------------------------------------------------------------------------------


def test_the_smallest_fitting_volume_is_chosen() -> None:
    volumes = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "500Mi"), pv("rwx", "1Gi", ("ReadWriteMany",)),
               pv("classy", "1Gi", cls="fast")]
    choice = storage.find_matching_volume(pvc("c"), volumes)
    assert choice is not None and choice["metadata"]["name"] == "small"
    rwx = storage.find_matching_volume(pvc("c", modes=("ReadWriteMany",)), volumes)
    assert rwx is not None and rwx["metadata"]["name"] == "rwx"
    classy = storage.find_matching_volume(pvc("c", storageClassName="fast"), volumes)
    assert classy is not None and classy["metadata"]["name"] == "classy"
    assert storage.find_matching_volume(pvc("c", "20Gi"), volumes) is None


def test_selector_volume_mode_claim_refs_and_node_affinity() -> None:
    labelled = pv("labelled", "8Gi")
    labelled["metadata"]["labels"] = {"tier": "db"}
    volumes = [pv("plain", "2Gi"), labelled]
    chosen = storage.find_matching_volume(pvc("c", selector={"matchLabels": {"tier": "db"}}), volumes)
    assert chosen is not None and chosen["metadata"]["name"] == "labelled"
    assert storage.find_matching_volume(pvc("c", volumeMode="Block"), volumes) is None
    taken = pv("taken", "1Gi", claimRef={"namespace": "default", "name": "other", "uid": "x"})
    prebound = pv("prebound", "9Gi", claimRef={"namespace": "default", "name": "c"})
    chosen = storage.find_matching_volume(pvc("c"), [taken, pv("free", "1Gi"), prebound])
    assert chosen is not None and chosen["metadata"]["name"] == "prebound"
    affinity = {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}
    local = pv("local", "1Gi", nodeAffinity=affinity)
    n1 = {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}
    n2 = {"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "n2"}}}
    assert storage.find_matching_volume(pvc("c"), [local], n1) is local
    assert storage.find_matching_volume(pvc("c"), [local], n2) is None


def test_claim_in_use_counts_pods_that_have_not_terminated() -> None:
    claim = pvc("data")
    pod = {"metadata": {"name": "p", "namespace": "default"}, "status": {"phase": "Running"},
           "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}}
    assert claim_in_use(claim, [pod])
    assert not claim_in_use(claim, [{**pod, "status": {"phase": "Succeeded"}}])


def test_provisioned_volume_is_local_with_node_affinity_and_local_paths_name() -> None:
    claim = pvc("db", "3Gi")
    sc = default_storage_class()
    node = {"metadata": {"name": "kubelite-x", "labels": {"kubernetes.io/hostname": "kubelite-x"}}}
    path = volume_dir(pathlib.Path("/data/storage"), claim)
    assert path == pathlib.Path("/data/storage/pvc-uid-db_default_db")
    volume = persistent_volume(claim, sc, path, node)
    assert volume["metadata"]["name"] == "pvc-uid-db"
    assert volume["metadata"]["annotations"][storage.PROVISIONED_BY] == "rancher.io/local-path"
    spec = volume["spec"]
    assert spec["local"] == {"path": "/data/storage/pvc-uid-db_default_db"}
    assert spec["capacity"] == {"storage": "3Gi"} and spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["claimRef"]["uid"] == "uid-db" and spec["storageClassName"] == "local-path"
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["kubelite-x"]
    assert storage.find_matching_volume(claim | {"spec": claim["spec"] | {"storageClassName": "local-path"}},
                                        [volume], node) is volume


# --- scheduler ---------------------------------------------------------------------------------


def test_prefilter_error_text() -> None:
    assert volumebinding.prefilter_error({}, 1, volumebinding.UNBOUND_IMMEDIATE) == (
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are "
        "available: 1 Preemption is not helpful for scheduling.")


# --- node: fsGroup -----------------------------------------------------------------------------


def _gid() -> int:
    # Root may give any group; anyone else only one of their own.
    return 2345 if os.geteuid() == 0 else os.getgid()


def test_set_volume_ownership_groups_and_modes(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "vol"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    os.chmod(root, 0o755)
    os.chmod(root / "sub" / "f", 0o600)
    gid = _gid()
    assert persistentvolumes.set_volume_ownership(root, gid)
    for path in (root, root / "sub", root / "sub" / "f"):
        assert os.stat(path).st_gid == gid
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o2775
    assert stat.S_IMODE(os.stat(root / "sub" / "f").st_mode) == 0o660
    # OnRootMismatch: the root is right, so nothing is walked (a changed file stays changed).
    os.chmod(root / "sub" / "f", 0o600)
    assert not persistentvolumes.set_volume_ownership(root, gid, "OnRootMismatch")
    assert stat.S_IMODE(os.stat(root / "sub" / "f").st_mode) == 0o600
    os.chmod(root, 0o755)
    assert persistentvolumes.set_volume_ownership(root, gid, "OnRootMismatch")
    assert stat.S_IMODE(os.stat(root / "sub" / "f").st_mode) == 0o660


def test_read_only_ownership_grants_group_read(tmp_path: pathlib.Path) -> None:
    (tmp_path / "f").write_text("x")
    os.chmod(tmp_path / "f", 0o600)
    persistentvolumes.set_volume_ownership(tmp_path, _gid(), read_only=True)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o640


def test_supplementary_groups_start_with_the_fs_group() -> None:
    pod = {"spec": {"securityContext": {"fsGroup": 2000, "supplementalGroups": [5, 2000]}}}
    assert podspec.supplementary_groups(pod) == [2000, 5]
    assert podspec.supplementary_groups({"spec": {}}) == []


@pytest.mark.parametrize("missing", [True, False])
async def test_an_unbound_or_missing_claim_keeps_the_pod_waiting(tmp_path: pathlib.Path, missing: bool) -> None:
    from kubelite.node import volumes

    async def claim(name: str) -> Obj | None:
        return None if missing else pvc(name)

    async def volume(name: str) -> Obj | None:
        return None

    async def nothing(name: str) -> Obj | None:
        return None

    async def token(sa: str, seconds: int, audience: str) -> str:
        return ""

    sources = volumes.Sources(configmap=nothing, secret=nothing, token=token, ca_crt=b"", claim=claim, volume=volume)
    pod = {"metadata": {"namespace": "default", "name": "p"}, "spec": {
        "automountServiceAccountToken": False,
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "db"}}]}}
    with pytest.raises(volumes.VolumeError) as info:
        await volumes.setup(pod, tmp_path, sources)
    detail = ('failed to fetch PVC from API server: persistentvolumeclaims "db" not found' if missing
              else "PVC is not bound")
    assert info.value.event_message() == (
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process "
        f"volumes=[data]: error processing PVC default/db: {detail}")


async def test_a_bound_claim_links_its_volume_and_mounts_it(tmp_path: pathlib.Path) -> None:
    from kubelite.node import volumes

    data = tmp_path / "pvdata"
    data.mkdir()
    os.chmod(data, 0o2777)
    bound = pvc("db", volumeName="pv1")
    bound["status"] = {"phase": "Bound"}
    volume_obj = pv("pv1", local={"path": str(data)})
    volume_obj["spec"].pop("hostPath")

    async def claim(name: str) -> Obj | None:
        return bound

    async def volume(name: str) -> Obj | None:
        return volume_obj

    async def nothing(name: str) -> Obj | None:
        return None

    async def token(sa: str, seconds: int, audience: str) -> str:
        return ""

    sources = volumes.Sources(configmap=nothing, secret=nothing, token=token, ca_crt=b"", claim=claim, volume=volume)
    pod_dir = tmp_path / "pod"
    pod = {"metadata": {"namespace": "default", "name": "p"}, "spec": {
        "automountServiceAccountToken": False,
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "db", "readOnly": True}}]}}
    await volumes.setup(pod, pod_dir, sources)
    container = {"volumeMounts": [{"name": "data", "mountPath": "/d"},
                                  {"name": "data", "mountPath": "/s", "subPath": "a/b"}]}
    assert volumes.container_mounts(pod, container, pod_dir) == [
        (str(data), "/d", True), (str(data / "a" / "b"), "/s", True)]
    # The kubelet makes a subPath with the volume root's mode, so an fsGroup may write into it.
    assert stat.S_IMODE(os.stat(data / "a").st_mode) == stat.S_IMODE(os.stat(data / "a" / "b").st_mode) == 0o2777
    volumes.remove(pod_dir)
    assert (data / "a" / "b").is_dir()  # removing the pod's volumes never touches the claim's data
