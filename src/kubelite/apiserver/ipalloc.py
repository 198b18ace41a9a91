"""ClusterIP and NodePort allocation, with the guarantees Kubernetes gives.

ClusterIPs follow KEP-1880 (the allocator of current Kubernetes): every allocated address is
an ``IPAddress`` object (``networking.k8s.io/v1``) named by the address, so the store's
"create fails if the key exists" is what makes two Services never share an IP, under
concurrent creates and across crashes, with no lock and no bitmap to keep consistent. An
in-memory set of taken addresses makes picking a free one O(1) on average; it is only a
hint, the store has the last word. The range is split as KEP-3070 says: requested (static)
addresses come from the lower band, dynamic ones from the upper band first.

A crash between allocating and storing the Service leaves an IPAddress without its Service;
the repair pass at start-up (as kube-apiserver's repair loop) deletes such leaks and
recreates IPAddresses for Services whose object is missing.

NodePorts are recorded only in the Services themselves (as Kubernetes' bitmap allocator
does): this process is the only writer, reservation is synchronous on the event loop, and
the set is rebuilt from the Services at start-up.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any

IPAddressT = ipaddress.IPv4Address | ipaddress.IPv6Address


class RangeFull(Exception):
    """No free address or port is left."""


class NotInRange(Exception):
    pass


@dataclass(frozen=True)
class ServiceCIDR:
    """A service CIDR and its static/dynamic bands."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    @classmethod
    def parse(cls, cidr: str) -> ServiceCIDR:
        return cls(ipaddress.ip_network(cidr, strict=False))

    @property
    def first(self) -> int:
        return 1  # the network address is never handed out

    @property
    def last(self) -> int:
        # IPv4's broadcast address is reserved too.
        n = self.network.num_addresses
        return n - 2 if self.network.version == 4 else n - 1

    @property
    def size(self) -> int:
        return max(self.last - self.first + 1, 0)

    @property
    def static_size(self) -> int:
        # KEP-3070: min(max(16, size/16), 256) addresses at the bottom are kept for requests.
        return min(max(16, self.size // 16), 256, self.size)

    def offset(self, ip: IPAddressT) -> int | None:
        if ip.version != self.network.version or ip not in self.network:
            return None
        off = int(ip) - int(self.network.network_address)
        return off if self.first <= off <= self.last else None

    def address(self, offset: int) -> str:
        return str(self.network.network_address + offset)

    def nth(self, n: int) -> str:
        """The n-th address (1 = the `kubernetes` Service, 10 = cluster DNS)."""
        return self.address(n)


class ClusterIPAllocator:
    """Picks free ClusterIPs; the caller makes them real by creating the IPAddress object."""

    def __init__(self, cidr: ServiceCIDR) -> None:
        self.cidr = cidr
        self.taken: set[int] = set()

    def mark(self, ip: str) -> None:
        off = self.cidr.offset(ipaddress.ip_address(ip))
        if off is not None:
            self.taken.add(off)

    def unmark(self, ip: str) -> None:
        off = self.cidr.offset(ipaddress.ip_address(ip))
        if off is not None:
            self.taken.discard(off)

    def check_requested(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise NotInRange(self._range_msg()) from None
        if self.cidr.offset(addr) is None:
            raise NotInRange(self._range_msg())

    def _range_msg(self) -> str:
        return f"provided IP is not in the valid range. The range of valid IPs is {self.cidr.network}"

    def candidates(self) -> list[str]:
        """Free addresses to try, in order: a random start in the upper band, then the lower band."""
        c = self.cidr
        lo, hi = c.first, c.last
        split = lo + c.static_size
        out: list[str] = []
        for band_lo, band_hi in ((split, hi), (lo, split - 1)):
            if band_lo > band_hi:
                continue
            n = band_hi - band_lo + 1
            start = random.randrange(n)
            for i in range(n):
                off = band_lo + (start + i) % n
                if off not in self.taken:
                    out.append(c.address(off))
                    if len(out) >= 8:
                        return out
        if not out:
            raise RangeFull("range is full")
        return out


def ipaddress_object(ip: str, svc: dict[str, Any]) -> dict[str, Any]:
    meta = svc.get("metadata", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip,
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv6" if ":" in ip else "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {
            "parentRef": {
                "group": "",
                "resource": "services",
                "namespace": meta.get("namespace", ""),
                "name": meta.get("name", ""),
            }
        },
    }


class NodePortAllocator:
    """Picks node ports from a range (30000-32767 by default); ``taken`` is a hint, the claims
    in the store are the record (see kubelite.apiserver.services)."""

    def __init__(self, low: int = 30000, high: int = 32767) -> None:
        self.low, self.high = low, high
        self.taken: set[int] = set()

    @property
    def range_text(self) -> str:
        return f"{self.low}-{self.high}"

    def check(self, port: int) -> None:
        if not self.low <= port <= self.high:
            raise NotInRange(
                f"provided port is not in the valid range. The range of valid ports is {self.range_text}"
            )

    def next(self) -> int:
        n = self.high - self.low + 1
        if len(self.taken) >= n:
            raise RangeFull("range is full")
        start = random.randrange(n)
        for i in range(n):
            port = self.low + (start + i) % n
            if port not in self.taken:
                self.taken.add(port)
                return port
        raise RangeFull("range is full")

    def release(self, port: int) -> None:
        self.taken.discard(port)
