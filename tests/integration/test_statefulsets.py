"""StatefulSets, DaemonSets and ControllerRevisions end to end: real controllers, real kubectl, a fake kubelet.

As in :mod:`tests.integration.test_workloads`, no node agent runs pods: StatefulSet pods are
pinned to a Node object of ours (``nodeName`` in the template) whose fake kubelet reports them
Running and Ready after a short delay, so that the order of creations, deletions and
readiness is observable through a watch. DaemonSet pods are not pinned by the template: the
controller pins them with a ``metadata.name`` matchFields node affinity and the real scheduler
binds them. PersistentVolumeClaims are created by the StatefulSet controller here; nothing
binds them (the provisioner is another part of issue 17), which these tests do not need.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.client import (
    CONTROLLERREVISIONS,
    DAEMONSETS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    STATEFULSETS,
    ApiError,
    Informer,
)
from tests.integration.cluster import Cluster
from tests.integration.test_workloads import IMAGE, NODE, Env, _env, events_for, until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async for e in _env(cluster, ready_delay=0.0):
        yield e


@pytest.fixture
async def slow_env(cluster: Cluster) -> AsyncIterator[Env]:
    async for e in _env(cluster, ready_delay=0.3):
        yield e


def statefulset(name: str, replicas: int = 3, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": IMAGE,
                                                            "volumeMounts": [{"name": "www", "mountPath": "/data"}]}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
            }],
            **spec,
        },
    }


class Timeline:
    """What a watch on the namespace's pods saw, in order: (what, pod name)."""

    def __init__(self, env: Env) -> None:
        self.seen: list[tuple[str, str]] = []
        self.informer = Informer(env.client, PODS, env.ns)
        self.informer.add_handler(self._on)
        self.task = asyncio.create_task(self.informer.run())
        env.tasks.append(self.task)

    def _on(self, kind: str, pod: Obj, old: Obj | None) -> None:
        name = _meta(pod)["name"]

        def ready(p: Obj | None) -> bool:
            return any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in ((p or {}).get("status") or {}).get("conditions") or [])

        if kind == "ADDED":
            self.seen.append(("created", name))
        elif kind == "DELETED":
            self.seen.append(("gone", name))
        elif _meta(pod).get("deletionTimestamp") and not _meta(old or {}).get("deletionTimestamp"):
            self.seen.append(("deleting", name))
        elif ready(pod) and not ready(old):
            self.seen.append(("ready", name))

    def index(self, what: str, name: str) -> int:
        return self.seen.index((what, name))

    def names(self, what: str) -> list[str]:
        return [n for w, n in self.seen if w == what]


async def sts_ready(env: Env, name: str, replicas: int) -> Obj | None:
    sts = await env.get(STATEFULSETS, name)
    st = sts.get("status") or {}
    done = (st.get("observedGeneration") == _meta(sts)["generation"] and st.get("readyReplicas") == replicas
            and st.get("replicas") == replicas and st.get("currentRevision") == st.get("updateRevision")
            and st.get("updatedReplicas") == replicas)
    return sts if done else None


