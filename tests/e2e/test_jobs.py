"""Jobs and CronJobs with real pods (catalog busybox) and the real kubectl.

The Job controller's back-off base is shortened for this cluster
(``KUBELITE_JOB_POD_FAILURE_BACKOFF``): a failing Job retries after 0.2 s, 0.4 s... instead of
10 s, 20 s... so that reaching ``backoffLimit`` takes seconds. The CronJob test waits for a
real minute boundary (one test of at most ~70 s).
"""

from __future__ import annotations

import json
import shutil
import time
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
    c = new_cluster(tmp_path_factory.mktemp("jobs"))
    try:
        c.start(agent=True, timeout=60, env={"KUBELITE_JOB_POD_FAILURE_BACKOFF": "0.2"})
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def _json(cluster: Cluster, *args: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl(*args, "-o", "json", check=True).stdout)
    return out


def _job(name: str, command: str, **spec: Any) -> str:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {**spec, "template": {"spec": {
               "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
               "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}]}}}}
    return yaml.safe_dump(job)


def _events(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    items = _json(cluster, "get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def test_job_with_completions_and_parallelism_completes(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job("para", "echo done; sleep 1", completions=3, parallelism=2),
                    check=True)
    # At most two at a time.
    seen_active = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = _json(cluster, "get", "job", "para").get("status") or {}
        seen_active = max(seen_active, int(status.get("active") or 0))
        if status.get("succeeded") == 3:
            break
        time.sleep(0.2)
    assert 1 <= seen_active <= 2
    res = cluster.kubectl("wait", "--for=condition=complete", "job/para", "--timeout=60s", check=True)
    assert res.stdout.strip() == "job.batch/para condition met"
    job = _json(cluster, "get", "job", "para")
    status = job["status"]
    assert status["succeeded"] == 3 and status.get("failed") is None
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert status["conditions"][1]["reason"] == "CompletionsReached"
    assert status["completionTime"] and status["startTime"]
    assert status["uncountedTerminatedPods"] == {} and status["ready"] == 0 and status["terminating"] == 0
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    pods = _json(cluster, "get", "pods", "-l", f"batch.kubernetes.io/controller-uid={uid}")["items"]
    assert len(pods) == 3
    assert all("finalizers" not in p["metadata"] for p in pods)
    assert all(p["metadata"]["labels"]["job-name"] == "para" for p in pods)
    events = _events(cluster, "para")
    assert sum(1 for r, _ in events if r == "SuccessfulCreate") == 3
    assert ("Completed", "Job completed") in events
    # kubectl get: the columns of kubectl 1.33.
    out = cluster.kubectl("get", "jobs", "-o", "wide", check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    row = next(line.split() for line in out[1:] if line.startswith("para "))
    assert row[1:3] == ["Complete", "3/3"] and row[5:7] == ["main", "busybox"]
    # kubectl logs job/NAME finds a pod by the Job's selector.
    assert cluster.kubectl("logs", "job/para", check=True).stdout.strip() == "done"
    described = cluster.kubectl("describe", "job", "para", check=True).stdout
    assert "Pods Statuses:    0 Active (0 Ready) / 3 Succeeded / 0 Failed" in described
    assert "Completions:      3" in described
    # Deleting the Job (kubectl: background propagation) deletes its pods.
    cluster.kubectl("delete", "job", "para", check=True)
    wait_for("the Job's pods to be deleted", lambda: not _json(cluster, "get", "pods", "-l", f"batch.kubernetes.io/controller-uid={uid}")["items"],
             timeout=30)


def test_failing_job_stops_after_backoff_limit(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job("fails", "echo failing; exit 3", backoffLimit=2), check=True)
    res = cluster.kubectl("wait", "--for=condition=failed", "job/fails", "--timeout=60s")
    assert res.returncode == 0, res.stderr
    status = _json(cluster, "get", "job", "fails")["status"]
    assert status["failed"] == 3  # the first try and two retries
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert [c["type"] for c in status["conditions"]] == ["FailureTarget", "Failed"]
    assert ("BackoffLimitExceeded", "Job has reached the specified backoff limit") in _events(cluster, "fails")
    # No new pod once failed.
    time.sleep(1)
    pods = _json(cluster, "get", "pods", "-l", "job-name=fails")["items"]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)
    row = next(line.split() for line in cluster.kubectl("get", "jobs", check=True).stdout.splitlines()
               if line.startswith("fails "))
    assert row[1:3] == ["Failed", "0/1"]


def test_indexed_job_pods_see_their_index(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job("idx", 'echo "index=$JOB_COMPLETION_INDEX host=$(hostname)"',
                                                    completions=3, parallelism=3, completionMode="Indexed"), check=True)
    cluster.kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=60s", check=True)
    status = _json(cluster, "get", "job", "idx")["status"]
    assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3
    pods = _json(cluster, "get", "pods", "-l", "job-name=idx")["items"]
    seen = set()
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert pod["metadata"]["name"].startswith(f"idx-{index}-")
        log = cluster.kubectl("logs", pod["metadata"]["name"], check=True).stdout.strip()
        assert log == f"index={index} host=idx-{index}"
        seen.add(index)
    assert seen == {"0", "1", "2"}


def _cronjob(name: str, schedule: str, command: str, **spec: Any) -> str:
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
          "spec": {"schedule": schedule, **spec, "jobTemplate": {"spec": {"template": {"spec": {
              "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 1,
              "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}]}}}}}}
    return yaml.safe_dump(cj)


def test_cronjob_schedules_and_keeps_history(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_cronjob("tick", "*/1 * * * *", "echo tick",
                                                        successfulJobsHistoryLimit=1), check=True)
    # A manual run from the template: owned by the CronJob, annotated as kubectl does.
    cluster.kubectl("create", "job", "tick-manual", "--from=cronjob/tick", check=True)
    manual = _json(cluster, "get", "job", "tick-manual")
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert manual["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    cluster.kubectl("wait", "--for=condition=complete", "job/tick-manual", "--timeout=60s", check=True)
    assert cluster.kubectl("logs", "job/tick-manual", check=True).stdout.strip() == "tick"

    # The scheduled run, within the next minute (+ slack), named after its minute.
    def scheduled() -> list[Obj]:
        return [j for j in _json(cluster, "get", "jobs")["items"]
                if j["metadata"]["name"].startswith("tick-") and j["metadata"]["name"] != "tick-manual"]

    wait_for("a scheduled Job", scheduled, timeout=75)
    job = scheduled()[0]
    minutes = int(job["metadata"]["name"].rpartition("-")[2])
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert stamp == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(minutes * 60))
    cluster.kubectl("wait", "--for=condition=complete", f"job/{job['metadata']['name']}", "--timeout=60s", check=True)
    # History limit 1: the older (manual) successful Job is deleted.
    wait_for("the manual Job to be deleted", lambda: cluster.kubectl("get", "job", "tick-manual").returncode != 0, timeout=30)
    cj = _json(cluster, "get", "cronjob", "tick")
    assert cj["status"]["lastScheduleTime"] == stamp
    wait_for("lastSuccessfulTime", lambda: (_json(cluster, "get", "cronjob", "tick").get("status") or {}).get("lastSuccessfulTime"), timeout=20)
    events = _events(cluster, "tick")
    assert ("SuccessfulCreate", f"Created job {job['metadata']['name']}") in events
    assert ("SuccessfulDelete", "Deleted job tick-manual") in events
    assert any(r == "SawCompletedJob" for r, _ in events)
    header = cluster.kubectl("get", "cronjobs", check=True).stdout.splitlines()[0].split()
    assert header == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]


def test_deadline_pod_failure_policy_and_ttl(cluster: Cluster) -> None:
    # activeDeadlineSeconds: the running pod is stopped, the Job fails with DeadlineExceeded.
    cluster.kubectl("apply", "-f", "-", input=_job("slow", "sleep 60", activeDeadlineSeconds=2), check=True)
    # podFailurePolicy: exit code 42 fails the Job at once, whatever the backoffLimit.
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                                              "values": [42]}}]}
    cluster.kubectl("apply", "-f", "-", input=_job("fatal", "exit 42", backoffLimit=6, podFailurePolicy=policy),
                    check=True)
    # ttlSecondsAfterFinished: gone (with its pod) two seconds after it completed.
    cluster.kubectl("apply", "-f", "-", input=_job("brief", "true", ttlSecondsAfterFinished=2), check=True)
    for name in ("slow", "fatal"):
        res = cluster.kubectl("wait", "--for=condition=failed", f"job/{name}", "--timeout=60s")
        assert res.returncode == 0, res.stderr
    slow = _json(cluster, "get", "job", "slow")["status"]
    failed = next(c for c in slow["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("DeadlineExceeded", "Job was active longer than specified deadline")
    assert slow.get("active") is None and slow["terminating"] == 0
    fatal = _json(cluster, "get", "job", "fatal")["status"]
    failed = next(c for c in fatal["conditions"] if c["type"] == "Failed")
    pod = _json(cluster, "get", "pods", "-l", "job-name=fatal")["items"][0]["metadata"]["name"]
    assert (failed["reason"], failed["message"]) == (
        "PodFailurePolicy", f"Container main for pod default/{pod} failed with exit code 42 matching FailJob rule at index 0")
    assert fatal["failed"] == 1
    wait_for("the finished Job to be deleted after its TTL",
             lambda: cluster.kubectl("get", "job", "brief").returncode != 0, timeout=30)
    wait_for("its pod to be deleted", lambda: not _json(cluster, "get", "pods", "-l", "job-name=brief")["items"],
             timeout=30)
