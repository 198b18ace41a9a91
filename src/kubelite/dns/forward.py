"""Names outside the cluster zone: forwarded to the host's resolvers, with a cache.

CoreDNS's ``forward . /etc/resolv.conf`` and ``cache 30`` in one place. The trade-offs:
- Failing fast beats waiting: a query gets at most ``timeout`` (1.8 s) across all
  upstreams, each attempt at most ``attempt_timeout``; an ICMP "port unreachable" fails the
  attempt at once. Then the answer is SERVFAIL, cached for 5 s like CoreDNS's
  ``servfail`` default, so a dead upstream costs clients one short wait, not one per query.
- Identical questions in flight share one upstream exchange (a burst for one new name
  costs one query upstream).
- Answers are cached as wire bytes (see :mod:`kubelite.dns.wire`) for their smallest TTL,
  at most ``max_ttl`` (30 s, kubeadm's ``cache 30``); NXDOMAIN/NODATA for the SOA's
  negative TTL, at most the same; the TTLs a client sees count down.
- One connected UDP socket per upstream, queries multiplexed by random ID and checked
  against the question, so a stray or spoofed datagram cannot answer someone else's query.
  Clients that ask over TCP are forwarded over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import pathlib
import secrets
import time
from dataclasses import dataclass
from typing import cast

import dns.message
import dns.name

from kubelite.dns.metrics import Metrics
from kubelite.dns.wire import (
    HEADER,
    NOERROR,
    NXDOMAIN,
    RCODE_NAMES,
    RD,
    REFUSED,
    RR,
    SERVFAIL,
    TC,
    U16,
    Entry,
    entry_from_response,
    header_entry,
    opt_record,
    scan_response,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.8
ATTEMPT_TIMEOUT = 0.6
MAX_TTL = 30
SERVFAIL_TTL = 5
NO_SOA_NEGATIVE_TTL = 5
CACHE_SIZE = 9984  # CoreDNS's default cache capacity
MAX_CONCURRENT = 1000  # kubeadm's `max_concurrent 1000`


def parse_upstream(text: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest.removeprefix(":") or 53)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, 53
    ipaddress.ip_address(host)  # upstreams are addresses, never names we would have to resolve
    return host, port


def upstreams_from_resolv_conf(path: str = "/etc/resolv.conf", *, in_cluster: bool = False) -> list[tuple[str, int]]:
    """The process's resolvers, as the kubelet picks them: behind systemd-resolved's stub, its
    real upstreams; inside a pod, no loopback address (that would be this server itself)."""

    def read(p: str) -> list[str]:
        try:
            text = pathlib.Path(p).read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split(";", 1)[0].split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                out.append(fields[1].split("%", 1)[0])
        return out

    servers = read(path)
    if any(ipaddress.ip_address(s).is_loopback for s in servers if _is_ip(s)):
        real = [s for s in read("/run/systemd/resolve/resolv.conf") if _is_ip(s)]
        if real:
            servers = real
    out = []
    for s in servers:
        if not _is_ip(s) or (in_cluster and ipaddress.ip_address(s).is_loopback):
            continue
        out.append((s, 53))
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class Upstream:
    host: str
    port: int
    fails: int = 0

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class _UdpChannel(asyncio.DatagramProtocol):
    """One connected socket to one upstream; answers matched to queries by ID and question."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        waiting = self.pending.get(U16.unpack_from(data)[0])
        if waiting is None:
            return
        key, fut = waiting
        if question_key(data[12:12 + len(key)]) == key and not fut.done():
            fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ECONNREFUSED and friends on a connected socket: every query in flight has failed.
        for _, fut in list(self.pending.values()):
            if not fut.done():
                fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or ConnectionError("upstream socket closed"))
        self.transport = None


