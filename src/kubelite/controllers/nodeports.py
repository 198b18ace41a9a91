"""kube-scheduler's NodePorts filter: a pod's hostPorts must be free on the node.

A ``hostPort`` claims (protocol, host IP, port) on the node's addresses; two pods cannot
hold the same one. An empty ``hostIP`` means every address (0.0.0.0), which conflicts with
any address for the same protocol and port, as ``HostPortInfo.CheckConflict`` has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REASON = "node(s) didn't have free ports for the requested pod ports"
ANY_IP = "0.0.0.0"

HostPort = tuple[str, str, int]  # (protocol, host IP, port)


def host_ports(pod: Mapping[str, Any]) -> list[HostPort]:
    """The pod's claimed host ports: its containers' and its sidecars' (GetHostPorts)."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []),
                  *(c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")]
    out = []
    for c in containers:
        for p in c.get("ports") or []:
            port = int(p.get("hostPort") or 0)
            if port <= 0:
                continue
            out.append((p.get("protocol") or "TCP", p.get("hostIP") or ANY_IP, port))
    return out


def conflicts(wanted: Iterable[HostPort], used: Iterable[HostPort]) -> bool:
    """Whether any wanted port is taken (the same port and protocol, on an overlapping address)."""
    taken = list(used)
    for proto, ip, port in wanted:
        for uproto, uip, uport in taken:
            if port == uport and proto == uproto and (ANY_IP in (ip, uip) or ip == uip):
                return True
    return False