async def test_statefulset_creates_in_order_scales_down_from_the_top_and_restarts_in_reverse(slow_env: Env) -> None:
    env = slow_env
    timeline = Timeline(env)
    await timeline.informer.wait_synced()
    await env.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                     "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    await env.apply(statefulset("web"))
    # The first test of a session may wait for the controller-manager's caches to sync.
    sts = await until(lambda: sts_ready(env, "web", 3), 60, "3 ready replicas")

    # OrderedReady: each pod is created only once the one before it is Ready.
    assert timeline.names("created") == ["web-0", "web-1", "web-2"]
    assert timeline.index("ready", "web-0") < timeline.index("created", "web-1")
    assert timeline.index("ready", "web-1") < timeline.index("created", "web-2")

    # Defaults as SetDefaults_StatefulSet writes them.
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"

    # Identity: name, hostname, subdomain, labels, the claim as a volume.
    pod = await env.get(PODS, "web-1")
    revision = sts["status"]["updateRevision"]
    assert revision.startswith("web-")
    assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels["controller-revision-hash"] == revision
    assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}} in pod["spec"]["volumes"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("StatefulSet", "web", True)

    # One claim per ordinal, labelled with the selector, owned by nobody (Retain/Retain).
    claims = {c["metadata"]["name"]: c for c in await env.items(PERSISTENTVOLUMECLAIMS)}
    assert sorted(claims) == ["www-web-0", "www-web-1", "www-web-2"]
    assert claims["www-web-0"]["metadata"]["labels"] == {"app": "web"}
    assert not claims["www-web-0"]["metadata"].get("ownerReferences")

    # The status a real controller writes, and the revision it recorded.
    st = sts["status"]
    assert st["currentRevision"] == revision and st["collisionCount"] == 0 and st["availableReplicas"] == 3
    crs = await env.items(CONTROLLERREVISIONS)
    assert [(c["metadata"]["name"], c["revision"]) for c in crs] == [(revision, 1)]
    assert crs[0]["data"]["spec"]["template"]["$patch"] == "replace"

    events = await events_for(env, "web")
    assert ("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") in events
    assert ("SuccessfulCreate", "create Claim www-web-0 Pod web-0 in StatefulSet web success") in events

    res = await env.kubectl("get", "sts", "web")
    assert res.stdout.split("\n")[0].split() == ["NAME", "READY", "AGE"]
    assert res.stdout.split("\n")[1].split()[:2] == ["web", "3/3"]
    res = await env.kubectl("get", "controllerrevisions")
    assert res.stdout.split("\n")[1].split()[:3] == [revision, "statefulset.apps/web", "1"]
    res = await env.kubectl("describe", "sts", "web")
    assert "Replicas:           3 desired | 3 total" in res.stdout
    assert "create Pod web-2 in StatefulSet web successful" in res.stdout
    assert "Volume Claims:\n  Name:          www\n" in res.stdout
    res = await env.kubectl("rollout", "status", "sts/web", "--timeout=20s")
    assert "statefulset rolling update complete 3 pods at revision" in res.stdout or \
        "partitioned roll out complete: 3 new pods have been updated..." in res.stdout

    # Scale down: the highest ordinal goes first; its claim stays.
    await env.kubectl("scale", "sts", "web", "--replicas=2")
    await until(lambda: sts_ready(env, "web", 2), 30, "2 replicas")
    assert timeline.names("deleting") == ["web-2"]
    assert "www-web-2" in {c["metadata"]["name"] for c in await env.items(PERSISTENTVOLUMECLAIMS)}
    assert ("SuccessfulDelete", "delete Pod web-2 in StatefulSet web successful") in await events_for(env, "web")

    # rollout restart: a new revision, pods replaced from the highest ordinal down, one at a time.
    mark = len(timeline.seen)
    await env.kubectl("rollout", "restart", "sts/web")
    res = await env.kubectl("rollout", "status", "sts/web", "--timeout=30s")
    assert res.returncode == 0, res.stderr
    sts = await until(lambda: sts_ready(env, "web", 2), 30, "the restart to complete")
    assert sts["status"]["updateRevision"] != revision
    later = timeline.seen[mark:]
    deleting = [n for w, n in later if w == "deleting"]
    assert deleting == ["web-1", "web-0"]
    assert later.index(("ready", "web-1")) < later.index(("deleting", "web-0"))

    res = await env.kubectl("rollout", "history", "sts/web")
    rows = [line.split()[0] for line in res.stdout.strip().split("\n")[2:]]
    assert rows == ["1", "2"], res.stdout

    # rollout undo brings revision 1's template back: that revision becomes number 3, no new one.
    await env.kubectl("rollout", "undo", "sts/web")
    sts = await until(lambda: sts_ready(env, "web", 2), 30, "the undo to complete")
    assert sts["status"]["updateRevision"] == revision
    assert "kubectl.kubernetes.io/restartedAt" not in (sts["spec"]["template"]["metadata"].get("annotations") or {})
    crs_by_name = {c["metadata"]["name"]: c["revision"] for c in await env.items(CONTROLLERREVISIONS)}
    assert crs_by_name[revision] == 3 and len(crs_by_name) == 2


async def test_parallel_pod_management_creates_all_at_once(slow_env: Env) -> None:
    env = slow_env
    timeline = Timeline(env)
    await timeline.informer.wait_synced()
    await env.apply(statefulset("par", 3, podManagementPolicy="Parallel"))
    await until(lambda: sts_ready(env, "par", 3), 30, "3 ready replicas")
    created = [timeline.index("created", f"par-{i}") for i in range(3)]
    assert max(created) < min(timeline.index("ready", f"par-{i}") for i in range(3))


async def test_retention_policy_delete_hands_claims_to_the_set_and_to_scaled_down_pods(slow_env: Env) -> None:
    env = slow_env
    await env.apply(statefulset("db", 2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                                                 "whenScaled": "Delete"}))
    sts = await until(lambda: sts_ready(env, "db", 2), 30, "2 replicas")

    async def owners(claim: str) -> list[tuple[str, str]]:
        c = await env.get(PERSISTENTVOLUMECLAIMS, claim)
        return [(r["kind"], r["name"]) for r in c["metadata"].get("ownerReferences") or []]

    await until(lambda: _eq(owners("www-db-1"), [("StatefulSet", "db")]), 10, "the set to own its claims")
    await env.kubectl("scale", "sts", "db", "--replicas=1")

    async def claim_gone() -> bool:
        try:
            await env.get(PERSISTENTVOLUMECLAIMS, "www-db-1")
        except ApiError as e:
            return e.not_found
        return False

    # The scaled-down pod owns its claim, so the garbage collector takes the claim with the pod.
    await until(claim_gone, 30, "www-db-1 to go with db-1")
    assert await owners("www-db-0") == [("StatefulSet", "db")]
    await env.kubectl("delete", "sts", "db")

    async def all_claims_gone() -> bool:
        return not await env.items(PERSISTENTVOLUMECLAIMS)

    await until(all_claims_gone, 30, "the claims to go with the set")
    assert sts["metadata"]["uid"]


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_statefulset_validation_in_kubernetes_words(env: Env) -> None:
    bad = statefulset("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    res = await env.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
            "`selector` does not match template `labels`") in res.stderr

    await env.apply(statefulset("imm", 0))
    patch = json.dumps({"spec": {"serviceName": "other"}})
    res = await env.kubectl("patch", "sts", "imm", "-p", patch, check=False)
    assert res.returncode != 0
    assert ("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
            "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ) in res.stderr
    res = await env.kubectl("patch", "sts", "imm", "-p", json.dumps({"spec": {"podManagementPolicy": "Sometimes"}}),
                            check=False)
    assert "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'" in res.stderr


def daemonset(name: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    # Only our fake node: the cluster's other nodes (if any) are not run by the fake kubelet.
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    # The fake node is tainted and reports no Ready condition (so it counts as
                    # unreachable): tolerate everything.
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "main", "image": IMAGE}],
                },
            },
            **spec,
        },
    }


