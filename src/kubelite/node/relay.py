"""The API server relay: pods reach kube-apiserver at the node's address, inside the node netns.

The API server listens on 127.0.0.1 in the host's network namespace, which pods cannot
reach (nothing of the cluster is routed there, by design). The ``kubernetes`` Service's
endpoint is the node's gateway address at the API port instead, and this relay listens
there, inside the node namespace, and splices each connection to the real server on the
host's loopback: one process holding sockets in two namespaces. It is a byte pipe, so TLS
runs end to end between the pod and the API server, which sees the pod's token or
certificate exactly as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kubelite.linux.netns import start_server_in

log = logging.getLogger(__name__)
CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    except RuntimeError:
        # uvloop (the agent's loop) raises this for a write_eof on a transport the peer has
        # already closed; the connection is over either way.
        pass


class Relay:
    """``listen_host:port`` in the namespace at ``netns_path`` → ``target_host:target_port`` here."""

    def __init__(self, netns_path: str, listen_host: str, port: int, target_host: str = "127.0.0.1",
                 target_port: int | None = None) -> None:
        self.netns_path = netns_path
        self.listen_host = listen_host
        self.port = port
        self.target_host = target_host
        self.target_port = target_port or port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await start_server_in(self.netns_path, self._handle, self.listen_host, self.port)
        log.info("API server relay on %s:%d (node netns) → %s:%d",
                 self.listen_host, self.port, self.target_host, self.target_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError as e:
                log.warning("API server relay: cannot reach %s:%d: %s", self.target_host, self.target_port, e)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except asyncio.CancelledError:
            # stop() cancels open connections; this is the connection's own top-level task,
            # so ending quietly here keeps asyncio from logging the cancellation as an error.
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
