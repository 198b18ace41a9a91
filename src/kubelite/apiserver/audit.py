"""The audit log: one audit.k8s.io/v1 Event per mutating request, at level Metadata.

kube-apiserver's ``--audit-log-path`` writes, for each request its policy selects, who asked
(the authenticated user, and the impersonated one), for what (verb, URI, the object's
reference), from where (source IPs, user agent), the verdict (the response code, the
authorizer's decision) and what admission noted (PodSecurity's annotations). kubelite
records every write (create, update, patch, delete, deletecollection: the requests that
are not GET, HEAD or OPTIONS) at level Metadata, when the log is enabled (``kubelite up
--audit-log``); reads are not logged.

Writing must not slow the request that is being answered: an event is serialized into a
memory buffer (a few microseconds) and a background task appends the buffer to the file
every :data:`FLUSH_INTERVAL` (sooner once it holds :data:`FLUSH_BYTES`), on a thread, in one
``write`` of whole lines on an ``O_APPEND`` descriptor; API server workers append to the
same file without splitting each other's lines. :meth:`AuditLog.close` writes what is
still buffered, so a clean shutdown loses nothing (the server closes it after its last
request was answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from typing import Any

import orjson

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.2
FLUSH_BYTES = 256 * 1024
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DECISION_ANNOTATION = "authorization.k8s.io/decision"
REASON_ANNOTATION = "authorization.k8s.io/reason"


_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text: most events share it


def micro_time(ts: float) -> str:
    """metav1.MicroTime as JSON: RFC 3339 in UTC with microseconds."""
    sec, micro = divmod(round(ts * 1_000_000), 1_000_000)
    if sec != _second[0]:
        _second[:] = [sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))]
    return f"{_second[1]}.{micro:06d}Z"


def new_audit_id() -> str:
    """A random (version 4) UUID, as kube-apiserver gives a request without an Audit-ID header.

    From the process's PRNG (reseeded in each forked worker), not the OS's: an audit ID must be
    unique, not secret, and ``uuid.uuid4()`` costs a system call per request.
    """
    n = random.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def source_ips(forwarded_for: str, real_ip: str, remote: str | None) -> list[str]:
    """utilnet.SourceIPs: X-Forwarded-For's addresses, then X-Real-Ip, then the peer, each once."""
    ips = [ip.strip() for ip in forwarded_for.split(",") if ip.strip()]
    for ip in (real_ip.strip(), remote or ""):
        if ip and ip not in ips:
            ips.append(ip)
    return ips


def user_info(name: str, groups: tuple[str, ...] | list[str], uid: str = "",
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"username": name}
    if uid:
        info["uid"] = uid
    if groups:
        info["groups"] = list(groups)
    if extra:
        info["extra"] = extra
    return info


def object_ref(resource: str, namespace: str, name: str, group: str, version: str, subresource: str) -> dict[str, str]:
    ref = {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group, "apiVersion": version,
           "subresource": subresource}
    return {k: v for k, v in ref.items() if v}  # omitempty


def event(*, audit_id: str, request_uri: str, verb: str, user: dict[str, Any],
          impersonated_user: dict[str, Any] | None, source: list[str], user_agent: str,
          ref: dict[str, str] | None, response_status: dict[str, Any], received: float, completed: float,
          annotations: dict[str, str]) -> dict[str, Any]:
    """An audit.k8s.io/v1 Event at level Metadata, stage ResponseComplete (fields in Go's order)."""
    ev: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": request_uri, "verb": verb, "user": user,
    }
    if impersonated_user is not None:
        ev["impersonatedUser"] = impersonated_user
    ev["sourceIPs"] = source
    if user_agent:
        ev["userAgent"] = user_agent
    if ref:
        ev["objectRef"] = ref
    ev["responseStatus"] = response_status
    ev["requestReceivedTimestamp"] = micro_time(received)
    ev["stageTimestamp"] = micro_time(completed)
    if annotations:
        ev["annotations"] = annotations
    return ev


def response_status(code: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event's responseStatus: the code, and for a failure the Status' message, reason and details."""
    if status is None:
        return {"metadata": {}, "code": code}
    out = {k: v for k, v in status.items() if k not in ("kind", "apiVersion")}
    out["code"] = code
    return out


class AuditLog:
    """A buffered, append-only JSON-lines file of audit events."""

    def __init__(self, path: str, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self._buffer: list[bytes] = []
        self._size = 0
        self._fd = -1
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # Events name users and objects: readable by the cluster's owner only, as the rest of its state.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._task = asyncio.create_task(self._flusher(), name="audit-log")

    def record(self, ev: dict[str, Any]) -> None:
        """Queue one event (never blocks: the flusher writes it)."""
        line = orjson.dumps(ev) + b"\n"
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self._wake.set()

    def _take(self) -> bytes:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        return data

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    async def _flusher(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            if self._buffer:
                try:
                    await loop.run_in_executor(None, self._write, self._take())
                except OSError as e:  # a full disk loses events; it must not take the server down
                    log.error("audit log %s: %s", self.path, e)

    async def close(self) -> None:
        """Write what is buffered and close the file."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._fd >= 0:
            if self._buffer:
                try:
                    self._write(self._take())
                except OSError as e:
                    log.error("audit log %s: %s", self.path, e)
            os.close(self._fd)
            self._fd = -1
