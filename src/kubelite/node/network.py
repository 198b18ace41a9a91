"""The node's pod network: kubelite's CNI plugin (bridge + veth + host-local IPAM), in-process.

Kubernetes' kubelet asks a CNI plugin (through the container runtime) to give each pod
sandbox a network namespace with an ``eth0`` and an IP; the reference setup is the
``bridge`` plugin with ``host-local`` IPAM. This module does the same job directly over
netlink (pyroute2) instead of exec'ing plugin binaries, because a pod must get its network
in a few milliseconds and the agent already runs as root.

Everything lives in network namespaces named after the cluster, never in the host's:

* ``<cluster>-node``: the node. Bridge ``kl-br0`` with the gateway address (first address
  of the pod CIDR), IPv4 forwarding on, ``lo`` up. Later the proxy's nftables live here.
* ``<cluster>-<12 hex of the pod UID>``: one per pod. ``eth0`` (the pod end of a veth pair
  whose node end ``kv<10 hex>`` is a bridge port) with the pod IP as a /32 and
  ``default via <gateway> dev eth0 onlink``.

Pod traffic is *routed* through the node, not bridged between pods. With the pod CIDR on
``eth0`` a pod would reach a neighbour straight over the bridge, and the reply of a Service
connection (pod A -> ClusterIP, DNATed in the node to pod B) would go from B to A without
passing the node's IP layer: conntrack never sees it, A gets an answer from B's address
instead of the ClusterIP and resets the connection. The usual fix, ``br_netfilter``, makes
bridged frames traverse the IP hooks, but it is a host-wide module that CI machines may
lack and that changes the host's own bridges too. A /32 address with an on-link default
route needs nothing from the host: every packet a pod sends goes to the gateway's MAC, the
node routes it (back out of the same bridge for pod-to-pod traffic), and conntrack sees
both directions of every flow. The node therefore sends no ICMP redirects
(``send_redirects=0``), which would otherwise invite pods to bypass it, and where the host
has ``br_netfilter`` loaded it is switched off in the node's namespace (see ``_setup``).

The veth pair is created by a netlink request sent *inside the node namespace*, with the
peer placed straight into the pod namespace as ``eth0``: no interface ever exists in the
host namespace, not even for a moment. Switching namespaces (:func:`in_netns`, checked
against the kernel before anything is changed) and named namespaces live in
:mod:`kubelite.linux.netns`, which the proxy uses too.

pyroute2 calls are synchronous: the public coroutines run them in worker threads (netns
switching is per thread, so the event loop's thread never changes namespace for more than
the few microseconds of :func:`in_netns` socket creation).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import functools
import ipaddress
import os
import pathlib
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from kubelite.linux.netns import (
    BRIDGE,
    NETNS_DIR,
    create_netns,
    in_netns,
    is_netns,
    named_netns_path,
    remove_netns,
)
from kubelite.node.ipam import IPAM

POD_IFNAME = "eth0"
# A pod's own address is a host route: it reaches every other address through the node.
POD_PREFIXLEN = 32
RTNH_F_ONLINK = 4
# The kernel serialises most of a sandbox's setup (RTNL, namespace creation); a few threads
# overlap the Python side of one pod with the kernel side of another.
NETLINK_THREADS = 4
LOOPBACK_IFINDEX = 1  # the kernel registers lo first in every network namespace
IFF_UP = 1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
# An ACK or error: nlmsghdr (length, type, flags, sequence, port) and the (negative) errno.
_NLMSGERR = struct.Struct("=LHHLLi")

_P = ParamSpec("_P")
_T = TypeVar("_T")

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class PodNetwork:
    uid: str
    netns: str
    netns_path: str
    ip: str
    gateway: str
    prefixlen: int  # of ``ip`` on the pod's eth0: 32, everything else is reached via the gateway
    host_veth: str


# --- netlink helpers (synchronous, called from a worker thread) -----------------------------


@contextlib.contextmanager
def _iproute(netns_path: str) -> Iterator[IPRoute]:
    """An rtnetlink handle bound to the namespace at ``netns_path``."""
    with in_netns(netns_path):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    # A netlink socket talks to the namespace it was created in; pyroute2 adopts the fd.
    ipr = IPRoute(fileno=sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()


def _get_link(ipr: IPRoute, ifname: str) -> Any | None:
    # One RTM_GETLINK for that name; pyroute2's link_lookup dumps every link of the
    # namespace, which the node's namespace with a veth per pod makes O(pods) per call.
    try:
        return ipr.link("get", ifname=ifname)[0]
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise


def _configure_pod_netns(pod: PodNetwork) -> None:
    """``lo`` up, the pod IP on ``eth0``, ``eth0`` up, the default route: one batch of requests.

    pyroute2's message classes encode the requests, sent together on one netlink socket in
    the pod's namespace; its high-level API costs a handle per namespace and about a
    millisecond of Python per request, more than the kernel's work here.
    """
    with in_netns(pod.netns_path):
        eth0 = socket.if_nametoindex(POD_IFNAME)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    messages: list[tuple[Any, int, int, list[tuple[str, Any]], dict[str, int]]] = [
        (ifinfmsg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, [],
         {"index": LOOPBACK_IFINDEX, "flags": IFF_UP, "change": IFF_UP}),
        (ifaddrmsg, RTM_NEWADDR, create, [("IFA_LOCAL", pod.ip), ("IFA_ADDRESS", pod.ip)],
         {"family": socket.AF_INET, "prefixlen": pod.prefixlen, "index": eth0}),
        (ifinfmsg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, [], {"index": eth0, "flags": IFF_UP, "change": IFF_UP}),
        # On-link: the gateway is not inside the pod's /32, yet directly reachable on eth0.
        (rtmsg, RTM_NEWROUTE, create, [("RTA_GATEWAY", pod.gateway), ("RTA_OIF", eth0)],
         {"family": socket.AF_INET, "table": RT_TABLE_MAIN, "proto": RTPROT_BOOT, "scope": RT_SCOPE_UNIVERSE,
          "type": RTN_UNICAST, "flags": RTNH_F_ONLINK}),
    ]
    data = b""
    for seq, (cls, msg_type, flags, attrs, fields) in enumerate(messages, 1):
        msg = cls()
        for key, value in fields.items():
            msg[key] = value
        msg["attrs"] = attrs
        msg["header"]["type"], msg["header"]["flags"], msg["header"]["sequence_number"] = msg_type, flags, seq
        msg.encode()
        data += msg.data
    with sock:
        sock.bind((0, 0))
        sock.sendall(data)
        acked = 0
        while acked < len(messages):
            reply = sock.recv(65536)
            offset = 0
            while offset + _NLMSGERR.size <= len(reply):
                length, msg_type, _flags, seq, _pid, error = _NLMSGERR.unpack_from(reply, offset)
                if msg_type == NLMSG_ERROR:
                    acked += 1
                    if error:
                        raise NetlinkError(-error, f"configuring {POD_IFNAME} in {pod.netns} (request {seq}): "
                                                   f"{os.strerror(-error)}")
                offset += max(length, 16)


def _link_index(ipr: IPRoute, ifname: str) -> int | None:
    link = _get_link(ipr, ifname)
    return None if link is None else int(link["index"])


def _delete_link(ipr: IPRoute, ifname: str) -> None:
    index = _link_index(ipr, ifname)
    if index is None:
        return
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise


def _pod_key(uid: str) -> str:
    """The 12 hex digits of a pod UID that name its namespace (10 of them name its veth)."""
    digits = uid.replace("-", "").lower()
    if len(digits) < 12 or not all(c in "0123456789abcdef" for c in digits[:12]):
        raise ValueError(f"pod UID {uid!r} does not start with 12 hex digits")
    return digits[:12]


def _cluster_netns(cluster: str) -> re.Pattern[str]:
    # Exactly our names: "C-node" and "C-<12 hex>". A bare "C-" prefix would also match the
    # namespaces of a cluster called e.g. "C-x".
    return re.compile(rf"^{re.escape(cluster)}-(node|[0-9a-f]{{12}})$")


def cleanup_cluster(cluster: str) -> None:
    """Remove every namespace of ``cluster``, also those a crashed run left (for ``kubelite down``).

    Unmounting a namespace ends it once nothing holds it any more, and its bridge and veths
    go with it, so stop the cluster's processes first. Idempotent; other clusters'
    namespaces and the host namespace are never touched.
    """
    _check_cluster_name(cluster)
    pattern = _cluster_netns(cluster)
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return
    node = f"{cluster}-node"
    # Pods first, the node last: an interrupted cleanup still finds the rest by the node.
    for name in sorted((n for n in names if pattern.match(n)), key=lambda n: n == node):
        remove_netns(name)


def _check_cluster_name(cluster: str) -> None:
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"invalid cluster name {cluster!r}: letters, digits, '-', '_', '.' only")


# --- the node network -----------------------------------------------------------------------


class NodeNetwork:
    """The pod network of one node of cluster ``cluster``; IP allocations kept in ``state_dir``.

    Use it from one event loop. Operations on different pods run in parallel (the kernel
    batches the slow part of deleting interfaces); those on one pod run in call order.
    """

    def __init__(self, cluster: str, pod_cidr: str, state_dir: pathlib.Path) -> None:
        _check_cluster_name(cluster)
        self.cluster = cluster
        self._ipam = IPAM(pod_cidr, state_dir / "ipam.json", autosave=False)
        self._gateway_if = ipaddress.IPv4Interface(f"{self._ipam.gateway}/{self._ipam.network.prefixlen}")
        # Guards the IPAM in memory, used from worker threads; the file is written under
        # _save_lock only (see _commit), so allocating never waits for a disk write.
        self._ipam_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saved_generation = self._ipam.generation
        # Per worker thread: a netlink handle in the node namespace, and the bridge's index
        # and MTU, reused across pods (creating a handle and looking the bridge up cost more
        # than the pod's own requests).
        self._local = threading.local()
        # Threads of their own: pod network setup must not queue behind (or hold up) the
        # agent's other blocking work in the default executor (file writes, exec output).
        self._executor = concurrent.futures.ThreadPoolExecutor(NETLINK_THREADS, thread_name_prefix="netlink")
        # Pods with an operation under way or waiting (only touched on the event loop): their
        # allocations must survive pods()' garbage collection even before the namespace exists.
        self._pod_locks: dict[str, asyncio.Lock] = {}
        self._pending: collections.Counter[str] = collections.Counter()

    @property
    def netns(self) -> str:
        return f"{self.cluster}-node"

    @property
    def netns_path(self) -> str:
        return named_netns_path(self.netns)

    @property
    def gateway(self) -> str:
        return str(self._gateway_if.ip)

    def in_netns(self, netns_path: str) -> contextlib.AbstractContextManager[None]:
        """See the module-level :func:`in_netns`."""
        return in_netns(netns_path)

    async def setup(self) -> None:
        """Create (or complete) the node namespace: ``lo`` up, bridge with the gateway, forwarding."""
        await asyncio.to_thread(self._setup)

    async def add_pod(self, uid: str) -> PodNetwork:
        """The pod's network, made if missing (idempotent; re-adopts it after an agent restart)."""
        return await self._for_pod(uid, self._add_pod, uid)

    async def remove_pod(self, uid: str) -> None:
        """Delete the pod's namespace and veth and free its IP (idempotent)."""
        await self._for_pod(uid, self._remove_pod, uid)

    def pods(self) -> dict[str, PodNetwork]:
        """The pods whose namespace exists, by UID; allocations whose namespace vanished are freed."""
        existing = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        with self._ipam_lock:
            alive = {
                uid: pod
                for uid, ip in self._ipam.allocations.items()
                if (pod := self._pod(uid, ip)).netns in existing
            }
            self._ipam.retain(set(alive) | set(self._pending))
        self._commit()
        return alive

    async def teardown(self) -> None:
        """Remove every pod namespace and the node namespace, and free all IPs."""
        for lock in list(self._pod_locks.values()):
            async with lock:  # let operations under way finish, or they would recreate things
                pass
        await asyncio.to_thread(cleanup_cluster, self.cluster)
        with self._ipam_lock:
            self._ipam.retain(set())
        self._commit()

    async def _for_pod(self, uid: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        self._pending[uid] += 1
        lock = self._pod_locks.setdefault(uid, asyncio.Lock())
        try:
            async with lock:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor, functools.partial(fn, *args, **kwargs))
        finally:
            self._pending[uid] -= 1
            if not self._pending[uid]:
                del self._pending[uid], self._pod_locks[uid]

    # The synchronous halves, run in worker threads (pyroute2's sync API runs an event loop
    # of its own, which cannot be nested in a running one).

    def _pod(self, uid: str, ip: str) -> PodNetwork:
        key = _pod_key(uid)
        name = f"{self.cluster}-{key}"
        return PodNetwork(
            uid=uid,
            netns=name,
            netns_path=named_netns_path(name),
            ip=ip,
            gateway=self.gateway,
            prefixlen=POD_PREFIXLEN,
            host_veth=f"kv{key[:10]}",
        )

    def _setup(self) -> None:
        if not is_netns(self.netns_path):
            # Missing, or only the empty mount point of a creation an agent crash cut short
            # (see NotANamespace): that one would fail every start, so it is made again.
            remove_netns(self.netns)
            create_netns(self.netns)
        with _iproute(self.netns_path) as ipr:
            ipr.link("set", index=_link_index(ipr, "lo"), state="up")
            bridge = _link_index(ipr, BRIDGE)
            if bridge is None:
                # A bridge without a set address takes the lowest MAC of its ports, so the
                # gateway's MAC would change as pods come and go and pods' ARP caches would
                # point at a veth that is gone. A fixed, locally administered one avoids that.
                mac = bytearray(os.urandom(6))
                mac[0] = (mac[0] & 0xFE) | 0x02
                ipr.link("add", ifname=BRIDGE, kind="bridge", address=mac.hex(":"))
                bridge = _link_index(ipr, BRIDGE)
            gateway = (self.gateway, self._gateway_if.network.prefixlen)
            present = {
                (a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=bridge, family=socket.AF_INET)
            }
            for address, prefixlen in present - {gateway}:
                ipr.addr("del", index=bridge, address=address, prefixlen=prefixlen)
            if gateway not in present:
                ipr.addr("add", index=bridge, address=gateway[0], prefixlen=gateway[1])
            ipr.link("set", index=bridge, state="up")
        # /proc/sys/net is per namespace, resolved from the opening thread's namespace. The
        # node routes pod-to-pod packets back out of the bridge they came in on: without
        # send_redirects=0 (needed on "all" and on the bridge) it would tell pods to go direct.
        # Where the host has br_netfilter loaded, it would also run the IP hooks on frames
        # entering the bridge and, after a DNAT to another pod, switch them straight to it
        # ("bridged DNAT"): that bypasses routing and drops hairpin traffic (a pod reaching
        # itself through a Service). The node routes, so it is switched off in its namespace.
        with in_netns(self.netns_path):
            for path, value in (
                ("/proc/sys/net/ipv4/ip_forward", "1"),
                ("/proc/sys/net/ipv4/conf/all/send_redirects", "0"),
                (f"/proc/sys/net/ipv4/conf/{BRIDGE}/send_redirects", "0"),
                *((f"/proc/sys/net/bridge/bridge-nf-call-{t}", "0") for t in ("iptables", "ip6tables", "arptables")
                  if os.path.exists(f"/proc/sys/net/bridge/bridge-nf-call-{t}")),
            ):
                with open(path, "w") as f:
                    f.write(value)

    def _add_pod(self, uid: str) -> PodNetwork:
        if not os.path.exists(self.netns_path):
            raise RuntimeError(f"node network namespace {self.netns} does not exist: setup() first")
        with self._ipam_lock:
            self._check_unique(uid)
            pod = self._pod(uid, self._ipam.allocate(uid))
        self._commit()  # on disk before anything uses the address
        if os.path.exists(pod.netns_path):
            if is_netns(pod.netns_path) and self._is_complete(pod):
                return pod
            self._detach(pod)  # left half-made by a crash (maybe only its mount point)
        try:
            self._attach(pod)
        except BaseException:
            self._detach(pod)
            with self._ipam_lock:
                self._ipam.release(uid)
            self._commit()
            raise
        return pod

    def _commit(self) -> None:
        """Return once every IPAM change made so far is on disk (group commit).

        While one thread writes, the changes of others pile up; the next writer saves them
        all with one write, and whoever finds its change already saved returns at once.
        """
        with self._ipam_lock:
            wanted = self._ipam.generation
        if self._saved_generation >= wanted:
            return
        with self._save_lock:
            if self._saved_generation >= wanted:
                return
            with self._ipam_lock:
                generation, data = self._ipam.generation, self._ipam.snapshot()
            self._ipam.write(data)
            self._saved_generation = generation

    def _remove_pod(self, uid: str) -> None:
        with self._ipam_lock:
            self._check_unique(uid)
            ip = self._ipam.get(uid)
        self._detach(self._pod(uid, ip or ""))
        with self._ipam_lock:
            self._ipam.release(uid)
        self._commit()

    def _check_unique(self, uid: str) -> None:
        # Two UIDs sharing 48 bits would share a namespace name; refuse rather than let one
        # pod's removal tear down the other's network.
        key = _pod_key(uid)
        for other in self._ipam.allocations:
            if other != uid and _pod_key(other) == key:
                raise RuntimeError(
                    f"pod UIDs {uid} and {other} share the namespace name {self.cluster}-{key}"
                )

    def _attach(self, pod: PodNetwork) -> None:
        create_netns(pod.netns)
        pod_fd = os.open(pod.netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self._node_rtnl() as (node, bridge, mtu):
                # Sent in the node namespace; the kernel creates the peer directly in the
                # pod's namespace under its final name, and the node end already enslaved
                # to the bridge and up (one request instead of three).
                node.link(
                    "add",
                    ifname=pod.host_veth,
                    kind="veth",
                    mtu=mtu,
                    master=bridge,
                    state="up",
                    peer={"ifname": POD_IFNAME, "mtu": mtu, "net_ns_fd": pod_fd},
                )
        finally:
            os.close(pod_fd)
        _configure_pod_netns(pod)

    def _is_complete(self, pod: PodNetwork) -> bool:
        with _iproute(pod.netns_path) as ipr:
            eth0 = _link_index(ipr, POD_IFNAME)
            if eth0 is None:
                return False
            addresses = {
                (a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=eth0, family=socket.AF_INET)
            }
            if (pod.ip, pod.prefixlen) not in addresses:
                return False
            if not any(
                r.get("gateway") == pod.gateway for r in ipr.get_default_routes(family=socket.AF_INET)
            ):
                return False
        with _iproute(self.netns_path) as node:
            return _link_index(node, pod.host_veth) is not None

    def _detach(self, pod: PodNetwork) -> None:
        # As CNI's DEL does: delete the veth explicitly (both ends go), so the pod is cut from
        # the bridge at once even while some process still holds its namespace.
        if os.path.exists(self.netns_path):
            with self._node_rtnl() as (node, _, _):
                _delete_link(node, pod.host_veth)
        remove_netns(pod.netns)

    @contextlib.contextmanager
    def _node_rtnl(self) -> Iterator[tuple[IPRoute, int, int]]:
        """This thread's netlink handle in the node namespace, with the bridge's index and MTU.

        Kept while the node namespace is the same one (its inode); dropped after any error,
        so that a handle in an unknown state or a stale bridge index is never used twice.
        """
        inode = os.stat(self.netns_path).st_ino
        cached = getattr(self._local, "node", None)
        if cached is None or cached[0] != inode:
            if cached is not None:
                cached[1].close()
                self._local.node = None
            with in_netns(self.netns_path):
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
            ipr = IPRoute(fileno=sock.detach())
            try:
                bridge = _get_link(ipr, BRIDGE)
                if bridge is None:
                    raise RuntimeError(f"bridge {BRIDGE} missing in {self.netns}: setup() first")
            except BaseException:
                ipr.close()
                raise
            cached = self._local.node = (inode, ipr, int(bridge["index"]), int(bridge.get_attr("IFLA_MTU")))
        try:
            yield cached[1], cached[2], cached[3]
        except BaseException:
            cached[1].close()
            self._local.node = None
            raise
