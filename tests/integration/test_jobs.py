"""Jobs and CronJobs through the real kubectl: create, defaults, validation, tables, suspend.

No node agent runs here: the Job controller's pods stay Pending, which is enough to see the
controller create them (with the job-tracking finalizer), delete them on suspend, and take the
finalizer off when the Job is deleted. Pods that really run are in tests/e2e/test_jobs.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import yaml

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def get(cluster: Cluster, *args: str) -> Obj:
    out: Obj = json.loads(cluster.kubectl("get", *args, "-o", "json", check=True).stdout)
    return out


def wait(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def pods_of(cluster: Cluster, job: str) -> list[Obj]:
    items: list[Obj] = get(cluster, "pods", "-l", f"batch.kubernetes.io/job-name={job}")["items"]
    return items


def test_kubectl_create_job_defaults_pods_and_table(cluster: Cluster) -> None:
    name = uniq("pi")
    out = cluster.kubectl("create", "job", name, "--image=busybox", "--", "echo", "hi", check=True).stdout
    assert out.strip() == f"job.batch/{name} created"
    job = get(cluster, "job", name)
    uid, spec = job["metadata"]["uid"], job["spec"]
    assert {k: spec[k] for k in ("backoffLimit", "completionMode", "completions", "parallelism", "suspend",
                                 "manualSelector", "podReplacementPolicy")} == {
        "backoffLimit": 6, "completionMode": "NonIndexed", "completions": 1, "parallelism": 1, "suspend": False,
        "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed"}
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["metadata"]["labels"]["batch.kubernetes.io/job-name"] == name
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name}
    pods = wait("the Job's pod", lambda: pods_of(cluster, name))
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert pod["spec"]["restartPolicy"] == "Never"
    status = wait("the Job's status", lambda: get(cluster, "job", name).get("status", {}).get("active"))
    assert status == 1
    job = get(cluster, "job", name)
    assert job["status"]["uncountedTerminatedPods"] == {} and job["status"]["ready"] == 0
    events = get(cluster, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    assert [(e["reason"], e["message"], e["source"]["component"]) for e in events] == [
        ("SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", "job-controller")]
    lines = cluster.kubectl("get", "job", name, check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert lines[1].split()[:3] == [name, "Running", "0/1"]
    described = cluster.kubectl("describe", "job", name, check=True).stdout
    assert "Pods Statuses:    1 Active (0 Ready) / 0 Succeeded / 0 Failed" in described
    assert f"Created pod: {pod['metadata']['name']}" in described
    # Deleting the Job deletes its pod; the controller takes the tracking finalizer off the orphan.
    cluster.kubectl("delete", "job", name, check=True)
    wait("the pod to go", lambda: not pods_of(cluster, name), timeout=30)


def test_job_validation_through_kubectl(cluster: Cluster) -> None:
    name = uniq("bad")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"completionMode": "Indexed", "parallelism": 2, "template": {"spec": {
               "containers": [{"name": "c", "image": "busybox"}]}}}}
    res = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f'The Job "{name}" is invalid: \n'
        "* spec.completions: Required value: when completion mode is Indexed\n"
        '* spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"')
    # Once created, the template is immutable.
    ok = uniq("ok")
    cluster.kubectl("create", "job", ok, "--image=busybox", "--", "true", check=True)
    res = cluster.kubectl("set", "image", f"job/{ok}", f"{ok}=redis")
    assert res.returncode == 1 and "spec.template: Invalid value: core.PodTemplateSpec{" in res.stderr
    assert res.stderr.rstrip().endswith("field is immutable")
    cluster.kubectl("delete", "job", ok, check=True)


def test_suspend_deletes_pods_and_resume_recreates(cluster: Cluster) -> None:
    name = uniq("sus")
    cluster.kubectl("create", "job", name, "--image=busybox", "--", "sleep", "60", check=True)
    wait("a pod", lambda: pods_of(cluster, name))
    cluster.kubectl("patch", "job", name, "--type=merge", "-p", '{"spec":{"suspend":true}}', check=True)

    def suspended() -> Obj | None:
        conds = get(cluster, "job", name).get("status", {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Suspended" and c["status"] == "True"), None)

    cond = wait("Suspended", suspended)
    assert (cond["reason"], cond["message"]) == ("JobSuspended", "Job suspended")
    wait("the pod to be deleted", lambda: all(p["metadata"].get("deletionTimestamp") for p in pods_of(cluster, name)))
    row = cluster.kubectl("get", "job", name, "--no-headers", check=True).stdout.split()
    assert row[1] == "Suspended"
    cluster.kubectl("patch", "job", name, "--type=merge", "-p", '{"spec":{"suspend":false}}', check=True)
    wait("a new pod", lambda: [p for p in pods_of(cluster, name) if not p["metadata"].get("deletionTimestamp")])
    conds = get(cluster, "job", name)["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conds] == [("Suspended", "False", "JobResumed")]
    cluster.kubectl("delete", "job", name, check=True)


def test_cronjob_create_table_validation_and_create_job_from(cluster: Cluster) -> None:
    name = uniq("cj")
    cluster.kubectl("create", "cronjob", name, "--image=busybox", "--schedule=0 3 * * *", "--", "date", check=True)
    cj = get(cluster, "cronjob", name)
    spec = cj["spec"]
    assert {k: spec[k] for k in ("concurrencyPolicy", "suspend", "successfulJobsHistoryLimit",
                                 "failedJobsHistoryLimit")} == {
        "concurrencyPolicy": "Allow", "suspend": False, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}
    lines = cluster.kubectl("get", "cronjobs", name, "-o", "wide", check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE",
                                "CONTAINERS", "IMAGES", "SELECTOR"]
    assert lines[1].split()[:8] == [name, "0", "3", "*", "*", "*", "<none>", "False"]
    cluster.kubectl("describe", "cronjob", name, check=True)
    # kubectl create job --from: owned by the CronJob, annotated "manual", the template's spec.
    manual = uniq("manual")
    cluster.kubectl("create", "job", manual, f"--from=cronjob/{name}", check=True)
    job = get(cluster, "job", manual)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("CronJob", name, cj["metadata"]["uid"], True)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]
    wait("the manual Job's pod", lambda: pods_of(cluster, manual))
    # Bad schedules and time zones, in Kubernetes' words.
    bad: Obj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": uniq("x") + "-" + "y" * 50},
           "spec": {"schedule": "TZ=UTC 61 * * * *", "timeZone": "Mars/Olympus", "jobTemplate": {"spec": {
               "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}
    res = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert res.returncode == 1
    n = bad["metadata"]["name"]
    assert res.stderr.strip() == (
        f'The CronJob "{n}" is invalid: \n'
        '* spec.schedule: Invalid value: "TZ=UTC 61 * * * *": end of range (61) above maximum (59): 61\n'
        '* spec.schedule: Invalid value: "TZ=UTC 61 * * * *": cannot use TZ or CRON_TZ in schedule, '
        "use timeZone field instead\n"
        '* spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus\n'
        f'* metadata.name: Invalid value: "{n}": must be no more than 52 characters')
    cluster.kubectl("delete", "cronjob", name, check=True)


def test_an_orphaned_pod_is_adopted_again_and_a_strays_finalizer_removed(cluster: Cluster) -> None:
    name = uniq("adopt")
    cluster.kubectl("create", "job", name, "--image=busybox", "--", "sleep", "60", check=True)
    pod = wait("a pod", lambda: pods_of(cluster, name))[0]
    pod_name, job_uid = pod["metadata"]["name"], get(cluster, "job", name)["metadata"]["uid"]
    # Orphaned (its controller reference removed): the Job's selector still matches it, so the
    # Job adopts it again, with the tracking finalizer.
    cluster.kubectl("patch", "pod", pod_name, "--type=json",
                    "-p", '[{"op": "remove", "path": "/metadata/ownerReferences"}]', check=True)

    def owner_uid() -> str:
        refs = get(cluster, "pod", pod_name)["metadata"].get("ownerReferences") or []
        return str(refs[0]["uid"]) if refs else ""

    wait("the pod adopted again", lambda: owner_uid() == job_uid)
    assert get(cluster, "pod", pod_name)["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    cluster.kubectl("delete", "job", name, "--cascade=orphan", check=True)
    # A stray pod with the finalizer and no Job to adopt it: the controller takes the finalizer
    # off, so that deleting it (or its namespace) does not wait forever.
    stray = uniq("stray")
    cluster.kubectl("apply", "-f", "-", check=True, input=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": stray, "labels": {"app": stray}, "finalizers": ["batch.kubernetes.io/job-tracking"]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    wait("the finalizer removed", lambda: not get(cluster, "pod", stray)["metadata"].get("finalizers"))
    cluster.kubectl("delete", "pod", stray, pod_name, "--wait=false")
