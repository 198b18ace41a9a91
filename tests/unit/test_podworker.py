"""A pod worker against a host of fakes: it needs only what PodHost names (issue 14).

No namespaces, containers or API server: the status a worker computes for a pod it has not
started yet, the end of a worker whose pod is gone (it tears down and tells its host), and
pods deleted while a sync is under way (issue 15), the interleaving made exact by gates in
the fakes: the sync waits in one until the test has deleted the pod.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pathlib
from typing import Any, cast

import pytest

from kubelite.client import ApiError
from kubelite.node import activedeadline, podspec, volumes
from kubelite.node.network import PodNetwork
from kubelite.node.podworker import ContainerState, PodHost, PodWorker
from kubelite.node.runtime import ContainerStatus

Obj = dict[str, Any]


class Gate:
    """An await point in a fake: whoever reaches it waits there until the test opens it."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await self.opened.wait()


class FakeNetwork:
    def __init__(self) -> None:
        self.removed: list[str] = []
        self.netns_path = "/run/netns/fake-node"
        self.gates: dict[str, Gate] = {}  # method name -> where it waits

    async def add_pod(self, uid: str) -> PodNetwork:
        if "add_pod" in self.gates:
            await self.gates["add_pod"]()
        return PodNetwork(uid, "fake-pod", "/run/netns/fake-pod", "10.244.0.5", "10.244.0.1", 32, "veth-fake")

    async def remove_pod(self, uid: str) -> None:
        self.removed.append(uid)
        if "remove_pod" in self.gates:
            await self.gates["remove_pod"]()

    def pods(self) -> dict[str, Any]:
        return {}


class FakeConfig:
    def __init__(self) -> None:
        self.forgotten: list[str] = []
        self.host_resolv = podspec.ResolvConf(nameservers=("192.0.2.53",))

    def forget_tokens(self, uid: str) -> None:
        self.forgotten.append(uid)

    def cluster_dns(self) -> str:
        return "10.96.0.10"

    def volume_sources(self, pod: Obj, net: PodNetwork | None) -> Any:
        return None  # the pods here have no volumes and no token mount


class FakeClient:
    """pods/status and the final DELETE; once the pod is gone from the API, both answer 404."""

    def __init__(self) -> None:
        self.gone = False
        self.patches: list[Obj] = []

    def _not_found(self, name: str) -> ApiError:
        return ApiError({"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": f'pods "{name}" not found'}, 404)

    async def patch(self, rt: Any, name: str, body: Obj, namespace: str, *, subresource: str = "") -> Obj:
        if self.gone:
            raise self._not_found(name)
        self.patches.append(body)
        return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1"}, **body}

    async def delete(self, rt: Any, name: str, namespace: str, **_: Any) -> Obj:
        raise self._not_found(name)


class FakeRuntime:
    def __init__(self) -> None:
        self.statuses: dict[str, ContainerStatus] = {}
        self.removed: list[str] = []
        self.gates: dict[str, Gate] = {}

    async def status(self, cid: str) -> ContainerStatus:
        return self.statuses[cid]

    async def stop(self, cid: str, grace: int) -> None:
        if "stop" in self.gates:
            await self.gates["stop"]()
        st = self.statuses[cid]
        self.statuses[cid] = ContainerStatus("exited", None, 143, st.started_at, "2026-01-01T00:00:09Z", "Error")

    async def remove(self, cid: str) -> None:
        self.removed.append(cid)

    async def remove_pod(self, uid: str) -> None:  # the pod's IPC/UTS namespaces (OCI containers)
        pass

    def watch_exit(self, cid: str, callback: Any) -> bool:
        return False  # no shims here: the worker looks every POLL


class FakeHost:
    """Exactly PodHost's members, each a fake or a value."""

    def __init__(self, pods_dir: pathlib.Path) -> None:
        self.client = FakeClient()
        self.runtime = FakeRuntime()
        self.network = FakeNetwork()
        self.config = FakeConfig()
        self.pods_dir = pods_dir
        self.node_ip = "10.244.0.1"
        self.events: list[tuple[str, str, str]] = []
        self.done: list[PodWorker] = []

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def pod_worker_done(self, worker: PodWorker) -> None:
        self.done.append(worker)


def make_pod() -> Obj:
    return {
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"},
    }


