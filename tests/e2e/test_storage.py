"""Persistent volumes with real pods: the default local-path class, mounts, and data that lasts.

A claim in the default class (WaitForFirstConsumer) binds when a pod that uses it is
scheduled; the local-path provisioner makes its directory under the data dir; a pod writes
to it; the data is still there for the next pod, after ``kubelite up`` is stopped and started
again on the same data dir, and gone once the claim is deleted (reclaim policy Delete).
subPath, readOnly and fsGroup are seen from inside the container; a claim nothing can
satisfy stays Pending with the PV controller's Event.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.e2e.test_images_services import wait_for
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    c = new_cluster(tmp_path_factory.mktemp("storage"))
    try:
        c.start(agent=True, timeout=60)
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def _json(cluster: Cluster, *args: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl(*args, "-o", "json", check=True).stdout)
    return out


def _claim(name: str, size: str = "1Gi", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}}


def _pod(name: str, script: str, volumes: list[Obj], mounts: list[Obj], **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "volumes": volumes, **spec,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                                     "volumeMounts": mounts}]}}


def _claim_volume(claim: str, read_only: bool = False) -> Obj:
    source: Obj = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return {"name": "data", "persistentVolumeClaim": source}


def _phase(cluster: Cluster, kind: str, name: str) -> str:
    res = cluster.kubectl("get", kind, name, "-o", "jsonpath={.status.phase}")
    return res.stdout if res.returncode == 0 else ""


def _finished(cluster: Cluster, pod: str) -> str:
    wait_for(f"pod {pod} to finish", lambda: _phase(cluster, "pod", pod) in ("Succeeded", "Failed"), timeout=120)
    return cluster.kubectl("logs", pod, check=True).stdout


def _events(cluster: Cluster, kind: str, name: str) -> list[Obj]:
    items: list[Obj] = _json(cluster, "get", "events", "--field-selector",
                             f"involvedObject.kind={kind},involvedObject.name={name}")["items"]
    return items


def test_a_claim_nothing_can_satisfy_stays_pending_with_an_event(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", check=True,
                    input=yaml.safe_dump(_claim("nowhere", storageClassName="")))
    wait_for("the FailedBinding event", lambda: any(
        e["reason"] == "FailedBinding"
        and e["message"] == "no persistent volumes available for this claim and no storage class is set"
        for e in _events(cluster, "PersistentVolumeClaim", "nowhere")), timeout=60)
    assert _phase(cluster, "pvc", "nowhere") == "Pending"
    # A pod of that claim is not scheduled: the scheduler says why.
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("stuck", "true", [_claim_volume("nowhere")], [{"name": "data", "mountPath": "/data"}])))
    wait_for("FailedScheduling", lambda: any(
        e["reason"] == "FailedScheduling" and "pod has unbound immediate PersistentVolumeClaims" in e["message"]
        for e in _events(cluster, "Pod", "stuck")), timeout=60)
    assert _phase(cluster, "pod", "stuck") == "Pending"
    cluster.kubectl("delete", "pod/stuck", "pvc/nowhere", "--wait=false", check=True)
    # A pod put on the node directly (no scheduler to wait) waits in ContainerCreating instead.
    node = _json(cluster, "get", "nodes")["items"][0]["metadata"]["name"]
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("direct", "true", [_claim_volume("missing")], [{"name": "data", "mountPath": "/data"}], nodeName=node)))
    wait_for("FailedMount", lambda: any(
        e["reason"] == "FailedMount" and e["message"] ==
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process "
        'volumes=[data]: error processing PVC default/missing: failed to fetch PVC from API server: '
        'persistentvolumeclaims "missing" not found'
        for e in _events(cluster, "Pod", "direct")), timeout=60)
    waiting = _json(cluster, "get", "pod", "direct")["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"
    cluster.kubectl("delete", "pod/direct", "--wait=false", check=True)


def test_sub_path_read_only_and_fs_group_inside_the_container(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(_claim("shared")))
    writer = _pod("writer", "id -G; stat -c '%g %A' /data; echo hello > /data/own.txt && echo wrote; "
                  "echo in-sub > /sub/file && echo sub-ok",
                  [_claim_volume("shared")],
                  [{"name": "data", "mountPath": "/data"}, {"name": "data", "mountPath": "/sub", "subPath": "nested/dir"}],
                  securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000})
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(writer))
    out = _finished(cluster, "writer")
    assert _phase(cluster, "pod", "writer") == "Succeeded", out
    lines = out.split("\n")
    assert "2000" in lines[0].split(), out  # the fsGroup is a supplementary group
    assert lines[1].startswith("2000 drwxrws"), out  # group-owned, group-writable, setgid
    assert "wrote" in out and "sub-ok" in out, out
    reader = _pod("reader", "cat /data/nested/dir/file; cat /data/own.txt; touch /data/x 2>&1 || echo refused",
                  [_claim_volume("shared", read_only=True)], [{"name": "data", "mountPath": "/data"}])
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(reader))
    out = _finished(cluster, "reader")
    assert out.startswith("in-sub\nhello\n"), out
    assert "Read-only file system" in out and "refused" in out, out
    cluster.kubectl("delete", "pod", "writer", "reader", "--wait=true", check=True)
    cluster.kubectl("delete", "pvc", "shared", check=True)


def _hand_made(name: str, source: Obj, node: str | None = None) -> Obj:
    spec: Obj = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], **source}
    if node is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": spec}


def test_hand_made_local_and_host_path_volumes(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    node = _json(cluster, "get", "nodes")["items"][0]["metadata"]["labels"]["kubernetes.io/hostname"]
    local_dir, host_dir = tmp_path / "local", tmp_path / "host"
    local_dir.mkdir()
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        _hand_made("e2e-local", {"local": {"path": str(local_dir)}}, node),
        _hand_made("e2e-host", {"hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}}),
        _hand_made("e2e-away", {"local": {"path": str(local_dir)}}, "some-other-node"),
        # Claims pre-bound by name (spec.volumeName), as an administrator does.
        _claim("local-claim", storageClassName="", volumeName="e2e-local"),
        _claim("host-claim", storageClassName="", volumeName="e2e-host"),
        _claim("away-claim", storageClassName="", volumeName="e2e-away"),
    ]))
    claims = ("local-claim", "host-claim", "away-claim")
    wait_for("the claims bound", lambda: all(_phase(cluster, "pvc", c) == "Bound" for c in claims), timeout=60)
    mounts = [{"name": "data", "mountPath": "/data"}]
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        _pod("on-local", "echo local > /data/f && stat -c %g /data/f", [_claim_volume("local-claim")], mounts,
             securityContext={"runAsUser": 1000, "fsGroup": 2000}),
        _pod("on-host", "echo host > /data/f", [_claim_volume("host-claim")], mounts),
        _pod("on-away", "true", [_claim_volume("away-claim")], mounts),
    ]))
    assert _finished(cluster, "on-local") == "2000\n"
    assert (local_dir / "f").read_text() == "local\n" and os.stat(local_dir / "f").st_gid == 2000
    _finished(cluster, "on-host")
    assert (host_dir / "f").read_text() == "host\n"
    wait_for("the affinity conflict", lambda: any(
        e["reason"] == "FailedScheduling" and "1 node(s) had volume node affinity conflict" in e["message"]
        for e in _events(cluster, "Pod", "on-away")), timeout=60)
    cluster.kubectl("delete", "pod", "on-local", "on-host", "on-away", check=True)
    cluster.kubectl("delete", "pvc", "local-claim", "host-claim", "away-claim", check=True)
    # Retain (the default of a hand-made volume): Released, the data left where it is.
    wait_for("Released", lambda: _phase(cluster, "pv", "e2e-local") == "Released", timeout=60)
    assert (local_dir / "f").exists()
    cluster.kubectl("delete", "pv", "e2e-local", "e2e-host", "e2e-away", check=True)


def test_a_static_local_class_binds_when_the_pod_is_scheduled(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    """The classic local-volume setup: kubernetes.io/no-provisioner, WaitForFirstConsumer."""
    node = _json(cluster, "get", "nodes")["items"][0]["metadata"]["labels"]["kubernetes.io/hostname"]
    volume = _hand_made("e2e-static", {"local": {"path": str(tmp_path)}, "storageClassName": "e2e-local"}, node)
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "e2e-local"},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"},
        volume, _claim("static-claim", storageClassName="e2e-local"),
    ]))
    wait_for("WaitForFirstConsumer", lambda: any(
        e["reason"] == "WaitForFirstConsumer" for e in _events(cluster, "PersistentVolumeClaim", "static-claim")), timeout=60)
    assert _phase(cluster, "pvc", "static-claim") == "Pending"
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("on-static", "echo static > /data/f", [_claim_volume("static-claim")],
             [{"name": "data", "mountPath": "/data"}])))
    _finished(cluster, "on-static")
    assert (tmp_path / "f").read_text() == "static\n"
    pvc = _json(cluster, "get", "pvc", "static-claim")
    assert pvc["spec"]["volumeName"] == "e2e-static" and pvc["status"]["phase"] == "Bound"
    # The scheduler bound the existing volume itself: no node was handed to a provisioner.
    assert "volume.kubernetes.io/selected-node" not in pvc["metadata"].get("annotations", {})
    pv = _json(cluster, "get", "pv", "e2e-static")
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    cluster.kubectl("delete", "pod", "on-static", check=True)
    cluster.kubectl("delete", "pvc", "static-claim", check=True)
    cluster.kubectl("delete", "pv", "e2e-static", check=True)
    cluster.kubectl("delete", "sc", "e2e-local", check=True)


def test_data_survives_the_pod_and_a_restart_and_goes_with_the_claim(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(_claim("db")))
    # WaitForFirstConsumer: nothing is bound before a pod uses the claim.
    wait_for("the WaitForFirstConsumer event", lambda: any(
        e["reason"] == "WaitForFirstConsumer" for e in _events(cluster, "PersistentVolumeClaim", "db")), timeout=60)
    assert _phase(cluster, "pvc", "db") == "Pending"
    pvc = _json(cluster, "get", "pvc", "db")
    assert pvc["spec"]["storageClassName"] == "local-path"
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]

    volumes, mounts = [_claim_volume("db")], [{"name": "data", "mountPath": "/var/lib/db"}]
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("first", "echo 'row 1' >> /var/lib/db/table && cat /var/lib/db/table", volumes, mounts)))
    assert _finished(cluster, "first") == "row 1\n"
    pvc = _json(cluster, "get", "pvc", "db")
    assert pvc["status"]["phase"] == "Bound"
    pv_name = pvc["spec"]["volumeName"]
    assert pv_name == "pvc-" + pvc["metadata"]["uid"]
    node = _json(cluster, "get", "pod", "first")["spec"]["nodeName"]
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    directory = cluster.data_dir / "storage" / f"{pv_name}_default_db"
    assert (directory / "table").read_text() == "row 1\n"
    table = cluster.kubectl("get", "pv,pvc", check=True).stdout
    assert f"persistentvolume/{pv_name}   1Gi        RWO            Delete           Bound    default/db" in table, table
    assert "Used By:       first" in cluster.kubectl("describe", "pvc", "db", check=True).stdout

    cluster.kubectl("delete", "pod", "first", check=True)
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("second", "echo 'row 2' >> /var/lib/db/table && cat /var/lib/db/table", volumes, mounts)))
    assert _finished(cluster, "second") == "row 1\nrow 2\n"
    cluster.kubectl("delete", "pod", "second", check=True)

    cluster.stop(timeout=60)
    cluster.start(agent=True, timeout=60)
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("third", "cat /var/lib/db/table", volumes, mounts)))
    assert _finished(cluster, "third") == "row 1\nrow 2\n"

    # A claim in use is only marked for deletion; it goes (and its volume and data with it)
    # when its last pod has gone.
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump(
        _pod("holder", "sleep 3600", volumes, mounts)))
    wait_for("holder running", lambda: _phase(cluster, "pod", "holder") == "Running", timeout=60)
    cluster.kubectl("delete", "pvc", "db", "--wait=false", check=True)
    assert "Terminating" in cluster.kubectl("get", "pvc", "db", check=True).stdout
    assert directory.exists()
    cluster.kubectl("delete", "pod", "holder", "third", check=True)
    wait_for("the claim gone", lambda: cluster.kubectl("get", "pvc", "db").returncode != 0, timeout=60)
    wait_for("the volume gone", lambda: cluster.kubectl("get", "pv", pv_name).returncode != 0, timeout=60)
    wait_for("the directory removed", lambda: not pathlib.Path(directory).exists(), timeout=30)
