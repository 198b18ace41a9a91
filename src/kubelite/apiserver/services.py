"""What the API server does for Services beyond storing them: ClusterIP and NodePort allocation.

(The `kubernetes` Service itself is kept by apiserver.kubernetesservice.)

Allocation runs inside the write path, after validation and before the Service is stored,
as kube-apiserver's service REST storage does: a requested ClusterIP or NodePort is claimed
or refused with Kubernetes' message, a missing one is allocated, and everything claimed is
given back if the Service is not stored after all (conflict, dry run, failure). Updates
claim only what is new and release what the new object no longer uses; deletes release
everything. A crash between a claim and the Service write leaks at most an IPAddress or a
node port claim, which the repair pass at start-up deletes.

Every claim is a create in the store (an IPAddress object per ClusterIP, as kube-apiserver's
IPAddress allocator does; a key under ``/registry/ranges/servicenodeports/`` per node port),
so that API server processes sharing one store can never hand out the same address or
port: the store's create-if-absent decides. What each process keeps in memory of what is
taken is only a hint for picking candidates; a stale hint costs a retry, never a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from kubelite.api import defaults, errors
from kubelite.api.errors import StatusError
from kubelite.api.registry import ResourceType, lookup
from kubelite.apiserver.ipalloc import (
    ClusterIPAllocator,
    NodePortAllocator,
    NotInRange,
    RangeFull,
    ServiceCIDR,
    ipaddress_object,
)
from kubelite.apiserver.registry import decode_kv
from kubelite.store import KeyExistsError, Store

log = logging.getLogger(__name__)

Rollback = Callable[[], Awaitable[None]]
IPADDRESSES = lookup("networking.k8s.io", "v1", "ipaddresses")
SERVICES = lookup("", "v1", "services")
MANAGER = "kube-apiserver"
# Where node port claims live: the path of kube-apiserver's node port range allocation.
NODE_PORT_CLAIMS = "/registry/ranges/servicenodeports/"


def _cluster_ip(spec: dict[str, Any]) -> str:
    ips = spec.get("clusterIPs") or []
    return str(ips[0]) if ips else str(spec.get("clusterIP") or "")


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    t = spec.get("type", "ClusterIP")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def _port_key(port: int) -> str:
    return f"{NODE_PORT_CLAIMS}{port}"


def _node_ports(spec: dict[str, Any]) -> set[int]:
    out = {int(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")}
    if spec.get("healthCheckNodePort"):
        out.add(int(spec["healthCheckNodePort"]))
    return out


class ObjectCreator(Protocol):
    """Creates API objects through the generic create path (a Registry)."""

    async def create_object(
        self, rt: ResourceType, namespace: str | None, obj: dict[str, Any], *, manager: str,
    ) -> dict[str, Any]: ...


class ServiceAllocation:
    """The registry's ServiceAllocator: claims in ``store``, IPAddress objects through ``objects``.

    kube-apiserver's IPAddress allocator writes its IPAddress objects through a client, not
    through the Service storage it serves; here ``objects`` is a registry of its own
    (without allocation: an IPAddress needs none), so that the Service registry and its
    allocator are built one after the other, each handed what it needs.
    """

    def __init__(self, store: Store, objects: ObjectCreator, cidr: ServiceCIDR, node_ports: NodePortAllocator) -> None:
        self.store = store
        self.objects = objects
        self.cidr = cidr
        self.ips = ClusterIPAllocator(cidr)
        self.ports = node_ports

    # ------------------------------------------------------------------ claim / release

    def _invalid(self, svc: dict[str, Any], errs: list[errors.FieldError]) -> StatusError:
        return errors.invalid_error("Service", svc.get("metadata", {}).get("name", ""), errs)

    async def _claim_ip(self, ip: str, svc: dict[str, Any]) -> bool:
        """Create the IPAddress object; False when it exists already."""
        assert IPADDRESSES is not None
        try:
            await self.objects.create_object(IPADDRESSES, None, ipaddress_object(ip, svc), manager=MANAGER)
        except StatusError as e:
            if e.code == 409:
                self.ips.mark(ip)
                return False
            raise
        self.ips.mark(ip)
        return True

    async def release_ip(self, ip: str) -> None:
        assert IPADDRESSES is not None
        if not ip or ip == "None":
            return
        self.ips.unmark(ip)
        try:
            await self.store.delete(IPADDRESSES.key(None, ip))
        except Exception as e:  # already gone is fine; anything else is repaired at start-up
            log.debug("releasing %s: %s", ip, e)

    async def _claim_port(self, port: int, svc: dict[str, Any]) -> bool:
        """Record ``port`` as ``svc``'s; False when another Service holds it."""
        meta = svc.get("metadata") or {}
        self.ports.taken.add(port)
        try:
            await self.store.create(
                _port_key(port), orjson.dumps({"namespace": meta.get("namespace", ""), "name": meta.get("name", "")})
            )
        except KeyExistsError:
            return False
        return True

    async def release_port(self, port: int) -> None:
        self.ports.release(port)
        try:
            await self.store.delete(_port_key(port))
        except Exception as e:  # already gone is fine; anything else is repaired at start-up
            log.debug("releasing node port %d: %s", port, e)

    async def load_hints(self) -> None:
        """What is taken, from the store: for a process that did not run the repair."""
        assert IPADDRESSES is not None
        store = self.store
        ips, _, _ = await store.list(IPADDRESSES.key_prefix())
        self.ips.taken.clear()
        for kv in ips:
            self.ips.mark(kv.key.rpartition("/")[2])
        claims, _, _ = await store.list(NODE_PORT_CLAIMS)
        self.ports.taken = {int(kv.key.rpartition("/")[2]) for kv in claims}

    async def allocate(self, svc: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> Rollback:
        """Claim what ``svc`` needs and ``old`` did not have; returns how to undo the claims."""
        spec = svc.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        claimed_ips: list[str] = []
        claimed_ports: list[int] = []

        async def rollback() -> None:
            for ip in claimed_ips:
                await self.release_ip(ip)
            for port in claimed_ports:
                await self.release_port(port)

        try:
            if _needs_cluster_ip(spec) and not (old is not None and _needs_cluster_ip(old_spec) and _cluster_ip(old_spec)):
                ip = await self._allocate_ip(svc, dry_run)
                if not dry_run:
                    claimed_ips.append(ip)
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            if spec.get("type") != "ExternalName":
                defaults.default_ip_families(svc)
            if _needs_node_ports(spec):
                claimed_ports += await self._allocate_node_ports(svc, old_spec if old else {}, dry_run)
        except BaseException:
            await rollback()
            raise
        return rollback

    async def _allocate_ip(self, svc: dict[str, Any], dry_run: bool) -> str:
        spec = svc["spec"]
        requested = _cluster_ip(spec)
        if requested:
            try:
                self.ips.check_requested(requested)
            except NotInRange as e:
                raise self._invalid(svc, [errors.invalid("spec.clusterIPs", [requested], f"failed to allocate IP {requested}: {e}")]) from None
            if dry_run:
                assert IPADDRESSES is not None
                taken = await self.store.get(IPADDRESSES.key(None, requested)) is not None
            else:
                taken = not await self._claim_ip(requested, svc)
            if taken:
                raise self._invalid(svc, [errors.invalid(
                    "spec.clusterIPs", [requested], f"failed to allocate IP {requested}: provided IP is already allocated"
                )])
            return requested
        reloaded = False
        for _ in range(16):
            try:
                candidates = self.ips.candidates()
            except RangeFull:
                # Full by this process's hint; another process may have released addresses.
                if reloaded:
                    break
                await self.load_hints()
                reloaded = True
                continue
            for ip in candidates:
                if dry_run or await self._claim_ip(ip, svc):
                    return ip
        raise errors.internal_error("failed to allocate a serviceIP: range is full")

    async def _next_port(self, svc: dict[str, Any], dry_run: bool) -> int:
        """A free node port, claimed unless ``dry_run``."""
        reloaded = False
        while True:
            try:
                port = self.ports.next()
            except RangeFull:
                if reloaded:
                    raise
                await self.load_hints()
                reloaded = True
                continue
            if dry_run:
                self.ports.release(port)
                return port
            if await self._claim_port(port, svc):
                return port

    async def _allocate_node_ports(self, svc: dict[str, Any], old_spec: dict[str, Any], dry_run: bool) -> list[int]:
        spec = svc["spec"]
        old_ports = _node_ports(old_spec)
        claimed: list[int] = []
        errs: list[errors.FieldError] = []
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]

        async def give_back() -> None:
            for port in claimed:
                await self.release_port(port)

        # Requested ports first, so a dynamic pick never takes a port asked for later in the list.
        for i, p in enumerate(ports):
            np = p.get("nodePort")
            if not np or np in old_ports:
                continue
            port = int(np)
            try:
                self.ports.check(port)
            except NotInRange as e:
                errs.append(errors.invalid(f"spec.ports[{i}].nodePort", np, str(e)))
                continue
            if port in claimed:
                taken = True
            elif dry_run:
                taken = await self.store.get(_port_key(port)) is not None
            else:
                taken = not await self._claim_port(port, svc)
                if not taken:
                    claimed.append(port)
            if taken:
                errs.append(errors.invalid(f"spec.ports[{i}].nodePort", np, "provided port is already allocated"))
        if errs:
            await give_back()
            raise self._invalid(svc, errs)
        try:
            for p in ports:
                if not p.get("nodePort"):
                    p["nodePort"] = await self._next_port(svc, dry_run)
                    if not dry_run:
                        claimed.append(p["nodePort"])
            if (spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
                    and not spec.get("healthCheckNodePort")):
                spec["healthCheckNodePort"] = await self._next_port(svc, dry_run)
                if not dry_run:
                    claimed.append(spec["healthCheckNodePort"])
        except RangeFull:
            await give_back()
            raise errors.internal_error("failed to allocate a nodePort: range is full") from None
        except BaseException:
            await give_back()
            raise
        return claimed

    async def release_unused(self, new: dict[str, Any] | None, old: dict[str, Any]) -> None:
        """After an update (or a delete, ``new=None``): give back what ``new`` no longer holds."""
        old_spec = old.get("spec") or {}
        new_spec = (new or {}).get("spec") or {}
        old_ip = _cluster_ip(old_spec) if _needs_cluster_ip(old_spec) else ""
        new_ip = _cluster_ip(new_spec) if new is not None and _needs_cluster_ip(new_spec) else ""
        if old_ip and old_ip != new_ip:
            await self.release_ip(old_ip)
        for port in _node_ports(old_spec) - (_node_ports(new_spec) if new is not None else set()):
            await self.release_port(port)

    # ------------------------------------------------------------------ start-up

    async def repair(self) -> None:
        """Reconcile IPAddresses and node ports with the stored Services (kube-apiserver's repair loops)."""
        assert IPADDRESSES is not None and SERVICES is not None
        store = self.store
        svcs, _, _ = await store.list(SERVICES.key_prefix())
        owners: dict[str, tuple[str, str]] = {}

        services = [decode_kv(kv) for kv in svcs]
        port_owners: dict[int, dict[str, Any]] = {}
        for svc in services:
            spec = svc.get("spec") or {}
            meta = svc["metadata"]
            if _needs_cluster_ip(spec) and _cluster_ip(spec):
                owners[_cluster_ip(spec)] = (meta.get("namespace", ""), meta["name"])
            for port in _node_ports(spec):
                if port in port_owners:
                    log.warning("node port %d is used by more than one Service", port)
                port_owners[port] = svc
        ips, _, _ = await store.list(IPADDRESSES.key_prefix())
        present = set()
        for kv in ips:
            obj = decode_kv(kv)
            ip = obj["metadata"]["name"]
            ref = (obj.get("spec") or {}).get("parentRef") or {}
            owner = owners.get(ip)
            if owner is None or (ref.get("namespace", ""), ref.get("name")) != owner:
                if ref.get("resource") == "services":
                    log.info("repair: releasing leaked ClusterIP %s", ip)
                    await store.delete(kv.key)
                    continue
            present.add(ip)
            self.ips.mark(ip)
        for svc in services:
            spec = svc.get("spec") or {}
            ip = _cluster_ip(spec)
            if _needs_cluster_ip(spec) and ip and ip not in present:
                log.info("repair: recording ClusterIP %s of %s/%s", ip, svc["metadata"].get("namespace"), svc["metadata"]["name"])
                await self._claim_ip(ip, svc)
        claims, _, _ = await store.list(NODE_PORT_CLAIMS)
        claimed = {int(kv.key.rpartition("/")[2]) for kv in claims}
        for port in claimed - port_owners.keys():
            log.info("repair: releasing leaked node port %d", port)
            await store.delete(_port_key(port))
        for port, svc in port_owners.items():
            if port not in claimed:
                await self._claim_port(port, svc)
        self.ports.taken = set(port_owners)