async def ds_ready(env: Env, name: str) -> Obj | None:
    ds = await env.get(DAEMONSETS, name)
    st = ds.get("status") or {}
    done = (st.get("observedGeneration") == _meta(ds)["generation"] and st.get("desiredNumberScheduled") == 1
            and st.get("numberReady") == 1 and st.get("updatedNumberScheduled") == 1
            and st.get("numberAvailable") == 1)
    return ds if done else None


async def test_daemonset_runs_one_pod_on_the_node_and_recreates_it(env: Env) -> None:
    await env.apply(daemonset("agent"))
    ds = await until(lambda: ds_ready(env, "agent"), 30, "the daemon pod")
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    pods = await env.pods("agent")
    assert len(pods) == 1
    pod = pods[0]
    # Bound by the scheduler, following the node-name affinity the controller set.
    assert pod["spec"]["nodeName"] == NODE
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                             "values": [NODE]}]}]}
    keys = [(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]]
    for key, effect in (("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                        ("node.kubernetes.io/unschedulable", "NoSchedule")):
        assert (key, effect) in keys
    assert pod["metadata"]["labels"]["pod-template-generation"] == "1"
    res = await env.kubectl("get", "ds", "agent")
    header = res.stdout.split("\n")[0].split()
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert res.stdout.split("\n")[1].split()[:7] == ["agent", "1", "1", "1", "1", "1", f"kubernetes.io/hostname={NODE}"]

    await env.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")

    async def replaced() -> list[Obj]:
        return [p for p in await env.pods("agent") if p["metadata"]["name"] != pod["metadata"]["name"]]

    await until(replaced, 20, "a new daemon pod")
    await until(lambda: ds_ready(env, "agent"), 30, "the new pod ready")
    assert len(await env.pods("agent")) == 1

    # A template change rolls the pod (maxUnavailable 1) and records a second revision.
    await env.kubectl("set", "env", "ds/agent", "A=1")
    res = await env.kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    assert 'daemon set "agent" successfully rolled out' in res.stdout
    pods = await env.pods("agent")
    assert len(pods) == 1 and pods[0]["metadata"]["labels"]["pod-template-generation"] == "2"
    res = await env.kubectl("rollout", "history", "ds/agent")
    assert [line.split()[0] for line in res.stdout.strip().split("\n")[2:]] == ["1", "2"], res.stdout

    # rollout undo writes revision 1's template back; that revision is renumbered 3.
    first_hash = pod["metadata"]["labels"]["controller-revision-hash"]
    await env.kubectl("rollout", "undo", "ds/agent")
    res = await env.kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    assert 'daemon set "agent" successfully rolled out' in res.stdout
    pods = await env.pods("agent")
    assert len(pods) == 1 and pods[0]["metadata"]["labels"]["controller-revision-hash"] == first_hash
    assert "env" not in pods[0]["spec"]["containers"][0]
    crs = {c["metadata"]["name"]: c["revision"] for c in await env.items(CONTROLLERREVISIONS)}
    assert crs[f"agent-{first_hash}"] == 3 and len(crs) == 2


async def test_daemonset_skips_nodes_that_do_not_match(env: Env) -> None:
    spec = daemonset("nowhere")
    spec["spec"]["template"]["spec"]["nodeSelector"] = {"kubelite.test/none": "x"}
    await env.apply(spec)

    async def observed() -> Obj | None:
        ds = await env.get(DAEMONSETS, "nowhere")
        return ds if (ds.get("status") or {}).get("observedGeneration") == 1 else None

    ds = await until(observed, 20, "the status")
    assert ds["status"]["desiredNumberScheduled"] == 0
    await asyncio.sleep(0.5)
    assert await env.pods("nowhere") == []
    res = await env.kubectl("get", "nodes", NODE)  # the node exists: it simply does not match
    assert res.returncode == 0


async def test_a_failed_pod_is_recreated_with_its_identity(env: Env) -> None:
    await env.apply(statefulset("fail", 1))
    await until(lambda: sts_ready(env, "fail", 1), 30, "1 replica")
    old = await env.get(PODS, "fail-0")
    status = {**old["status"], "phase": "Failed"}
    await env.client.patch(PODS, "fail-0", {"status": status}, env.ns, subresource="status")

    async def recreated() -> Obj | None:
        try:
            p = await env.get(PODS, "fail-0")
        except ApiError:
            return None
        return p if p["metadata"]["uid"] != old["metadata"]["uid"] else None

    new = await until(recreated, 30, "fail-0 to come back")
    assert new["spec"]["hostname"] == "fail-0"
    assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-fail-0"}} in new["spec"]["volumes"]
    assert ("RecreatingFailedPod", f"StatefulSet {env.ns}/fail is recreating failed Pod fail-0") in \
        await events_for(env, "fail")


async def test_daemonset_adopts_a_matching_orphan(env: Env) -> None:
    # Labelled with the template generation the DaemonSet will have: IsPodUpdated counts it as
    # current, so it is kept rather than rolled.
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "orphan", "labels": {"app": "adopt", "pod-template-generation": "1"}},
              "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": IMAGE}]}}
    await env.apply(orphan)
    await env.apply(daemonset("adopt"))
    ds = await until(lambda: ds_ready(env, "adopt"), 30, "the DaemonSet to count the adopted pod")
    pods = await env.pods("adopt")
    assert [p["metadata"]["name"] for p in pods] == ["orphan"]
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("DaemonSet", "adopt", ds["metadata"]["uid"],
                                                                        True)