def test_status_of_a_pod_not_started_yet(tmp_path: pathlib.Path) -> None:
    host = FakeHost(tmp_path)
    worker = PodWorker(cast(PodHost, host), make_pod())
    assert worker.dir == tmp_path / "u-1"
    status = worker.build_status()
    assert (status["phase"], status["hostIP"], status["hostIPs"], status["qosClass"]) == (
        "Pending", "10.244.0.1", [{"ip": "10.244.0.1"}], "BestEffort")
    assert "podIP" not in status
    [c] = status["containerStatuses"]
    assert (c["name"], c["state"], c["ready"], c["restartCount"]) == (
        "c", {"waiting": {"reason": "ContainerCreating"}}, False, 0)


async def test_a_worker_whose_pod_is_gone_cleans_up_and_tells_its_host(tmp_path: pathlib.Path) -> None:
    host = FakeHost(tmp_path)
    worker = PodWorker(cast(PodHost, host), make_pod())
    (tmp_path / "u-1" / "etc").mkdir(parents=True)
    worker.update(None)  # DELETED, or gone after our own final DELETE
    await asyncio.wait_for(worker.loop(), 5)
    assert worker.done and host.done == [worker]
    assert host.network.removed == ["u-1"] and host.config.forgotten == ["u-1"]
    assert not (tmp_path / "u-1").exists()
    assert host.events == []


# ---------------------------------------------------------------------------------- deleted mid-sync
# The agent hands a worker the DELETED pod (update(None)) whenever the informer says so, also
# while the worker's sync waits for the network, the runtime or the API. Each sync must go on
# with the pod it started with, and the next one tear down: no assertion, no traceback.


def quiet_pod() -> Obj:
    pod = make_pod()
    pod["spec"] |= {"automountServiceAccountToken": False, "restartPolicy": "Never"}
    return pod


