"""The Node object of this node and its Lease: the kubelet's nodestatus and nodelease.

The kubelet keeps these apart from its pod workers because they answer a different
question: not "are this node's pods as specified?" but "is this node alive, and what does
it offer?". The node lifecycle controller reads the answer (the Lease's renewTime, the
Ready condition) to decide whether pods here are lost; the scheduler reads capacity,
allocatable and the labels. So: register the Node (or adopt the existing one, filling a
podCIDR left empty), renew the Lease every 10 s, and post the full status every 30 s, both
as the kubelet does with its default intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import platform
import time
from typing import Any

from kubelite.api import timeutil
from kubelite.api.types import Obj
from kubelite.client import LEASES, NODES, ApiError, Client

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.33.0-kubelite"
SOCKET_ANNOTATION = "kubelite.io/kubelet-socket"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW = 10.0
NODE_STATUS_REPORT = 30.0
ALLOCATABLE_CACHE_SECONDS = 10.0


def read_first(*paths: str) -> str:
    """The stripped content of the first of ``paths`` that exists and is not empty, else ""."""
    for p in paths:
        with contextlib.suppress(OSError):
            text = pathlib.Path(p).read_text().strip()
            if text:
                return text
    return ""


def _meminfo_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def _os_image() -> str:
    try:
        for line in pathlib.Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(
        machine, machine)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("kubelite")
    except Exception:
        return "0.0.0"



def with_extended_resources(allocatable: dict[str, Any], node: Obj) -> dict[str, Any]:
    """The kubelet's allocatable setter over the Node as stored: every capacity entry it does
    not set itself (an extended resource someone patched into ``status.capacity``, as the
    scheduling tests do) is allocatable too, in full; an extended resource gone from capacity
    is removed from allocatable (``None``: deleted by the strategic merge patch)."""
    status = node.get("status") or {}
    capacity = status.get("capacity") or {}
    out: dict[str, Any] = dict(allocatable)
    for name, value in capacity.items():
        if name not in out:
            out[name] = value
    for name in status.get("allocatable") or {}:
        if name not in out and name not in capacity and _is_extended(name):
            out[name] = None
    return out


def _is_extended(name: str) -> bool:
    # v1helper.IsExtendedResourceName: qualified, outside the kubernetes.io domain, not requests.*
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")

class NodeStatus:
    """Registers node ``node_name`` and keeps its status and Lease fresh."""

    def __init__(
        self,
        client: Client,
        *,
        node_name: str,
        node_ip: str,
        pod_cidr: str,
        state_dir: pathlib.Path,
        socket_path: pathlib.Path,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip  # the InternalIP: the pod bridge's gateway address
        self.pod_cidr = pod_cidr
        self.state_dir = state_dir  # ephemeral-storage is the filesystem this is on
        self.socket_path = socket_path
        self._node_uid = ""
        self._conditions: list[Obj] = []
        self._allocatable: tuple[dict[str, str], float] | None = None

    # -- what the node offers

    def resources(self) -> tuple[dict[str, str], dict[str, str]]:
        """(capacity, allocatable)."""
        mem_kib = _meminfo_kib()
        st = os.statvfs(self.state_dir)
        disk = st.f_blocks * st.f_frsize
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "ephemeral-storage": f"{disk // 1024}Ki",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "memory": f"{mem_kib}Ki",
            "pods": "110",
        }
        # The kubelet's default hard eviction thresholds come off allocatable.
        allocatable = {**capacity, "ephemeral-storage": str(int(disk * 0.9)),
                       "memory": f"{max(0, mem_kib - 100 * 1024)}Ki"}
        return capacity, allocatable

    def allocatable(self) -> dict[str, str]:
        # Read for every container's env and downward API: /proc/meminfo and statvfs once a
        # while, not per container.
        now = time.monotonic()
        if self._allocatable is None or now - self._allocatable[1] > ALLOCATABLE_CACHE_SECONDS:
            self._allocatable = (self.resources()[1], now)
        return self._allocatable[0]

    def _conditions_now(self) -> list[Obj]:
        now = timeutil.now_rfc3339()
        wanted = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        old = {c["type"]: c for c in self._conditions}
        out = []
        for type_, status, reason, message in wanted:
            prev = old.get(type_)
            out.append({
                "type": type_, "status": status, "lastHeartbeatTime": now,
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now,
                "reason": reason, "message": message,
            })
        self._conditions = out
        return out

    def status(self) -> Obj:
        """The Node's status as the kubelet's setters fill it."""
        capacity, allocatable = self.resources()
        uname = os.uname()
        machine_id = read_first("/etc/machine-id", "/var/lib/dbus/machine-id")
        return {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": self._conditions_now(),
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": read_first("/sys/class/dmi/id/product_uuid") or machine_id,
                "bootID": read_first("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.release,
                "osImage": _os_image(),
                "containerRuntimeVersion": f"kubelite://{_version()}",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    # -- the API

    async def register(self) -> None:
        arch = _arch()
        labels = {
            "beta.kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
        }
        annotations = {SOCKET_ANNOTATION: str(self.socket_path), "node.alpha.kubernetes.io/ttl": "0"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": labels, "annotations": annotations},
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
            "status": self.status(),
        }
        try:
            created = await self.client.create(NODES, node)
        except ApiError as e:
            if not e.already_exists:
                raise
            existing = await self.client.get(NODES, self.node_name)
            patch: Obj = {"metadata": {"labels": labels, "annotations": annotations}}
            if not (existing.get("spec") or {}).get("podCIDR"):
                patch["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
            created = await self.client.patch(NODES, self.node_name, patch)
        self._node_uid = created["metadata"]["uid"]
        await self.post_status()

    async def post_status(self) -> None:
        status = self.status()
        try:
            current: Obj | None = await self.client.get(NODES, self.node_name)
        except ApiError:
            current = None
        if current is not None:
            status["allocatable"] = with_extended_resources(status["allocatable"], current)
        await self.client.patch(NODES, self.node_name, {"status": status}, subresource="status")

    async def renew_lease(self, lease: Obj | None) -> Obj:
        """Renew (or create) the node's Lease; returns it, to be renewed from next time."""
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": timeutil.now_micro()}
        if lease is not None:
            try:
                return await self.client.update(LEASES, {**lease, "spec": {**(lease.get("spec") or {}), **spec}})
            except ApiError as e:
                if not (e.conflict or e.not_found):
                    raise
        try:
            lease = await self.client.get(LEASES, self.node_name, LEASE_NAMESPACE)
            return await self.client.update(LEASES, {**lease, "spec": {**(lease.get("spec") or {}), **spec}})
        except ApiError as e:
            if not e.not_found:
                raise
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node_name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self._node_uid}],
            },
            "spec": spec,
        }
        return await self.client.create(LEASES, body, LEASE_NAMESPACE)

    async def heartbeat(self) -> None:
        """Renew the Lease, and post the status now and then, until cancelled."""
        lease: Obj | None = None
        last_status = time.monotonic()
        while True:
            try:
                lease = await self.renew_lease(lease)
                if time.monotonic() - last_status >= NODE_STATUS_REPORT:
                    await self.post_status()
                    last_status = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("node heartbeat: %s", e)
                lease = None
            await asyncio.sleep(LEASE_RENEW)
