"""The real kubectl against a real ``kubelite up``: the verbs users type every day."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
import time
import uuid

import pytest
import yaml

from tests.conftest import require
from tests.integration.cluster import Cluster, kubectl_binary

pytestmark = pytest.mark.integration


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def cm_yaml(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}
    )


def test_api_resources_lists_served_kinds(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources", check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "pods" in lines and "po" in lines["pods"].split()
    assert "services" in lines and "svc" in lines["services"].split()
    assert "endpointslices" in lines and "discovery.k8s.io/v1" in lines["endpointslices"]
    assert "leases" in lines and "coordination.k8s.io/v1" in lines["leases"]
    assert lines["namespaces"].split()[-2:] == ["false", "Namespace"]


def test_version_and_namespaces_exist_from_start(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "namespaces", "-o", "name", check=True).stdout.split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{ns}" in out
    ver = json.loads(cluster.kubectl("version", "-o", "json", check=True).stdout)
    assert ver["serverVersion"]["major"] == "1"


def test_create_get_and_already_exists(cluster: Cluster) -> None:
    name = uniq("cfg")
    res = cluster.kubectl("create", "-f", "-", input=cm_yaml(name, {"a": "1"}), check=True)
    assert res.stdout.strip() == f"configmap/{name} created"
    again = cluster.kubectl("create", "-f", "-", input=cm_yaml(name, {"a": "1"}))
    assert again.returncode == 1
    assert f'configmaps "{name}" already exists' in again.stderr
    got = json.loads(cluster.kubectl("get", "configmap", name, "-o", "json", check=True).stdout)
    assert got["data"] == {"a": "1"}
    assert got["metadata"]["uid"] and got["metadata"]["resourceVersion"]
    missing = cluster.kubectl("get", "configmap", "nope-" + name)
    assert missing.returncode == 1
    assert f'configmaps "nope-{name}" not found' in missing.stderr


def test_apply_created_unchanged_configured(cluster: Cluster) -> None:
    name = uniq("app")
    first = cluster.kubectl("apply", "-f", "-", input=cm_yaml(name, {"k": "v1"}), check=True)
    assert first.stdout.strip() == f"configmap/{name} created"
    second = cluster.kubectl("apply", "-f", "-", input=cm_yaml(name, {"k": "v1"}), check=True)
    assert second.stdout.strip() == f"configmap/{name} unchanged"
    third = cluster.kubectl("apply", "-f", "-", input=cm_yaml(name, {"k": "v2", "extra": "x"}), check=True)
    assert third.stdout.strip() == f"configmap/{name} configured"
    got = json.loads(cluster.kubectl("get", "cm", name, "-o", "json", check=True).stdout)
    assert got["data"] == {"k": "v2", "extra": "x"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]


def test_apply_server_side_twice_and_conflict(cluster: Cluster) -> None:
    name = uniq("ssa")
    res = cluster.kubectl("apply", "--server-side", "-f", "-", input=cm_yaml(name, {"a": "1"}), check=True)
    assert res.stdout.strip() == f"configmap/{name} serverside-applied"
    res = cluster.kubectl("apply", "--server-side", "-f", "-", input=cm_yaml(name, {"a": "2"}), check=True)
    assert res.stdout.strip() == f"configmap/{name} serverside-applied"
    got = json.loads(cluster.kubectl("get", "cm", name, "-o", "json", "--show-managed-fields", check=True).stdout)
    assert got["data"] == {"a": "2"}
    managers = {m["manager"]: m for m in got["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:a" in managers["kubectl"]["fieldsV1"]["f:data"]
    # Another manager setting the same field conflicts unless forced.
    other = cluster.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-",
                            input=cm_yaml(name, {"a": "3"}))
    assert other.returncode == 1
    assert 'conflict with "kubectl"' in other.stderr and ".data.a" in other.stderr
    forced = cluster.kubectl("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-",
                             input=cm_yaml(name, {"a": "3"}), check=True)
    assert "serverside-applied" in forced.stdout


def test_get_output_formats_and_selectors(cluster: Cluster) -> None:
    ns = uniq("sel")
    cluster.kubectl("create", "namespace", ns, check=True)
    for i, env in enumerate(["prod", "dev", "test"]):
        cluster.kubectl("create", "-n", ns, "-f", "-",
                        input=cm_yaml(f"c{i}", {"i": str(i)}, {"env": env, "tier": "web" if i else "db"}), check=True)

    def names(*sel: str) -> list[str]:
        return sorted(cluster.kubectl("get", "cm", "-n", ns, "-o", "name", *sel, check=True).stdout.split())

    assert names("-l", "env in (prod,dev)") == ["configmap/c0", "configmap/c1"]
    # notin also matches objects without the key, such as kube-root-ca.crt.
    assert names("-l", "env notin (prod)") == ["configmap/c1", "configmap/c2", "configmap/kube-root-ca.crt"]
    assert names("-l", "env!=dev,tier") == ["configmap/c0", "configmap/c2"]
    assert names("-l", "!tier") == ["configmap/kube-root-ca.crt"]  # published in every namespace
    assert names("-l", "tier=web") == ["configmap/c1", "configmap/c2"]
    table = cluster.kubectl("get", "cm", "-n", ns, "-l", "env", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"]
    assert table[1].split()[:2] == ["c0", "1"]
    wide = cluster.kubectl("get", "cm", "c0", "-n", ns, "-o", "wide", check=True).stdout
    assert "c0" in wide
    as_yaml = yaml.safe_load(cluster.kubectl("get", "cm", "c0", "-n", ns, "-o", "yaml", check=True).stdout)
    assert as_yaml["metadata"]["labels"] == {"env": "prod", "tier": "db"}
    all_ns = cluster.kubectl("get", "cm", "-A", "-l", "env", check=True).stdout.splitlines()
    assert all_ns[0].split() == ["NAMESPACE", "NAME", "DATA", "AGE"]
    assert sum(1 for line in all_ns if line.startswith(ns)) == 3
    bad = cluster.kubectl("get", "cm", "-n", ns, "-l", "env in (a")
    assert bad.returncode == 1
    field = cluster.kubectl("get", "cm", "-n", ns, "--field-selector", "metadata.name=c1", "-o", "name", check=True)
    assert field.stdout.split() == ["configmap/c1"]
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=True)


def test_get_pods_wide_columns(cluster: Cluster) -> None:
    name = uniq("p")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod), check=True)
    out = cluster.kubectl("get", "pods", name, "-o", "wide", check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                              "READINESS", "GATES"]
    assert out[1].split()[:4] == [name, "0/1", "Pending", "0"]
    cluster.kubectl("delete", "pod", name, check=True)


def test_watch_with_output_watch_events(cluster: Cluster) -> None:
    name = uniq("w")
    binary = kubectl_binary()
    assert binary
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen(
        [binary, "get", "configmaps", "-w", "--output-watch-events", "--field-selector", f"metadata.name={name}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        time.sleep(1.0)
        cluster.kubectl("create", "configmap", name, "--from-literal=a=1", check=True)
        cluster.kubectl("label", "configmap", name, "x=y", check=True)
        cluster.kubectl("delete", "configmap", name, check=True)
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert lines[0] == ["EVENT", "NAME", "DATA", "AGE"], (out, err)
    assert [e[0] for e in lines[1:]] == ["ADDED", "MODIFIED", "DELETED"], (out, err)
    assert all(e[1] == name for e in lines[1:])


def test_describe_label_annotate(cluster: Cluster) -> None:
    name = uniq("d")
    cluster.kubectl("create", "configmap", name, "--from-literal=key=value", check=True)
    assert cluster.kubectl("label", "cm", name, "team=a", check=True).stdout.strip() == f"configmap/{name} labeled"
    res = cluster.kubectl("label", "cm", name, "team=b")
    assert res.returncode == 1 and "already has a value (a)" in res.stderr
    cluster.kubectl("label", "cm", name, "team=b", "--overwrite", check=True)
    assert cluster.kubectl("annotate", "cm", name, "note=hi", check=True).stdout.strip() == f"configmap/{name} annotated"
    desc = cluster.kubectl("describe", "cm", name, check=True).stdout
    assert f"Name:         {name}" in desc
    assert "team=b" in desc and "note: hi" in desc and "key:" in desc and "value" in desc
    cluster.kubectl("label", "cm", name, "team-", check=True)
    got = json.loads(cluster.kubectl("get", "cm", name, "-o", "json", check=True).stdout)
    assert "team" not in (got["metadata"].get("labels") or {})


def test_patch_merge_json_strategic(cluster: Cluster) -> None:
    name = uniq("pt")
    cluster.kubectl("create", "configmap", name, "--from-literal=a=1", check=True)
    cluster.kubectl("patch", "cm", name, "--type", "merge", "-p", '{"data":{"b":"2"}}', check=True)
    cluster.kubectl("patch", "cm", name, "--type", "json", "-p", '[{"op":"remove","path":"/data/a"}]', check=True)
    got = json.loads(cluster.kubectl("get", "cm", name, "-o", "json", check=True).stdout)
    assert got["data"] == {"b": "2"}
    bad = cluster.kubectl("patch", "cm", name, "--type", "json", "-p", '[{"op":"remove","path":"/data/zz"}]')
    assert bad.returncode == 1
    pod = uniq("pp")
    spec = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"containers": [{"name": "a", "image": "busybox", "env": [{"name": "X", "value": "1"}]},
                                    {"name": "b", "image": "busybox"}]}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(spec), check=True)
    # Strategic merge: the container list merges by name, the env list by name.
    patch = {"spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]},
             "metadata": {"labels": {"patched": "yes"}}}
    cluster.kubectl("patch", "pod", pod, "-p", json.dumps(patch), check=True)
    got = json.loads(cluster.kubectl("get", "pod", pod, "-o", "json", check=True).stdout)
    assert [c["name"] for c in got["spec"]["containers"]] == ["a", "b"]
    assert got["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert got["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}]
    assert got["metadata"]["labels"] == {"patched": "yes"}
    cluster.kubectl("delete", "pod", pod, check=True)


def test_edit_with_noninteractive_editor(cluster: Cluster, tmp_path: object) -> None:
    name = uniq("ed")
    cluster.kubectl("create", "configmap", name, "--from-literal=a=1", check=True)
    editor = "sed -i 's/^  a: \"1\"$/  a: \"edited\"/'"
    res = cluster.kubectl("edit", "cm", name, env={"EDITOR": editor, "KUBE_EDITOR": editor}, check=True)
    assert res.stdout.strip() == f"configmap/{name} edited"
    got = json.loads(cluster.kubectl("get", "cm", name, "-o", "json", check=True).stdout)
    assert got["data"] == {"a": "edited"}


def test_delete_single_by_label_and_all(cluster: Cluster) -> None:
    ns = uniq("del")
    cluster.kubectl("create", "namespace", ns, check=True)
    for i in range(4):
        cluster.kubectl("create", "-n", ns, "-f", "-", input=cm_yaml(f"x{i}", {}, {"grp": "a" if i < 2 else "b"}),
                        check=True)
    assert cluster.kubectl("delete", "cm", "x0", "-n", ns, check=True).stdout.strip() == 'configmap "x0" deleted'
    out = cluster.kubectl("delete", "cm", "-n", ns, "-l", "grp=b", check=True).stdout.split("\n")
    assert sorted(o for o in out if o) == ['configmap "x2" deleted', 'configmap "x3" deleted']
    cluster.kubectl("delete", "cm", "-n", ns, "--all", check=True)
    left = cluster.kubectl("get", "cm", "-n", ns, "-o", "name", check=True).stdout.split()
    # The root CA publisher puts kube-root-ca.crt back at once, as on a real cluster.
    assert set(left) <= {"configmap/kube-root-ca.crt"}
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=True)


def test_explain_pod_spec(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pod.spec", check=True).stdout
    assert "KIND:" in out and "Pod" in out
    assert "containers" in out and "restartPolicy" in out
    svc = cluster.kubectl("explain", "service.spec.ports", check=True).stdout
    assert "targetPort" in svc


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_older_and_newer_kubectl(cluster: Cluster, version: str) -> None:
    require(kubectl_binary(version) is not None, f"kubectl {version} is not installed")
    name = uniq("v" + version.replace(".", ""))
    res = cluster.kubectl("apply", "-f", "-", input=cm_yaml(name, {"a": "1"}), version=version, check=True)
    assert res.stdout.strip() == f"configmap/{name} created"
    assert name in cluster.kubectl("get", "cm", version=version, check=True).stdout
    cluster.kubectl("explain", "pod.spec.containers", version=version, check=True)


def test_create_configmap_namespace_secret(cluster: Cluster) -> None:
    ns = uniq("ns")
    assert cluster.kubectl("create", "namespace", ns, check=True).stdout.strip() == f"namespace/{ns} created"
    res = cluster.kubectl("create", "configmap", "c", "-n", ns, "--from-literal=a=b", check=True)
    assert res.stdout.strip() == "configmap/c created"
    res = cluster.kubectl("create", "secret", "generic", "s", "-n", ns, "--from-literal=pw=hunter2", check=True)
    assert res.stdout.strip() == "secret/s created"
    got = json.loads(cluster.kubectl("get", "secret", "s", "-n", ns, "-o", "json", check=True).stdout)
    assert got["type"] == "Opaque" and got["data"] == {"pw": "aHVudGVyMg=="}
    out = cluster.kubectl("get", "secrets", "-n", ns, check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "DATA", "AGE"] and out[1].split()[:3] == ["s", "Opaque", "1"]
    missing_ns = cluster.kubectl("create", "configmap", "c", "-n", "no-such-" + ns)
    assert missing_ns.returncode == 1 and f'namespaces "no-such-{ns}" not found' in missing_ns.stderr


def test_strict_field_validation(cluster: Cluster) -> None:
    bad = textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {uniq("strict")}
        notAField: 1
        """)
    res = cluster.kubectl("create", "-f", "-", input=bad)
    assert res.returncode == 1
    assert 'strict decoding error: unknown field "notAField"' in res.stderr


def test_invalid_name_is_422_in_kubernetes_words(cluster: Cluster) -> None:
    msg = 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
    res = cluster.kubectl("create", "-f", "-", input=cm_yaml("Bad_Name", {}))
    assert res.returncode == 1
    assert "The " + msg in res.stderr
    # The generator commands word it their own way, as against a real cluster.
    res = cluster.kubectl("create", "configmap", "Bad_Name")
    assert res.returncode == 1
    assert "error: failed to create configmap: " + msg in res.stderr


def test_kubeconfig_and_keys_are_private(cluster: Cluster) -> None:
    for p in [cluster.kubeconfig, *sorted((cluster.data_dir / "pki").glob("*.key"))]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, f"{p} is readable by others: {oct(mode)}"
    kc = yaml.safe_load(cluster.kubeconfig.read_text())
    assert kc["current-context"] == cluster.name
    assert kc["clusters"][0]["cluster"]["server"] == cluster.server
