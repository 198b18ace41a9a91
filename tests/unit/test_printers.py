"""Tables for ``kubectl get``: columns and cells as kube-apiserver prints them.

Expected cells come from Kubernetes' own printers_test.go cases where they exist, and from
reading printers.go where they do not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api.errors import StatusError
from kubelite.api.printers import human_duration, to_table
from kubelite.api.printers.kinds import printers
from kubelite.api.registry import RESOURCES

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(minutes=5), **extra}


def cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    table = to_table(group, kind, [obj], now=NOW)
    row_cells: list[Any] = table["rows"][0]["cells"]
    return row_cells


def column_names(group: str, kind: str) -> list[tuple[str, int]]:
    table = to_table(group, kind, [], now=NOW)
    return [(c["name"], c["priority"]) for c in table["columnDefinitions"]]


# --- HumanDuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(milliseconds=-500), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119, milliseconds=999), "119s"),
        (timedelta(seconds=120), "2m"),
        (timedelta(seconds=150), "2m30s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(minutes=179, seconds=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=25), "3h25m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=2, hours=5), "2d5h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=730 + 34), "2y34d"),
        (timedelta(days=365 * 8 - 1), "7y364d"),
        (timedelta(days=365 * 8), "8y"),
        (timedelta(days=365 * 10 + 100), "10y"),
    ],
)
def test_human_duration(delta: timedelta, expected: str) -> None:
    assert human_duration(delta) == expected


def test_missing_creation_timestamp_is_unknown() -> None:
    assert cells("", "ConfigMap", {"metadata": {"name": "c"}})[2] == "<unknown>"


def test_age_is_measured_from_now() -> None:
    ns = {
        "metadata": {"name": "ns", "creationTimestamp": ago(days=3, hours=4)},
        "status": {"phase": "Active"},
    }
    assert cells("", "Namespace", ns) == ["ns", "Active", "3d4h"]


# --- Columns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "kind", "expected"),
    [
        ("", "Namespace", [("Name", 0), ("Status", 0), ("Age", 0)]),
        (
            "",
            "Pod",
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1),
            ],
        ),
        (
            "",
            "Service",
            [
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1),
            ],
        ),
        ("", "Endpoints", [("Name", 0), ("Endpoints", 0), ("Age", 0)]),
        ("", "ConfigMap", [("Name", 0), ("Data", 0), ("Age", 0)]),
        ("", "Secret", [("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)]),
        ("", "ServiceAccount", [("Name", 0), ("Secrets", 0), ("Age", 0)]),
        (
            "",
            "Event",
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ],
        ),
        (
            "",
            "Node",
            [
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1),
            ],
        ),
        (
            "apps",
            "Deployment",
            [
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "apps",
            "ReplicaSet",
            [
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            [("Name", 0), ("AddressType", 0), ("Ports", 0), ("Endpoints", 0), ("Age", 0)],
        ),
        ("coordination.k8s.io", "Lease", [("Name", 0), ("Holder", 0), ("Age", 0)]),
        ("networking.k8s.io", "IPAddress", [("Name", 0), ("ParentRef", 0)]),
        ("networking.k8s.io", "ServiceCIDR", [("Name", 0), ("CIDRs", 0), ("Age", 0)]),
        ("", "LimitRange", [("Name", 0), ("Created At", 0)]),
        ("", "ResourceQuota", [("Name", 0), ("Age", 0), ("Request", 0), ("Limit", 0)]),
        (
            "certificates.k8s.io", "CertificateSigningRequest",
            [("Name", 0), ("Age", 0), ("SignerName", 0), ("Requestor", 0), ("RequestedDuration", 0), ("Condition", 0)],
        ),
    ],
)
def test_columns(group: str, kind: str, expected: list[tuple[str, int]]) -> None:
    assert column_names(group, kind) == expected


# Kinds whose kube-apiserver printer really is Name + Created At (printLimitRange).
CREATED_AT_PRINTERS = {("", "LimitRange"), ("rbac.authorization.k8s.io", "Role"),
                       ("rbac.authorization.k8s.io", "ClusterRole")}


def test_every_served_kind_has_its_own_printer() -> None:
    for r in RESOURCES:
        if r.verbs == ("create",):
            continue  # the review kinds: answered once, never listed, so never printed
        names = [name for name, _ in column_names(r.group, r.kind)]
        if (r.group, r.kind) in CREATED_AT_PRINTERS:
            assert (r.group, r.kind) in printers(), r.kind
            continue
        assert "Created At" not in names, r.kind


def test_column_definition_shape() -> None:
    cols = to_table("", "Pod", [], now=NOW)["columnDefinitions"]
    assert cols[0]["format"] == "name"
    assert cols[0]["description"].startswith("Name must be unique within a namespace.")
    assert cols[3] == {
        "name": "Restarts",
        "type": "string",
        "format": "",
        "description": "The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted.",
        "priority": 0,
    }
    assert cols[5]["description"].startswith("podIP address allocated to the pod.")
    assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in cols)


def test_events_k8s_io_event_columns_equal_core_event_columns() -> None:
    core = to_table("", "Event", [], now=NOW)["columnDefinitions"]
    assert to_table("events.k8s.io", "Event", [], now=NOW)["columnDefinitions"] == core


# --- Pod ----------------------------------------------------------------------------------


def pod(name: str, containers: int = 1, init: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)],
            "initContainers": [{"name": f"i{i}", "image": "busybox"} for i in range(init)],
        },
        "status": status,
    }


RUNNING: dict[str, Any] = {"running": {"startedAt": ago(minutes=1)}}


def finished(**kw: float) -> dict[str, Any]:
    return {"terminated": {"exitCode": 1, "finishedAt": ago(**kw)}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        # The cases of Kubernetes' TestPrintPod.
        (
            pod(
                "test1",
                2,
                phase="podPhase",
                containerStatuses=[{"ready": True, "restartCount": 3, "state": RUNNING}, {"restartCount": 3}],
            ),
            ["test1", "1/2", "podPhase", "6", "<unknown>"],
        ),
        (
            pod(
                "test2",
                2,
                phase="podPhase",
                containerStatuses=[
                    {"ready": True, "restartCount": 3, "state": RUNNING},
                    {"restartCount": 3, "state": {"waiting": {"reason": "ContainerWaitingReason"}}},
                ],
            ),
            ["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>"],
        ),
        (
            pod(
                "test3",
                2,
                phase="podPhase",
                containerStatuses=[
                    {"restartCount": 3, "state": {"waiting": {"reason": "ContainerWaitingReason"}}},
                    {"restartCount": 3, "state": {"terminated": {"reason": "ContainerTerminatedReason"}}},
                ],
            ),
            ["test3", "0/2", "ContainerWaitingReason", "6", "<unknown>"],
        ),
        (
            pod(
                "test5",
                2,
                phase="podPhase",
                reason="podReason",
                containerStatuses=[
                    {"ready": True, "restartCount": 3, "state": RUNNING},
                    {"ready": True, "restartCount": 3},
                ],
            ),
            ["test5", "1/2", "podReason", "6", "<unknown>"],
        ),
        (
            pod(
                "test6",
                2,
                phase="Running",
                containerStatuses=[
                    {
                        "ready": True,
                        "restartCount": 3,
                        "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                    },
                    {"ready": True, "restartCount": 3, "state": RUNNING},
                ],
            ),
            ["test6", "1/2", "NotReady", "6", "<unknown>"],
        ),
        (
            pod(
                "test6b",
                2,
                phase="Running",
                conditions=[{"type": "Ready", "status": "True"}],
                containerStatuses=[
                    {
                        "ready": True,
                        "restartCount": 3,
                        "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                    },
                    {"ready": True, "restartCount": 3, "state": RUNNING},
                ],
            ),
            ["test6b", "1/2", "Running", "6", "<unknown>"],
        ),
        (
            pod(
                "test7",
                1,
                1,
                phase="podPhase",
                initContainerStatuses=[
                    {"restartCount": 3, "state": RUNNING, "lastState": finished(seconds=10)}
                ],
                containerStatuses=[{"restartCount": 0, "state": {"waiting": {}}}],
            ),
            ["test7", "0/1", "Init:0/1", "3 (10s ago)", "<unknown>"],
        ),
        (
            pod(
                "test9",
                1,
                2,
                phase="podPhase",
                initContainerStatuses=[
                    {"state": {"terminated": {"exitCode": 0}}},
                    {"restartCount": 3, "state": RUNNING, "lastState": finished(seconds=10)},
                ],
                containerStatuses=[{"state": {"waiting": {}}}],
            ),
            ["test9", "0/1", "Init:1/2", "3 (10s ago)", "<unknown>"],
        ),
        (
            pod(
                "test10",
                1,
                2,
                phase="podPhase",
                initContainerStatuses=[
                    {
                        "restartCount": 2,
                        "state": {"terminated": {"exitCode": 0}},
                        "lastState": finished(minutes=2),
                    },
                    {"restartCount": 3, "state": RUNNING, "lastState": finished(seconds=10)},
                ],
                containerStatuses=[{"state": {"waiting": {}}}],
            ),
            ["test10", "0/1", "Init:1/2", "5 (10s ago)", "<unknown>"],
        ),
        (
            pod(
                "test11",
                1,
                1,
                phase="Running",
                initContainerStatuses=[
                    {
                        "restartCount": 2,
                        "state": {"terminated": {"exitCode": 0}},
                        "lastState": finished(minutes=2),
                    }
                ],
                containerStatuses=[{"restartCount": 4, "state": RUNNING, "lastState": finished(seconds=20)}],
            ),
            ["test11", "0/1", "Running", "4 (20s ago)", "<unknown>"],
        ),
        (
            pod(
                "test14",
                2,
                phase="Running",
                containerStatuses=[
                    {"ready": True, "restartCount": 6, "state": RUNNING, "lastState": finished(days=5)},
                    {"ready": True, "restartCount": 3, "state": RUNNING, "lastState": finished(days=20)},
                ],
            ),
            ["test14", "2/2", "Running", "9 (5d ago)", "<unknown>"],
        ),
        (
            pod(
                "test15",
                2,
                phase="podPhase",
                conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            ),
            ["test15", "0/2", "SchedulingGated", "0", "<unknown>"],
        ),
        (
            pod(
                "test17",
                1,
                phase="Failed",
                containerStatuses=[{"state": {"terminated": {"reason": "Error", "exitCode": 1}}}],
            ),
            ["test17", "0/1", "Error", "0", "<unknown>"],
        ),
        # Crash looping, as a kubelet reports it.
        (
            pod(
                "crash",
                1,
                phase="Running",
                containerStatuses=[
                    {
                        "restartCount": 5,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(seconds=45)}
                        },
                    }
                ],
            ),
            ["crash", "0/1", "CrashLoopBackOff", "5 (45s ago)", "<unknown>"],
        ),
        (
            pod(
                "init-crash",
                1,
                2,
                phase="Pending",
                initContainerStatuses=[
                    {
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=3)}},
                    }
                ],
            ),
            ["init-crash", "0/1", "Init:CrashLoopBackOff", "4 (3m ago)", "<unknown>"],
        ),
        (
            pod(
                "init-error",
                1,
                1,
                phase="Failed",
                initContainerStatuses=[{"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
            ),
            ["init-error", "0/1", "Init:Error", "0", "<unknown>"],
        ),
        (
            pod(
                "init-signal",
                1,
                1,
                phase="Pending",
                initContainerStatuses=[{"state": {"terminated": {"exitCode": 137, "signal": 9}}}],
            ),
            ["init-signal", "0/1", "Init:Signal:9", "0", "<unknown>"],
        ),
        (
            pod(
                "init-exit",
                1,
                1,
                phase="Pending",
                initContainerStatuses=[{"state": {"terminated": {"exitCode": 3}}}],
            ),
            ["init-exit", "0/1", "Init:ExitCode:3", "0", "<unknown>"],
        ),
        # PodInitializing is not a reason to show: the pod is just at its first init container.
        (
            pod(
                "init-starting",
                1,
                1,
                phase="Pending",
                initContainerStatuses=[{"state": {"waiting": {"reason": "PodInitializing"}}}],
            ),
            ["init-starting", "0/1", "Init:0/1", "0", "<unknown>"],
        ),
        (
            pod(
                "signal",
                1,
                phase="Running",
                containerStatuses=[{"state": {"terminated": {"exitCode": 143, "signal": 15}}}],
            ),
            ["signal", "0/1", "Signal:15", "0", "<unknown>"],
        ),
        (
            pod(
                "exitcode", 1, phase="Running", containerStatuses=[{"state": {"terminated": {"exitCode": 2}}}]
            ),
            ["exitcode", "0/1", "ExitCode:2", "0", "<unknown>"],
        ),
        (pod("pending", 2, phase="Pending"), ["pending", "0/2", "Pending", "0", "<unknown>"]),
    ],
)
def test_pod_status(obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells("", "Pod", obj)[:5] == expected


def test_completed_pod_has_row_condition() -> None:
    obj = pod(
        "done",
        phase="Succeeded",
        containerStatuses=[{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}],
    )
    row = to_table("", "Pod", [obj], now=NOW)["rows"][0]
    assert row["cells"][:5] == ["done", "0/1", "Completed", "0", "<unknown>"]
    assert row["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    failed = to_table("", "Pod", [pod("f", phase="Failed")], now=NOW)["rows"][0]
    assert failed["conditions"][0]["reason"] == "Failed"
    assert "conditions" not in to_table("", "Pod", [pod("r", phase="Running")], now=NOW)["rows"][0]


def test_terminating_pod() -> None:
    obj = pod("t", phase="Running", containerStatuses=[{"ready": True, "state": RUNNING}])
    obj["metadata"]["deletionTimestamp"] = ago(seconds=10)
    assert cells("", "Pod", obj)[:3] == ["t", "1/1", "Terminating"]
    # A pod that already finished keeps its final status while it is being deleted.
    done = pod(
        "d",
        phase="Succeeded",
        containerStatuses=[{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}],
    )
    done["metadata"]["deletionTimestamp"] = ago(seconds=10)
    assert cells("", "Pod", done)[2] == "Completed"


def test_pod_on_lost_node_is_unknown() -> None:
    obj = pod("lost", phase="Running", reason="NodeLost")
    obj["metadata"]["deletionTimestamp"] = ago(seconds=10)
    assert cells("", "Pod", obj)[2] == "Unknown"
    del obj["metadata"]["deletionTimestamp"]
    assert cells("", "Pod", obj)[2] == "NodeLost"


def test_sidecar_containers_count_as_containers() -> None:
    obj = pod(
        "side",
        1,
        phase="Running",
        conditions=[{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        initContainerStatuses=[
            {
                "name": "i0",
                "started": True,
                "ready": True,
                "restartCount": 2,
                "state": RUNNING,
                "lastState": finished(minutes=4),
            }
        ],
        containerStatuses=[
            {
                "name": "c0",
                "ready": True,
                "restartCount": 1,
                "state": RUNNING,
                "lastState": finished(minutes=7),
            }
        ],
    )
    obj["spec"]["initContainers"] = [{"name": "i0", "image": "envoy", "restartPolicy": "Always"}]
    assert cells("", "Pod", obj)[:4] == ["side", "2/2", "Running", "3 (4m ago)"]


def test_pod_wide_cells() -> None:
    obj = pod("w", phase="Running", podIP="10.244.0.7", podIPs=[{"ip": "10.244.0.7"}])
    obj["spec"]["nodeName"] = "node-1"
    obj["spec"]["readinessGates"] = [{"conditionType": "example.com/a"}, {"conditionType": "example.com/b"}]
    obj["status"]["conditions"] = [{"type": "example.com/a", "status": "True"}]
    assert cells("", "Pod", obj)[5:] == ["10.244.0.7", "node-1", "<none>", "1/2"]
    assert cells("", "Pod", pod("bare"))[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_pod_age_and_restarts_cell_types() -> None:
    obj = pod("a", phase="Running")
    obj["metadata"]["creationTimestamp"] = ago(minutes=2, seconds=30)
    row = cells("", "Pod", obj)
    assert row[3] == "0" and row[4] == "2m30s"


# --- Service ------------------------------------------------------------------------------


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": meta(name), "spec": spec}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            service(
                "web",
                type="ClusterIP",
                clusterIP="10.96.12.3",
                clusterIPs=["10.96.12.3"],
                ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                selector={"app": "web"},
            ),
            ["web", "ClusterIP", "10.96.12.3", "<none>", "80/TCP", "5m", "app=web"],
        ),
        (
            service(
                "np",
                type="NodePort",
                clusterIPs=["10.96.0.20"],
                ports=[
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "nodePort": 30053, "protocol": "UDP"},
                ],
                selector={"tier": "fe", "app": "x"},
            ),
            ["np", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53:30053/UDP", "5m", "app=x,tier=fe"],
        ),
        (
            service(
                "lb",
                type="LoadBalancer",
                clusterIPs=["10.96.0.30"],
                ports=[{"port": 443, "nodePort": 31443, "protocol": "TCP"}],
            ),
            ["lb", "LoadBalancer", "10.96.0.30", "<pending>", "443:31443/TCP", "5m", "<none>"],
        ),
        (
            service("ext", type="ExternalName", externalName="db.example.com"),
            ["ext", "ExternalName", "<none>", "db.example.com", "<none>", "5m", "<none>"],
        ),
        (
            service(
                "headless",
                type="ClusterIP",
                clusterIP="None",
                clusterIPs=["None"],
                ports=[{"port": 5432, "protocol": "TCP"}],
                selector={"app": "db"},
            ),
            ["headless", "ClusterIP", "None", "<none>", "5432/TCP", "5m", "app=db"],
        ),
        (
            service(
                "eip",
                type="ClusterIP",
                clusterIPs=["10.96.0.40"],
                externalIPs=["192.0.2.1", "192.0.2.2"],
                ports=[{"port": 80, "protocol": "SCTP"}],
            ),
            ["eip", "ClusterIP", "10.96.0.40", "192.0.2.1,192.0.2.2", "80/SCTP", "5m", "<none>"],
        ),
        # Defaults a real API server would have applied on decode: ClusterIP, TCP.
        (
            service("defaults", clusterIPs=["10.96.0.50"], ports=[{"port": 8080}]),
            ["defaults", "ClusterIP", "10.96.0.50", "<none>", "8080/TCP", "5m", "<none>"],
        ),
    ],
)
def test_service(obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells("", "Service", obj) == expected


def test_load_balancer_with_ingress_and_external_ips() -> None:
    obj = service(
        "lb",
        type="LoadBalancer",
        clusterIPs=["10.96.0.30"],
        externalIPs=["192.0.2.9"],
        ports=[{"port": 80, "nodePort": 30000, "protocol": "TCP"}],
    )
    obj["status"] = {
        "loadBalancer": {
            "ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.5"}]
        }
    }
    assert cells("", "Service", obj)[3] == "203.0.113.5,lb.example.com,192.0.2.9"
    del obj["spec"]["externalIPs"]
    # Server-side printing is always wide: no 16-character clipping of the address list.
    assert cells("", "Service", obj)[3] == "203.0.113.5,lb.example.com"


# --- Endpoints and EndpointSlices ---------------------------------------------------------


def test_endpoints_more_than_three() -> None:
    ep = {
        "metadata": meta("web"),
        "subsets": [
            {
                "addresses": [{"ip": f"10.244.0.{i}"} for i in range(1, 6)],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    }
    assert cells("", "Endpoints", ep) == [
        "web",
        "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more...",
        "5m",
    ]


def test_endpoints_counts_every_port_of_every_subset() -> None:
    ep = {
        "metadata": meta("multi"),
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]},
        ],
    }
    assert cells("", "Endpoints", ep)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
    exactly_three = {
        "metadata": meta("three"),
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "fd00::1"}, {"ip": "10.0.0.3"}], "ports": [{"port": 53}]},
        ],
    }
    assert cells("", "Endpoints", exactly_three)[1] == "10.0.0.1:80,[fd00::1]:53,10.0.0.3:53"


def test_endpoints_headless_and_empty() -> None:
    headless = {"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]}
    assert cells("", "Endpoints", headless)[1] == "10.0.0.1,10.0.0.2"
    assert cells("", "Endpoints", {"metadata": meta("none")})[1] == "<none>"
    # Subsets with only not-ready addresses print nothing at all, as in Kubernetes.
    not_ready = {
        "metadata": meta("nr"),
        "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
    }
    assert cells("", "Endpoints", not_ready)[1] == ""


def test_endpoint_slice() -> None:
    es = {
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"10.244.0.{i}"]} for i in range(1, 5)],
    }
    assert cells("discovery.k8s.io", "EndpointSlice", es) == [
        "web-abc12",
        "IPv4",
        "8080,metrics",
        "10.244.0.1,10.244.0.2,10.244.0.3 + 1 more...",
        "5m",
    ]
    empty = {"metadata": meta("empty"), "addressType": "IPv6", "ports": [{}], "endpoints": []}
    assert cells("discovery.k8s.io", "EndpointSlice", empty) == ["empty", "IPv6", "*", "<unset>", "5m"]
    no_ports = {"metadata": meta("np"), "addressType": "IPv4"}
    assert cells("discovery.k8s.io", "EndpointSlice", no_ports)[2] == "<unset>"


def test_endpoint_slice_ports_beyond_three() -> None:
    es = {
        "metadata": meta("p"),
        "addressType": "IPv4",
        "ports": [{"port": p} for p in (1, 2, 3, 4, 5)],
        "endpoints": [{"addresses": ["10.0.0.1"]}],
    }
    assert cells("discovery.k8s.io", "EndpointSlice", es)[2:4] == ["1,2,3 + 2 more...", "10.0.0.1"]


# --- Simple kinds -------------------------------------------------------------------------


def test_configmap_secret_serviceaccount_namespace() -> None:
    cm = {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells("", "ConfigMap", cm) == ["cfg", 3, "5m"]
    secret = {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}
    assert cells("", "Secret", secret) == ["tls", "kubernetes.io/tls", 2, "5m"]
    assert cells("", "Secret", {"metadata": meta("o")}) == ["o", "Opaque", 0, "5m"]
    sa = {"metadata": meta("default"), "secrets": [{"name": "tok"}]}
    assert cells("", "ServiceAccount", sa) == ["default", 1, "5m"]
    assert cells("", "ServiceAccount", {"metadata": meta("bare")}) == ["bare", 0, "5m"]
    ns = {"metadata": meta("gone"), "status": {"phase": "Terminating"}}
    assert cells("", "Namespace", ns) == ["gone", "Terminating", "5m"]


def test_lease_ipaddress_servicecidr() -> None:
    lease = {"metadata": meta("kube-controller-manager"), "spec": {"holderIdentity": "host_1234"}}
    assert cells("coordination.k8s.io", "Lease", lease) == ["kube-controller-manager", "host_1234", "5m"]
    assert cells("coordination.k8s.io", "Lease", {"metadata": meta("free"), "spec": {}}) == ["free", "", "5m"]
    ip = {
        "metadata": meta("10.96.0.10"),
        "spec": {
            "parentRef": {"group": "", "resource": "services", "namespace": "kube-system", "name": "kube-dns"}
        },
    }
    # Kubernetes prints an age cell beyond the two columns; kubectl ignores it.
    assert cells("networking.k8s.io", "IPAddress", ip) == [
        "10.96.0.10",
        "services/kube-system/kube-dns",
        "5m",
    ]
    grouped = {
        "metadata": meta("10.0.0.1"),
        "spec": {"parentRef": {"group": "Gateway.Networking.K8s.io", "resource": "Gateways", "name": "g"}},
    }
    assert cells("networking.k8s.io", "IPAddress", grouped)[1] == "gateways.gateway.networking.k8s.io/g"
    assert cells("networking.k8s.io", "IPAddress", {"metadata": meta("x"), "spec": {}})[1] == "<none>"
    cidr = {"metadata": meta("kubernetes"), "spec": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/112"]}}
    assert cells("networking.k8s.io", "ServiceCIDR", cidr) == [
        "kubernetes",
        "10.96.0.0/12,fd00:10:96::/112",
        "5m",
    ]


# --- Node ---------------------------------------------------------------------------------


def node(name: str, ready: str | None = "True", **extra: Any) -> dict[str, Any]:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": name, "creationTimestamp": ago(days=20), "labels": extra.pop("labels", {})},
        "spec": extra.pop("spec", {}),
        "status": {
            "conditions": conditions,
            "addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": "172.18.0.2"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0-18-amd64",
                "containerRuntimeVersion": "kubelite://0.1.0",
            },
        },
    }


def test_node() -> None:
    n = node(
        "kubelite",
        labels={
            "node-role.kubernetes.io/control-plane": "",
            "kubernetes.io/role": "worker",
            "node-role.kubernetes.io/": "x",
        },
    )
    assert cells("", "Node", n) == [
        "kubelite",
        "Ready",
        "control-plane,worker",
        "20d",
        "v1.33.0",
        "172.18.0.2",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0-18-amd64",
        "kubelite://0.1.0",
    ]


def test_node_status_variants() -> None:
    assert cells("", "Node", node("a", spec={"unschedulable": True}))[1:3] == [
        "Ready,SchedulingDisabled",
        "<none>",
    ]
    assert cells("", "Node", node("b", ready="Unknown"))[1] == "NotReady"
    assert cells("", "Node", node("c", ready=None))[1] == "Unknown"
    assert (
        cells("", "Node", node("d", ready=None, spec={"unschedulable": True}))[1]
        == "Unknown,SchedulingDisabled"
    )
    bare = {"metadata": {"name": "e"}, "status": {}}
    assert cells("", "Node", bare) == [
        "e",
        "Unknown",
        "<none>",
        "<unknown>",
        "",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]


# --- Events -------------------------------------------------------------------------------


def test_core_event() -> None:
    ev = {
        "metadata": meta("web-1.17a"),
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(minutes=30),
        "lastTimestamp": ago(seconds=40),
        "count": 12,
    }
    assert cells("", "Event", ev) == [
        "40s",
        "Warning",
        "BackOff",
        "pod/web-1",
        "spec.containers{web}",
        "kubelet, node-1",
        "Back-off restarting failed container",
        "30m",
        12,
        "web-1.17a",
    ]


def test_core_event_of_new_api_shape() -> None:
    # Recorded by the events.k8s.io API: no count, eventTime instead of firstTimestamp.
    ev = {
        "metadata": meta("ns.1"),
        "involvedObject": {"kind": "Namespace"},
        "reason": "Created",
        "message": "ok",
        "type": "Normal",
        "eventTime": (NOW - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingComponent": "x",
        "reportingController": "kubelite.io/controller",
        "reportingInstance": "",
    }
    assert cells("", "Event", ev) == [
        "3m",
        "Normal",
        "Created",
        "namespace",
        "",
        "kubelite.io/controller",
        "ok",
        "3m",
        1,
        "ns.1",
    ]


def test_events_k8s_io_event() -> None:
    ev = {
        "metadata": meta("web.1"),
        "regarding": {"kind": "Deployment", "name": "web"},
        "note": "Scaled up replica set web-5d to 3",
        "reason": "ScalingReplicaSet",
        "type": "Normal",
        "eventTime": (NOW - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "series": {
            "count": 4,
            "lastObservedTime": (NOW - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
        "reportingController": "deployment-controller",
        "reportingInstance": "kcm-1",
    }
    assert cells("events.k8s.io", "Event", ev) == [
        "5s",
        "Normal",
        "ScalingReplicaSet",
        "deployment/web",
        "",
        "deployment-controller, kcm-1",
        "Scaled up replica set web-5d to 3",
        "4h",
        4,
        "web.1",
    ]


# --- Deployment and ReplicaSet ------------------------------------------------------------


def workload(
    name: str, selector: dict[str, Any] | None, status: dict[str, Any], replicas: int | None = 3
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": selector,
        "template": {
            "spec": {
                "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]
            }
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"metadata": meta(name), "spec": spec, "status": status}


def test_deployment() -> None:
    d = workload(
        "web",
        {"matchLabels": {"app": "web"}},
        {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    )
    assert cells("apps", "Deployment", d) == [
        "web",
        "2/3",
        3,
        2,
        "5m",
        "web,log",
        "nginx:1.27,busybox",
        "app=web",
    ]
    fresh = workload("new", {"matchLabels": {"app": "new"}}, {}, replicas=None)
    assert cells("apps", "Deployment", fresh)[1:4] == ["0/1", 0, 0]


def test_replicaset_and_selector_formatting() -> None:
    selector = {
        "matchLabels": {"tier": "fe", "app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
            {"key": "owner", "operator": "Exists"},
        ],
    }
    rs = workload("web-5d", selector, {"replicas": 3, "readyReplicas": 3})
    assert cells("apps", "ReplicaSet", rs) == [
        "web-5d",
        3,
        3,
        3,
        "5m",
        "web,log",
        "nginx:1.27,busybox",
        "app=web,!canary,env in (dev,prod),owner,tier=fe,zone notin (b)",
    ]
    assert cells("apps", "Deployment", workload("d", selector, {}))[-1] == (
        "app=web,!canary,env in (dev,prod),owner,tier=fe,zone notin (b)"
    )


def test_empty_and_invalid_selectors() -> None:
    assert cells("apps", "ReplicaSet", workload("a", None, {}))[-1] == "<none>"
    assert cells("apps", "ReplicaSet", workload("b", {}, {}))[-1] == "<none>"
    assert cells("apps", "Deployment", workload("c", {}, {}))[-1] == ""
    bad = {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}
    assert cells("apps", "ReplicaSet", workload("d", bad, {}))[-1] == "<error>"
    assert cells("apps", "Deployment", workload("e", bad, {}))[-1] == "<invalid>"


# --- The Table envelope -------------------------------------------------------------------


def cm(name: str, rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "default",
            "resourceVersion": rv,
            "labels": {"a": "b"},
            "creationTimestamp": ago(hours=1),
            "uid": "u-" + name,
        },
        "data": {"k": "v"},
    }


def test_list_table_envelope_and_partial_metadata() -> None:
    items = [cm("one", "10"), cm("two", "11")]
    table = to_table(
        "",
        "ConfigMap",
        items,
        now=NOW,
        list_meta={"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3},
    )
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3}
    assert [r["cells"] for r in table["rows"]] == [["one", 1, "60m"], ["two", 1, "60m"]]
    assert table["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": items[0]["metadata"],
    }


def test_single_object_table_carries_its_resource_version() -> None:
    table = to_table("", "ConfigMap", [cm("one", "10")], now=NOW)
    assert table["metadata"] == {"resourceVersion": "10"}
    assert len(table["rows"]) == 1
    assert to_table("", "ConfigMap", [], now=NOW, list_meta={"resourceVersion": "7"})["metadata"] == {
        "resourceVersion": "7"
    }
    empty = to_table("", "ConfigMap", [], now=NOW, list_meta={"resourceVersion": "7", "continue": ""})
    assert empty["rows"] == [] and empty["metadata"] == {"resourceVersion": "7"}


def test_include_object_values() -> None:
    item = cm("one", "10")
    full = to_table("", "ConfigMap", [item], now=NOW, include_object="Object")["rows"][0]["object"]
    assert full == item
    bare = dict(item)
    del bare["apiVersion"], bare["kind"]
    dep = to_table("apps", "Deployment", [{**bare, "spec": {}}], now=NOW, include_object="Object")
    assert dep["rows"][0]["object"]["apiVersion"] == "apps/v1"
    assert dep["rows"][0]["object"]["kind"] == "Deployment"
    none = to_table("", "ConfigMap", [item], now=NOW, include_object="None")["rows"][0]
    assert "object" in none and none["object"] is None
    default = to_table("", "ConfigMap", [item], now=NOW, include_object="")["rows"][0]["object"]
    assert default["kind"] == "PartialObjectMetadata"
    beta = to_table("", "ConfigMap", [item], now=NOW, api_version="meta.k8s.io/v1beta1")
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"


def test_invalid_include_object_is_a_bad_request() -> None:
    with pytest.raises(StatusError) as e:
        to_table("", "ConfigMap", [cm("one", "1")], now=NOW, include_object="Everything")
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    assert e.value.message == (
        'Unable to convert to Table as requested: includeObject: Invalid value: "Everything": '
        "must be 'Metadata', 'Object', 'None', or empty"
    )


def test_table_version_must_exist() -> None:
    with pytest.raises(StatusError) as e:
        to_table("", "Pod", [], now=NOW, api_version="meta.k8s.io/v1alpha1")
    assert e.value.code == 406 and e.value.message == "no Table exists in group version meta.k8s.io/v1alpha1"


def test_watch_events_after_the_first_have_no_columns() -> None:
    first = to_table("", "Pod", [pod("p", phase="Pending")], now=NOW)
    later = to_table("", "Pod", [pod("p", phase="Running")], now=NOW, with_columns=False)
    assert len(first["columnDefinitions"]) == 9
    assert later["columnDefinitions"] is None
    assert later["rows"][0]["cells"][2] == "Running"


def test_default_table_convertor_for_other_kinds() -> None:
    obj = {
        "metadata": {
            "name": "thing",
            "creationTimestamp": "2025-05-31T10:00:00+02:00",
            "resourceVersion": "3",
        }
    }
    table = to_table("example.com", "Widget", [obj], now=NOW)
    assert [(c["name"], c["type"], c["format"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", "name"),
        ("Created At", "date", ""),
    ]
    assert table["rows"][0]["cells"] == ["thing", "2025-05-31T08:00:00Z"]
    assert to_table("example.com", "Widget", [{"metadata": {"name": "x"}}], now=NOW)["rows"][0]["cells"] == [
        "x",
        "0001-01-01T00:00:00Z",
    ]
    # The default convertor leaves an empty list's rows nil.
    assert to_table("example.com", "Widget", [], now=NOW, list_meta={})["rows"] is None
