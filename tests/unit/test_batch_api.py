"""Job and CronJob defaults, the generated selector and validation, in Kubernetes' words."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.defaults import apply_defaults, prepare_job_create
from kubelite.api.validation import validate

UID = "0d7c5e6f-1111-2222-3333-444455556666"


def job(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": UID, "resourceVersion": "7"},
            "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "busybox"}],
                                           "restartPolicy": "Never"}}, **spec}}


def created(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server does on create: the strategy's preparation, then the defaults."""
    prepare_job_create(obj)
    apply_defaults("batch", "Job", obj)
    return obj


def errors(obj: dict[str, Any], old: dict[str, Any] | None = None, kind: str = "Job") -> list[str]:
    return [str(e) for e in validate("batch", kind, obj, old)]


def test_job_defaults_and_generated_selector() -> None:
    j = created(job())
    spec = j["spec"]
    assert {k: spec[k] for k in ("completions", "parallelism", "backoffLimit", "completionMode", "suspend",
                                 "manualSelector", "podReplacementPolicy")} == {
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": False,
        "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed"}
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}
    generated = {"batch.kubernetes.io/controller-uid": UID, "batch.kubernetes.io/job-name": "pi",
                 "controller-uid": UID, "job-name": "pi"}
    assert spec["template"]["metadata"]["labels"] == generated
    # The Job itself gets the generated labels (kube-apiserver defaults the stored object again).
    assert j["metadata"]["labels"] == generated
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert errors(j) == []


def test_job_defaults_keep_a_template_labelled_job_s_own_labels() -> None:
    j = job()
    j["spec"]["template"]["metadata"] = {"labels": {"app": "pi"}}
    created(j)
    assert j["metadata"]["labels"] == {"app": "pi"}
    assert j["spec"]["template"]["metadata"]["labels"]["app"] == "pi"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"parallelism": 3}, {"parallelism": 3, "backoffLimit": 6}),
        ({"completions": 5}, {"completions": 5, "parallelism": 1}),
        ({"backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 2}, {"backoffLimit": 2147483647}),
        ({"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}},
         {"podReplacementPolicy": "Failed"}),
    ],
)
def test_job_default_rules(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    j = created(job(**spec))
    assert {k: j["spec"].get(k) for k in expected} == expected
    if "parallelism" in spec and "completions" not in spec:
        assert "completions" not in j["spec"]
    for rule in (j["spec"].get("podFailurePolicy") or {}).get("rules", []):
        assert rule["onPodConditions"][0]["status"] == "True"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"restartPolicy": "Always"},
         'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'),
        ({"restartPolicy": "Sometimes"},
         'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "OnFailure", "Never"'),
    ],
)
def test_job_restart_policy(change: dict[str, Any], message: str) -> None:
    j = job()
    j["spec"]["template"]["spec"].update(change)
    assert message in errors(created(j))


def test_indexed_job_needs_completions_and_short_names() -> None:
    j = created(job(completionMode="Indexed", parallelism=2))
    assert "spec.completions: Required value: when completion mode is Indexed" in errors(j)
    long_name = "a" * 62
    j = job(completionMode="Indexed", completions=10)
    j["metadata"]["name"] = long_name
    assert (f'metadata.name: Invalid value: "{long_name}": will not able to create pod with invalid DNS label: '
            f"{long_name}-9") in errors(created(j))


def test_job_numbers_and_pod_failure_policy() -> None:
    j = created(job(backoffLimit=-1, parallelism=-2, activeDeadlineSeconds=-3))
    errs = errors(j)
    assert "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0" in errs
    assert "spec.parallelism: Invalid value: -2: must be greater than or equal to 0" in errs
    assert "spec.activeDeadlineSeconds: Invalid value: -3: must be greater than or equal to 0" in errs
    j = job(podFailurePolicy={"rules": [{"action": "Explode", "onExitCodes": {"operator": "In", "values": [0, 3]}}]})
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    errs = errors(created(j))
    assert ('spec.podFailurePolicy.rules[0].action: Unsupported value: "Explode": supported values: '
            '"Count", "FailIndex", "FailJob", "Ignore"') in errs
    assert "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator" in errs
    assert ('spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
            "podFailurePolicy is specified") in errs


def test_generated_labels_must_be_intact() -> None:
    j = created(job())
    j["spec"]["template"]["metadata"]["labels"]["job-name"] = "other"
    assert "spec.template.metadata.labels[job-name]: Invalid value: \"other\": must be 'pi'" in errors(j)
    j = created(job(selector={"matchLabels": {"app": "x"}}))
    j["spec"]["template"]["metadata"]["labels"]["app"] = "x"
    assert any(e.endswith("`selector` not auto-generated") and e.startswith("spec.selector: Invalid value: &LabelSelector")
               for e in errors(j))


