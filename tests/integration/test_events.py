"""core/v1 and events.k8s.io/v1 Events are two views of one stored object, as in Kubernetes:
an event written through either API is read, listed, field-selected and watched through the
other, with its fields renamed (``note`` is ``message``, ``regarding`` is
``involvedObject``, ``reportingController`` is ``reportingComponent``...). Shown with the
official Python client and with kubectl."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

CONTROLLER = "example.com/tester"


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"ev-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name, check=True)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    c = config.new_client_from_config(str(cluster.kubeconfig))
    yield c
    c.close()


def _events_v1(api: client.ApiClient, ns: str, name: str) -> Any:
    body = client.EventsV1Event(
        metadata=client.V1ObjectMeta(name=name, namespace=ns),
        event_time=dt.datetime.now(dt.UTC), reporting_controller=CONTROLLER, reporting_instance="tester-1",
        action="Testing", reason="Tested", type="Warning", note="written through events.k8s.io",
        regarding=client.V1ObjectReference(kind="Pod", name="web-0", namespace=ns, api_version="v1"),
    )
    return client.EventsV1Api(api).create_namespaced_event(ns, body)


def _core(api: client.ApiClient, ns: str, name: str) -> Any:
    now = dt.datetime.now(dt.UTC)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=name, namespace=ns),
        involved_object=client.V1ObjectReference(kind="Pod", name="db-0", namespace=ns, api_version="v1"),
        reason="Started", message="written through core/v1", type="Normal", count=3,
        source=client.V1EventSource(component="kubelet", host="node-1"), first_timestamp=now, last_timestamp=now,
    )
    return client.CoreV1Api(api).create_namespaced_event(ns, body)


def _names(items: list[Any]) -> list[str]:
    return sorted(e.metadata.name for e in items)


def test_core_field_selectors_find_events_k8s_io_events(api: client.ApiClient, ns: str) -> None:
    _events_v1(api, ns, "new-api")
    _core(api, ns, "old-api")
    core = client.CoreV1Api(api)
    # events.k8s.io's reportingController is what core's `source` selects when source is unset.
    for selector, want in [
        (f"source={CONTROLLER}", ["new-api"]),
        ("source=kubelet", ["old-api"]),
        (f"reportingComponent={CONTROLLER}", ["new-api"]),
        ("involvedObject.name=web-0", ["new-api"]),
        ("involvedObject.kind=Pod", ["new-api", "old-api"]),
        ("reason=Tested", ["new-api"]),
        ("type=Warning", ["new-api"]),
        ("type=Normal", ["old-api"]),
    ]:
        got = core.list_namespaced_event(ns, field_selector=selector).items
        assert _names(got) == want, selector
    ev = core.read_namespaced_event("new-api", ns)
    assert ev.message == "written through events.k8s.io"
    assert ev.involved_object.name == "web-0" and ev.reporting_component == CONTROLLER
    assert ev.reporting_instance == "tester-1" and ev.action == "Testing"


def test_events_k8s_io_field_selectors_find_core_events(api: client.ApiClient, ns: str) -> None:
    _events_v1(api, ns, "new-api")
    _core(api, ns, "old-api")
    events = client.EventsV1Api(api)
    # Read as JSON: a core event has no eventTime, which events.k8s.io/v1 marks required, and
    # the client's models refuse the null a real kube-apiserver serves there too.
    for selector, want in [
        ("regarding.name=db-0", ["old-api"]),
        ("regarding.kind=Pod", ["new-api", "old-api"]),
        ("reason=Started", ["old-api"]),
        ("type=Normal", ["old-api"]),
        (f"reportingController={CONTROLLER}", ["new-api"]),
    ]:
        resp: Any = events.list_namespaced_event(ns, field_selector=selector, _preload_content=False)
        got = json.loads(resp.data)["items"]
        assert sorted(i["metadata"]["name"] for i in got) == want, selector
    raw: Any = events.read_namespaced_event("old-api", ns, _preload_content=False)
    ev = json.loads(raw.data)
    assert ev["apiVersion"] == "events.k8s.io/v1" and ev["kind"] == "Event"
    assert ev["note"] == "written through core/v1" and ev["regarding"]["name"] == "db-0"
    assert ev["deprecatedSource"] == {"component": "kubelet", "host": "node-1"} and ev["deprecatedCount"] == 3
    assert ev["deprecatedFirstTimestamp"] and "message" not in ev and "involvedObject" not in ev


def test_kubectl_sees_both(cluster: Cluster, api: client.ApiClient, ns: str) -> None:
    _events_v1(api, ns, "new-api")
    _core(api, ns, "old-api")
    out = cluster.kubectl("get", "events", "-n", ns, "--field-selector", f"source={CONTROLLER}", "-o", "json",
                          check=True).stdout
    items = json.loads(out)["items"]
    assert [(i["apiVersion"], i["metadata"]["name"], i["message"]) for i in items] == [
        ("v1", "new-api", "written through events.k8s.io")]
    # As kube-apiserver writes the core view of such an event: Go's zero values included.
    assert items[0]["source"] == {} and items[0]["firstTimestamp"] is None and items[0]["lastTimestamp"] is None
    out = cluster.kubectl("get", "events.v1.events.k8s.io", "-n", ns, "--field-selector", "regarding.name=db-0",
                          "-o", "json", check=True).stdout
    items = json.loads(out)["items"]
    assert [(i["apiVersion"], i["metadata"]["name"], i["note"]) for i in items] == [
        ("events.k8s.io/v1", "old-api", "written through core/v1")]
    assert items[0]["eventTime"] is None
    # The printed table of `kubectl events` (core/v1) has both.
    table = cluster.kubectl("get", "events", "-n", ns, check=True).stdout
    assert "pod/web-0" in table and "pod/db-0" in table


def test_watch_through_the_other_api(api: client.ApiClient, ns: str) -> None:
    w = watch.Watch()
    stream = w.stream(client.CoreV1Api(api).list_namespaced_event, ns, field_selector=f"source={CONTROLLER}",
                      timeout_seconds=10)
    _events_v1(api, ns, "watched")
    seen = []
    for ev in stream:
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].message))
        w.stop()
    assert seen == [("ADDED", "watched", "written through events.k8s.io")]
    # A core update is an events.k8s.io MODIFIED.
    events = client.EventsV1Api(api)
    listed = events.list_namespaced_event(ns, field_selector=f"reportingController={CONTROLLER}")
    assert listed.metadata is not None
    rv = listed.metadata.resource_version
    stream = w.stream(events.list_namespaced_event, ns, resource_version=rv, timeout_seconds=10,
                      field_selector="metadata.name=watched")
    client.CoreV1Api(api).patch_namespaced_event("watched", ns, {"message": "changed"})
    seen = []
    for ev in stream:
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].note))
        w.stop()
    assert seen == [("MODIFIED", "watched", "changed")]
