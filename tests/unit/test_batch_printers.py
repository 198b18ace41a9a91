"""``kubectl get jobs`` / ``cronjobs`` columns and cells, as printJob and printCronJob print them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api.printers import to_table

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(kind: str, obj: dict[str, Any]) -> list[Any]:
    out: list[Any] = to_table("batch", kind, [obj], now=NOW)["rows"][0]["cells"]
    return out


def columns(kind: str) -> list[tuple[str, str, int]]:
    return [(c["name"], c["type"], c["priority"]) for c in to_table("batch", kind, [], now=NOW)["columnDefinitions"]]


TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "busybox"}, {"name": "side", "image": "redis"}]}}
SELECTOR = {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}


def job(spec: dict[str, Any], status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "pi", "creationTimestamp": ago(minutes=5), **meta},
            "spec": {"template": TEMPLATE, "selector": SELECTOR, **spec}, "status": status}


def test_job_columns_are_kubectl_133s() -> None:
    assert columns("Job") == [
        ("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0),
        ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1),
    ]
    cols = to_table("batch", "Job", [], now=NOW)["columnDefinitions"]
    assert cols[1]["description"] == "Status of the job."
    assert cols[2]["description"].startswith("The number of pods which reached phase Succeeded.")
    assert cols[7]["description"].startswith("A label query over pods that should match the pod count.")


@pytest.mark.parametrize(
    ("spec", "status", "meta", "expected"),
    [
        ({"completions": 3}, {"succeeded": 1, "startTime": ago(seconds=30)}, {}, ["Running", "1/3", "30s"]),
        ({"completions": 3}, {"succeeded": 3, "startTime": ago(minutes=4), "completionTime": ago(minutes=3),
                              "conditions": [{"type": "Complete", "status": "True"}]}, {}, ["Complete", "3/3", "60s"]),
        ({"parallelism": 2}, {}, {}, ["Running", "0/1 of 2", ""]),
        ({"parallelism": 1}, {"conditions": [{"type": "Failed", "status": "True"}]}, {}, ["Failed", "0/1", ""]),
        ({"completions": 1}, {"conditions": [{"type": "FailureTarget", "status": "True"}]}, {}, ["FailureTarget", "0/1", ""]),
        ({"completions": 1}, {"conditions": [{"type": "Suspended", "status": "True"}]}, {}, ["Suspended", "0/1", ""]),
        ({"completions": 1}, {"conditions": [{"type": "Suspended", "status": "False"}]}, {}, ["Running", "0/1", ""]),
        ({"completions": 1}, {"conditions": [{"type": "Suspended", "status": "True"}]},
         {"deletionTimestamp": ago(seconds=1)}, ["Terminating", "0/1", ""]),
    ],
)
def test_job_status_completions_duration(spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any],
                                         expected: list[str]) -> None:
    row = cells("Job", job(spec, status, **meta))
    assert row[1:4] == expected
    assert row[0] == "pi" and row[4] == "5m"
    assert row[5:] == ["main,side", "busybox,redis", "batch.kubernetes.io/controller-uid=u1"]


def test_cronjob_columns_and_cells() -> None:
    assert columns("CronJob") == [
        ("Name", "string", 0), ("Schedule", "string", 0), ("Timezone", "string", 0), ("Suspend", "boolean", 0),
        ("Active", "integer", 0), ("Last Schedule", "string", 0), ("Age", "string", 0),
        ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1),
    ]
    cj: dict[str, Any] = {"metadata": {"name": "hello", "creationTimestamp": ago(hours=2)},
          "spec": {"schedule": "*/1 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": TEMPLATE}}},
          "status": {}}
    assert cells("CronJob", cj) == ["hello", "*/1 * * * *", "<none>", "False", 0, "<none>", "120m",
                                    "main,side", "busybox,redis", "<none>"]
    cj["spec"] |= {"timeZone": "Europe/Paris", "suspend": True}
    cj["status"] = {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(seconds=42)}
    assert cells("CronJob", cj)[2:6] == ["Europe/Paris", "True", 1, "42s"]
