"""Recording Events, as client-go's EventRecorder does, so `kubectl describe` shows what happened.

Repeated events (same object, reason and message) are folded into one Event whose ``count``
and ``lastTimestamp`` move, instead of a new object each time: a crash-looping pod or a
controller retrying must not flood the store.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from kubelite.api import timeutil
from kubelite.api.registry import lookup
from kubelite.client.rest import ApiError, Client

log = logging.getLogger(__name__)
EVENTS = lookup("", "v1", "events")


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._seen: dict[str, dict[str, Any]] = {}

    async def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (type Normal or Warning); failures are only logged."""
        assert EVENTS is not None
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        ref = {
            "kind": obj.get("kind", ""),
            "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        digest = hashlib.sha1(f"{ref['uid']}|{reason}|{message}|{type_}".encode()).hexdigest()[:10]
        now = timeutil.now_rfc3339()
        try:
            prev = self._seen.get(digest)
            if prev is not None:
                prev["count"] = int(prev.get("count", 1)) + 1
                prev["lastTimestamp"] = now
                patch = {"count": prev["count"], "lastTimestamp": now}
                self._seen[digest] = await self.client.patch(EVENTS, prev["metadata"]["name"], patch, ns)
                return
            name = f"{meta.get('name', 'unknown')}.{digest}"
            ev = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": ref,
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "reportingComponent": self.component,
                "reportingInstance": self.host or self.component,
            }
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[digest] = await self.client.create(EVENTS, ev, ns)
        except ApiError as e:
            if e.not_found:
                self._seen.pop(digest, None)
            log.debug("recording event %s for %s: %s", reason, ref["name"], e)
        except Exception as e:
            log.debug("recording event %s for %s: %s", reason, ref["name"], e)