class Forwarder:
    def __init__(
        self, upstreams: list[tuple[str, int]], *, metrics: Metrics | None = None, timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float = ATTEMPT_TIMEOUT, cache_size: int = CACHE_SIZE, max_ttl: int = MAX_TTL,
        max_concurrent: int = MAX_CONCURRENT,
    ) -> None:
        self.upstreams = [Upstream(h, p) for h, p in upstreams]
        self.metrics = metrics or Metrics()
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.cache_size = cache_size
        self.max_ttl = max_ttl
        self.max_concurrent = max_concurrent
        self.cache: dict[bytes, Entry] = {}
        self._inflight: dict[tuple[bytes, bool], asyncio.Task[Entry]] = {}
        self._channels: dict[tuple[str, int], _UdpChannel] = {}
        self.metrics.cache_entries = lambda: len(self.cache)

    # -------------------------------------------------------------- cache

    def cached(self, key: bytes, now: float) -> Entry | None:
        e = self.cache.get(key)
        if e is None:
            return None
        if e.expires <= now:
            del self.cache[key]
            return None
        self.metrics.cache_hit(e.rcode == NXDOMAIN or (e.rcode == NOERROR and not e.an))
        return e

    def _store(self, key: bytes, e: Entry) -> None:
        if len(self.cache) >= self.cache_size and key not in self.cache:
            del self.cache[next(iter(self.cache))]  # oldest first: a flood of random names cannot grow us
        self.cache[key] = e

    # -------------------------------------------------------------- resolving

    async def resolve(self, question: bytes, key: bytes, *, tcp: bool = False) -> Entry:
        """The answer for a question (wire bytes as the client sent them); never raises, never hangs."""
        e = self.cached(key, time.monotonic())
        if e is not None:
            return e
        self.metrics.cache_misses += 1
        k = (key, tcp)
        task = self._inflight.get(k)
        if task is None:
            if len(self._inflight) >= self.max_concurrent:
                return header_entry(REFUSED)
            task = asyncio.ensure_future(self._exchange(question, key, tcp))
            self._inflight[k] = task
            task.add_done_callback(lambda _t: self._inflight.pop(k, None))
        return await asyncio.shield(task)

    async def lookup(self, name: dns.name.Name, qtype: int) -> tuple[list[RR], float] | None:
        """Records for a name (an ExternalName's target) and until when they hold; None on failure."""
        wire = name.to_wire()
        assert wire is not None
        question = wire + U16.pack(qtype) + U16.pack(1)
        e = await self.resolve(question, question_key(question))
        if e.rcode not in (NOERROR, NXDOMAIN):
            return None
        msg = dns.message.from_wire(HEADER.pack(0, e.flags, 1, e.an, e.ns, e.ar) + question + e.tail,
                                    ignore_trailing=True)
        ttl_left = max(0, int(e.expires - time.monotonic()))
        records: list[RR] = [(rrset.name, min(rrset.ttl, ttl_left), rd) for rrset in msg.answer for rd in rrset]
        return records, e.expires

    async def _exchange(self, question: bytes, key: bytes, tcp: bool) -> Entry:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        order = sorted(self.upstreams, key=lambda u: u.fails)  # healthy ones first, in configured order
        attempt = 0
        while order and (left := deadline - loop.time()) > 0:
            up = order[attempt % len(order)]
            attempt += 1
            qid = secrets.randbits(16)
            query = HEADER.pack(qid, RD, 1, 0, 0, 1) + question + opt_record()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(min(left, self.attempt_timeout)):
                    data = await (self._tcp(up, query) if tcp else self._udp(up, qid, key, query))
                if U16.unpack_from(data)[0] != qid or question_key(data[12:12 + len(key)]) != key:
                    raise ValueError("answer to another question")
                scanned = scan_response(data)
            except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as err:
                up.fails += 1
                self.metrics.forward_failure(up.label)
                log.debug("upstream %s failed: %s: %s", up.label, type(err).__name__, err)
                # Refused or unreachable is an answer of sorts: no second try at it for this question.
                if isinstance(err, OSError) and not isinstance(err, TimeoutError):
                    order.remove(up)
                    attempt -= 1
                continue
            up.fails = 0
            rcode = scanned.flags & 0xF
            self.metrics.forward_response(up.label, RCODE_NAMES.get(rcode, str(rcode)), time.perf_counter() - started)
            now = time.monotonic()
            if scanned.flags & TC:  # not cached: the client will ask again over TCP
                e = entry_from_response(data, scanned, expires=now, born=now)
                e.flags |= TC
                return e
            ttl = self._ttl(rcode, scanned.an, scanned.min_answer_ttl, scanned.negative_ttl)
            e = entry_from_response(data, scanned, expires=now + ttl, born=now)
            if ttl > 0:
                self._store(key, e)
            return e
        e = header_entry(SERVFAIL, expires=time.monotonic() + SERVFAIL_TTL)
        self._store(key, e)
        return e

    def _ttl(self, rcode: int, answers: int, min_answer: int | None, negative: int | None) -> int:
        if rcode == NOERROR and answers:
            return min(min_answer or 0, self.max_ttl)
        if rcode in (NOERROR, NXDOMAIN):
            return min(NO_SOA_NEGATIVE_TTL if negative is None else negative, self.max_ttl)
        if rcode == SERVFAIL:
            return SERVFAIL_TTL
        return 0

    async def _udp(self, up: Upstream, qid: int, key: bytes, query: bytes) -> bytes:
        ch = self._channels.get((up.host, up.port))
        if ch is None or ch.transport is None:
            loop = asyncio.get_running_loop()
            _, ch = await loop.create_datagram_endpoint(_UdpChannel, remote_addr=(up.host, up.port))
            self._channels[(up.host, up.port)] = ch
        while qid in ch.pending:
            qid = secrets.randbits(16)
            query = U16.pack(qid) + query[2:]
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        ch.pending[qid] = (key, fut)
        try:
            assert ch.transport is not None
            ch.transport.sendto(query)
            self.metrics.forward_request(up.label)
            return await fut
        finally:
            ch.pending.pop(qid, None)

    async def _tcp(self, up: Upstream, query: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(up.host, up.port)
        try:
            writer.write(U16.pack(len(query)) + query)
            self.metrics.forward_request(up.label)
            await writer.drain()
            size = U16.unpack(await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        for ch in self._channels.values():
            if ch.transport is not None:
                ch.transport.close()
        self._channels.clear()


def question_key(question: bytes) -> bytes:
    """A question's cache key: the name lower-cased (DNS names are case-insensitive), type and class."""
    return question[:-4].lower() + question[-4:]