async def test_the_official_python_client_reads_what_the_controllers_write(slow_env: Env) -> None:
    """kubernetes' typed AppsV1Api deserializes the sets, their statuses and revisions (a
    field of the wrong type or shape would raise here)."""
    from kubernetes import client, config

    env = slow_env
    await env.apply(statefulset("py", 2))
    await until(lambda: sts_ready(env, "py", 2), 30, "2 replicas")

    def read() -> tuple[Any, Any, Any]:
        api = config.new_client_from_config(str(env.cluster.kubeconfig))
        try:
            apps = client.AppsV1Api(api)
            sts = apps.read_namespaced_stateful_set("py", env.ns)
            scale = apps.read_namespaced_stateful_set_scale("py", env.ns)
            revisions = apps.list_namespaced_controller_revision(env.ns)
            return sts, scale, revisions
        finally:
            api.close()

    sts, scale, revisions = await asyncio.to_thread(read)
    assert sts.status.ready_replicas == 2 and sts.status.update_revision == sts.status.current_revision
    assert sts.spec.persistent_volume_claim_retention_policy.when_scaled == "Retain"
    assert scale.spec.replicas == 2 and scale.status.selector == "app=py"
    assert [r.revision for r in revisions.items] == [1]
    assert revisions.items[0].data["spec"]["template"]["$patch"] == "replace"
