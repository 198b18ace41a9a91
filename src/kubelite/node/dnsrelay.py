"""The upstream DNS relay: pods with ``dnsPolicy: Default`` (cluster DNS among them) reach the
host's resolvers through the node's address.

Nothing of the cluster is routed to the host's network, by design, so a pod cannot reach the
resolver in the host's resolv.conf. The agent listens on port 53 of the node address inside
the node namespace (UDP and TCP) and passes each query to the host's resolver from the host
namespace, as its API relay does for the API server. Pods with ``dnsPolicy: Default`` get
the node address as their nameserver; cluster DNS forwards names outside the cluster zone
there, so ``kubectl exec pod -- nslookup example.com`` works as on a real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import cast

from kubelite.linux.netns import socket_in
from kubelite.node.relay import Relay

log = logging.getLogger(__name__)
PORT = 53
TIMEOUT = 2.0
MAX_IN_FLIGHT = 256


class _Upstream(asyncio.DatagramProtocol):
    """Receives the one answer to one forwarded query."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: DnsRelay) -> None:
        self.relay = relay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a subclass of asyncio's, only alike.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self.relay.tasks) >= MAX_IN_FLIGHT:
            return  # a flood gets dropped, as a busy resolver drops; clients retry
        task = asyncio.create_task(self.relay.forward(data, addr, self))
        self.relay.tasks.add(task)
        task.add_done_callback(self.relay.tasks.discard)


class DnsRelay:
    def __init__(self, netns_path: str, listen_host: str, upstream: str) -> None:
        """``upstream`` is ``ip`` or ``ip:port`` of a resolver reachable from the host namespace."""
        self.netns_path = netns_path
        self.listen_host = listen_host
        host, _, port = upstream.rpartition(":") if upstream.count(":") == 1 else (upstream, "", "")
        self.upstream = (host, int(port) if port else PORT)
        self.tasks: set[asyncio.Task[None]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp = Relay(netns_path, listen_host, PORT, target_host=self.upstream[0], target_port=self.upstream[1])

    async def start(self) -> None:
        sock = socket_in(self.netns_path, socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.listen_host, PORT))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Listener(self), sock=sock)
        self._udp = transport
        await self._tcp.start()
        log.info("DNS relay on %s:53 (node netns) → %s:%d", self.listen_host, *self.upstream)

    async def forward(self, query: bytes, client: tuple[str, int], listener: _Listener) -> None:
        loop = asyncio.get_running_loop()
        transport = None
        try:
            transport, proto = await loop.create_datagram_endpoint(_Upstream, remote_addr=self.upstream)
            transport.sendto(query)
            answer = await asyncio.wait_for(proto.answer, TIMEOUT)
        except (OSError, TimeoutError) as e:
            log.debug("DNS relay: %s: %s", self.upstream, e)
            return  # the client times out and retries, as with a lost datagram
        finally:
            if transport is not None:
                transport.close()
        if listener.transport is not None:
            listener.transport.sendto(answer, client)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for t in list(self.tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            await self._tcp.stop()
