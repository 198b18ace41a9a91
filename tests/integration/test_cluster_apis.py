"""The API groups and kinds a real 1.33 cluster serves beyond the workloads (issue 15, point 12).

ReplicationControllers with their controller (``kubectl scale rc``), PodTemplates,
ComponentStatuses, PriorityClasses with the built-in classes and the Priority admission, the
CSI storage kinds and VolumeAttachments, flow control's mandatory objects (read-only here) and
the local APIServices. Everything goes through the real kubectl against a real ``kubelite up``
(no node agent: pods are created and deleted by the controllers, never run). Headers are
compared with what kubectl prints for a real cluster's server-side columns.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.cluster import Cluster, Raw
from tests.integration.test_lifecycle import apply, get, new_namespace, uid, wait_until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def header(cluster: Cluster, *args: str) -> list[str]:
    out = cluster.kubectl("get", *args, check=True).stdout
    return out.splitlines()[0].split()


def rows(cluster: Cluster, *args: str) -> list[list[str]]:
    out = cluster.kubectl("get", *args, "--no-headers", check=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def test_api_resources_lists_the_new_kinds(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources", check=True).stdout
    listed = {tuple(line.split()[:2]) for line in out.splitlines()[1:]}
    for entry in [("replicationcontrollers", "rc"), ("componentstatuses", "cs"), ("priorityclasses", "pc")]:
        assert entry in listed, entry
    names = {line.split()[0] for line in out.splitlines()[1:]}
    assert {"podtemplates", "csidrivers", "csinodes", "csistoragecapacities", "volumeattachments", "flowschemas",
            "prioritylevelconfigurations", "apiservices"} <= names
    groups = cluster.kubectl("api-versions", check=True).stdout.split()
    assert {"scheduling.k8s.io/v1", "storage.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1",
            "apiregistration.k8s.io/v1"} <= set(groups)


def _rc(name: str, replicas: int) -> Obj:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"app": name},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def _pods_of(cluster: Cluster, ns: str, app: str) -> list[Obj]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", f"app={app}", "-o", "json", check=True).stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def test_replication_controller_scales_its_pods(cluster: Cluster) -> None:
    ns, name = new_namespace(cluster), f"rc-{uid()}"
    rc = apply(cluster, _rc(name, 2), ns)
    assert rc["metadata"]["labels"] == {"app": name}  # defaulted from the template
    assert rc["metadata"]["generation"] == 1
    pods = wait_until(lambda: len(_pods_of(cluster, ns, name)) == 2 and _pods_of(cluster, ns, name), "2 pods")
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == ("v1", "ReplicationController", name,
                                                                                 True)
    assert pods[0]["metadata"]["generateName"] == f"{name}-"
    cluster.kubectl("scale", "rc", name, "--replicas=4", "-n", ns, check=True)
    wait_until(lambda: len(_pods_of(cluster, ns, name)) == 4, "4 pods")
    wait_until(lambda: (get(cluster, "rc", name, ns) or {}).get("status", {}).get("replicas") == 4, "status 4")
    assert header(cluster, "rc", "-n", ns) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert header(cluster, "rc", "-n", ns, "-o", "wide") == [
        "NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows(cluster, "rc", name, "-n", ns, "-o", "wide")[0][:4] == [name, "4", "4", "0"]
    assert rows(cluster, "rc", name, "-n", ns, "-o", "wide")[0][5:] == ["c", "busybox", f"app={name}"]
    scale = json.loads(cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/replicationcontrollers/{name}/scale",
                                       check=True).stdout)
    assert (scale["kind"], scale["spec"], scale["status"]["selector"]) == ("Scale", {"replicas": 4}, f"app={name}")
    cluster.kubectl("scale", "rc", name, "--replicas=1", "-n", ns, check=True)
    wait_until(lambda: len(_pods_of(cluster, ns, name)) == 1, "1 pod")
    # `all` includes them, by the short name too.
    assert f"replicationcontroller/{name}" in cluster.kubectl("get", "all", "-n", ns, "-o", "name", check=True).stdout
    cluster.kubectl("delete", "rc", name, "-n", ns, check=True)
    wait_until(lambda: not _pods_of(cluster, ns, name), "pods gone with their controller")


def test_a_budget_counts_the_pods_of_a_replication_controller(cluster: Cluster) -> None:
    """The disruption controller finds an RC as the pods' scale, as disruption.go's finders do."""
    ns, name = new_namespace(cluster), f"rcpdb-{uid()}"
    apply(cluster, _rc(name, 3), ns)
    wait_until(lambda: len(_pods_of(cluster, ns, name)) == 3, "3 pods")
    apply(cluster, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
                    "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": name}}}}, ns)

    def observed() -> Obj | None:
        status = (get(cluster, "pdb", name, ns) or {}).get("status") or {}
        return status if status.get("observedGeneration") == 1 else None

    status = wait_until(observed, "the budget's status")
    # 50% of the RC's 3 replicas, rounded up, may be unavailable: 1 must be healthy (none is: no kubelet runs them).
    assert (status["expectedPods"], status["desiredHealthy"], status["currentHealthy"]) == (3, 1, 0)


def test_replication_controller_validation(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    bad = _rc("bad", 1)
    bad["spec"]["selector"] = {"app": "other"}
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad))
    assert res.returncode != 0
    assert ('The ReplicationController "bad" is invalid: spec.template.metadata.labels: Invalid value: '
            'map[string]string{"app":"bad"}: `selector` does not match template `labels`') in res.stderr
    never = _rc("never", 1)
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(never))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in res.stderr
    res = cluster.kubectl("scale", "rc", "missing", "--replicas=2", "-n", ns)
    assert 'replicationcontrollers "missing" not found' in res.stderr


def test_pod_templates(cluster: Cluster) -> None:
    ns, name = new_namespace(cluster), f"pt-{uid()}"
    created = apply(cluster, {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
                              "template": {"metadata": {"labels": {"app": "x"}},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}, ns)
    assert created["template"]["spec"]["restartPolicy"] == "Always"  # the pod spec's defaults
    assert created["metadata"]["generation"] == 1
    assert header(cluster, "podtemplates", "-n", ns) == ["NAME", "CONTAINERS", "IMAGES", "POD", "LABELS"]
    assert rows(cluster, "podtemplates", "-n", ns) == [[name, "c", "busybox", "app=x"]]
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "empty"}, "template": {"spec": {}}}))
    assert "template.spec.containers: Required value" in res.stderr
    cluster.kubectl("delete", "podtemplate", name, "-n", ns, check=True)
    assert get(cluster, "podtemplate", name, ns) is None


def test_component_statuses(cluster: Cluster) -> None:
    res = cluster.kubectl("get", "cs", check=True)
    assert res.stdout.splitlines()[0].split() == ["NAME", "STATUS", "MESSAGE", "ERROR"]
    assert [line.split()[:3] for line in res.stdout.splitlines()[1:]] == [
        ["scheduler", "Healthy", "ok"], ["controller-manager", "Healthy", "ok"], ["etcd-0", "Healthy", "ok"]]
    assert "v1 ComponentStatus is deprecated in v1.19+" in res.stderr
    one = json.loads(cluster.kubectl("get", "componentstatus", "etcd-0", "-o", "json", check=True).stdout)
    assert one["conditions"] == [{"type": "Healthy", "status": "True", "message": "ok"}]
    raw = Raw(cluster)
    status, body = raw.request("GET", "/api/v1/componentstatuses/nope")
    assert (status, body["message"]) == (500, "Component not found: nope")
    # Read-only and never stored: no watch, no writes.
    assert raw.request("GET", "/api/v1/componentstatuses?watch=1")[0] == 405
    assert raw.json("POST", "/api/v1/componentstatuses", {"metadata": {"name": "x"}})[0] == 405


def test_priority_classes_and_the_priority_admission(cluster: Cluster) -> None:
    builtin = {r[0]: r[1] for r in rows(cluster, "priorityclasses")}
    assert builtin["system-cluster-critical"] == "2000000000"
    assert builtin["system-node-critical"] == "2000001000"
    assert header(cluster, "pc") == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    ns, high, default = new_namespace(cluster), f"high-{uid()}", f"default-{uid()}"
    # kubectl sends this typed create as protobuf.
    cluster.kubectl("create", "priorityclass", high, "--value=1000", "--description=test", check=True)
    try:
        created = json.loads(cluster.kubectl("get", "pc", high, "-o", "json", check=True).stdout)
        assert (created["value"], created["preemptionPolicy"], created["description"]) == (
            1000, "PreemptLowerPriority", "test")
        res = cluster.kubectl("patch", "pc", high, "--type=merge", "-p", '{"value": 5}')
        assert f'The PriorityClass "{high}" is invalid: value: Forbidden: may not be changed in an update.' in res.stderr
        res = cluster.kubectl("create", "priorityclass", "system-mine", "--value=5")
        assert ("metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use "
                "only. error: system-mine is not a known system priority class") in res.stderr
        res = cluster.kubectl("create", "priorityclass", f"huge-{uid()}", "--value=1000000001")
        assert "value: Forbidden: maximum allowed value of a user defined priority is 1000000000" in res.stderr

        cluster.kubectl("run", "p-high", "-n", ns, "--image=busybox",
                        f'--overrides={{"spec":{{"priorityClassName":"{high}"}}}}', check=True)
        spec = json.loads(cluster.kubectl("get", "pod", "p-high", "-n", ns, "-o", "json", check=True).stdout)["spec"]
        assert (spec["priority"], spec["preemptionPolicy"]) == (1000, "PreemptLowerPriority")
        res = cluster.kubectl("run", "p-none", "-n", ns, "--image=busybox",
                              '--overrides={"spec":{"priorityClassName":"no-such-class"}}')
        assert ('Error from server (Forbidden): pods "p-none" is forbidden: no PriorityClass with name no-such-class '
                'was found') in res.stderr
        spec = json.loads(cluster.kubectl("run", "p-plain", "-n", ns, "--image=busybox", "-o", "json",
                                          check=True).stdout)["spec"]
        assert (spec.get("priorityClassName"), spec["priority"]) == (None, 0)

        cluster.kubectl("create", "priorityclass", default, "--value=7", "--global-default",
                        "--preemption-policy=Never", check=True)
        res = cluster.kubectl("create", "priorityclass", f"second-{uid()}", "--value=8", "--global-default")
        assert f"PriorityClass {default} is already marked as default. Only one default can exist" in res.stderr
        spec = json.loads(cluster.kubectl("run", "p-default", "-n", ns, "--image=busybox", "-o", "json",
                                          check=True).stdout)["spec"]
        assert (spec["priorityClassName"], spec["priority"], spec["preemptionPolicy"]) == (default, 7, "Never")
    finally:
        cluster.kubectl("delete", "pc", high, default, "--ignore-not-found")


STORAGE: list[Obj] = [
    {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "hostpath.csi.example.com"},
     "spec": {}},
    {"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": "csi-node-a"},
     "spec": {"drivers": [{"name": "hostpath.csi.example.com", "nodeID": "csi-node-a"}]}},
    {"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "csi-attach-a"},
     "spec": {"attacher": "hostpath.csi.example.com", "nodeName": "csi-node-a",
              "source": {"persistentVolumeName": "pv-a"}}},
]


def test_storage_kinds(cluster: Cluster) -> None:
    ns = new_namespace(cluster)
    for kind in ("csidrivers", "csinodes", "volumeattachments", "csistoragecapacities"):
        assert cluster.kubectl("get", kind, "-A", check=True).returncode == 0  # served, even if empty
    try:
        for obj in STORAGE:
            apply(cluster, obj)
        apply(cluster, {"apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
                        "metadata": {"name": "cap-a"}, "storageClassName": "standard", "capacity": "10Gi"}, ns)
        driver = get(cluster, "csidriver", "hostpath.csi.example.com") or {}
        assert driver["spec"]["attachRequired"] is True and driver["spec"]["volumeLifecycleModes"] == ["Persistent"]
        assert header(cluster, "csidrivers") == ["NAME", "ATTACHREQUIRED", "PODINFOONMOUNT", "STORAGECAPACITY",
                                                  "TOKENREQUESTS", "REQUIRESREPUBLISH", "MODES", "AGE"]
        assert rows(cluster, "csidriver", "hostpath.csi.example.com")[0][:7] == [
            "hostpath.csi.example.com", "true", "false", "false", "<unset>", "false", "Persistent"]
        assert header(cluster, "csinodes") == ["NAME", "DRIVERS", "AGE"]
        assert rows(cluster, "csinode", "csi-node-a")[0][:2] == ["csi-node-a", "1"]
        assert header(cluster, "csistoragecapacities", "-n", ns) == ["NAME", "STORAGECLASSNAME", "CAPACITY"]
        assert rows(cluster, "csistoragecapacities", "-n", ns) == [["cap-a", "standard", "10Gi"]]
        assert header(cluster, "volumeattachments") == ["NAME", "ATTACHER", "PV", "NODE", "ATTACHED", "AGE"]
        assert rows(cluster, "volumeattachment", "csi-attach-a")[0][:5] == [
            "csi-attach-a", "hostpath.csi.example.com", "pv-a", "csi-node-a", "false"]
        cluster.kubectl("patch", "volumeattachment", "csi-attach-a", "--subresource=status", "--type=merge",
                        "-p", '{"status":{"attached":true}}', check=True)
        assert rows(cluster, "volumeattachment", "csi-attach-a")[0][4] == "true"
        res = cluster.kubectl("patch", "volumeattachment", "csi-attach-a", "--type=merge",
                              "-p", '{"spec":{"nodeName":"elsewhere"}}')
        assert 'The VolumeAttachment "csi-attach-a" is invalid: spec: Invalid value: ' in res.stderr
        assert "field is immutable" in res.stderr
        res = cluster.kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "csi-bad"},
             "spec": {"attacher": "", "source": {}}}))
        assert "spec.attacher: Required value" in res.stderr and "spec.nodeName: Required value" in res.stderr
        assert ("spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"
                in res.stderr)
    finally:
        for obj in reversed(STORAGE):
            cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")


def test_flow_control_mandatory_objects(cluster: Cluster) -> None:
    assert header(cluster, "flowschemas") == ["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD",
                                              "AGE", "MISSINGPL"]
    schemas = rows(cluster, "flowschemas")
    # Sorted by matching precedence, as kube-apiserver's printer sorts them.
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in schemas] == [
        ("exempt", "exempt", "1", "<none>", "False"), ("catch-all", "catch-all", "10000", "ByUser", "False")]
    assert header(cluster, "prioritylevelconfigurations") == [
        "NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"]
    levels = {r[0]: r[1:6] for r in rows(cluster, "prioritylevelconfigurations")}
    assert levels == {"catch-all": ["Limited", "5", "<none>", "<none>", "<none>"],
                      "exempt": ["Exempt", "<none>", "<none>", "<none>", "<none>"]}
    res = cluster.kubectl("delete", "flowschema", "exempt")
    assert "MethodNotAllowed" in res.stderr


def test_local_api_services_follow_discovery(cluster: Cluster) -> None:
    assert header(cluster, "apiservices") == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    listed = {r[0]: r[1:3] for r in rows(cluster, "apiservices")}
    versions = cluster.kubectl("api-versions", check=True).stdout.split()
    wanted = {("v1." if v == "v1" else "{1}.{0}".format(*v.split("/"))) for v in versions}
    assert set(listed) == wanted
    assert all(v == ["Local", "True"] for v in listed.values())
    apps = get(cluster, "apiservice", "v1.apps") or {}
    assert apps["spec"] == {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15,
                            "service": None}
    assert apps["metadata"]["labels"] == {"kube-aggregator.kubernetes.io/automanaged": "onstart"}
