"""Deployments and ReplicaSets end to end: the real controllers, the real kubectl, a fake kubelet.

No node agent runs pods here, so each test brings a *fake kubelet*, the way Kubernetes' own
controller tests do: pods are pinned to a Node object of ours (``spec.nodeName`` in the
template, so the scheduler leaves them alone), and the fake kubelet reports every pod on that
node Running and Ready through the status subresource, and finishes graceful deletions (as a
kubelet does once the containers are gone). Everything else — ReplicaSets, pods, revisions,
conditions, events, rollouts — is the controllers' work, observed through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.client import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    ApiError,
    Client,
    Informer,
)
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
NODE = "workloads-fake-node"
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


class FakeKubelet:
    """Plays the kubelet of :data:`NODE` for one namespace: pods become Ready, deletions complete."""

    def __init__(self, client: Client, namespace: str, ready_delay: float = 0.0) -> None:
        self.client = client
        self.namespace = namespace
        self.ready_delay = ready_delay
        self.informer = Informer(client, PODS, namespace)
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ip = 0
        self.informer.add_handler(self._on_pod)

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
        if kind == "DELETED" or (pod.get("spec") or {}).get("nodeName") != NODE:
            return
        meta = _meta(pod)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        job = f"{meta['uid']}/{'delete' if meta.get('deletionTimestamp') else 'start'}"
        if job in self._busy or (not meta.get("deletionTimestamp") and ready):
            return
        self._busy.add(job)
        work = self._finish(pod) if meta.get("deletionTimestamp") else self._start(pod)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, pod: Obj) -> None:
        await asyncio.sleep(self.ready_delay)
        self._ip += 1
        now = _now()
        status = {
            "phase": "Running",
            "hostIP": "10.0.0.1",
            "podIP": f"10.244.200.{self._ip % 250 + 1}",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
        }
        try:
            await self.client.patch(PODS, _meta(pod)["name"], {"status": status}, self.namespace, subresource="status")
        except ApiError as e:
            if not e.not_found:
                raise

    async def _finish(self, pod: Obj) -> None:
        try:
            await self.client.delete(PODS, _meta(pod)["name"], self.namespace, grace_period_seconds=0)
        except ApiError as e:
            if not e.not_found:
                raise

    async def run(self) -> None:
        await self.informer.run()


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Env:
    cluster: Cluster
    client: Client
    ns: str
    kubelet: FakeKubelet
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        # kubectl blocks; run it off the loop so that the fake kubelet keeps working meanwhile.
        return await asyncio.to_thread(self.cluster.kubectl, *args, "-n", self.ns, input=input, check=check)

    async def apply(self, obj: Obj) -> None:
        await self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    async def patch(self, rt: Any, name: str, patch: Obj) -> None:
        # kubelite's API server answers a patch racing a controller's write with 409 instead of
        # retrying it as kube-apiserver does (reported); retry here until that is fixed.
        for _ in range(20):
            try:
                await self.client.patch(rt, name, patch, self.ns)
                return
            except ApiError as e:
                if not e.conflict:
                    raise
        raise AssertionError(f"patch of {name} kept conflicting")

    async def get(self, rt: Any, name: str) -> Obj:
        out: Obj = await self.client.get(rt, name, self.ns)
        return out

    async def items(self, rt: Any, label_selector: str = "") -> list[Obj]:
        body = await self.client.list(rt, self.ns, label_selector=label_selector)
        return list(body.get("items") or [])

    async def pods(self, app: str, *, live: bool = True) -> list[Obj]:
        pods = await self.items(PODS, f"app={app}")
        return [p for p in pods if not live or not _meta(p).get("deletionTimestamp")]

    async def replicasets(self, app: str) -> list[Obj]:
        return sorted(await self.items(REPLICASETS, f"app={app}"),
                      key=lambda rs: int(_meta(rs).get("annotations", {}).get("deployment.kubernetes.io/revision", 0)))


async def until(check: Callable[[], Awaitable[Any]], within: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


async def _ensure_node(client: Client) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        # Tainted so that the scheduler never puts another test's pods on a node nobody runs.
        "spec": {"taints": [{"key": "kubelite.test/fake", "value": "workloads", "effect": "NoSchedule"}]},
    }
    try:
        await client.create(NODES, node)
    except ApiError as e:
        if not e.already_exists:
            raise
    # What a kubelet reports: the scheduler fits requests against allocatable, and a node
    # without "pods" in it takes none (as kube-scheduler). Only the DaemonSet tests, which
    # tolerate the taint, get pods scheduled here.
    resources = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    await client.patch(NODES, NODE, {"status": {"capacity": resources, "allocatable": resources}},
                       subresource="status")


async def _env(cluster: Cluster, ready_delay: float) -> AsyncIterator[Env]:
    client = Client.from_kubeconfig(cluster.kubeconfig)
    ns = f"wl-{uuid.uuid4().hex[:6]}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await _ensure_node(client)
    kubelet = FakeKubelet(client, ns, ready_delay)
    env = Env(cluster, client, ns, kubelet)
    env.tasks.append(asyncio.create_task(kubelet.run()))
    await kubelet.informer.wait_synced()
    try:
        yield env
    finally:
        for t in env.tasks:
            t.cancel()
        await asyncio.gather(*env.tasks, return_exceptions=True)
        try:
            await client.delete(NAMESPACES, ns)
            # Nobody runs the fake node's pods any more: finish their deletion so the namespace can go.
            for p in (await client.list(PODS, ns)).get("items") or []:
                await client.delete(PODS, p["metadata"]["name"], ns, grace_period_seconds=0)
        except ApiError:
            pass
        try:
            await client.delete(NODES, NODE)  # other tests count the cluster's nodes
        except ApiError:
            pass
        await client.close()


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async for e in _env(cluster, ready_delay=0.0):
        yield e


@pytest.fixture
async def slow_env(cluster: Cluster) -> AsyncIterator[Env]:
    """Pods take a moment to become ready: rollouts go through observable steps."""
    async for e in _env(cluster, ready_delay=0.25):
        yield e


def deployment(name: str, replicas: int = 3, image: str = IMAGE, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": image}]},
            },
            **spec,
        },
    }


async def rolled_out(env: Env, name: str) -> Obj | None:
    """The Deployment once its controller reports the rollout complete (what `rollout status` waits for)."""
    d = await env.get(DEPLOYMENTS, name)
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    progressing: Obj = next((c for c in st.get("conditions") or [] if c["type"] == "Progressing"), {})
    done = (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
            and st.get("availableReplicas", 0) == want and progressing.get("reason") == "NewReplicaSetAvailable")
    return d if done else None


async def events_for(env: Env, name: str) -> list[tuple[str, str]]:
    items = await env.items(EVENTS)
    return [(e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == name]


# ---------------------------------------------------------------------------------- tests


async def test_deployment_creates_replicaset_and_pods(env: Env) -> None:
    await env.apply(deployment("web"))
    d = await until(lambda: rolled_out(env, "web"), what="deployment rolled out")
    [rs] = await env.replicasets("web")
    rs_name, pod_hash = rs["metadata"]["name"], rs["metadata"]["labels"]["pod-template-hash"]
    assert rs_name == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["metadata"]["annotations"] == {
        "deployment.kubernetes.io/revision": "1",
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",  # 3 + 25% rounded up
    }
    [owner] = rs["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": d["metadata"]["uid"],
                     "controller": True, "blockOwnerDeletion": True}
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    pods = await env.pods("web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["generateName"] == f"{rs_name}-"
        assert pod["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
        [ref] = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "ReplicaSet", rs_name, rs["metadata"]["uid"], True, True)
    rs = await until(lambda: _rs_status(env, rs_name, 3), what="replicaset status")
    assert rs["status"] == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                            "observedGeneration": 1}
    st = d["status"]
    assert {k: st.get(k) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                                   "observedGeneration")} == {
        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 1}
    assert "unavailableReplicas" not in st
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Available"]["status"], conds["Available"]["reason"], conds["Available"]["message"]) == (
        "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"], conds["Progressing"]["message"]) == (
        "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to 3") in await events_for(env, "web")
    rs_events = await events_for(env, rs_name)
    assert sorted(rs_events) == sorted(("SuccessfulCreate", f"Created pod: {p['metadata']['name']}") for p in pods)
    sources = {(e["involvedObject"]["kind"], e["source"]["component"]) for e in await env.items(EVENTS)}
    assert sources == {("Deployment", "deployment-controller"), ("ReplicaSet", "replicaset-controller")}
    res = await env.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert res.stdout.strip() == 'deployment "web" successfully rolled out'
    out = (await env.kubectl("get", "deployment", "web")).stdout.split()
    assert out[:10] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "web", "3/3", "3", "3", out[9]]


async def _rs_status(env: Env, name: str, ready: int) -> Obj | None:
    rs = await env.get(REPLICASETS, name)
    return rs if (rs.get("status") or {}).get("availableReplicas") == ready else None


async def test_pods_are_replaced_and_scaled(env: Env) -> None:
    await env.apply(deployment("keep"))
    await until(lambda: rolled_out(env, "keep"), what="deployment rolled out")
    victims = [p["metadata"]["name"] for p in (await env.pods("keep"))[:2]]
    for name in victims:
        await env.client.delete(PODS, name, env.ns, grace_period_seconds=0)

    async def replaced() -> list[str] | None:
        names = [p["metadata"]["name"] for p in await env.pods("keep")]
        return names if len(names) == 3 and not set(victims) & set(names) else None

    await until(replaced, what="deleted pods replaced")
    await until(lambda: rolled_out(env, "keep"), what="available again")
    assert len(await env.pods("keep", live=False)) == 3

    # Scale by patching spec.replicas: up, then down (deleted pods terminate gracefully first).
    await env.patch(DEPLOYMENTS, "keep", {"spec": {"replicas": 5}})
    await until(lambda: rolled_out(env, "keep"), what="scaled to 5")
    assert len(await env.pods("keep")) == 5
    [rs] = await env.replicasets("keep")
    assert rs["spec"]["replicas"] == 5
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
    await env.patch(DEPLOYMENTS, "keep", {"spec": {"replicas": 2}})
    await until(lambda: rolled_out(env, "keep"), what="scaled to 2")
    await until(lambda: _count_is(env, "keep", 2), what="2 pods left")
    messages = [m for r, m in await events_for(env, "keep") if r == "ScalingReplicaSet"]
    name = rs["metadata"]["name"]
    assert f"Scaled up replica set {name} from 3 to 5" in messages
    assert f"Scaled down replica set {name} from 5 to 2" in messages
    deleted = [m for r, m in await events_for(env, name) if r == "SuccessfulDelete"]
    assert len(deleted) == 3 and all(m.startswith(f"Deleted pod: {name}-") for m in deleted)


async def _count_is(env: Env, app: str, n: int) -> bool:
    return len(await env.pods(app, live=False)) == n


async def test_rolling_update_within_surge_and_unavailability(slow_env: Env) -> None:
    env = slow_env
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    await env.apply(deployment("roll", replicas=4, strategy=strategy))
    await until(lambda: rolled_out(env, "roll"), what="first rollout")
    violations: list[str] = []
    seen_total, seen_ready = [], []
    pods: dict[str, Obj] = {p["metadata"]["name"]: p for p in await env.pods("roll", live=False)}
    rv = (await env.client.list(PODS, env.ns))["metadata"]["resourceVersion"]

    async def observe() -> None:
        async for kind, pod in env.client.watch(PODS, env.ns, resource_version=rv, label_selector="app=roll"):
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                pods.pop(pod["metadata"]["name"], None)
            else:
                pods[pod["metadata"]["name"]] = pod
            live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in p["status"].get("conditions") or [])]
            seen_total.append(len(live))
            seen_ready.append(len(ready))
            if len(live) > 4 + 1:
                violations.append(f"{len(live)} pods > replicas + maxSurge")
            if len(ready) < 4 - 1:
                violations.append(f"{len(ready)} ready < replicas - maxUnavailable")

    watcher = asyncio.create_task(observe())
    env.tasks.append(watcher)
    await env.kubectl("set", "image", "deployment/roll", f"main={IMAGE.replace('2.52', '2.53')}")
    res = await env.kubectl("rollout", "status", "deployment/roll", "--timeout=30s")
    assert res.stdout.strip().endswith('deployment "roll" successfully rolled out'), res.stdout
    await until(lambda: _count_is(env, "roll", 4), what="old pods gone")
    watcher.cancel()
    assert not violations, violations
    assert max(seen_total) == 5, "the rollout should use its surge"
    old, new = await env.replicasets("roll")
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 4)
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    new_hash = new["metadata"]["labels"]["pod-template-hash"]
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in await env.pods("roll")} == {new_hash}
    d = await env.get(DEPLOYMENTS, "roll")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    # History with a change cause, then back to revision 1 with `rollout undo`.
    await env.kubectl("annotate", "deployment/roll", "kubernetes.io/change-cause=image 2.53", "--overwrite")
    await until(lambda: _annotated(env, new["metadata"]["name"]), what="change-cause copied to the replica set")
    history = (await env.kubectl("rollout", "history", "deployment/roll")).stdout.split("\n")
    assert history[0].strip() == "deployment.apps/roll"
    assert [line.split(None, 1) for line in history[1:] if line.strip()] == [
        ["REVISION", "CHANGE-CAUSE"], ["1", "<none>"], ["2", "image 2.53"]]
    res = await env.kubectl("rollout", "undo", "deployment/roll")
    assert res.stdout.strip() == "deployment.apps/roll rolled back"
    await env.kubectl("rollout", "status", "deployment/roll", "--timeout=30s")
    await until(lambda: _count_is(env, "roll", 4), what="rolled back pods only")
    assert not violations, violations
    back = await env.get(REPLICASETS, old["metadata"]["name"])
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert back["spec"]["replicas"] == 4
    assert {p["spec"]["containers"][0]["image"] for p in await env.pods("roll")} == {IMAGE}
    lines = (await env.kubectl("rollout", "history", "deployment/roll")).stdout.splitlines()
    assert [line.split(None, 1)[0] for line in lines[2:] if line.strip()] == ["2", "3"]


async def _annotated(env: Env, rs_name: str) -> bool:
    rs = await env.get(REPLICASETS, rs_name)
    return bool(rs["metadata"].get("annotations", {}).get("kubernetes.io/change-cause") == "image 2.53")


async def test_recreate_empties_old_replicaset_first(env: Env) -> None:
    await env.apply(deployment("rec", replicas=3, strategy={"type": "Recreate"}))
    await until(lambda: rolled_out(env, "rec"), what="first rollout")
    [first] = await env.replicasets("rec")
    old_hash = first["metadata"]["labels"]["pod-template-hash"]
    overlap: list[str] = []
    pods = {p["metadata"]["name"]: p for p in await env.pods("rec", live=False)}
    rv = (await env.client.list(PODS, env.ns))["metadata"]["resourceVersion"]

    async def observe() -> None:
        async for kind, pod in env.client.watch(PODS, env.ns, resource_version=rv, label_selector="app=rec"):
            if kind == "DELETED":
                pods.pop(pod["metadata"]["name"], None)
            elif kind != "BOOKMARK":
                pods[pod["metadata"]["name"]] = pod
            hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in pods.values()}
            if old_hash in hashes and len(hashes) > 1:
                overlap.append(", ".join(sorted(pods)))

    env.tasks.append(asyncio.create_task(observe()))
    await env.kubectl("set", "image", "deployment/rec", f"main={IMAGE.replace('2.52', '2.53')}")
    await env.kubectl("rollout", "status", "deployment/rec", "--timeout=30s")
    assert not overlap, f"old and new pods coexisted: {overlap[0]}"
    old, new = await env.replicasets("rec")
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 3)
    messages = [m for r, m in await events_for(env, "rec") if r == "ScalingReplicaSet"]
    assert f"Scaled down replica set {old['metadata']['name']} from 3 to 0" in messages
    assert f"Scaled up replica set {new['metadata']['name']} from 0 to 3" in messages


async def test_pause_resume_restart_and_history_limit(env: Env) -> None:
    await env.apply(deployment("pz", replicas=2, revisionHistoryLimit=1))
    await until(lambda: rolled_out(env, "pz"), what="first rollout")
    await env.kubectl("rollout", "pause", "deployment/pz")
    await env.kubectl("set", "image", "deployment/pz", f"main={IMAGE.replace('2.52', '2.53')}")
    await env.patch(DEPLOYMENTS, "pz", {"spec": {"replicas": 3}})

    async def observed() -> Obj | None:
        d = await env.get(DEPLOYMENTS, "pz")
        ok = d["status"].get("observedGeneration") == d["metadata"]["generation"] and d["status"].get("replicas") == 3
        return d if ok else None

    d = await until(observed, what="paused deployment observed and scaled")
    assert len(await env.replicasets("pz")) == 1, "a paused deployment must not roll"
    progressing = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "Unknown", "DeploymentPaused", "Deployment is paused")
    await env.kubectl("rollout", "resume", "deployment/pz")
    await env.kubectl("rollout", "status", "deployment/pz", "--timeout=30s")
    rss = await env.replicasets("pz")
    assert [rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in rss] == ["1", "2"]

    await env.kubectl("rollout", "restart", "deployment/pz")
    await env.kubectl("rollout", "status", "deployment/pz", "--timeout=30s")
    await until(lambda: _count_is(env, "pz", 3), what="restarted pods only")

    async def trimmed() -> list[Obj] | None:
        rss = await env.replicasets("pz")
        return rss if len(rss) == 2 else None

    # revisionHistoryLimit=1: the oldest empty ReplicaSet is deleted.
    old, new = await until(trimmed, what="history trimmed to one old replica set")
    assert [rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in (old, new)] == ["2", "3"]
    assert "kubectl.kubernetes.io/restartedAt" in new["spec"]["template"]["metadata"]["annotations"]
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in await env.pods("pz")} == {
        new["metadata"]["labels"]["pod-template-hash"]}


async def test_replicaset_adopts_releases_and_ignores(env: Env) -> None:
    labels = {"app": "bare", "tier": "x"}

    def pod(name: str, owner: Obj | None = None) -> Obj:
        meta: Obj = {"name": name, "labels": dict(labels)}
        if owner:
            meta["ownerReferences"] = [owner]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": IMAGE}]}}

    await env.client.create(PODS, pod("orphan"), env.ns)
    # A pod controlled by something else (a live owner, or the garbage collector would delete it).
    other = await env.client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}},
                                    env.ns)
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": other["metadata"]["uid"],
               "controller": True}
    await env.client.create(PODS, pod("foreign", foreign), env.ns)
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "bare"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": IMAGE}]}}},
    }
    created = await env.client.create(REPLICASETS, rs, env.ns)
    uid = created["metadata"]["uid"]

    async def owned() -> list[str] | None:
        pods = await env.pods("bare")
        mine = sorted(p["metadata"]["name"] for p in pods
                      if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or []))
        return mine if len(mine) == 2 else None

    mine = await until(owned, what="two pods owned")
    assert "orphan" in mine, "the matching orphan is adopted instead of creating a pod"
    orphan = await env.get(PODS, "orphan")
    assert orphan["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bare", "uid": uid, "controller": True,
         "blockOwnerDeletion": True}]
    assert (await env.get(PODS, "foreign"))["metadata"]["ownerReferences"] == [foreign]
    await until(lambda: _rs_status(env, "bare", 2), what="status counts")

    # A pod whose labels stop matching is released, and replaced.
    await env.patch(PODS, "orphan", {"metadata": {"labels": {"tier": "y"}}})

    async def released() -> bool:
        orphan = await env.get(PODS, "orphan")
        return not orphan["metadata"].get("ownerReferences") and bool(await owned())

    await until(released, what="released and replaced")
    assert len(await env.items(PODS, "app=bare,tier=x")) == 3  # two owned + the foreign one


async def test_controller_killed_mid_rollout_converges(env: Env) -> None:
    created: set[str] = set()
    rv = (await env.client.list(PODS, env.ns))["metadata"]["resourceVersion"]

    async def record() -> None:
        async for kind, pod in env.client.watch(PODS, env.ns, resource_version=rv):
            if kind == "ADDED":
                created.add(pod["metadata"]["name"])

    env.tasks.append(asyncio.create_task(record()))
    pattern = f"controllers --kubeconfig {env.cluster.data_dir / 'controller-manager.conf'}"
    before = await _pgrep(pattern)
    assert len(before) == 1, f"expected one controller-manager process, found {before}"
    await env.apply(deployment("crash", replicas=8))
    await until(lambda: _at_least(created, 1), within=10, what="first pods")
    os.kill(int(before[0]), signal.SIGKILL)

    async def restarted() -> list[str] | None:
        pids = await _pgrep(pattern)
        return pids if pids and pids != before else None

    await until(restarted, within=15, what="controller-manager restarted by the supervisor")
    await until(lambda: rolled_out(env, "crash"), within=30, what="rollout after restart")
    assert len(await env.replicasets("crash")) == 1
    assert len(await env.pods("crash", live=False)) == 8
    assert len(created) == 8, f"pods created twice: {sorted(created)}"


async def _pgrep(pattern: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec("pgrep", "-f", pattern, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode().split()


async def _at_least(s: set[str], n: int) -> bool:
    return len(s) >= n


async def test_deleting_deployment_cascades(env: Env) -> None:
    await env.apply(deployment("gone", replicas=2))
    await until(lambda: rolled_out(env, "gone"), what="rollout")
    await env.kubectl("delete", "deployment", "gone")

    async def all_gone() -> bool:
        return not await env.replicasets("gone") and not await env.pods("gone", live=False)

    await until(all_gone, within=20, what="replica sets and pods garbage collected")


async def test_scale_subresource_with_kubectl(env: Env) -> None:
    await env.apply(deployment("sc", replicas=1))
    await until(lambda: rolled_out(env, "sc"), what="rollout")
    res = await env.kubectl("scale", "deployment/sc", "--replicas=3")
    assert res.stdout.strip() == "deployment.apps/sc scaled"
    await until(lambda: rolled_out(env, "sc"), what="scaled rollout")
    assert len(await env.pods("sc")) == 3
    [rs] = await env.replicasets("sc")
    scale = json.loads((await env.kubectl("get", "--raw",
                                          f"/apis/apps/v1/namespaces/{env.ns}/replicasets/{rs['metadata']['name']}/scale")).stdout)
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 3} and scale["status"]["replicas"] == 3
