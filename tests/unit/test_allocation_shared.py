"""ClusterIPs and node ports handed out by API server processes that share one store.

Each process keeps its own hint of what is taken; the store's create-if-absent is what
decides. Here two allocators, one on the store itself and one on it served to a
RemoteStore (an API server worker's view), race for a range just big enough.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.errors import StatusError
from kubelite.apiserver.ipalloc import NodePortAllocator, ServiceCIDR
from kubelite.apiserver.registry import Registry
from kubelite.apiserver.services import NODE_PORT_CLAIMS, ServiceAllocation
from kubelite.store import SqliteStore
from tests.unit.served_store import served_store

PORTS = (30000, 30009)  # ten node ports
CIDR = "10.96.0.0/28"  # fourteen usable addresses


def service(name: str, node_port: int | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [port]}}


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[ServiceAllocation, ServiceAllocation, SqliteStore]]:
    cidr = ServiceCIDR.parse(CIDR)
    async with served_store(tmp_path) as (owner, _, remote):
        allocs = []
        for store in (owner, remote):
            allocs.append(ServiceAllocation(store, Registry(store), cidr, NodePortAllocator(*PORTS)))
        yield allocs[0], allocs[1], owner


async def test_two_processes_never_hand_out_the_same_port_or_address(
    two: tuple[ServiceAllocation, ServiceAllocation, SqliteStore],
) -> None:
    a, b, owner = two
    svcs = [service(f"s{i}") for i in range(10)]
    # Alternate between the two "processes"; neither knows what the other took.
    results = await asyncio.gather(*((a if i % 2 else b).allocate(svc, None, False) for i, svc in enumerate(svcs)),
                                   return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    ports = [svc["spec"]["ports"][0]["nodePort"] for svc in svcs]
    ips = [svc["spec"]["clusterIP"] for svc in svcs]
    assert sorted(ports) == list(range(PORTS[0], PORTS[1] + 1))
    assert len(set(ips)) == 10
    assert await owner.count(NODE_PORT_CLAIMS) == 10
    # The range is full for both, whatever each one's hint says.
    for alloc in (a, b):
        with pytest.raises(StatusError, match="range is full"):
            await alloc.allocate(service("one-more"), None, False)


async def test_a_requested_port_goes_to_exactly_one_and_comes_back_on_release(
    two: tuple[ServiceAllocation, ServiceAllocation, SqliteStore],
) -> None:
    a, b, _ = two
    first, second = service("x", 30005), service("y", 30005)
    results = await asyncio.gather(a.allocate(first, None, False), b.allocate(second, None, False),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, StatusError)]
    assert len(errors) == 1
    assert "spec.ports[0].nodePort: Invalid value: 30005: provided port is already allocated" in errors[0].status()["message"]
    winner = a if not isinstance(results[0], BaseException) else b
    loser = b if winner is a else a
    # Released by the winner's process, the port is free for the other one at once.
    await winner.release_unused(None, first if winner is a else second)
    again = service("z", 30005)
    await loser.allocate(again, None, False)
    assert again["spec"]["ports"][0]["nodePort"] == 30005
