"""Flush UDP conntrack entries that still point at endpoints a Service no longer uses.

TCP needs nothing: a connection to a vanished endpoint fails and the client reconnects
through the Service again. UDP has no connection to fail. As long as a client keeps sending
from the same port, conntrack keeps the old DNAT binding alive and every datagram goes to
the dead endpoint (DNS clients are the classic victim). kube-proxy therefore deletes, after
each sync, the UDP entries whose DNAT target left the Service, and the entries of UDP
Services that just got their first endpoint (a datagram sent while they had none may have
left a binding that would keep bypassing the new rules).

The deletion runs Debian's ``conntrack`` tool inside the node's network namespace: it is
rare, small work, and the tool's filters (``--orig-dst``, ``--dst-nat``) say exactly what
is deleted. Exit status 1 only means "no entry matched".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from kubelite.proxy.ruleset import ServicePort, endpoints_in_use

log = logging.getLogger(__name__)

Filter = tuple[str, ...]  # conntrack -D arguments


def stale_udp_filters(old: Iterable[ServicePort], new: Iterable[ServicePort]) -> list[Filter]:
    """The ``conntrack -D`` filters for a Service that went from ``old`` to ``new`` ports."""
    before = {(sp.cluster_ip, sp.port): sp for sp in old if sp.protocol == "UDP"}
    after = {(sp.cluster_ip, sp.port): sp for sp in new if sp.protocol == "UDP"}
    filters: list[Filter] = []
    for key, sp in before.items():
        gone = {ep.ip for ep in endpoints_in_use(sp).reachable}
        now = after.get(key)
        if now is not None:
            gone -= {ep.ip for ep in endpoints_in_use(now).reachable}
        for ip in sorted(gone):
            filters.append(("-p", "udp", "--orig-dst", sp.cluster_ip, "--orig-port-dst", str(sp.port), "--dst-nat", ip))
            if sp.node_port:
                filters.append(("-p", "udp", "--orig-port-dst", str(sp.node_port), "--dst-nat", ip))
    for key, sp in after.items():
        was = before.get(key)
        if endpoints_in_use(sp).reachable and (was is None or not endpoints_in_use(was).reachable):
            filters.append(("-p", "udp", "--orig-dst", sp.cluster_ip, "--orig-port-dst", str(sp.port)))
    return filters


async def flush(netns_path: str, filters: Iterable[Filter]) -> None:
    """Delete the matching entries in the namespace at ``netns_path`` (errors are logged)."""
    for f in filters:
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={netns_path}", "conntrack", "-D", *f,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode not in (0, 1):
            log.warning("conntrack -D %s failed: %s", " ".join(f), err.decode(errors="replace").strip())
