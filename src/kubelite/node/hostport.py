"""hostPort: a pod's port on the node's address, as the CNI ``portmap`` plugin gives it.

In Kubernetes the kubelet hands a pod's ``hostPort``s to the CNI plugin chain, and
``portmap`` DNATs connections to the node's addresses on that port to the pod's IP and
``containerPort``. kubelite's node address is the bridge gateway in the node's network
namespace (the InternalIP every pod sees), so the same rules live there, in an nftables
table of their own, ``ip kubelite-hostports``: never in the host's namespace (the host does
not see the node address at all; nothing of the host's network changes).

* ``prerouting`` (connections from pods) and ``output`` (from the node namespace itself)
  jump to ``hostports``, which DNATs (protocol, node address, hostPort) to the pod. An
  empty ``hostIP`` means every local address of the node (``fib daddr type local``).
  These nat chains come before kube-proxy's (priority -105, dstnat - 5; nft 1.0.6 knows
  ``dstnat`` only at prerouting), as portmap's chain is
  consulted before KUBE-SERVICES.
* ``postrouting`` masquerades hairpin connections (a pod reaching itself through its own
  hostPort), whose reply would otherwise never leave the pod, as portmap's SNAT does.

The table is rendered whole from the wanted mappings and replaced in one transaction
(kube-proxy's way: desired state, no reading back). Mappings come from the node's pods
informer: a pod on this node with a ``status.podIP``, not finished, until it is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.linux.netns import in_netns

log = logging.getLogger(__name__)

TABLE = "kubelite-hostports"
_L4 = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True, order=True)
class PortMapping:
    protocol: str  # TCP, UDP, SCTP
    host_ip: str  # "" for every address of the node
    host_port: int
    pod_ip: str
    container_port: int


def mappings(pod: Mapping[str, Any]) -> list[PortMapping]:
    """The pod's hostPort mappings once it has an IP (containers and sidecars, as kubelet's)."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    ip = status.get("podIP") or ""
    if not ip or status.get("phase") in ("Succeeded", "Failed") or spec.get("hostNetwork"):
        return []
    containers = [*(spec.get("containers") or []),
                  *(c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")]
    out = []
    for c in containers:
        for p in c.get("ports") or []:
            host_port = int(p.get("hostPort") or 0)
            if host_port <= 0:
                continue
            host_ip = p.get("hostIP") or ""
            out.append(PortMapping(p.get("protocol") or "TCP", "" if host_ip == "0.0.0.0" else host_ip,
                                host_port, ip, int(p.get("containerPort") or 0)))
    return out


def render(wanted: Iterable[PortMapping]) -> str:
    """The nft transaction that makes the table hold exactly ``wanted`` (none: no table)."""
    rules = sorted(set(wanted))
    # "add" first so that "delete" never fails on a table that is not there.
    lines = [f"add table ip {TABLE}", f"delete table ip {TABLE}"]
    if not rules:
        return "\n".join(lines) + "\n"
    lines += [
        f"table ip {TABLE} {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority -105; policy accept;",
        "\t\tjump hostports",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -105; policy accept;",
        "\t\tjump hostports",
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority 95; policy accept;",
    ]
    for m in rules:
        l4 = _L4.get(m.protocol, "tcp")
        lines.append(f"\t\tip saddr {m.pod_ip} ip daddr {m.pod_ip} {l4} dport {m.container_port} "
                     "ct status dnat masquerade")
    lines += ["\t}", "\tchain hostports {"]
    for m in rules:
        l4 = _L4.get(m.protocol, "tcp")
        dest = f"ip daddr {m.host_ip}" if m.host_ip else "fib daddr type local"
        lines.append(f"\t\t{dest} {l4} dport {m.host_port} dnat to {m.pod_ip}:{m.container_port}")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def _apply(netns_path: str, text: str) -> None:
    with in_netns(netns_path):  # the child nft inherits this thread's namespace (checked)
        res = subprocess.run(["nft", "-f", "-"], input=text.encode(), capture_output=True)
    if res.returncode != 0:
        raise RuntimeError(f"nft: {res.stderr.decode(errors='replace').strip()}")


class HostPorts:
    """The node's hostPort table, kept level with the pods the node's informer shows."""

    def __init__(self, netns_path: str) -> None:
        self.netns_path = netns_path
        self.by_pod: dict[str, list[PortMapping]] = {}
        self._applied: str | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_pod(self, kind: str, pod: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        wanted = [] if kind == "DELETED" else mappings(pod)
        if wanted == self.by_pod.get(uid, []):
            return
        if wanted:
            self.by_pod[uid] = wanted
        else:
            self.by_pod.pop(uid, None)
        self._dirty.set()

    async def run(self) -> None:
        """Apply the table whenever the mappings change (one transaction per change burst).

        The first pass always applies, so a table a previous agent left is made level too."""
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            text = render(m for ms in self.by_pod.values() for m in ms)
            if text == self._applied:
                continue
            try:
                await asyncio.to_thread(_apply, self.netns_path, text)
            except Exception:
                log.exception("programming hostPorts failed; retrying")
                await asyncio.sleep(1.0)
                self._dirty.set()
                continue
            self._applied = text
