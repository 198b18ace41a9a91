"""kube-network-policies for kubelite: NetworkPolicies, pods and namespaces in, nftables out.

Informer events update the :class:`~kubelite.networkpolicy.ruleset.Compiler` at once (a pod
change costs a selector match per policy peer) and wake the sync loop, which writes what
changed since the last sync as one transaction: set elements, and the chains of the policies
and pods that changed. The first sync and any sync after a failure recreate the whole table
(``table inet kubelite-netpol`` in the node's namespace, beside the proxy's). Syncs are
coalesced as the proxy's are: at most one per ``min_sync_period``.

The table outlives the process, as the proxy's does: a restart recreates it in one
transaction, and until then the old rules keep enforcing the last policies (failing closed
for what was isolated rather than open). ``kubelite down`` removes the node namespace and
the table with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from kubelite.api.types import EventType, Obj
from kubelite.client import NAMESPACES, NETWORKPOLICIES, PODS, Client, Informer, key_of
from kubelite.linux.netns import is_netns, node_netns_path
from kubelite.linux.nftables import NFTables, NFTError
from kubelite.networkpolicy.ruleset import (
    TABLE,
    Compiler,
    Objects,
    compile_policy,
    full_transaction,
    pod_from_object,
    record,
    snapshot,
    transaction,
)

log = logging.getLogger(__name__)

MIN_SYNC_PERIOD = 0.01
RETRY_AFTER_FAILURE = 1.0
NODE_NETWORK_POLL = (0.01, 0.5)
NODE_NETWORK_WAIT = 60.0


@dataclass(frozen=True)
class SyncResult:
    full: bool
    seconds: float  # the nft transaction (the compiler's work happens as events arrive)
    commands: int  # lines of the transaction


class NetworkPolicyController:
    """Keeps ``table inet kubelite-netpol`` in the node namespace in step with the API."""

    def __init__(self, client: Client, *, netns_path: str, min_sync_period: float = MIN_SYNC_PERIOD) -> None:
        self.netns_path = netns_path
        self.min_sync_period = min_sync_period
        self.pods = Informer(client, PODS)
        self.namespaces = Informer(client, NAMESPACES)
        self.policies = Informer(client, NETWORKPOLICIES)
        self.nft = NFTables(netns_path)
        self.compiler = Compiler()
        self.written = Objects()
        self.last_sync: SyncResult | None = None
        self.synced = asyncio.Event()
        self._pod_ips: dict[str, str] = {}  # pod key -> the IP it is known by
        self._ip_owner: dict[str, str] = {}  # IP -> pod key
        self._needs_full = True
        self._wake = asyncio.Event()

    # -- change tracking

    def _on_pod(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        key = key_of(obj)
        pod = None if kind == "DELETED" else pod_from_object(obj)
        old_ip = self._pod_ips.pop(key, None)
        if old_ip is not None and (pod is None or pod.ip != old_ip) and self._ip_owner.get(old_ip) == key:
            del self._ip_owner[old_ip]
            self.compiler.set_pod(old_ip, None)
        if pod is not None:
            # A finished pod's IP may already be a new pod's: the newest event owns the IP.
            self._pod_ips[key] = pod.ip
            previous = self._ip_owner.get(pod.ip)
            if previous is not None and previous != key:
                self._pod_ips.pop(previous, None)
            self._ip_owner[pod.ip] = key
            if self.compiler.pods.get(pod.ip) != pod:
                self.compiler.set_pod(pod.ip, pod)
        self._wake.set()

    def _on_namespace(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        name = obj["metadata"]["name"]
        self.compiler.set_namespace(name, None if kind == "DELETED" else dict(obj["metadata"].get("labels") or {}))
        self._wake.set()

    def _on_policy(self, kind: EventType, obj: Obj, old: Obj | None) -> None:
        self.compiler.set_policy(key_of(obj), None if kind == "DELETED" else compile_policy(obj))
        self._wake.set()

    def pending(self) -> bool:
        """Whether changes are waiting for a sync (tests and benchmarks wait for False)."""
        return self._needs_full or bool(self.compiler.dirty_chains or self.compiler.dirty_sets)

    # -- syncing

    async def sync(self) -> None:
        """Write what changed since the last sync (everything after a failure)."""
        chains, sets = self.compiler.take_dirty()
        full = self._needs_full
        started = time.perf_counter()
        # What this transaction writes, copied now: handlers keep changing the compiler while
        # nft runs (the loop serves them meanwhile), and recording their later state as written
        # would hide the change from the next sync (a policy deleted right after its creation
        # would stay in the kernel).
        if full:
            staged = snapshot(self.compiler.desired)
            text = full_transaction(staged)
        else:
            staged = self.compiler.desired.copy_of(chains, sets)
            text = transaction(self.written, staged, chains, sets)
            if not text:
                return
        try:
            await self.nft.run(text)
        except NFTError as e:
            log.error("nftables %s sync failed, retrying with a full sync: %s",
                      "full" if full else "partial", str(e)[:2000])
            self._needs_full = True
            asyncio.get_running_loop().call_later(RETRY_AFTER_FAILURE, self._wake.set)
            return
        if full:
            self.written = staged
            self._needs_full = False
        else:
            record(self.written, staged, chains, sets)
        self.last_sync = SyncResult(full, time.perf_counter() - started, text.count("\n"))
        log.log(logging.INFO if full else logging.DEBUG, "%s sync: %d commands in %.1f ms",
                "full" if full else "partial", self.last_sync.commands, self.last_sync.seconds * 1000)
        self.synced.set()

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            await self._wake.wait()
            delay = last + self.min_sync_period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # changes arriving meanwhile join this sync
            self._wake.clear()
            last = loop.time()
            await self.sync()

    async def run(self) -> None:
        """Enforce the policies until cancelled; the table stays in place afterwards."""
        await _wait_for_node_namespace(self.netns_path)
        informers = [asyncio.create_task(i.run(), name=f"netpol-{i.rt.plural}")
                     for i in (self.namespaces, self.pods, self.policies)]
        try:
            for i in (self.namespaces, self.pods, self.policies):
                await i.wait_synced()
            # Namespaces first: pods are matched against their namespace's labels.
            self.namespaces.add_handler(self._on_namespace)
            self.policies.add_handler(self._on_policy)
            self.pods.add_handler(self._on_pod)
            self._wake.set()
            await self._sync_loop()
        finally:
            for t in informers:
                t.cancel()
            await asyncio.gather(*informers, return_exceptions=True)
            self.nft.close()


async def _wait_for_node_namespace(netns_path: str, limit: float = NODE_NETWORK_WAIT) -> None:
    """The agent makes the node namespace; started alongside it, wait for it to exist."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay = NODE_NETWORK_POLL[0]
    while True:
        if await asyncio.to_thread(is_netns, netns_path):
            return
        if loop.time() - started + delay > limit:
            raise TimeoutError(f"the node namespace {netns_path} is not ready after {limit:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, NODE_NETWORK_POLL[1])


async def cleanup(netns_path: str) -> None:
    """Remove the table from the node namespace."""
    nft = NFTables(netns_path)
    try:
        await nft.run(f"add table {TABLE}\ndelete table {TABLE}\n")
    finally:
        nft.close()


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument("--cluster-name", default="kubelite", help="cluster name: prefix of every netns (default: kubelite)")
    parser.add_argument("--min-sync-period", type=float, default=MIN_SYNC_PERIOD,
                        help=f"minimum seconds between two syncs (default: {MIN_SYNC_PERIOD})")
    parser.add_argument("--cleanup", action="store_true", help="remove the NetworkPolicy table and exit")


async def main(args: argparse.Namespace) -> int:
    netns_path = node_netns_path(args.cluster_name)
    if args.cleanup:
        with contextlib.suppress(FileNotFoundError, NFTError):
            await cleanup(netns_path)
        return 0
    client = Client.from_kubeconfig(args.kubeconfig, user_agent="kube-network-policies/kubelite")
    try:
        log.info("network policies for %s programming %s", args.cluster_name, netns_path)
        await NetworkPolicyController(client, netns_path=netns_path, min_sync_period=args.min_sync_period).run()
    finally:
        await client.close()
    return 0
