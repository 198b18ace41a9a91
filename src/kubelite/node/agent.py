"""The node agent: kubelite's kubelet, the composition of the node's parts.

It wires what a kubelet is made of and runs it: the Node's registration, status and Lease
(:mod:`kubelite.node.nodestatus`), one worker per pod bound to the node
(:mod:`kubelite.node.podworker`), what containers start with (:mod:`kubelite.node.podconfig`),
the pod network (:mod:`kubelite.node.network`), the container runtime
(:mod:`kubelite.node.runtime`), the relays that give pods the API server and the node's
resolvers, and the streaming server that serves logs, exec, attach and port-forward
(:mod:`kubelite.node.streaming`). Its own work is dispatch: the pods informer's events go
to the pod's worker, made on the first event of a pod.

Nothing that matters is kept only in memory: containers outlive the agent (each has its own
shim), and a restarted agent rebuilds its view from the runtime, the network namespaces and
the Pod statuses, so healthy containers are adopted, not restarted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import shutil
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from kubelite.api.types import EventType, Obj
from kubelite.client import PODS, SERVICES, Client, Informer
from kubelite.client.events import EventRecorder
from kubelite.node import images as node_images
from kubelite.node import podspec, volumes
from kubelite.node.dnsrelay import DnsRelay
from kubelite.node.hostport import HostPorts
from kubelite.node.network import NodeNetwork, PodNetwork
from kubelite.node.nodestatus import KUBELET_VERSION, NodeStatus
from kubelite.node.podconfig import PodConfigurer, host_resolv
from kubelite.node.podworker import PodWorker
from kubelite.node.relay import Relay
from kubelite.node.runtime import ContainerStatus, Runtime
from kubelite.node.streaming import ContainerRef, StreamingError, make_app

log = logging.getLogger(__name__)

EVENT_CONCURRENCY = 4  # event writes in flight at once

# A unix socket's path must fit sun_path (107 bytes): a deep --state-dir (a long home
# directory, a test's temporary directory) must not keep the agent from starting.
SHORT_SOCKET_DIR = pathlib.Path("/run/kubelite")


def kubelet_socket_path(state_dir: pathlib.Path, node_name: str) -> pathlib.Path:
    """Where the agent serves its streaming API: in its state directory if the path fits,
    else in a private directory under /run named after the node (removed by `kubelite down`)."""
    path = state_dir / "kubelet.sock"
    if len(os.fsencode(path)) <= 107:
        return path
    short = SHORT_SOCKET_DIR / node_name
    short.mkdir(parents=True, exist_ok=True, mode=0o700)
    return short / "kubelet.sock"


class Agent:
    """kubelite's kubelet for node ``node_name``; a :class:`~kubelite.node.podworker.PodHost`
    to its pod workers."""

    def __init__(
        self,
        client: Client,
        *,
        node_name: str,
        cluster: str,
        state_dir: pathlib.Path,
        pod_cidr: str,
        api_port: int,
        network: NodeNetwork | None = None,
        runtime: Runtime | None = None,
        image_catalog: pathlib.Path | None = None,
        dns_upstream: str = "",
        cluster_dns: str = podspec.DEFAULT_DNS_IP,
        image_store: pathlib.Path | None = None,
        image_mode: str = "catalog",
        insecure_registries: tuple[str, ...] = (),
        image_import_dir: pathlib.Path | None = None,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.cluster = cluster
        self.state_dir = pathlib.Path(state_dir)
        self.pods_dir = self.state_dir / "pods"
        self.pod_cidr = pod_cidr
        self.api_port = api_port
        self.network = network or NodeNetwork(cluster, pod_cidr, self.state_dir)
        self.runtime = runtime or Runtime(self.state_dir)
        self.recorder = EventRecorder(client, "kubelet", node_name)
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.services = Informer(client, SERVICES)
        self.workers: dict[str, PodWorker] = {}
        self.socket_path = kubelet_socket_path(self.state_dir, node_name)
        self.node_status = NodeStatus(client, node_name=node_name, node_ip=self.node_ip, pod_cidr=pod_cidr,
                                      state_dir=self.state_dir, socket_path=self.socket_path)
        # Pods with dnsPolicy Default resolve through the agent's DNS relay on the node address
        # (the host's own resolvers are not reachable from the cluster's namespaces).
        upstream = host_resolv()
        # The relay runs in the host namespace, so a loopback stub resolver is fine here.
        self.dns_upstream = dns_upstream or next(iter(upstream.nameservers), "")
        self.config = PodConfigurer(
            client, self.services, node_ip=self.node_ip, image_catalog=image_catalog,
            host_resolv=dataclasses.replace(
                upstream, nameservers=(self.node_ip,) if self.dns_upstream else upstream.nameservers),
            allocatable=self.node_status.allocatable, event=self.event, cluster_dns=cluster_dns,
            image_store=image_store, image_mode=image_mode, insecure_registries=insecure_registries,
        )
        self.hostports = HostPorts(self.network.netns_path)
        self.image_import_dir = image_import_dir
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leftovers: dict[str, list[tuple[str, ContainerStatus]]] = {}
        self._leftover_nets: dict[str, PodNetwork] = {}
        self._event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)
        self.ready = asyncio.Event()

    @property
    def node_ip(self) -> str:
        return self.network.gateway

    # -- what pod workers get from their host

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        async def record() -> None:
            # Like the kubelet's rate-limited event broadcaster: a burst of pod starts makes
            # three or four events per pod, which must not crowd out the status writes and
            # token requests that the pods' start waits for (they share the connection pool).
            async with self._event_slots:
                await self.recorder.event(obj, type_, reason, message)

        self._spawn(record())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def images_in_use(self) -> set[str]:
        """Manifest digests of the containers that exist (the image GC never frees them)."""
        return {cs.image_id.partition("@")[2] for w in self.workers.values()
                for cs in [*w.init_containers.values(), *w.containers.values()] if "@" in cs.image_id}

    def pod_worker_done(self, worker: PodWorker) -> None:
        self.workers.pop(worker.uid, None)

    # -- pods

    def on_pod(self, kind: EventType, pod: Obj, old: Obj | None) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.update(None)
            return
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, pod)
            self._adopt(worker)
            worker.task = asyncio.create_task(worker.loop(), name=f"pod-{uid[:8]}")
            return
        worker.update(pod)

    def _adopt(self, worker: PodWorker) -> None:
        instances = self._leftovers.pop(worker.uid, [])
        net = self._leftover_nets.pop(worker.uid, None)
        if not instances and net is None:
            return
        worker.adopt(instances, net)
        pod = worker.pod
        spec_of = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        for cs in worker.containers.values():
            if cs.running and cs.name in spec_of and worker.net is not None:
                worker.start_probes(spec_of[cs.name], cs, adopted=True)
        log.info("adopted pod %s (%d containers)", worker.name, len(instances))

    async def cleanup_orphans(self) -> None:
        """Sandboxes and containers of pods that no longer exist (deleted while the agent was down)."""
        known = {p["metadata"]["uid"] for p in self.pods.list()}
        for cid, st in self.runtime.list().items():
            if st.pod_uid not in known:
                with contextlib.suppress(Exception):
                    await self.runtime.remove(cid)
        for uid in set(self.network.pods()) - known:
            await self.network.remove_pod(uid)
        for uid in self.runtime.pods_with_namespaces() - known:
            await self.runtime.remove_pod(uid)
        if self.pods_dir.is_dir():
            for d in self.pods_dir.iterdir():
                if d.name not in known:
                    volumes.unmount_under(d)  # a memory-backed emptyDir of a pod gone meanwhile
                    shutil.rmtree(d, ignore_errors=True)

    # -- streaming lookups

    def find_container(self, namespace: str, pod: str, container: str) -> ContainerRef:
        """Where a container's streams are, for the streaming server (logs, exec, attach, port-forward)."""
        obj = self.pods.get(f"{namespace}/{pod}")
        worker = self.workers.get(obj["metadata"]["uid"]) if obj is not None else None
        if obj is None or worker is None:
            raise StreamingError(404, f'pods "{pod}" not found')
        net = worker.net
        netns_path, pod_ip = (net.netns_path, net.ip) if net is not None else ("", "")
        if not container:
            return ContainerRef(None, None, None, netns_path, pod_ip)
        spec = obj.get("spec") or {}
        init_names = {c["name"] for c in spec.get("initContainers") or []}
        names = init_names | {c["name"] for c in spec.get("containers") or []}
        if container not in names:
            raise StreamingError(400, f"container {container} is not valid for pod {pod}")
        cs = (worker.init_containers if container in init_names else worker.containers).get(container)
        if cs is None or cs.status is None:
            reason = cs.waiting[0] if cs is not None and cs.waiting else (
                "PodInitializing" if init_names else "ContainerCreating")
            raise StreamingError(400, f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
        log_path = pathlib.Path(cs.status.log_path) if cs.status.log_path else None
        previous = pathlib.Path(cs.prev_status.log_path) if cs.prev_status and cs.prev_status.log_path else None
        if cs.waiting is not None and cs.exited:
            # In back-off the current instance is the one that just failed: it is also "previous".
            previous = previous or log_path
        return ContainerRef(cs.current if cs.running else None, log_path, previous, netns_path, pod_ip)

    # -- the process

    async def run(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.runtime.prepare()
        await self.network.setup()
        relay = Relay(self.network.netns_path, self.node_ip, self.api_port)
        await relay.start()
        dns_relay = DnsRelay(self.network.netns_path, self.node_ip, self.dns_upstream) if self.dns_upstream else None
        if dns_relay is not None:
            await dns_relay.start()
        self.socket_path.unlink(missing_ok=True)
        streaming = web.AppRunner(make_app(self), access_log=None)
        await streaming.setup()
        await web.UnixSite(streaming, str(self.socket_path)).start()
        os.chmod(self.socket_path, 0o600)
        tasks = [asyncio.create_task(self.pods.run(), name="pods-informer"),
                 asyncio.create_task(self.services.run(), name="services-informer")]
        try:
            await self.node_status.register()
            tasks.append(asyncio.create_task(self.node_status.heartbeat(), name="heartbeat"))
            tasks.append(asyncio.create_task(
                node_images.housekeeping(self.config.images, self.image_import_dir, self.images_in_use), name="images"))
            await self.pods.wait_synced()
            await self.services.wait_synced()
            await self.cleanup_orphans()
            # What survived the previous agent, looked up once: the pods known now adopt it
            # (add_handler delivers them at once); pods that come later start from nothing.
            for cid, st in self.runtime.list().items():
                self._leftovers.setdefault(st.pod_uid, []).append((cid, st))
            self._leftover_nets = self.network.pods()
            self.pods.add_handler(self.on_pod)
            self.pods.add_handler(self.hostports.on_pod)
            tasks.append(asyncio.create_task(self.hostports.run(), name="hostports"))
            self._leftovers.clear()
            self._leftover_nets.clear()
            self.ready.set()
            log.info("node %s ready: pod CIDR %s, InternalIP %s", self.node_name, self.pod_cidr, self.node_ip)
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            workers = list(self.workers.values())
            for w in workers:
                for cs in [*w.init_containers.values(), *w.containers.values()]:
                    cs.stop_probes()
                if w.task is not None:
                    w.task.cancel()
            await asyncio.gather(*tasks, *(w.task for w in workers if w.task), return_exceptions=True)
            await relay.stop()
            if dns_relay is not None:
                await dns_relay.stop()
            await streaming.cleanup()
            await self.runtime.close()


# ---------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument("--cluster-name", default="kubelite", help="cluster name: prefix of every netns (default: kubelite)")
    parser.add_argument("--node-name", default=None, help="node name (default: <cluster-name>-node)")
    parser.add_argument("--state-dir", required=True, help="the agent's state directory (pods, containers, IPAM)")
    parser.add_argument("--pod-cidr", default="10.244.0.0/24", help="this node's pod CIDR (default: 10.244.0.0/24)")
    parser.add_argument("--api-port", type=int, default=None,
                        help="API server port for the in-cluster relay (default: the kubeconfig server's port)")
    # KUBELITE_IMAGE_CATALOG: a catalog for `up`'s agent from the environment (the OCI runtime's
    # tests give entries with `rootfs`: an unpacked image served under a name).
    parser.add_argument("--image-catalog", default=os.environ.get("KUBELITE_IMAGE_CATALOG") or None,
                        help="YAML file mapping more image names (default: $KUBELITE_IMAGE_CATALOG)")
    parser.add_argument("--images", default="catalog", choices=node_images.MODES,
                        help="how images resolve: auto (store, registry, catalog), oci, catalog (default: catalog)")
    parser.add_argument("--image-store", default=None, help="the image store's directory (default: STATE_DIR/../imagestore)")
    parser.add_argument("--image-import-dir", default=None, help="archives here are loaded into the store while running")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                        help="a registry spoken to over plain HTTP (loopback ones always are)")
    parser.add_argument("--dns-upstream", default="",
                        help="resolver (ip[:port]) the node's DNS relay forwards to (default: the host's resolv.conf)")
    parser.add_argument("--cluster-dns", default=podspec.DEFAULT_DNS_IP,
                        help="the cluster DNS's Service IP, while the kube-dns Service is not known "
                             f"(default: {podspec.DEFAULT_DNS_IP})")


async def main(args: argparse.Namespace) -> int:
    client = Client.from_kubeconfig(args.kubeconfig, user_agent=f"kubelet/{KUBELET_VERSION}")
    api_port = args.api_port or urlparse(client.config.server).port or 6443
    agent = Agent(
        client,
        node_name=args.node_name or f"{args.cluster_name}-node",
        cluster=args.cluster_name,
        state_dir=pathlib.Path(args.state_dir),
        pod_cidr=args.pod_cidr,
        api_port=api_port,
        image_catalog=pathlib.Path(args.image_catalog) if args.image_catalog else None,
        dns_upstream=args.dns_upstream,
        cluster_dns=args.cluster_dns,
        image_store=pathlib.Path(args.image_store) if args.image_store else pathlib.Path(args.state_dir).parent / "imagestore",
        image_mode=args.images,
        insecure_registries=tuple(args.insecure_registry),
        image_import_dir=pathlib.Path(args.image_import_dir) if args.image_import_dir else None,
    )
    try:
        await agent.run()
    finally:
        await client.close()
    return 0

