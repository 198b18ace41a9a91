"""Pod IP allocation for one node: the host-local IPAM of CNI, persisted in one JSON file.

A pod IP must never be handed out twice while its pod still lives, also across agent
restarts, so every change is written to the file (temp file, rename) before the caller
uses the address. New addresses are taken round-robin after the last one allocated instead
of lowest-free-first: a pod that is recreated gets a *new* IP and a just-freed address
stays unused for as long as possible, so stale clients and caches (endpoints, conntrack)
do not reach a different pod through it. Kubernetes' host-local plugin does the same.

The trade-off: one small file rewritten per change (a few hundred bytes per pod) rather
than a database; a node holds at most a few hundred pods. An owner that allocates from
several threads at once (:class:`kubelite.node.network.NodeNetwork`) turns autosave off and
writes once for every change made while the previous write was under way ("group commit"),
so a burst of pod starts does not queue behind one write per pod.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import tempfile


class IPAMError(Exception):
    """The pod CIDR cannot give an address (exhausted) or does not match the saved state."""


def node_gateway(pod_cidr: str) -> ipaddress.IPv4Address:
    """The node's address in its pod CIDR (the first one, on the bridge): pods' default route,
    and where they reach the API server (the ``kubernetes`` Service's endpoint)."""
    return ipaddress.IPv4Network(pod_cidr, strict=True).network_address + 1


class IPAM:
    """Allocations of one pod CIDR, keyed by pod UID. Not thread-safe: one owner calls it."""

    def __init__(self, pod_cidr: str, path: pathlib.Path, *, autosave: bool = True) -> None:
        self.network = ipaddress.IPv4Network(pod_cidr, strict=True)
        if self.network.prefixlen > 30:
            raise IPAMError(f"pod CIDR {pod_cidr} is too small: at least a /30 is needed")
        # The first address is the node's gateway on the bridge; never a pod's.
        self.gateway = node_gateway(pod_cidr)
        self.path = path
        # Without autosave the owner calls save() itself, e.g. once for a burst of changes.
        self.autosave = autosave
        self.generation = 0  # bumped by every change; see save()
        self._allocations: dict[str, str] = {}
        self._last: ipaddress.IPv4Address = self.gateway
        self._load()

    @property
    def allocations(self) -> dict[str, str]:
        return dict(self._allocations)

    def get(self, uid: str) -> str | None:
        return self._allocations.get(uid)

    def allocate(self, uid: str) -> str:
        """The IP of ``uid``: its existing one, else the next free address after the last allocated."""
        existing = self._allocations.get(uid)
        if existing is not None:
            return existing
        first = int(self.gateway) + 1
        last = int(self.network.broadcast_address) - 1
        size = last - first + 1
        used = set(self._allocations.values())
        start = int(self._last) + 1
        for step in range(size):
            candidate = first + (start - first + step) % size
            ip = str(ipaddress.IPv4Address(candidate))
            if ip not in used:
                self._allocations[uid] = ip
                self._last = ipaddress.IPv4Address(candidate)
                self._changed()
                return ip
        # host-local's text, as Kubernetes users see it in FailedCreatePodSandBox events.
        raise IPAMError(
            "failed to allocate for range 0: no IP addresses available in range set: "
            f"{self.network.network_address + 1}-{self.network.broadcast_address - 1}"
        )

    def release(self, uid: str) -> None:
        if self._allocations.pop(uid, None) is not None:
            self._changed()

    def retain(self, uids: set[str]) -> None:
        """Free every allocation whose pod is not in ``uids`` (garbage collection)."""
        stale = self._allocations.keys() - uids
        if stale:
            for uid in stale:
                del self._allocations[uid]
            self._changed()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            # Empty or cut short: the file is written without fsync (see write), so a crash of
            # the machine may leave it so on some filesystems; that crash also ended every pod.
            return
        if data.get("cidr") != str(self.network):
            # Addresses handed out from another range may still be in use by running pods:
            # silently re-numbering would give two pods one IP.
            raise IPAMError(
                f"{self.path} holds allocations for pod CIDR {data.get('cidr')}, not {self.network}; "
                "remove the pods (kubelite down) before changing the pod CIDR"
            )
        self._allocations = {str(uid): str(ip) for uid, ip in data.get("allocations", {}).items()}
        last = data.get("last")
        if last is not None and ipaddress.IPv4Address(last) in self.network:
            self._last = ipaddress.IPv4Address(last)

    def _changed(self) -> None:
        self.generation += 1
        if self.autosave:
            self.write(self.snapshot())

    def snapshot(self) -> dict[str, object]:
        """The state to write, as of now (take it under the owner's lock, write it outside)."""
        return {"cidr": str(self.network), "last": str(self._last), "allocations": dict(self._allocations)}

    def write(self, data: dict[str, object]) -> None:
        """Write a :meth:`snapshot` atomically (temp file, rename).

        No fsync, on purpose: what must survive is a crash or kill of the *agent*, and a
        renamed file is in the kernel's page cache from the moment ``rename`` returns. After
        a crash of the machine itself every pod's namespace (under /run, a tmpfs) and
        process is gone too, so an allocation lost with the page cache names no live pod;
        :meth:`retain` frees whatever the file still holds for vanished pods. Under a busy
        disk an fsync costs tens of milliseconds, paid by every pod start.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