def no_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.getMessage()}: {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_pod_deleted_while_its_sandbox_is_made(tmp_path: pathlib.Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost(tmp_path)
    gate = host.network.gates["add_pod"] = Gate()
    worker = PodWorker(cast(PodHost, host), quiet_pod())
    task = asyncio.create_task(worker.loop())
    await asyncio.wait_for(gate.reached.wait(), 5)
    worker.update(None)  # force-deleted while its network namespace is made
    host.client.gone = True
    gate.opened.set()
    await asyncio.wait_for(task, 5)
    assert no_errors(caplog) == []
    assert worker.done and host.done == [worker]
    assert host.network.removed == ["u-1"] and host.config.forgotten == ["u-1"]
    assert not (tmp_path / "u-1").exists()


async def test_a_pod_deleted_as_it_completes(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost(tmp_path)
    worker = PodWorker(cast(PodHost, host), quiet_pod())
    # Its one container has just exited 0 (restartPolicy Never): this sync reports Succeeded
    # and frees the sandbox, and a client that saw Succeeded deletes the pod meanwhile (at
    # once: kube-apiserver gives terminal pods no grace period).
    worker.sandbox_ready, worker.net = True, await host.network.add_pod("u-1")
    host.runtime.statuses["cid-1"] = ContainerStatus("exited", None, 0, "2026-01-01T00:00:00Z",
                                                     "2026-01-01T00:00:01Z", "Completed")
    worker.containers["c"] = ContainerState("c", False, current="cid-1", status=host.runtime.statuses["cid-1"])
    gate = host.network.gates["remove_pod"] = Gate()
    task = asyncio.create_task(worker.loop())
    await asyncio.wait_for(gate.reached.wait(), 5)
    assert host.client.patches[-1]["status"]["phase"] == "Succeeded"
    worker.update(None)
    host.client.gone = True
    gate.opened.set()
    await asyncio.wait_for(task, 5)
    assert no_errors(caplog) == []
    assert worker.done and host.done == [worker]
    assert host.runtime.removed == ["cid-1"] and host.config.forgotten == ["u-1"]
    assert not (tmp_path / "u-1").exists()


async def test_a_pod_force_deleted_while_it_terminates(tmp_path: pathlib.Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost(tmp_path)
    pod = quiet_pod()
    pod["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:05Z", "deletionGracePeriodSeconds": 0}
    worker = PodWorker(cast(PodHost, host), pod)
    worker.sandbox_ready, worker.net = True, await host.network.add_pod("u-1")
    host.runtime.statuses["cid-1"] = ContainerStatus("running", 42, None, "2026-01-01T00:00:00Z", None, "")
    worker.containers["c"] = ContainerState("c", False, current="cid-1", status=host.runtime.statuses["cid-1"])
    gate = host.runtime.gates["stop"] = Gate()
    task = asyncio.create_task(worker.loop())
    await asyncio.wait_for(gate.reached.wait(), 5)  # Ready=False reported, SIGTERM under way
    worker.update(None)  # `kubectl delete --force --grace-period=0` meanwhile
    host.client.gone = True
    gate.opened.set()
    await asyncio.wait_for(task, 5)
    assert no_errors(caplog) == []
    assert worker.done and host.done == [worker]
    assert host.runtime.removed == ["cid-1"] and host.network.removed[-1] == "u-1"
    assert not (tmp_path / "u-1").exists()


# ---------------------------------------------------------------------------------- active deadline


def test_active_deadline_counts_from_the_start_time() -> None:
    pod = make_pod()
    start = "2026-01-01T00:00:00Z"
    t0 = 1767225600.0  # that instant
    assert activedeadline.remaining(pod, start, t0 + 100) is None  # no deadline
    pod["spec"]["activeDeadlineSeconds"] = 30
    assert activedeadline.remaining(pod, "", t0) is None  # not started
    assert activedeadline.remaining(pod, start, t0 + 29.5) == 0.5
    assert activedeadline.remaining(pod, start, t0 + 30) == 0  # duration >= allowed: past it


async def test_a_pod_past_its_active_deadline_is_stopped_and_fails(tmp_path: pathlib.Path) -> None:
    host = FakeHost(tmp_path)
    pod = quiet_pod()
    pod["spec"] |= {"activeDeadlineSeconds": 5, "restartPolicy": "Always", "terminationGracePeriodSeconds": 3}
    pod["status"] = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}  # long ago
    worker = PodWorker(cast(PodHost, host), pod)
    worker.sandbox_ready, worker.net = True, await host.network.add_pod("u-1")
    host.runtime.statuses["cid-1"] = ContainerStatus("running", 42, None, "2026-01-01T00:00:00Z", None, "")
    worker.containers["c"] = ContainerState("c", False, current="cid-1", status=host.runtime.statuses["cid-1"])
    await worker.sync()
    status = host.client.patches[-1]["status"]
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
    [c] = status["containerStatuses"]
    assert c["state"]["terminated"]["exitCode"] == 143
    assert host.events[:2] == [
        ("Normal", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"),
        ("Normal", "Killing", "Stopping container c"),
    ]
    assert host.network.removed == ["u-1"]  # the sandbox goes, as for any finished pod
    assert worker.terminal and await worker.sync() == 3600  # and no container starts again


# ---------------------------------------------------------------------------------- downward API volumes


async def test_downward_api_files_follow_label_changes_at_once(tmp_path: pathlib.Path) -> None:
    host = FakeHost(tmp_path)

    async def nothing(*_: Any) -> None:
        return None

    sources = volumes.Sources(configmap=nothing, secret=nothing, token=nothing, ca_crt=b"")  # type: ignore[arg-type]
    host.config.volume_sources = lambda pod, net: sources  # type: ignore[method-assign]
    pod = quiet_pod()
    pod["metadata"]["labels"] = {"tier": "one"}
    pod["spec"]["volumes"] = [{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]
    worker = PodWorker(cast(PodHost, host), pod)

    async def patch(rt: Any, name: str, body: Obj, namespace: str, *, subresource: str = "") -> Obj:
        return {**worker.pod, "status": body["status"]}  # the whole pod, as the API answers

    host.client.patch = patch  # type: ignore[method-assign]
    worker.sandbox_ready, worker.net = True, await host.network.add_pod("u-1")
    host.runtime.statuses["cid-1"] = ContainerStatus("running", 42, None, "2026-01-01T00:00:00Z", None, "")
    worker.containers["c"] = ContainerState("c", False, current="cid-1", status=host.runtime.statuses["cid-1"])
    labels = tmp_path / "u-1" / "volumes" / "info" / "labels"
    await worker.sync()
    assert labels.read_text() == 'tier="one"'
    changed = copy.deepcopy(pod)
    changed["metadata"]["labels"] = {"tier": "two"}
    worker.update(changed)
    await worker.sync()  # the very next sync, not a minute later
    assert labels.read_text() == 'tier="two"'
