"""ClusterIP and NodePort allocation logic (KEP-3070 bands, candidates, ranges)."""

from __future__ import annotations

import ipaddress

import pytest

from kubelite.apiserver.ipalloc import (
    ClusterIPAllocator,
    NodePortAllocator,
    NotInRange,
    RangeFull,
    ServiceCIDR,
)


@pytest.mark.parametrize(
    ("cidr", "size", "static"),
    [("10.96.0.0/12", 2**20 - 2, 256), ("10.0.0.0/24", 254, 16), ("10.0.0.0/20", 4094, 255), ("10.97.0.0/28", 14, 14)],
)
def test_band_sizes(cidr: str, size: int, static: int) -> None:
    c = ServiceCIDR.parse(cidr)
    assert c.size == size
    assert c.static_size == static


def test_well_known_addresses() -> None:
    c = ServiceCIDR.parse("10.96.0.0/12")
    assert c.nth(1) == "10.96.0.1" and c.nth(10) == "10.96.0.10"


def test_dynamic_allocation_prefers_upper_band_then_falls_back() -> None:
    c = ServiceCIDR.parse("10.0.0.0/24")
    alloc = ClusterIPAllocator(c)
    static_last = ipaddress.IPv4Address("10.0.0.0") + c.static_size
    for ip in alloc.candidates():
        assert ipaddress.IPv4Address(ip) > static_last
    # Fill the whole upper band: candidates come from the static band.
    for off in range(c.first + c.static_size, c.last + 1):
        alloc.taken.add(off)
    cands = alloc.candidates()
    assert cands and all(ipaddress.IPv4Address(ip) <= static_last for ip in cands)
    for off in range(c.first, c.last + 1):
        alloc.taken.add(off)
    with pytest.raises(RangeFull):
        alloc.candidates()


def test_requested_ip_range_check() -> None:
    alloc = ClusterIPAllocator(ServiceCIDR.parse("10.96.0.0/12"))
    alloc.check_requested("10.100.1.2")
    for bad in ("10.200.0.1", "10.96.0.0", "not-an-ip", "::1"):
        with pytest.raises(NotInRange, match=r"The range of valid IPs is 10\.96\.0\.0/12"):
            alloc.check_requested(bad)


def test_candidates_never_include_taken() -> None:
    c = ServiceCIDR.parse("10.0.0.0/28")
    alloc = ClusterIPAllocator(c)
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        alloc.mark(ip)
    for _ in range(50):
        assert not {"10.0.0.1", "10.0.0.2", "10.0.0.3"} & set(alloc.candidates())
    alloc.unmark("10.0.0.2")
    assert any(set(alloc.candidates()) & {"10.0.0.2"} for _ in range(200))


def test_node_ports() -> None:
    ports = NodePortAllocator(30000, 30002)
    ports.taken.add(30001)  # claimed elsewhere (services.ServiceAllocation records claims so)
    with pytest.raises(NotInRange, match="The range of valid ports is 30000-30002"):
        ports.check(80)
    assert {ports.next(), ports.next()} == {30000, 30002}
    with pytest.raises(RangeFull):
        ports.next()
    ports.release(30000)
    assert ports.next() == 30000
