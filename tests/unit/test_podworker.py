"""A pod worker against a host of fakes: it needs only what PodHost names (issue 14).

No namespaces, containers or API server: the status a worker computes for a pod it has not
started yet, and the end of a worker whose pod is gone (it tears down and tells its host).
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, cast

from kubelite.node.podworker import PodHost, PodWorker

Obj = dict[str, Any]


class FakeNetwork:
    def __init__(self) -> None:
        self.removed: list[str] = []
        self.netns_path = "/run/netns/fake-node"

    async def remove_pod(self, uid: str) -> None:
        self.removed.append(uid)

    def pods(self) -> dict[str, Any]:
        return {}


class FakeConfig:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget_tokens(self, uid: str) -> None:
        self.forgotten.append(uid)


class FakeHost:
    """Exactly PodHost's members, each a fake or a value."""

    def __init__(self, pods_dir: pathlib.Path) -> None:
        self.client: Any = None  # nothing here writes to the API
        self.runtime: Any = None  # nor starts a container
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
