"""When a container's exit is stamped if its shim died without recording it (issue 20, point 6).

A container whose shim and process are both gone without an exit in ``status.json`` (killed
from outside, a crashed node) is reported exited with code 255, reason ``Unknown``, as
containerd reports a task whose shim died. Its ``finishedAt`` is when the runtime first saw
it gone, kept from then on: it once was the container's start time, so a container killed
a minute after it started showed both stamps at the start, and `kubectl get pods` aged its
restart from then ("1 (74s ago)" for a restart 6 s ago). Fake clocks, no processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib

import pytest

from kubelite.api.printers import to_table
from kubelite.api.timeutil import format_epoch
from kubelite.node import runtime as runtime_module
from kubelite.node.podworker import ContainerState, container_status
from kubelite.node.runtime import Runtime
from kubelite.node.shim import process_start_time

STARTED = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def rfc3339(self) -> str:
        return format_epoch(self.now)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(STARTED)
    monkeypatch.setattr(runtime_module, "now_rfc3339", c.rfc3339, raising=False)
    return c


def dead_container(state_dir: pathlib.Path, hexid: str, *, restart_count: int = 0) -> None:
    """A container record whose shim and process are gone: this process's pid with a start
    time it never had stands for both (a pid reused by another process is not the container)."""
    cdir = state_dir / "containers" / hexid
    cdir.mkdir(parents=True)
    (cdir / "spec.json").write_text(json.dumps({"pod_uid": "u1", "name": "c", "restart_count": restart_count,
                                                "log_path": str(cdir / "0.log")}))
    wrong_start = (process_start_time(os.getpid()) or 0) + 1
    (cdir / "status.json").write_text(json.dumps({
        "pid": os.getpid(), "pid_start": wrong_start, "shim_pid": os.getpid(), "shim_start": wrong_start,
        "started_at": format_epoch(STARTED), "exit_code": None, "finished_at": None, "reason": "", "message": "",
    }))


async def test_a_container_whose_shim_died_finishes_when_first_seen_gone(tmp_path: pathlib.Path, clock: Clock) -> None:
    dead_container(tmp_path, "ab" * 32)
    rt = Runtime(tmp_path)
    clock.now = STARTED + 60  # noticed a minute after it started
    status = await rt.status("kubelite://" + "ab" * 32)
    assert (status.state, status.exit_code, status.reason) == ("exited", 255, "Unknown")
    assert status.message == "the container's shim exited without recording the container's exit"
    assert status.started_at == "2024-05-01T10:00:00Z"
    assert status.finished_at == "2024-05-01T10:01:00Z"  # not the start time
    clock.now += 30  # later looks (another agent, too) keep the first stamp
    assert (await rt.status("kubelite://" + "ab" * 32)).finished_at == "2024-05-01T10:01:00Z"
    assert (await Runtime(tmp_path).status("kubelite://" + "ab" * 32)).finished_at == "2024-05-01T10:01:00Z"
    assert [s.finished_at for s in Runtime(tmp_path).list().values()] == ["2024-05-01T10:01:00Z"]


async def test_a_restart_is_aged_from_the_exit_not_from_the_start(tmp_path: pathlib.Path, clock: Clock) -> None:
    """lastState.terminated.finishedAt, and the RESTARTS column kubectl prints from it."""
    dead_container(tmp_path, "cd" * 32)
    rt = Runtime(tmp_path)
    clock.now = STARTED + 68
    previous = await rt.status("kubelite://" + "cd" * 32)
    cs = ContainerState("c", init=False, restart_count=1, current="kubelite://" + "ef" * 32,
                        previous="kubelite://" + "cd" * 32, prev_status=previous)
    cs.status = runtime_module.ContainerStatus("running", 1, None, format_epoch(STARTED + 69), None, "",
                                               name="c", restart_count=1)
    cs.ready = cs.started = True
    entry = container_status({"name": "c", "image": "busybox"}, cs, "ContainerCreating")
    terminated = entry["lastState"]["terminated"]
    assert (terminated["startedAt"], terminated["finishedAt"]) == ("2024-05-01T10:00:00Z", "2024-05-01T10:01:08Z")
    assert terminated["exitCode"] == 255 and terminated["reason"] == "Unknown"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "creationTimestamp": format_epoch(STARTED - 1)},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]},
           "status": {"phase": "Running", "containerStatuses": [entry],
                      "conditions": [{"type": "Ready", "status": "True"}]}}
    now = dt.datetime.fromtimestamp(STARTED + 74, dt.UTC)  # 6 s after the restart, 74 s after the first start
    [row] = to_table("", "Pod", [pod], now=now)["rows"]
    assert row["cells"][:4] == ["p", "1/1", "Running", "1 (6s ago)"]