def test_job_update_immutability_and_suspended_scheduling_directives() -> None:
    old = created(job(completions=3))
    old["status"] = {"startTime": "2025-01-01T00:00:00Z"}
    new = copy.deepcopy(old)
    new["spec"]["completions"] = 4
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "redis"
    errs = errors(new, old)
    assert "spec.completions: Invalid value: 4: field is immutable" in errs
    assert any(e.startswith("spec.template: Invalid value: core.PodTemplateSpec{") and e.endswith("field is immutable")
               for e in errs)
    new = copy.deepcopy(old)
    new["spec"]["parallelism"] = 5
    assert errors(new, old) == []
    # A Job suspended from the start may still be told where to run.
    old = created(job(suspend=True))
    old["status"] = {}
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert errors(new, old) == []
    old["status"] = {"startTime": "2025-01-01T00:00:00Z"}
    assert any(e.startswith("spec.template: Invalid value") for e in errors(new, old))


def cronjob(name: str = "hello", **spec: Any) -> dict[str, Any]:
    cj: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "hello", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}, **spec}}
    apply_defaults("batch", "CronJob", cj)
    return cj


def test_cronjob_defaults() -> None:
    spec = cronjob()["spec"]
    assert {k: spec[k] for k in ("concurrencyPolicy", "suspend", "successfulJobsHistoryLimit",
                                 "failedJobsHistoryLimit")} == {
        "concurrencyPolicy": "Allow", "suspend": False, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}
    job_spec = spec["jobTemplate"]["spec"]
    # The Job defaults are the created Job's business, not the template's.
    assert "completions" not in job_spec and "backoffLimit" not in job_spec
    assert job_spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert errors(cronjob(), kind="CronJob") == []


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("foo", 'spec.schedule: Invalid value: "foo": expected exactly 5 fields, found 1: [foo]'),
        ("61 * * * *", 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'),
        ("@fortnightly", 'spec.schedule: Invalid value: "@fortnightly": unrecognized descriptor: @fortnightly'),
        ("TZ=UTC 0 * * * *",
         'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead'),
        ("*/0 * * * *", 'spec.schedule: Invalid value: "*/0 * * * *": step of range should be a positive number: */0'),
        ("x * * * *", 'spec.schedule: Invalid value: "x * * * *": failed to parse int from x: '
                      'strconv.Atoi: parsing "x": invalid syntax'),
    ],
)
def test_cronjob_schedule_errors(schedule: str, message: str) -> None:
    assert message in errors(cronjob(schedule=schedule), kind="CronJob")


def test_cronjob_time_zone_name_and_template_rules() -> None:
    assert errors(cronjob(timeZone="Europe/Paris"), kind="CronJob") == []
    assert 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus' in errors(
        cronjob(timeZone="Mars/Olympus"), kind="CronJob")
    assert 'spec.timeZone: Invalid value: "": timeZone must be nil or non-empty string' in errors(
        cronjob(timeZone=""), kind="CronJob")
    long_name = "c" * 53
    assert f'metadata.name: Invalid value: "{long_name}": must be no more than 52 characters' in errors(
        cronjob(long_name), kind="CronJob")
    assert errors(cronjob("c" * 52), kind="CronJob") == []
    cj = cronjob(concurrencyPolicy="Sometimes")
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    errs = errors(cj, kind="CronJob")
    assert ('spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"'
            in errs)
    assert ('spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
            in errs)


def test_success_policy_validation() -> None:
    ok = created(job(completionMode="Indexed", completions=5, parallelism=5,
                     successPolicy={"rules": [{"succeededIndexes": "0,2-3", "succeededCount": 2}]}))
    assert errors(ok) == []
    bad = created(job(completions=5, successPolicy={"rules": [{"succeededCount": 9}]}))
    assert 'spec.successPolicy: Invalid value: "NonIndexed": requires indexed completion mode' in errors(bad)
    bad = created(job(completionMode="Indexed", completions=5, parallelism=1,
                      successPolicy={"rules": [{}, {"succeededIndexes": "0-1", "succeededCount": 3}]}))
    errs = errors(bad)
    assert ("spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes "
            "must be specified") in errs
    assert ("spec.successPolicy.rules[1].succeededCount: Invalid value: 3: must be less than or equal to 2 "
            "(the number of indexes in the specified succeededIndexes field)") in errs
