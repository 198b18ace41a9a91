"""PodControl: the events a workload controller's pod creates and deletes leave on their owner.

A fake client stands in for the API server: it answers creates and deletes, or refuses them
with the Status a real one sends, and keeps the events the recorder writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.registry import ResourceType
from kubelite.client import ApiError
from kubelite.client.events import EventRecorder
from kubelite.controllers.podcontrol import PodControl

Obj = dict[str, Any]
OWNER: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "web-5d4f", "namespace": "shop", "uid": "u-1"}}
POD: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-5d4f-"}}
TERMINATING = ApiError({
    "kind": "Status", "code": 403, "reason": "Forbidden",
    "message": 'pods "web-5d4f-x" is forbidden: unable to create new content in namespace shop '
               "because it is being terminated",
    "details": {"kind": "pods", "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                            "message": "namespace shop is being terminated"}]},
}, 403)
QUOTA = ApiError({"kind": "Status", "code": 403, "reason": "Forbidden",
                  "message": 'pods "web-5d4f-x" is forbidden: exceeded quota: pods'}, 403)
DELETE_FORBIDDEN = ApiError({
    "kind": "Status", "code": 403, "reason": "Forbidden",
    "message": 'pods "web-5d4f-a" is forbidden: User "system:serviceaccount:kube-system:replicaset-controller" '
               'cannot delete resource "pods" in API group "" in the namespace "shop"'}, 403)
NOT_FOUND = ApiError({"kind": "Status", "code": 404, "reason": "NotFound", "message": 'pods "web-5d4f-a" not found'},
                     404)


class FakeClient:
    def __init__(self, refuse: ApiError | None = None) -> None:
        self.refuse = refuse
        self.events: list[tuple[str, str, str, str]] = []
        self.created: list[tuple[str | None, Obj]] = []
        self.deleted: list[tuple[str, str | None]] = []

    async def create(self, rt: ResourceType, obj: Obj, namespace: str | None = None, **_: Any) -> Obj:
        if rt.plural == "events":
            self.events.append((obj["involvedObject"]["name"], obj["type"], obj["reason"], obj["message"]))
            return obj
        if self.refuse is not None:
            raise self.refuse
        self.created.append((namespace, obj))
        return {**obj, "metadata": {"name": "web-5d4f-x", "namespace": namespace}}

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, **_: Any) -> Obj:
        if self.refuse is not None:
            raise self.refuse
        self.deleted.append((name, namespace))
        return {}


def control(client: FakeClient) -> PodControl:
    return PodControl(client, EventRecorder(client, "replicaset-controller"))  # type: ignore[arg-type]


async def test_a_create_lands_in_the_owners_namespace_with_a_successful_create_event() -> None:
    client = FakeClient()
    out = await control(client).create(OWNER, POD)
    assert out["metadata"]["name"] == "web-5d4f-x"
    assert client.created == [("shop", POD)]
    assert client.events == [("web-5d4f", "Normal", "SuccessfulCreate", "Created pod: web-5d4f-x")]


async def test_a_refused_create_is_raised_with_a_failed_create_event() -> None:
    client = FakeClient(refuse=QUOTA)
    with pytest.raises(ApiError) as got:
        await control(client).create(OWNER, POD)
    assert got.value is QUOTA and not got.value.namespace_terminating
    assert client.events == [("web-5d4f", "Warning", "FailedCreate",
                              'Error creating: pods "web-5d4f-x" is forbidden: exceeded quota: pods')]


async def test_a_create_in_a_terminating_namespace_is_raised_without_an_event() -> None:
    client = FakeClient(refuse=TERMINATING)
    with pytest.raises(ApiError) as got:
        await control(client).create(OWNER, POD)
    assert got.value.namespace_terminating and got.value.has_cause("NamespaceTerminating")
    assert client.events == []


async def test_a_delete_has_a_successful_delete_event_and_a_pod_already_gone_none() -> None:
    pod = {"metadata": {"name": "web-5d4f-a", "namespace": "shop"}}
    client = FakeClient()
    await control(client).delete(OWNER, pod)
    assert client.deleted == [("web-5d4f-a", "shop")]
    assert client.events == [("web-5d4f", "Normal", "SuccessfulDelete", "Deleted pod: web-5d4f-a")]

    gone = FakeClient(refuse=NOT_FOUND)
    with pytest.raises(ApiError) as got:
        await control(gone).delete(OWNER, pod)
    assert got.value.not_found and gone.events == []


async def test_a_refused_delete_is_raised_with_a_failed_delete_event() -> None:
    client = FakeClient(refuse=DELETE_FORBIDDEN)
    with pytest.raises(ApiError):
        await control(client).delete(OWNER, {"metadata": {"name": "web-5d4f-a", "namespace": "shop"}})
    assert client.events == [("web-5d4f", "Warning", "FailedDelete",
                              f"Error deleting: {DELETE_FORBIDDEN.status['message']}")]
