"""kube-proxy for kubelite: Services and EndpointSlices in, nftables in the node's namespace out.

State flows one way, as in kube-proxy's nftables proxier. Informer events only record
*which* Service changed; a sync reads the caches for those Services, renders their
fragments (``ruleset``) and writes one atomic transaction. The first sync, and any sync
after a failure, recreates the whole table; every other sync is partial: it rewrites the
chains and map elements of the changed Services only, diffed against the fragments kept
in memory from the last successful sync. Nothing is read back from the kernel on that path
(listing a big table on every sync is what made iptables mode slow at scale).

Syncs are coalesced and rate-limited: a change wakes the loop, which syncs at once unless
the previous sync started less than ``min_sync_period`` ago; everything that changed
meanwhile goes into that one transaction. kube-proxy's default is 1 s; kubelite's 10 ms
default keeps network programming latency (pod Ready -> traffic) well under 100 ms, since
a partial sync here costs a few milliseconds and there is one node to program.

nftables is driven through libnftables (the library the ``nft`` tool is a front end to)
on one worker thread that enters the node namespace for each call: the same text ``nft
-f -`` would read, without a process start per sync. The table survives the proxy: a
restart recreates it in one transaction, and conntrack keeps established connections'
NAT bindings across that, so they are not dropped.

The node namespace has no default route (nothing leaves the machine), so the proxy adds
one route, the service CIDR on the bridge: packets to ClusterIPs then reach the hooks where
they are DNATed, rejected (no endpoints) or dropped (unallocated addresses) instead of
failing with "network unreachable" in routing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import orjson
from pyroute2 import IPRoute, NetlinkError

from kubelite.api.types import EndpointSlice, EventType, Obj, Service
from kubelite.client import ENDPOINTSLICES, SERVICES, Client, Informer, key_of
from kubelite.linux.netns import BRIDGE, NotANamespace, in_netns, node_netns_path
from kubelite.linux.nftables import NFTables as NFTables
from kubelite.linux.nftables import NFTError as NFTError
from kubelite.proxy import conntrack
from kubelite.proxy.ruleset import (
    EMPTY,
    ENDPOINT_STATS,
    TABLE,
    Endpoint,
    Fragment,
    ServicePort,
    cleanup_transaction,
    delete_table,
    full_transaction,
    partial_transaction,
    render_service,
)

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
DEFAULT_AFFINITY_SECONDS = 10800

MIN_SYNC_PERIOD = 0.01
# Chains dropped by a sync are deleted at least this much later (see ruleset's docstring),
# in the next sync that has changes to write anyway, or on their own once no sync happened
# for STALE_IDLE: at 10,000 Services any transaction costs tens of milliseconds (nft lists
# every chain first, the kernel validates the table), and a cleanup running on its own when
# a pod turns Ready would delay that pod's traffic by one more.
STALE_DELAY = 1.0
STALE_IDLE = 3.0
RETRY_AFTER_FAILURE = 1.0
# The agent makes the node namespace and bridge within a second of starting; a proxy started
# alongside waits for them, looking again after 10 ms, then twice as long each time up to
# 0.5 s, and fails after NODE_NETWORK_WAIT so that a node that never comes up is reported.
NODE_NETWORK_POLL = (0.01, 0.5)
NODE_NETWORK_WAIT = 60.0


# --------------------------------------------------------------------------- API objects -> state


def _ipv4(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)  # strict dotted quad, and ~10x ipaddress's speed
    except OSError:
        return False
    return True


def service_ports(service: Service, slices: Iterable[EndpointSlice], node_name: str) -> list[ServicePort]:
    """The ports the proxy programs for ``service`` with their endpoints from ``slices``.

    Empty for what kube-proxy leaves alone: ExternalName and headless Services, and those
    labelled ``service.kubernetes.io/headless`` or ``service.kubernetes.io/service-proxy-name``
    (another proxy's).
    """
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    labels = meta.get("labels") or {}
    if HEADLESS_LABEL in labels or PROXY_NAME_LABEL in labels or spec.get("type") == "ExternalName":
        return []
    cluster_ip = next((ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP") or ""] if _ipv4(ip)), None)
    if cluster_ip is None:
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(client_ip.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    external = spec.get("type") in ("NodePort", "LoadBalancer")
    by_port = _slice_endpoints(slices, node_name)
    ports = []
    for p in spec.get("ports") or []:
        protocol = p.get("protocol") or "TCP"
        name = p.get("name") or ""
        ports.append(ServicePort(
            namespace=meta.get("namespace", ""),
            service=meta["name"],
            name=name,
            protocol=protocol,
            cluster_ip=cluster_ip,
            port=int(p["port"]),
            node_port=int(p.get("nodePort") or 0) if external else 0,
            affinity_seconds=affinity,
            internal_local=spec.get("internalTrafficPolicy") == "Local",
            external_local=external and spec.get("externalTrafficPolicy") == "Local",
            endpoints=tuple(sorted(by_port.get((name, protocol), {}).values(), key=_endpoint_order)),
        ))
    return ports


def _endpoint_order(ep: Endpoint) -> tuple[bytes, int]:
    return socket.inet_pton(socket.AF_INET, ep.ip), ep.port  # big-endian: bytes order is numeric


def _slice_endpoints(slices: Iterable[EndpointSlice], node_name: str) -> dict[tuple[str, str], dict[tuple[str, int], Endpoint]]:
    """Endpoints by (port name, protocol), merged over a Service's slices, deduplicated."""
    out: dict[tuple[str, str], dict[tuple[str, int], Endpoint]] = {}
    for s in sorted(slices, key=lambda s: s["metadata"]["name"]):
        if s.get("addressType") != "IPv4":
            continue
        for port in s.get("ports") or []:
            number = port.get("port")
            if number is None:
                continue
            eps = out.setdefault((port.get("name") or "", port.get("protocol") or "TCP"), {})
            for e in s.get("endpoints") or []:
                addresses = e.get("addresses") or []
                if not addresses:
                    continue
                cond = e.get("conditions") or {}
                # Absent conditions mean ready, serving as ready, and not terminating.
                ready = cond.get("ready") is not False
                ep = Endpoint(
                    ip=addresses[0],
                    port=int(number),
                    ready=ready,
                    serving=ready if cond.get("serving") is None else bool(cond["serving"]),
                    terminating=cond.get("terminating") is True,
                    local=e.get("nodeName") == node_name,
                )
                known = eps.get((ep.ip, ep.port))
                # The same address in two slices (a pod moving between them): keep the ready one.
                if known is None or (ep.ready and not known.ready):
                    eps[(ep.ip, ep.port)] = ep
    return out


def _slice_service(s: Obj) -> list[str]:
    meta = s.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace', '')}/{name}"] if name else []


# --------------------------------------------------------------------------- nftables


@dataclass(frozen=True, order=True)
class EndpointTraffic:
    """Key of :func:`endpoint_counters`: traffic to ``cluster_ip`` sent on to ``endpoint``."""

    cluster_ip: str
    protocol: str  # tcp, udp, sctp
    endpoint: str  # ip:port


async def endpoint_counters(nft: NFTables) -> dict[EndpointTraffic, tuple[int, int]]:
    """Packets and bytes sent by clients to each endpoint of each ClusterIP, from the kernel.

    Read on demand (never on the sync path), so any process with access to the node
    namespace can ask.
    """
    try:
        out = await nft.run(f"list set {TABLE} {ENDPOINT_STATS}", json=True)
    except NFTError:
        return {}
    counts: dict[EndpointTraffic, tuple[int, int]] = {}
    for item in orjson.loads(out).get("nftables", []):
        for elem in (item.get("set") or {}).get("elem") or []:
            entry = elem.get("elem") or {}
            cluster_ip, proto, ip, port = entry["val"]["concat"]
            counter = entry.get("counter") or {}
            counts[EndpointTraffic(cluster_ip, proto, f"{ip}:{port}")] = (
                int(counter.get("packets", 0)), int(counter.get("bytes", 0)),
            )
    return counts


async def cleanup(netns_path: str) -> None:
    """Remove the proxy's table from the node namespace (kube-proxy's ``--cleanup``)."""
    nft = NFTables(netns_path)
    try:
        await nft.run(delete_table())
    finally:
        nft.close()


def _short(e: Exception, limit: int = 2000) -> str:
    """nft repeats the failing command in its error: keep log lines readable for big ones."""
    text = str(e)
    return text if len(text) <= limit else text[:limit] + " ..."


def _ensure_route(netns_path: str, cidrs: Iterable[str]) -> None:
    with in_netns(netns_path):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    ipr = IPRoute(fileno=sock.detach())
    try:
        found = ipr.link_lookup(ifname=BRIDGE)
        if not found:
            raise LookupError(f"bridge {BRIDGE} missing in {netns_path}")
        for cidr in cidrs:
            ipr.route("replace", dst=cidr, oif=found[0], scope=253)  # scope link
    finally:
        ipr.close()


# --------------------------------------------------------------------------- the proxier


@dataclass(frozen=True)
class SyncResult:
    full: bool
    seconds: float  # rendering + the nft transaction
    services: int  # Services written (all of them for a full sync)


class Proxier:
    """Keeps ``table ip kube-proxy`` in the node namespace in step with the API."""

    def __init__(
        self,
        client: Client,
        *,
        node_name: str,
        netns_path: str,
        service_cidrs: Iterable[str] = ("10.96.0.0/12",),
        min_sync_period: float = MIN_SYNC_PERIOD,
    ) -> None:
        self.node_name = node_name
        self.netns_path = netns_path
        self.service_cidrs = tuple(service_cidrs)
        self.min_sync_period = min_sync_period
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES, indexers={"service": _slice_service})
        self.nft = NFTables(netns_path)
        self.last_sync: SyncResult | None = None
        self.synced = asyncio.Event()  # set after the first successful sync
        self._fragments: dict[str, Fragment] = {}
        self._ports: dict[str, list[ServicePort]] = {}
        self._changed: set[str] = set()
        self._needs_full = True
        self._stale_chains: dict[str, float] = {}  # name -> when it fell out of use
        self._last_write = float("-inf")  # loop time of the last sync that wrote changes
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    # -- change tracking

    def _on_service(self, kind: EventType, svc: Obj, old: Obj | None) -> None:
        if kind == "MODIFIED" and old is not None and old.get("spec") == svc.get("spec") and (
            (old["metadata"].get("labels") or {}) == (svc["metadata"].get("labels") or {})
        ):
            return  # a status update: nothing the datapath uses
        self._changed.add(key_of(svc))
        self._wake.set()

    def _on_slice(self, kind: EventType, s: Obj, old: Obj | None) -> None:
        keys = set(_slice_service(s)) | (set(_slice_service(old)) if old is not None else set())
        if keys:
            self._changed |= keys
            self._wake.set()

    def _desired(self, key: str) -> list[ServicePort]:
        svc = self.services.get(key)
        if svc is None:
            return []
        # The informers hold raw JSON that the API server has validated: typed for reading here.
        slices = cast(list[EndpointSlice], self.slices.by_index("service", key))
        return service_ports(cast(Service, svc), slices, self.node_name)

    def pending(self) -> bool:
        """Whether changes or stale chains are waiting for a sync (tests wait for False)."""
        return bool(self._changed or self._stale_chains or self._needs_full)

    # -- syncing

    async def sync(self) -> None:
        """Write what changed since the last sync (everything after a failure)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        changed, self._changed = self._changed, set()
        full = self._needs_full
        due = [] if full else [c for c, t in self._stale_chains.items() if now - t >= STALE_DELAY]
        if not full and not changed:
            if due and now - self._last_write >= STALE_IDLE:
                await self._delete_stale(due)
            elif due:
                loop.call_later(self._last_write + STALE_IDLE - now, self._wake.set)
            return
        started = time.perf_counter()
        keys = [key_of(s) for s in self.services.list()] if full else sorted(changed)
        ports = {key: self._desired(key) for key in keys}
        fragments = {key: render_service(p) if p else EMPTY for key, p in ports.items()}
        try:
            if full:
                text = full_transaction(self.service_cidrs, (f for f in fragments.values() if f is not EMPTY))
                await self.nft.run(text)
            else:
                tx = partial_transaction((self._fragments.get(k, EMPTY), fragments[k]) for k in keys)
                # Stale chains ride along, except those this sync puts back in use.
                reused = {c for k in keys for c in fragments[k].chains}
                due = [c for c in due if c not in reused]
                if tx.text or due:
                    await self.nft.run(tx.text + cleanup_transaction(due))
        except NFTError as e:
            log.error("nftables %s sync failed, retrying with a full sync: %s", "full" if full else "partial", _short(e))
            self._needs_full = True
            loop.call_later(RETRY_AFTER_FAILURE, self._wake.set)
            return
        # Before/after of every Service written (a full sync also drops ones deleted meanwhile).
        before = {key: self._ports.get(key, []) for key in [*keys, *(self._ports if full else ())]}
        if full:
            self._fragments, self._ports = {}, {}
            self._stale_chains.clear()
            self._needs_full = False
        else:
            for c in due:
                self._stale_chains.pop(c, None)
            self._stale_chains.update(dict.fromkeys(tx.stale_chains, loop.time()))
            if tx.stale_chains:
                loop.call_later(STALE_IDLE, self._wake.set)
        self._last_write = loop.time()
        for key in keys:
            frag = fragments[key]
            # A chain back in use before its deletion is no longer stale.
            for name in frag.chains:
                self._stale_chains.pop(name, None)
            if frag is EMPTY:
                self._fragments.pop(key, None)
                self._ports.pop(key, None)
            else:
                self._fragments[key] = frag
                self._ports[key] = ports[key]
        self.last_sync = SyncResult(full, time.perf_counter() - started, len(keys))
        log.log(logging.INFO if full else logging.DEBUG, "%s sync of %d services in %.1f ms",
                "full" if full else "partial", len(keys), self.last_sync.seconds * 1000)
        self.synced.set()
        filters = [f for key, old in before.items() for f in conntrack.stale_udp_filters(old, ports.get(key, []))]
        if filters:
            task = asyncio.create_task(conntrack.flush(self.netns_path, filters))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _delete_stale(self, chains: list[str]) -> None:
        try:
            await self.nft.run(cleanup_transaction(chains))
        except NFTError as e:
            log.error("deleting stale nftables chains failed, will rebuild the table: %s", _short(e))
            self._needs_full = True
            return
        for c in chains:
            self._stale_chains.pop(c, None)

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            await self._wake.wait()
            delay = last + self.min_sync_period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # changes arriving meanwhile join this sync
            self._wake.clear()
            last = loop.time()
            await self.sync()

    async def run(self) -> None:
        """Program the datapath until cancelled; the table stays in place afterwards."""
        await _route_service_cidrs(self.netns_path, self.service_cidrs)
        informers = [asyncio.create_task(i.run(), name=f"proxy-{i.rt.plural}") for i in (self.services, self.slices)]
        try:
            await self.services.wait_synced()
            await self.slices.wait_synced()
            self.services.add_handler(self._on_service)
            self.slices.add_handler(self._on_slice)
            self._wake.set()
            await self._sync_loop()
        finally:
            for t in informers:
                t.cancel()
            await asyncio.gather(*informers, *self._background, return_exceptions=True)
            self.nft.close()


async def _route_service_cidrs(netns_path: str, cidrs: Iterable[str], limit: float = NODE_NETWORK_WAIT) -> None:
    """The agent makes the node namespace and bridge; a proxy started first waits for them.

    "Made" means all of it: the namespace mounted at ``netns_path`` (the path exists a moment
    earlier as an empty file, see :class:`NotANamespace`), the bridge in it, and the bridge up.
    Polled with a growing interval, logged once, and given up after ``limit`` seconds: the
    process then ends with the reason, and its supervisor starts it again.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay, reason = NODE_NETWORK_POLL[0], ""
    while True:
        try:
            await asyncio.to_thread(_ensure_route, netns_path, cidrs)
        except (FileNotFoundError, NotANamespace, LookupError) as e:
            waiting = str(e)
        except NetlinkError as e:
            if e.code != errno.ENETDOWN:
                raise
            # The bridge exists but the agent has not brought it up yet (both start together).
            waiting = f"bridge {BRIDGE} is down in {netns_path}"
        else:
            if reason:
                log.info("node network ready after %.2f s", loop.time() - started)
            return
        if not reason:
            log.info("waiting for the node network: %s", waiting)
        reason = waiting
        if loop.time() - started + delay > limit:
            raise TimeoutError(f"the node network is not ready after {limit:g} s: {reason}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, NODE_NETWORK_POLL[1])


async def run(
    client: Client,
    *,
    cluster: str,
    node_name: str,
    netns_path: str,
    service_cidrs: Iterable[str] = ("10.96.0.0/12",),
    min_sync_period: float = MIN_SYNC_PERIOD,
) -> None:
    """Run the proxy of node ``node_name`` of ``cluster`` until cancelled."""
    log.info("proxy for %s/%s programming %s", cluster, node_name, netns_path)
    await Proxier(
        client, node_name=node_name, netns_path=netns_path, service_cidrs=service_cidrs,
        min_sync_period=min_sync_period,
    ).run()


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument("--cluster-name", default="kubelite", help="cluster name: prefix of every netns (default: kubelite)")
    parser.add_argument("--node-name", default=None, help="node name (default: <cluster-name>-node)")
    parser.add_argument("--service-cidr", default="10.96.0.0/12", help="ClusterIP range(s), comma-separated (default: 10.96.0.0/12)")
    parser.add_argument("--min-sync-period", type=float, default=MIN_SYNC_PERIOD,
                        help=f"minimum seconds between two syncs (default: {MIN_SYNC_PERIOD})")
    parser.add_argument("--cleanup", action="store_true", help="remove the proxy's nftables table and exit")


async def main(args: argparse.Namespace) -> int:
    netns_path = node_netns_path(args.cluster_name)
    if args.cleanup:
        with contextlib.suppress(FileNotFoundError, NFTError):
            await cleanup(netns_path)
        return 0
    client = Client.from_kubeconfig(args.kubeconfig, user_agent="kube-proxy/kubelite")
    try:
        await run(
            client, cluster=args.cluster_name, node_name=args.node_name or f"{args.cluster_name}-node",
            netns_path=netns_path, service_cidrs=[c.strip() for c in args.service_cidr.split(",") if c.strip()],
            min_sync_period=args.min_sync_period,
        )
    finally:
        await client.close()
    return 0

