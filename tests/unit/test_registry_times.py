"""Times the generic registry writes, in metav1.Time as kube-apiserver writes them.

A TokenRequest's ``status.expirationTimestamp`` and a graceful delete's
``deletionTimestamp`` are whole seconds in UTC (``2006-01-02T15:04:05Z``), rendered by
kubelite.api.timeutil like every other timestamp the API server stamps.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.api import timeutil
from kubelite.api.registry import ResourceType, lookup
from kubelite.apiserver.registry import Registry, Target
from kubelite.store import SqliteStore

EXPIRES = 1_700_000_000  # 2023-11-14T22:13:20Z


class FakeTokens:
    def issue(
        self, namespace: str, service_account: str, sa_uid: str, *, expiration_seconds: int = 3600,
        audiences: builtins.list[str] | None = None, pod: tuple[str, str] | None = None,
        secret: tuple[str, str] | None = None, node: tuple[str, str] | None = None, warn_after: int = 0,
    ) -> tuple[str, int]:
        return "a-token", EXPIRES


def rt(plural: str) -> ResourceType:
    found = lookup("", "v1", plural)
    assert found is not None
    return found


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    try:
        reg = Registry(store, tokens=FakeTokens())
        await reg.create(Target(rt("namespaces"), None, None, None),
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}, manager="test")
        yield reg
    finally:
        await store.close()


async def test_token_request_expiration_is_a_metav1_time(registry: Registry) -> None:
    sa: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}
    await registry.create(Target(rt("serviceaccounts"), "default", None, None), sa, manager="test")
    answer = await registry.create_token(Target(rt("serviceaccounts"), "default", "robot", "token"),
                                         {"spec": {"expirationSeconds": 3600}})
    assert answer["status"] == {"token": "a-token", "expirationTimestamp": "2023-11-14T22:13:20Z"}


async def test_graceful_delete_stamps_now_plus_the_grace_period(registry: Registry) -> None:
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    await registry.create(Target(rt("pods"), "default", None, None), pod, manager="test")
    before = timeutil.now().replace(microsecond=0)
    obj, code = await registry.delete_object(Target(rt("pods"), "default", "p", None), {"gracePeriodSeconds": 30})
    after = timeutil.now()
    assert code == 200
    stamp = obj["metadata"]["deletionTimestamp"]
    when = timeutil.parse_time(stamp)
    assert when is not None and stamp == timeutil.format_time(when)  # whole seconds, Z
    assert before + dt.timedelta(seconds=30) <= when <= after + dt.timedelta(seconds=30)
    assert obj["metadata"]["deletionGracePeriodSeconds"] == 30
