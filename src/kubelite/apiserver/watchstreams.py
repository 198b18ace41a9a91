"""The watch streams being served: counted for /metrics, and ended when their client is gone.

aiohttp does not cancel a handler when its client disconnects (``handler_cancellation`` is
off, and turning it on would cancel every verb half-way). A watch learns that its client left
only when it next writes, so a watch on a quiet prefix (a ``fieldSelector=metadata.name=X``
watch, as kubectl's ``delete --wait`` and ``wait`` open, without bookmarks) outlived its
client until its timeout, 30 to 60 minutes later, holding its store watcher, its TLS
connection's buffers and its task: 1,000 such watches closed by their clients kept the API
server at its peak memory. kube-apiserver ends a watch when its request's context is
cancelled, which Go's HTTP server does when the connection closes. Here one reaper task,
alive only while streams are open, looks every ``REAP_INTERVAL`` seconds for streams whose
connection is closed and cancels them; the watch handler's ``finally`` then unregisters
them from the store.

The count per resource is served as kube-apiserver's ``apiserver_longrunning_requests``
gauge (verb WATCH), so a leak is visible from outside.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

REAP_INTERVAL = 2.0


@dataclass(frozen=True)
class WatchLabels:
    """The labels of ``apiserver_longrunning_requests`` for one watch request."""

    group: str
    version: str
    resource: str
    scope: str  # "cluster", "namespace" or "resource" (one named object), as kube-apiserver's CleanScope

    def render(self) -> str:
        return (f'{{component="apiserver",group="{self.group}",resource="{self.resource}",scope="{self.scope}",'
                f'subresource="",verb="WATCH",version="{self.version}"}}')


class WatchStreams:
    """Every watch stream being served: its task, request and labels."""

    def __init__(self) -> None:
        self._streams: dict[asyncio.Task[Any], tuple[web.Request, WatchLabels]] = {}
        self._reaper: asyncio.Task[None] | None = None

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._streams))

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, task: asyncio.Task[Any], request: web.Request, labels: WatchLabels) -> None:
        self._streams[task] = (request, labels)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="watch reaper")

    def discard(self, task: asyncio.Task[Any]) -> None:
        self._streams.pop(task, None)

    def counts(self) -> collections.Counter[WatchLabels]:
        return collections.Counter(labels for _, labels in self._streams.values())

    def reap(self) -> int:
        """Cancels the streams whose connection is closed; how many."""
        gone = [task for task, (request, _) in self._streams.items() if _closed(request)]
        for task in gone:
            task.cancel()
        return len(gone)

    async def _reap(self) -> None:
        while self._streams:
            await asyncio.sleep(REAP_INTERVAL)
            self.reap()

    async def stop(self) -> None:
        for task in self:
            task.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None


def _closed(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def render(streams: WatchStreams) -> str:
    """The ``apiserver_longrunning_requests`` gauge for the watches being served."""
    counts = streams.counts()
    if not counts:
        return ""
    name = "apiserver_longrunning_requests"
    out = [f"# HELP {name} [STABLE] Gauge of all active long-running apiserver requests broken out by verb, group, "
           "version, resource, scope and component. Not all requests are tracked this way.",
           f"# TYPE {name} gauge"]
    out += [f"{name}{labels.render()} {n}" for labels, n in sorted(counts.items(), key=lambda kv: kv[0].render())]
    return "".join(line + "\n" for line in out)
