"""The cluster DNS server: UDP and TCP on one port, answers from caches, never from the API.

A query goes through three tiers, cheapest first:
1. the answer cache — wire bytes per (name, type, class) for cluster names, emptied
   whenever the cluster state changes, so a deleted Service is NXDOMAIN on the very next
   query (CoreDNS caches cluster answers for up to the TTL; kubeadm now turns that off
   for the cluster zone for the same reason);
2. the forwarder's cache for outside names (TTL-bound);
3. a miss: cluster names are resolved from the informer caches and rendered (tens of
   microseconds), outside names are forwarded (asynchronously, the only tier that awaits).
Everything up to tier 3's forwarding runs synchronously inside ``datagram_received``: no
task, no future, no copy of the packet beyond the answer itself.

Informers watch Services, EndpointSlices and Namespaces (and Pods only in ``pods verified``
mode, slimmed to their IPs) and feed :class:`kubelite.dns.records.ClusterState`. Until
they have synced, cluster names get SERVFAIL (an honest "try again") and /ready says 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kubelite.api.types import EventType, Obj
from kubelite.client import ENDPOINTSLICES, NAMESPACES, PODS, SERVICES, Client, Config, Informer
from kubelite.client.informer import Handler
from kubelite.dns.forward import Forwarder, parse_upstream, upstreams_from_resolv_conf
from kubelite.dns.metrics import Metrics, parse_addr, serve_http
from kubelite.dns.records import ClusterState, Resolver
from kubelite.dns.wire import (
    CLASS_IN,
    REFUSED,
    SERVFAIL,
    U16,
    Drop,
    Entry,
    Query,
    Reject,
    header_entry,
    name_of,
    parse_query,
    render,
    reply,
)

log = logging.getLogger(__name__)

ANSWER_CACHE_SIZE = 10000
TCP_IDLE_TIMEOUT = 10.0  # CoreDNS's read timeout for TCP connections
MAX_TCP_CONNECTIONS = 1000
UDP_BUFFER = 4 << 20  # absorb bursts (a benchmark, a restart of every pod) without kernel drops
ZONE_TRANSFER = (251, 252)  # IXFR, AXFR: not offered


class DNSServer:
    def __init__(self, resolver: Resolver, forwarder: Forwarder, metrics: Metrics | None = None, *,
                 synced: Callable[[], bool] = lambda: True, cache_size: int = ANSWER_CACHE_SIZE) -> None:
        self.resolver = resolver
        self.forwarder = forwarder
        self.metrics = metrics or forwarder.metrics
        self.synced = synced
        self.cache_size = cache_size
        self.answers: dict[bytes, Entry] = {}
        resolver.state.listeners.append(self.answers.clear)
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tcp_conns: set[asyncio.StreamWriter] = set()

    # -------------------------------------------------------------- answering

    def answer_now(self, q: Query, now: float) -> Entry | None:
        """The answer if it can be given without waiting; None when the forwarder must be asked."""
        e = self.answers.get(q.key)
        if e is not None:
            if not e.expires or e.expires > now:
                return e
            del self.answers[q.key]
        e = self.forwarder.cached(q.key, now)
        if e is not None:
            return e
        labels = q.labels()
        r = self.resolver
        if r.in_zone(labels):
            if q.qclass != CLASS_IN or q.qtype in ZONE_TRANSFER:
                return header_entry(REFUSED, authoritative=True)
            if not self.synced():
                return header_entry(SERVFAIL)
            ans = r.resolve(labels, q.qtype)
            if ans.chase is not None:
                return None
            return self._keep(q.key, render(name_of(labels), q.qtype, ans.rcode, ans.answer, ans.authority,
                                            ans.additional))
        if q.qclass == CLASS_IN and r.in_reverse_zone(labels) and self.synced():
            rev = r.reverse(labels, q.qtype)
            if rev is not None:
                return self._keep(q.key, render(name_of(labels), q.qtype, rev.rcode, rev.answer))
        return None

    def _keep(self, key: bytes, e: Entry) -> Entry:
        if len(self.answers) >= self.cache_size:
            del self.answers[next(iter(self.answers))]
        self.answers[key] = e
        return e

    async def answer(self, q: Query, *, tcp: bool) -> Entry:
        now = time.monotonic()
        e = self.answer_now(q, now)
        if e is not None:
            return e
        labels = q.labels()
        if not self.resolver.in_zone(labels):
            return await self.forwarder.resolve(q.question, q.key, tcp=tcp)
        # An ExternalName whose target lives outside the zone: CNAME plus the target's records.
        generation = self.resolver.state.generation
        ans = self.resolver.resolve(labels, q.qtype)
        expires = now + self.resolver.ttl
        found = None if ans.chase is None else await self.forwarder.lookup(ans.chase, q.qtype)
        if found is not None:
            records, until = found
            ans.answer += records
            expires = min(expires, until)
        e = render(name_of(labels), q.qtype, ans.rcode, ans.answer, ans.authority, ans.additional,
                   expires=expires)
        if found is not None and self.resolver.state.generation == generation:
            self._keep(q.key, e)
        return e

    # -------------------------------------------------------------- UDP

    def datagram(self, data: bytes, addr: Any, transport: asyncio.DatagramTransport, family: str) -> None:
        started = time.perf_counter()
        try:
            q = parse_query(data)
        except Drop:
            self.metrics.dropped += 1
            return
        except Reject as r:
            transport.sendto(r.reply, addr)
            self.metrics.observe("udp", family, 0, r.rcode, time.perf_counter() - started)
            return
        now = time.monotonic()
        e = self.answer_now(q, now)
        if e is None:
            self._spawn(self._datagram_later(q, addr, transport, family, started))
            return
        transport.sendto(reply(q, e, q.udp_limit, now), addr)
        self.metrics.observe("udp", family, q.qtype, e.rcode, time.perf_counter() - started)

    async def _datagram_later(self, q: Query, addr: Any, transport: asyncio.DatagramTransport, family: str,
                              started: float) -> None:
        e = await self.answer(q, tcp=False)
        if not transport.is_closing():
            transport.sendto(reply(q, e, q.udp_limit, time.monotonic()), addr)
        self.metrics.observe("udp", family, q.qtype, e.rcode, time.perf_counter() - started)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -------------------------------------------------------------- TCP

    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        family = "2" if ":" in str((writer.get_extra_info("peername") or ("",))[0]) else "1"
        self._tcp_conns.add(writer)
        try:
            if len(self._tcp_conns) > MAX_TCP_CONNECTIONS:
                return
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    size = U16.unpack(await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                started = time.perf_counter()
                try:
                    q = parse_query(data)
                except Drop:
                    self.metrics.dropped += 1
                    return  # a client that sends responses gets its connection closed
                except Reject as r:
                    writer.write(U16.pack(len(r.reply)) + r.reply)
                    self.metrics.observe("tcp", family, 0, r.rcode, time.perf_counter() - started)
                    await writer.drain()
                    continue
                e = await self.answer(q, tcp=True)
                out = reply(q, e, 65535, time.monotonic())
                writer.write(U16.pack(len(out)) + out)
                self.metrics.observe("tcp", family, q.qtype, e.rcode, time.perf_counter() - started)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_conns.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -------------------------------------------------------------- lifecycle

    async def start(self, host: str = "0.0.0.0", port: int = 53) -> int:
        """Listen on UDP and TCP ``host:port`` (port 0: one free port for both); returns the port."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(20):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
            sock.bind((host, port))
            bound = sock.getsockname()[1]
            try:
                tcp = await asyncio.start_server(self._tcp_connection, host, bound, reuse_address=True,
                                                 backlog=1024)
            except OSError:
                sock.close()
                if port:
                    raise
                continue
            label = "2" if family == socket.AF_INET6 else "1"
            transport, _ = await loop.create_datagram_endpoint(functools.partial(_UdpProtocol, self, label),
                                                               sock=sock)
            self._udp.append(transport)
            self._tcp.append(tcp)
            return int(bound)
        raise OSError("no free port for both UDP and TCP")

    async def stop(self) -> None:
        for t in self._udp:
            t.close()
        for s in self._tcp:
            s.close()
        for w in list(self._tcp_conns):
            w.close()
        await asyncio.sleep(0)  # let connection handlers see their sockets close
        for task in list(self._tasks):
            task.cancel()
        await self.forwarder.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer, family: str) -> None:
        self.server = server
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        try:
            self.server.datagram(data, addr, self.transport, self.family)
        except Exception:  # one bad packet must never stop the server
            log.exception("query from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


# ---------------------------------------------------------------------------- informers


class _PodIPInformer(Informer):
    """Pods reduced to name, namespace and IPs as they arrive: all pod DNS needs (CoreDNS's
    informers transform pods the same way to keep memory small)."""

    @staticmethod
    def _slim(obj: dict[str, Any]) -> dict[str, Any]:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        slim_meta = {k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid") if k in meta}
        slim_status = {k: status[k] for k in ("podIP", "podIPs") if k in status}
        obj.clear()
        obj.update(metadata=slim_meta, status=slim_status)
        return obj


def watch_cluster(client: Client, state: ClusterState, *, pods: bool) -> list[Informer]:
    """Informers that keep ``state`` current (start each one's ``run()``)."""

    def feed(setter: Callable[[Obj], None], deleter: Callable[[Obj], None]) -> Handler:
        def handler(kind: EventType, obj: Obj, _old: Obj | None) -> None:
            (deleter if kind == "DELETED" else setter)(obj)
        return handler

    informers = [
        (Informer(client, SERVICES), state.set_service, state.delete_service),
        (Informer(client, ENDPOINTSLICES), state.set_slice, state.delete_slice),
        (Informer(client, NAMESPACES), state.set_namespace, state.delete_namespace),
    ]
    if pods:
        informers.append((_PodIPInformer(client, PODS), state.set_pod, state.delete_pod))
    for inf, setter, deleter in informers:
        inf.add_handler(feed(setter, deleter))
    return [inf for inf, _, _ in informers]


# ---------------------------------------------------------------------------- the process


@dataclass
class Options:
    kubeconfig: str | None = None
    zone: str = "cluster.local"
    listen: str = "0.0.0.0:53"
    upstreams: list[str] = field(default_factory=list)
    resolv_conf: str = "/etc/resolv.conf"
    ttl: int = 5
    pods: str = "insecure"
    metrics: str = ":9153"
    health: str = ":8080"
    ready: str = ":8181"
    lameduck: float = 5.0  # kubeadm's `health { lameduck 5s }`: keep answering while endpoints catch up
    timeout: float = 1.8


def _upstreams(opts: Options, listen: tuple[str, int]) -> list[tuple[str, int]]:
    in_cluster = opts.kubeconfig is None
    ups = ([parse_upstream(u) for u in opts.upstreams] if opts.upstreams
           else upstreams_from_resolv_conf(opts.resolv_conf, in_cluster=in_cluster))
    host, port = listen
    # Never forward to ourselves: that is CoreDNS's `loop` plugin's fatal case.
    wildcard = host in ("0.0.0.0", "::")
    return [u for u in ups if not (u[1] == port and (u[0] == host or (wildcard and u[0].startswith("127."))))]


async def run(opts: Options, *, on_ready: Callable[[int], None] | None = None) -> None:
    config = Config.from_kubeconfig(opts.kubeconfig) if opts.kubeconfig else Config.in_cluster()
    client = Client(config, user_agent="kubelite-dns", max_connections=8)
    state = ClusterState()
    resolver = Resolver(state, opts.zone, ttl=opts.ttl, pods=opts.pods)
    metrics = Metrics()
    host, port = parse_addr(opts.listen, 53)
    host = host or "0.0.0.0"
    upstreams = _upstreams(opts, (host, port))
    forwarder = Forwarder(upstreams, metrics=metrics, timeout=opts.timeout)
    informers = watch_cluster(client, state, pods=opts.pods == "verified")
    synced: Callable[[], bool] = lambda: all(i.synced for i in informers)  # noqa: E731
    server = DNSServer(resolver, forwarder, metrics, synced=synced)
    stopping = asyncio.Event()
    # CoreDNS in lame duck: /health still says OK, /ready does not, so endpoints drop us first.
    ready = lambda: synced() and not stopping.is_set()  # noqa: E731
    tasks = [asyncio.create_task(i.run()) for i in informers]
    runners: list[Any] = []
    try:
        bound = await server.start(host, port)
        runners, _ = await serve_http(metrics, ready, metrics_addr=opts.metrics, health_addr=opts.health,
                                      ready_addr=opts.ready)
        log.info("serving %s on %s:%d (upstreams: %s)", opts.zone, host, bound,
                 ", ".join(f"{h}:{p}" for h, p in upstreams) or "none")
        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, done.set)

        async def when_synced() -> None:
            await asyncio.gather(*(i.wait_synced() for i in informers))
            gc.collect()
            gc.freeze()  # what is loaded now lives for the whole run: keep the collector from re-walking it
            log.info("caches synced: %d services, %d endpoint slices", len(state.services), len(state.slices))
            if on_ready:
                on_ready(bound)

        tasks.append(asyncio.create_task(when_synced()))
        await done.wait()
        stopping.set()
        if opts.lameduck > 0:
            await asyncio.sleep(opts.lameduck)
    finally:
        for t in tasks:
            t.cancel()
        await server.stop()
        for r in runners:
            await r.cleanup()
        await client.close()
