"""Concurrent patches of one object: every one applies, none is refused (issue 20, defect 8a).

A merge patch that names no resourceVersion has no precondition: kube-apiserver applies it
to the latest object, retrying a lost compare-and-swap at once, so however many clients
patch one object, each patch lands and none answers 409. Here 100 patches of one ConfigMap
run at once, each setting its own key; the ConfigMap ends with all 100 keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.api.errors import StatusError
from kubelite.api.registry import ResourceType, lookup
from kubelite.apiserver.registry import Registry, Target
from kubelite.apiserver.writeturns import WriteTurns
from kubelite.store import SqliteStore

CLIENTS = 100


def rt(plural: str) -> ResourceType:
    found = lookup("", "v1", plural)
    assert found is not None
    return found


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    try:
        reg = Registry(store)
        await reg.create(Target(rt("namespaces"), None, None, None),
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}, manager="test")
        yield reg
    finally:
        await store.close()


async def test_concurrent_merge_patches_all_apply_without_conflict(registry: Registry) -> None:
    cms = rt("configmaps")
    await registry.create(Target(cms, "default", None, None),
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}}, manager="test")
    target = Target(cms, "default", "shared", None)

    async def patch(i: int) -> int | None:
        try:
            await registry.patch(target, "merge", {"data": {f"k{i}": str(i)}}, manager=f"client-{i}",
                                 directive="Ignore", dry_run=False)
        except StatusError as e:
            return e.code
        return None

    codes = await asyncio.gather(*(patch(i) for i in range(CLIENTS)))
    assert [c for c in codes if c is not None] == []  # no 409: no resourceVersion was given
    obj = await registry.get_object(cms, "default", "shared")
    assert obj["data"] == {f"k{i}": str(i) for i in range(CLIENTS)}  # no patch lost
    assert len(registry._write_turns) == 0  # the per-object turns are gone once idle


async def test_a_stale_resource_version_in_a_patch_is_still_a_conflict(registry: Registry) -> None:
    cms = rt("configmaps")
    await registry.create(Target(cms, "default", None, None),
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}, manager="t")
    target = Target(cms, "default", "cm", None)
    stale = (await registry.get_object(cms, "default", "cm"))["metadata"]["resourceVersion"]
    await registry.patch(target, "merge", {"data": {"a": "1"}}, manager="t", directive="Ignore", dry_run=False)
    with pytest.raises(StatusError) as e:
        await registry.patch(target, "merge", {"metadata": {"resourceVersion": stale}, "data": {"b": "2"}},
                             manager="t", directive="Ignore", dry_run=False)
    assert e.value.code == 409


async def test_a_task_holding_a_turn_may_ask_for_it_again() -> None:
    turns = WriteTurns()
    async with turns.turn("k"), turns.turn("k"):  # re-entered by the same task: no deadlock
        assert len(turns) == 1
    assert len(turns) == 0


async def test_turns_are_taken_in_order_and_released_on_cancel() -> None:
    turns = WriteTurns()
    order: list[int] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def writer(i: int) -> None:
        async with turns.turn("k"):
            order.append(i)
            if i == 0:
                first_in.set()
                await release.wait()

    t0 = asyncio.create_task(writer(0))
    await first_in.wait()
    waiting = [asyncio.create_task(writer(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # a client that went away while queued
    release.set()
    await asyncio.gather(t0, *waiting, return_exceptions=True)
    assert order == [0, 2, 3]
    assert len(turns) == 0
