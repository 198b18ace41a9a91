"""``/healthz``, ``/livez`` and ``/readyz``: the API server's health, as kube-apiserver reports it.

The format is that of k8s.io/apiserver's healthz package, which probes and ``kubectl get
--raw='/readyz?verbose'`` users read: one ``[+]name ok`` or ``[-]name failed: reason
withheld`` line per check (the reason goes to the log only: these paths need no
credentials), then ``<path> check passed``, or ``<path> check failed`` with status 500, in
which case the lines are printed even without ``?verbose``. ``?exclude=name`` skips a check,
and ``/readyz/<name>`` runs one check alone (``internal server error: <reason>`` when it fails).

Checks read the store's real state (kubelite.store's ``health()``): ``etcd`` fails when the
store is unusable (closed, or, for an API server worker, its connection to the owner lost).
``etcd-compaction`` has no kube-apiserver counterpart: there, etcd compacts itself and is
monitored apart, while here the store is in-process and its compaction can stop silently
(kine's lesson), leaving history and the database to grow without bound; only readiness
reports it, since restarting the API server would not mend it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from kubelite.store import Store

log = logging.getLogger(__name__)

# A check answers None when healthy, else the reason (logged, never shown on the root paths).
CheckFn = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFn


@dataclass(frozen=True)
class Answer:
    status: int
    text: str


async def _ping() -> str | None:
    return None


PING = Check("ping", _ping)


def store_checks(store: Store) -> tuple[Check, Check]:
    """``etcd`` and ``etcd-compaction``, from the store's own account of itself."""

    async def reachable() -> str | None:
        return (await store.health()).error

    async def compaction() -> str | None:
        health = await store.health()
        return health.error or health.compaction_error

    return Check("etcd", reachable), Check("etcd-compaction", compaction)


async def root(name: str, checks: Sequence[Check], query: Mapping[str, str] | None = None,
               excluded: Sequence[str] = ()) -> Answer:
    """handleRootHealth: the report of every check for ``/<name>``."""
    exclude = list(dict.fromkeys(excluded))
    lines: list[str] = []
    failed: list[str] = []
    for check in checks:
        if check.name in exclude:
            exclude.remove(check.name)
            lines.append(f"[+]{check.name} excluded: ok\n")
            continue
        reason = await check.run()
        if reason is not None:
            lines.append(f"[-]{check.name} failed: reason withheld\n")
            log.warning("%s check %s failed: %s", name, check.name, reason)
            failed.append(check.name)
        else:
            lines.append(f"[+]{check.name} ok\n")
    if exclude:
        quoted = ",".join(f'"{n}"' for n in exclude)
        lines.append(f"warn: some health checks cannot be excluded: no matches for {quoted}\n")
    if failed:
        return Answer(500, "".join(lines) + f"{name} check failed\n")
    if query is None or "verbose" not in query:
        return Answer(200, "ok")
    return Answer(200, "".join(lines) + f"{name} check passed\n")


async def single(checks: Sequence[Check], check_name: str) -> Answer | None:
    """adaptCheckToHandler: ``/<name>/<check>``; None for a check that does not exist."""
    for check in checks:
        if check.name == check_name:
            reason = await check.run()
            if reason is not None:
                return Answer(500, f"internal server error: {reason}\n")
            return Answer(200, "ok")
    return None
