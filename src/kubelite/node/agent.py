"""The node agent: kubelite's kubelet.

It registers the Node and keeps its Lease and status fresh, watches the pods bound to it
and makes each one real: a sandbox (network namespace from :mod:`kubelite.node.network`,
the pod's /etc/hosts, resolv.conf and hostname, its volumes and service-account token),
then init containers one by one, then the containers, run by :mod:`kubelite.node.runtime`
from images resolved by :mod:`kubelite.images`; probes, restarts with back-off, graceful
termination and status reports follow the kubelet's rules (kept pure in
:mod:`kubelite.node.podspec`).

Each pod has one worker (keyed by UID) running a level-triggered sync: the desired state is
the Pod object, the actual state is what the runtime and the network report, and every sync
converges one onto the other and reports the result. Nothing that matters is kept only in
memory: containers outlive the agent (each has its own shim), and a restarted agent rebuilds
its view from the runtime, the network namespaces and the Pod statuses, so healthy
containers are adopted, not restarted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import math
import os
import pathlib
import platform
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from kubelite import images
from kubelite.api.resource import pod_qos_class
from kubelite.client import (
    CONFIGMAPS,
    LEASES,
    NODES,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiError,
    Client,
    Informer,
)
from kubelite.client.events import EventRecorder
from kubelite.node import podspec, probes, volumes
from kubelite.node.dnsrelay import DnsRelay
from kubelite.node.network import NodeNetwork, PodNetwork
from kubelite.node.relay import Relay
from kubelite.node.runtime import ContainerNotFound, ContainerSpec, ContainerStatus, ExecStartError, Runtime
from kubelite.node.streaming import ContainerRef, StreamingError, make_app

log = logging.getLogger(__name__)

Obj = dict[str, Any]

KUBELET_VERSION = "v1.33.0-kubelite"
SOCKET_ANNOTATION = "kubelite.io/kubelet-socket"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW = 10.0
NODE_STATUS_REPORT = 30.0
POLL = 1.0  # how often running containers are checked for exits
RETRY = 2.0  # retry of a sandbox or config that could not be made yet
MIN_GRACE = 2  # the kubelet never gives SIGTERM less than this before SIGKILL
# A terminating pod first reports Ready=False and leaves the Service datapath; its processes
# get SIGTERM only after this much (bounded by half the grace period). See PodWorker.terminate.
DRAIN_DELAY = 1.5
HOOK_TIMEOUT = 60.0
EVENT_CONCURRENCY = 4  # event writes in flight at once
IMAGE_CACHE_SECONDS = 60.0  # a host program installed or removed is seen within this time
OWNED_STATUS = ("phase", "conditions", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
                "initContainerStatuses", "containerStatuses", "qosClass")


def now_rfc3339() -> str:
    return podspec.now_rfc3339()


def micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(ts: str | None) -> float:
    if not ts:
        return time.time()
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _stable_key(pod: Obj, name: str) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('uid', '')}/{name}"


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


# ---------------------------------------------------------------------------------- container state


@dataclass
class ContainerState:
    """What the agent knows of one container of a pod: its current and previous instance."""

    name: str
    init: bool
    restart_count: int = 0
    current: str = ""  # container id of the current (possibly exited) instance
    status: ContainerStatus | None = None
    previous: str = ""
    prev_status: ContainerStatus | None = None
    waiting: tuple[str, str] | None = None  # (reason, message) when not running for a known reason
    image_id: str = ""
    image: str = ""  # the normalised image reference, once resolved
    ready: bool = False
    started: bool = False
    started_mono: float = 0.0
    probes: dict[str, probes.ProbeWorker] = field(default_factory=dict)
    probe_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    backoff_reported: str = ""  # the exited instance a BackOff event was recorded for
    killed_for: str = ""  # liveness/startup failure that killed the current instance

    @property
    def running(self) -> bool:
        return self.status is not None and self.status.state == "running"

    @property
    def exited(self) -> bool:
        return self.status is not None and self.status.state == "exited"

    def stop_probes(self) -> None:
        for t in self.probe_tasks:
            t.cancel()
        self.probe_tasks.clear()
        self.probes.clear()


def _terminated(cid: str, st: ContainerStatus) -> Obj:
    out: Obj = {
        "exitCode": st.exit_code if st.exit_code is not None else 0,
        "reason": st.reason or podspec.terminated_reason(st.exit_code or 0),
        "startedAt": st.started_at or st.finished_at,
        "finishedAt": st.finished_at,
        "containerID": cid,
    }
    if st.message:
        out["message"] = st.message
    return out


def container_status(spec: Obj, cs: ContainerState, default_waiting: str) -> Obj:
    """One entry of containerStatuses / initContainerStatuses, as the kubelet reports it."""
    last: Obj = {}
    state: Obj
    cid = cs.current
    if cs.waiting is not None:
        reason, message = cs.waiting
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if cs.exited and cs.status is not None:
            last = {"terminated": _terminated(cs.current, cs.status)}
        elif cs.prev_status is not None and cs.prev_status.state == "exited":
            last = {"terminated": _terminated(cs.previous, cs.prev_status)}
    elif cs.status is None:
        state = {"waiting": {"reason": default_waiting}}
    else:
        if cs.status.state == "running":
            state = {"running": {"startedAt": cs.status.started_at}}
        else:
            state = {"terminated": _terminated(cs.current, cs.status)}
        if cs.prev_status is not None and cs.prev_status.state == "exited":
            last = {"terminated": _terminated(cs.previous, cs.prev_status)}
    out: Obj = {
        "name": cs.name,
        "state": state,
        "lastState": last,
        "ready": cs.ready,
        "restartCount": cs.restart_count,
        "image": cs.image or spec.get("image", ""),
        "imageID": cs.image_id,
    }
    if cid:
        out["containerID"] = cid
    out["started"] = cs.started
    return out


# ---------------------------------------------------------------------------------- pod worker


class PodWorker:
    """The sync loop of one pod (the kubelet's pod worker + SyncPod)."""

    def __init__(self, agent: Agent, pod: Obj) -> None:
        self.agent = agent
        self.pod: Obj | None = pod
        self.uid: str = pod["metadata"]["uid"]
        self.dir = agent.state_dir / "pods" / self.uid
        self.wake = asyncio.Event()
        self.net: PodNetwork | None = None
        self.sandbox_ready = False
        self.volumes_refreshed = 0.0
        self.start_time: str = (pod.get("status") or {}).get("startTime") or ""
        self.containers: dict[str, ContainerState] = {}
        self.init_containers: dict[str, ContainerState] = {}
        self.terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        self.terminating = False
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self._image_backoff = podspec.Backoff()
        self._born = time.monotonic()

    # -- state from the runtime (adoption after an agent restart)

    def adopt(self, instances: list[tuple[str, ContainerStatus]], net: PodNetwork | None) -> None:
        pod = self.pod or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        reported = {s.get("containerID"): s for s in [*(status.get("containerStatuses") or []),
                                                      *(status.get("initContainerStatuses") or [])]}
        by_name: dict[str, list[tuple[str, ContainerStatus]]] = {}
        for cid, st in instances:
            by_name.setdefault(st.name, []).append((cid, st))
        init_names = {c["name"] for c in spec.get("initContainers") or []}
        for name, found in by_name.items():
            found.sort(key=lambda x: x[1].restart_count)
            cs = self._state(name, name in init_names)
            cid, st = found[-1]
            cs.current, cs.status, cs.restart_count = cid, st, st.restart_count
            if len(found) > 1:
                cs.previous, cs.prev_status = found[-2]
            old = reported.get(cid) or {}
            cs.image_id, cs.image = old.get("imageID", ""), old.get("image", "")
            cs.ready = bool(old.get("ready")) and st.state == "running"
            cs.started = bool(old.get("started")) and st.state == "running"
            cs.started_mono = time.monotonic() - max(0.0, time.time() - _epoch(st.started_at))
        if net is not None:
            self.net = net
            self.sandbox_ready = (self.dir / "etc" / "hosts").exists()

    def _state(self, name: str, init: bool) -> ContainerState:
        table = self.init_containers if init else self.containers
        cs = table.get(name)
        if cs is None:
            cs = table[name] = ContainerState(name, init)
        return cs

    # -- the loop

    def update(self, pod: Obj | None) -> None:
        self.pod = pod
        self.wake.set()

    async def loop(self) -> None:
        while not self.done:
            self.wake.clear()
            try:
                delay = await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("syncing pod %s", self.name)
                delay = RETRY
            if self.done:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)
        self.agent.workers.pop(self.uid, None)

    @property
    def name(self) -> str:
        meta = (self.pod or {}).get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', self.uid)}"

    def event(self, type_: str, reason: str, message: str) -> None:
        if self.pod is not None:
            self.agent.event(self.pod, type_, reason, message)

    async def sync(self) -> float:
        pod = self.pod
        if pod is None:  # gone from the API (force deletion, or after our own final DELETE)
            await self.kill_all(MIN_GRACE)
            await self.cleanup(remove_dir=True)
            self.done = True
            return 0
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            await self.terminate()
            return 0
        if self.terminal:
            await self.finish()
            return 3600
        if not self.start_time:
            self.start_time = now_rfc3339()
        if not self.sandbox_ready:
            if not await self.ensure_sandbox():
                await self.report()
                return RETRY
            log.debug("pod %s: sandbox ready after %.3fs", self.name, time.monotonic() - self._born)
        delays = [POLL]
        await self.refresh()
        spec = pod.get("spec") or {}
        initialized = True
        for c in spec.get("initContainers") or []:
            cs = self._state(c["name"], True)
            if cs.exited and cs.status is not None and cs.status.exit_code == 0:
                continue
            initialized = False
            if cs.running:
                break
            if cs.exited and cs.status is not None:
                if spec.get("restartPolicy") == "Never":
                    break  # the pod fails (pod_phase reports it)
                delays.append(await self.restart_or_wait(c, cs))
            else:
                delays.append(await self.start(c, cs))
            break
        if initialized:
            for c in spec.get("containers") or []:
                cs = self._state(c["name"], False)
                if cs.running:
                    continue
                if cs.exited and cs.status is not None:
                    if podspec.should_restart(spec.get("restartPolicy") or "Always", cs.status.exit_code or 0):
                        delays.append(await self.restart_or_wait(c, cs))
                    continue
                delays.append(await self.start(c, cs))
        phase = await self.report()
        log.debug("pod %s: synced after %.3fs", self.name, time.monotonic() - self._born)
        if phase in ("Succeeded", "Failed"):
            self.terminal = True
            await self.finish()
            await self.report(terminal=True)  # PodReadyToStartContainers goes False with the sandbox
            return 3600
        if time.monotonic() - self.volumes_refreshed > 60:
            await self.refresh_volumes()
        return max(0.05, min(delays))

    # -- sandbox

    async def ensure_sandbox(self) -> bool:
        pod = self.pod
        assert pod is not None
        if self.sandbox_ready and self.net is not None:
            return True
        try:
            t0 = time.monotonic()
            token = asyncio.ensure_future(volumes.prefetch_token(pod, self.agent.volume_sources(pod, None)))
            try:
                self.net = await self.agent.network.add_pod(self.uid)
            finally:
                with contextlib.suppress(Exception):
                    await token  # errors come again, and are reported, from refresh_volumes
            t1 = time.monotonic()
            await self.write_etc_files()
            await self.refresh_volumes(raise_errors=True)
            log.debug("pod %s: network %.3fs, files and volumes %.3fs", self.name, t1 - t0, time.monotonic() - t1)
        except volumes.VolumeError as e:
            self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {e}")
            return False
        except ApiError as e:
            self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {e.status.get('message', e)}")
            return False
        self.sandbox_ready = True
        return True

    async def write_etc_files(self) -> None:
        pod = self.pod
        assert pod is not None and self.net is not None
        files = {
            "hosts": podspec.hosts_file(pod, [self.net.ip]),
            "resolv.conf": podspec.resolv_conf(pod, cluster_dns=self.agent.cluster_dns(),
                                               host=self.agent.host_resolv),
            "hostname": podspec.uts_hostname(pod) + "\n",
        }
        # Creating files can take milliseconds on a busy disk: not on the event loop, which
        # serves every other pod's start meanwhile.
        await asyncio.to_thread(_write_files, self.dir / "etc", files)

    async def refresh_volumes(self, raise_errors: bool = False) -> None:
        pod = self.pod
        assert pod is not None
        self.volumes_refreshed = time.monotonic()
        try:
            await volumes.setup(pod, self.dir, self.agent.volume_sources(pod, self.net))
        except (volumes.VolumeError, ApiError):
            if raise_errors:
                raise
            log.info("refreshing volumes of %s failed", self.name, exc_info=True)

    # -- containers

    async def refresh(self) -> None:
        for cs in [*self.init_containers.values(), *self.containers.values()]:
            if cs.current and (cs.status is None or cs.status.state == "running"):
                try:
                    cs.status = await self.agent.runtime.status(cs.current)
                except ContainerNotFound:
                    cs.status = ContainerStatus("exited", None, 137, "", now_rfc3339(), "ContainerStatusUnknown",
                                                "The container could not be located when the pod was terminated")
                if cs.exited:
                    cs.ready = cs.started = False
                    cs.stop_probes()

    async def restart_or_wait(self, c: Obj, cs: ContainerState) -> float:
        """An exited container that the restart policy restarts: now, or after its back-off."""
        pod = self.pod
        assert pod is not None and cs.status is not None
        key = _stable_key(pod, c["name"])
        finished = _epoch(cs.status.finished_at)
        backoff = self.agent.backoff
        now = time.time()
        if backoff.in_backoff_since(key, finished, now):
            delay = backoff.get(key)
            cs.waiting = ("CrashLoopBackOff", podspec.crashloop_message(delay, c["name"], pod))
            if cs.backoff_reported != cs.current:
                cs.backoff_reported = cs.current
                self.event("Warning", "BackOff",
                           f"Back-off restarting failed container {c['name']} in pod {podspec.pod_ref(pod)}")
            return max(0.05, backoff.remaining(key, finished, now))
        backoff.next(key, now)
        return await self.start(c, cs)

    async def start(self, c: Obj, cs: ContainerState) -> float:
        """Start a new instance of container ``c``; returns when to sync next."""
        pod = self.pod
        assert pod is not None and self.net is not None
        agent = self.agent
        image_name = c.get("image", "")
        image_key = _stable_key(pod, c["name"]) + "/image"
        now = time.time()
        try:
            image = agent.resolve_image(image_name)
        except images.ImageNotFound as e:
            message = str(e)
            if cs.waiting and cs.waiting[0] in ("ErrImagePull", "ImagePullBackOff") and \
                    self._image_backoff.in_backoff_since(image_key, now, now):
                cs.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image_name}": ErrImagePull: {message}')
                self.event("Normal", "BackOff", f'Back-off pulling image "{image_name}"')
                self.event("Warning", "Failed", "Error: ImagePullBackOff")
                return max(0.05, self._image_backoff.get(image_key))
            self._image_backoff.next(image_key, now)
            cs.waiting = ("ErrImagePull", message)
            self.event("Warning", "Failed", message)
            self.event("Warning", "Failed", "Error: ErrImagePull")
            return 1.0
        cs.image_id, cs.image = image.image_id, image.name
        try:
            env, argv, mounts = await agent.container_config(pod, c, image, self.net, self.dir)
        except (podspec.EnvError, volumes.VolumeError) as e:
            cs.waiting = ("CreateContainerConfigError", str(e))
            self.event("Warning", "Failed", f"Error: {e}")
            return RETRY
        restart = cs.restart_count + 1 if cs.current else 0
        sc = {**((pod.get("spec") or {}).get("securityContext") or {}), **(c.get("securityContext") or {})}
        if sc.get("runAsNonRoot") and not sc.get("runAsUser"):
            # Every catalog image runs as root unless told otherwise, as the kubelet checks it.
            meta = pod.get("metadata") or {}
            msg = (f'container has runAsNonRoot and image will run as root (pod: "{meta.get("name")}_'
                   f'{meta.get("namespace")}({self.uid})", container: {c["name"]})')
            cs.waiting = ("CreateContainerConfigError", msg)
            self.event("Warning", "Failed", f"Error: {msg}")
            return RETRY
        spec = ContainerSpec(
            pod_uid=self.uid,
            name=c["name"],
            restart_count=restart,
            argv=argv,
            env=env,
            workdir=c.get("workingDir") or image.workdir,
            netns_path=self.net.netns_path,
            hostname=podspec.uts_hostname(pod),
            mounts=mounts,
            uid=sc.get("runAsUser"),
            gid=sc.get("runAsGroup"),
            log_path=self.dir / "logs" / c["name"] / f"{restart}.log",
            tty=bool(c.get("tty")),
            stdin=bool(c.get("stdin")),
            stdin_once=bool(c.get("stdinOnce")),
        )
        self.event("Normal", "Pulled", f'Container image "{image_name}" already present on machine')
        try:
            cid = await agent.runtime.start(spec)
        except Exception as e:
            cs.waiting = ("RunContainerError", str(e))
            self.event("Warning", "Failed", f"Error: {e}")
            return RETRY
        # Keep the current and the previous instance (lastState), as the kubelet's container GC.
        if cs.previous:
            with contextlib.suppress(Exception):
                await agent.runtime.remove(cs.previous)
        if cs.current:
            cs.previous, cs.prev_status = cs.current, cs.status
        cs.current, cs.restart_count, cs.waiting, cs.killed_for = cid, restart, None, ""
        cs.status = await agent.runtime.status(cid)
        cs.started_mono = time.monotonic()
        self.event("Normal", "Created", f"Created container: {c['name']}")
        if cs.status.state == "exited" and cs.status.reason == "StartError":
            self.event("Warning", "Failed", f"Error: {cs.status.message}")
            return POLL
        self.event("Normal", "Started", f"Started container {c['name']}")
        post_start = (c.get("lifecycle") or {}).get("postStart")
        if post_start and cs.running:
            ok, output = await self.run_hook(c, cs, post_start, HOOK_TIMEOUT)
            if not ok:
                self.event("Warning", "FailedPostStartHook", f"PostStartHook failed: {output}".strip())
                self.event("Normal", "Killing", f"FailedPostStartHook: Stopping container {c['name']}")
                await agent.runtime.stop(cid, self.grace_for(c))
                cs.status = await agent.runtime.status(cid)
                return 0.05
        if not cs.init:
            self.start_probes(c, cs)
        return POLL

    def grace_for(self, c: Obj, probe: Obj | None = None) -> int:
        spec = (self.pod or {}).get("spec") or {}
        if probe and probe.get("terminationGracePeriodSeconds") is not None:
            return int(probe["terminationGracePeriodSeconds"])
        return int(spec.get("terminationGracePeriodSeconds", 30))

    def _target(self, c: Obj, cs: ContainerState) -> probes.Target:
        assert self.net is not None
        return probes.Target(self.net.ip, c, cs.current, self.agent.network.netns_path, self.agent.exec_in)

    async def run_hook(self, c: Obj, cs: ContainerState, handler: Obj, seconds: float) -> tuple[bool, str]:
        if handler.get("sleep") is not None:
            await asyncio.sleep(min(seconds, float(handler["sleep"].get("seconds") or 0)))
            return True, ""
        try:
            async with asyncio.timeout(seconds):
                result, output = await probes.run_handler(self._target(c, cs), handler, seconds)
        except TimeoutError:
            return False, "timed out"
        return result == "success", output

    # -- probes

    def start_probes(self, c: Obj, cs: ContainerState, adopted: bool = False) -> None:
        cs.stop_probes()
        has_startup = c.get("startupProbe") is not None
        if not has_startup:
            cs.started = True
        if c.get("readinessProbe") is None:
            cs.ready = cs.started
        target = self._target(c, cs)
        for kind in ("startup", "readiness", "liveness"):
            probe = c.get(f"{kind}Probe")
            if probe is None:
                continue
            initial: bool | None = None
            if adopted and kind == "readiness":
                initial = cs.ready
            if adopted and kind == "startup" and cs.started:
                continue
            worker = probes.ProbeWorker(
                kind=kind, probe=probe, target=target, started_at=cs.started_mono,
                on_change=functools.partial(self.on_probe, c, cs),
                on_failure=self.on_probe_failure,
                gate=functools.partial(getattr, cs, "started"), initial=initial,
            )
            cs.probes[kind] = worker
            cs.probe_tasks.append(asyncio.create_task(worker.run(), name=f"probe-{kind}-{c['name']}"))

    def on_probe_failure(self, _kind: str, message: str) -> None:
        self.event("Warning", "Unhealthy", message)

    def on_probe(self, c: Obj, cs: ContainerState, kind: str, ok: bool) -> None:
        if kind == "readiness":
            cs.ready = ok and cs.started
        elif kind == "startup" and ok:
            cs.started = True
            cs.ready = c.get("readinessProbe") is None or bool(
                cs.probes.get("readiness") and cs.probes["readiness"].result)
        elif kind in ("liveness", "startup") and not ok:
            cs.killed_for = kind
            self.agent._spawn(self.kill_unhealthy(c, cs, kind))
        self.wake.set()

    async def kill_unhealthy(self, c: Obj, cs: ContainerState, kind: str) -> None:
        cid = cs.current
        self.event("Normal", "Killing", f"Container {c['name']} failed {kind} probe, will be restarted")
        cs.ready = False
        with contextlib.suppress(Exception):
            await self.agent.runtime.stop(cid, self.grace_for(c, c.get(f"{kind}Probe")))
        self.wake.set()

    # -- status

    def build_status(self, *, force_unready: bool = False, terminal: bool = False) -> Obj:
        pod = self.pod
        assert pod is not None
        spec = pod.get("spec") or {}
        has_init = bool(spec.get("initContainers"))
        init_statuses = [
            container_status(c, self._state(c["name"], True), "PodInitializing")
            for c in spec.get("initContainers") or []
        ]
        for s in init_statuses:
            term = s["state"].get("terminated") or {}
            s["ready"] = bool(term) and term.get("exitCode") == 0
        statuses = [
            container_status(c, self._state(c["name"], False), "PodInitializing" if has_init else "ContainerCreating")
            for c in spec.get("containers") or []
        ]
        if force_unready:
            for s in statuses:
                s["ready"] = False
        phase = podspec.pod_phase(pod, init_statuses, statuses, terminal)
        status: Obj = {
            "phase": phase,
            "conditions": podspec.pod_conditions(
                pod, phase, init_statuses, statuses, sandbox_ready=self.sandbox_ready and not terminal,
                now=now_rfc3339(), force_unready=force_unready,
            ),
            "hostIP": self.agent.node_ip,
            "hostIPs": [{"ip": self.agent.node_ip}],
            "startTime": self.start_time or now_rfc3339(),
            "containerStatuses": statuses,
            "qosClass": pod_qos_class(pod.get("spec") or {}),
        }
        if self.net is not None:
            status["podIP"] = self.net.ip
            status["podIPs"] = [{"ip": self.net.ip}]
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    async def report(self, **kw: bool) -> str:
        """Compute the status and write it through pods/status when it changed; returns the phase."""
        pod = self.pod
        assert pod is not None
        status = self.build_status(**kw)
        current = pod.get("status") or {}
        changed = {k: status.get(k) for k in OWNED_STATUS if status.get(k) != current.get(k)}
        if changed:
            meta = pod["metadata"]
            try:
                new = await self.agent.client.patch(PODS, meta["name"], {"status": changed}, meta["namespace"],
                                                    subresource="status")
            except ApiError as e:
                if not e.not_found:
                    raise
            else:
                if new.get("metadata", {}).get("uid") == self.uid and self.pod is pod:
                    self.pod = new
        return str(status["phase"])

    # -- the end of a pod

    async def finish(self) -> None:
        """A pod that has run to completion: stop probes, free its network; logs stay."""
        for cs in [*self.init_containers.values(), *self.containers.values()]:
            cs.stop_probes()
        await self.kill_all(MIN_GRACE)
        if self.net is not None or self.uid in self.agent.network.pods():
            await self.agent.network.remove_pod(self.uid)
            self.net = None
        self.sandbox_ready = False

    async def kill_all(self, grace: int) -> None:
        running = [cs for cs in [*self.init_containers.values(), *self.containers.values()] if cs.running]
        for cs in running:
            cs.stop_probes()
        await asyncio.gather(*(self.agent.runtime.stop(cs.current, grace) for cs in running),
                             return_exceptions=True)
        await self.refresh()

    async def terminate(self) -> None:
        """Graceful deletion: leave the Service datapath, preStop, SIGTERM, SIGKILL after grace, DELETE."""
        pod = self.pod
        assert pod is not None
        meta = pod["metadata"]
        grace = int(meta.get("deletionGracePeriodSeconds", (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)))
        deadline = time.monotonic() + grace
        self.terminating = True
        pod_spec = pod.get("spec") or {}
        containers = {c["name"]: c for c in [*(pod_spec.get("initContainers") or []),
                                             *(pod_spec.get("containers") or [])]}
        await self.refresh()
        running = [cs for cs in [*self.init_containers.values(), *self.containers.values()] if cs.running]
        if running and not self.terminal:
            # Issue 8: clients must stop being sent here before the processes start shutting
            # down. Reporting Ready=False makes the EndpointSlice controller mark the endpoint
            # not ready (terminating) and the proxy drop it from the Service; the short wait
            # lets that happen before SIGTERM (overlapping the preStop hooks, which serve the
            # same purpose in real deployments), bounded by half the grace period.
            for cs in running:
                cs.ready = False
            with contextlib.suppress(ApiError):
                await self.report(force_unready=True)
            drain = min(DRAIN_DELAY, grace / 2)
            hooks = []
            for cs in running:
                pre_stop = (containers.get(cs.name, {}).get("lifecycle") or {}).get("preStop")
                if pre_stop:
                    hooks.append(self._pre_stop(containers[cs.name], cs, pre_stop, max(0.0, deadline - time.monotonic())))
            await asyncio.gather(asyncio.sleep(drain), *hooks)
            for cs in running:
                cs.stop_probes()
                self.event("Normal", "Killing", f"Stopping container {cs.name}")
            remaining = max(MIN_GRACE, math.ceil(deadline - time.monotonic()))
            await asyncio.gather(*(self.agent.runtime.stop(cs.current, remaining) for cs in running),
                                 return_exceptions=True)
            await self.refresh()
            with contextlib.suppress(ApiError):
                await self.report(terminal=True)
        await self.cleanup(remove_dir=False)
        try:
            await self.agent.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                           preconditions={"uid": self.uid})
        except ApiError as e:
            if not (e.not_found or e.code == 409):
                raise
        shutil.rmtree(self.dir, ignore_errors=True)
        self.done = True

    async def _pre_stop(self, c: Obj, cs: ContainerState, handler: Obj, seconds: float) -> None:
        ok, output = await self.run_hook(c, cs, handler, seconds)
        if not ok:
            self.event("Warning", "FailedPreStopHook", f"PreStopHook failed: {output}".strip())

    async def cleanup(self, remove_dir: bool) -> None:
        """Remove every container instance and the sandbox."""
        for cs in [*self.init_containers.values(), *self.containers.values()]:
            cs.stop_probes()
            for cid in (cs.current, cs.previous):
                if cid:
                    with contextlib.suppress(Exception):
                        await self.agent.runtime.remove(cid)
        await self.agent.network.remove_pod(self.uid)
        self.net = None
        self.sandbox_ready = False
        volumes.remove(self.dir)
        self.agent.backoff.forget(self.uid + "/")
        self.agent.forget_tokens(self.uid)
        if remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------- the agent


def _write_files(directory: pathlib.Path, files: dict[str, str]) -> None:
    """Replace each file atomically (mode 0644), so a container never reads half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)


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


def _read_first(*paths: str) -> str:
    for p in paths:
        with contextlib.suppress(OSError):
            text = pathlib.Path(p).read_text().strip()
            if text:
                return text
    return ""


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(
        machine, machine)


def _host_resolv() -> podspec.ResolvConf:
    """The host's resolver for dnsPolicy Default; systemd-resolved's stub is unreachable from a pod."""
    conf = podspec.parse_resolv_conf(_read_first("/etc/resolv.conf"))
    if any(ns.startswith("127.") for ns in conf.nameservers):
        upstream = podspec.parse_resolv_conf(_read_first("/run/systemd/resolve/resolv.conf"))
        if upstream.nameservers:
            return upstream
    return conf


class Agent:
    """kubelite's kubelet for node ``node_name``."""

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
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.cluster = cluster
        self.state_dir = pathlib.Path(state_dir)
        self.pod_cidr = pod_cidr
        self.api_port = api_port
        self.network = network or NodeNetwork(cluster, pod_cidr, self.state_dir)
        self.runtime = runtime or Runtime(self.state_dir)
        self.image_catalog = image_catalog
        self.recorder = EventRecorder(client, "kubelet", node_name)
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.services = Informer(client, SERVICES)
        self.workers: dict[str, PodWorker] = {}
        self.backoff = podspec.Backoff()
        # Pods with dnsPolicy Default resolve through the agent's DNS relay on the node address
        # (the host's own resolvers are not reachable from the cluster's namespaces).
        upstream = _host_resolv()
        # The relay runs in the host namespace, so a loopback stub resolver is fine here.
        self.dns_upstream = dns_upstream or next(iter(upstream.nameservers), "")
        self.host_resolv = dataclasses.replace(
            upstream, nameservers=(self.node_ip,) if self.dns_upstream else upstream.nameservers
        )
        self.socket_path = kubelet_socket_path(self.state_dir, node_name)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._node_uid = ""
        self._tokens: dict[tuple[str, str, int, str], tuple[str, float]] = {}
        self._leftovers: dict[str, list[tuple[str, ContainerStatus]]] = {}
        self._leftover_nets: dict[str, PodNetwork] = {}
        self._node_conditions: list[Obj] = []
        self._images: dict[tuple[str, int], tuple[images.Image, float]] = {}
        self._event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)
        self._allocatable: tuple[dict[str, str], float] | None = None
        self._ca = client.config.ca_data or b""
        self.ready = asyncio.Event()

    @property
    def node_ip(self) -> str:
        return self.network.gateway

    # -- helpers used by pod workers

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

    def cluster_dns(self) -> str:
        svc = self.services.get("kube-system/kube-dns")
        ip = ((svc or {}).get("spec") or {}).get("clusterIP") or ""
        return ip if ip and ip != "None" else podspec.DEFAULT_DNS_IP

    def resolve_image(self, name: str) -> images.Image:
        # Resolving may run a program (busybox --list) and read the catalog file: once per
        # image name and catalog version, not once per container start (the event loop waits).
        try:
            catalog_mtime = self.image_catalog.stat().st_mtime_ns if self.image_catalog else 0
        except OSError:
            catalog_mtime = -1
        key = (name, catalog_mtime)
        cached = self._images.get(key)
        if cached is not None and time.monotonic() - cached[1] < IMAGE_CACHE_SECONDS:
            return cached[0]
        image = images.resolve(name, self.image_catalog)  # ImageNotFound is not cached
        self._images[key] = (image, time.monotonic())
        return image

    def allocatable(self) -> dict[str, str]:
        # Read for every container's env and downward API: /proc/meminfo and statvfs once a
        # while, not per container.
        now = time.monotonic()
        if self._allocatable is None or now - self._allocatable[1] > 10:
            self._allocatable = (self._resources()[1], now)
        return self._allocatable[0]

    async def _get_optional(self, rt: Any, name: str, namespace: str) -> Obj | None:
        try:
            return await self.client.get(rt, name, namespace)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def volume_sources(self, pod: Obj, net: PodNetwork | None) -> volumes.Sources:
        meta = pod["metadata"]
        ns = meta["namespace"]

        async def token(sa: str, seconds: int, audience: str) -> str:
            # As the kubelet's token manager: reuse a token until 80% of its lifetime has passed.
            key = (meta["uid"], sa, seconds, audience)
            cached = self._tokens.get(key)
            if cached is not None and time.monotonic() < cached[1]:
                return cached[0]
            spec: Obj = {
                "expirationSeconds": seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            }
            if audience:
                spec["audiences"] = [audience]
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
            started = time.monotonic()
            out = await self.client.create(SERVICEACCOUNTS, body, ns, subresource="token", name=sa)
            log.debug("token for pod %s/%s in %.3fs", ns, meta["name"], time.monotonic() - started)
            self._tokens[key] = (str(out["status"]["token"]), time.monotonic() + 0.8 * seconds)
            return self._tokens[key][0]

        return volumes.Sources(
            configmap=lambda name: self._get_optional(CONFIGMAPS, name, ns),
            secret=lambda name: self._get_optional(SECRETS, name, ns),
            token=token,
            ca_crt=self._ca,
            pod_ips=[net.ip] if net else [],
            host_ips=[self.node_ip],
            allocatable=self.allocatable(),
        )

    def forget_tokens(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]

    async def container_config(self, pod: Obj, c: Obj, image: images.Image, net: PodNetwork,
                               pod_dir: pathlib.Path) -> tuple[dict[str, str], list[str], list[tuple[str, str, bool]]]:
        """(env, argv, mounts) of a container about to start."""
        ns = pod["metadata"]["namespace"]
        spec = pod.get("spec") or {}
        cms: dict[str, Obj | None] = {}
        secrets: dict[str, Obj | None] = {}
        for source in c.get("envFrom") or []:
            if source.get("configMapRef"):
                cms[source["configMapRef"].get("name", "")] = None
            if source.get("secretRef"):
                secrets[source["secretRef"].get("name", "")] = None
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            if vf.get("configMapKeyRef"):
                cms[vf["configMapKeyRef"].get("name", "")] = None
            if vf.get("secretKeyRef"):
                secrets[vf["secretKeyRef"].get("name", "")] = None
        for name in cms:
            cms[name] = await self._get_optional(CONFIGMAPS, name, ns)
        for name in secrets:
            secrets[name] = await self._get_optional(SECRETS, name, ns)

        def cm_data(name: str) -> dict[str, str] | None:
            obj = cms.get(name)
            return None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}

        def secret_data(name: str) -> dict[str, str] | None:
            obj = secrets.get(name)
            if obj is None:
                return None
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}

        service_vars = podspec.service_env(self.services.list(), ns, spec.get("enableServiceLinks", True) is not False)
        result = podspec.container_env(
            pod, c, service_vars=service_vars, configmaps=cm_data, secrets=secret_data,
            pod_ips=[net.ip], host_ips=[self.node_ip], allocatable=self.allocatable(),
        )
        for source, keys in result.invalid_keys.items():
            kind, _, name = source.partition(" ")
            self.event(pod, "Warning", "InvalidEnvironmentVariableNames",
                       f"Keys [{', '.join(keys)}] from the EnvFrom {kind} {name} were skipped since they are "
                       "considered invalid environment variable names.")
        # HOME as runc sets it from the image's passwd (root's, or / for other users).
        sc = {**((pod.get("spec") or {}).get("securityContext") or {}), **(c.get("securityContext") or {})}
        home = "/" if sc.get("runAsUser") else "/root"
        env = {"HOSTNAME": podspec.uts_hostname(pod), "HOME": home, **image.env, **result.env}
        argv = image.host_argv(podspec.container_argv(c, image.entrypoint, image.cmd, result.env))
        if not argv:
            raise podspec.EnvError("no command specified")
        etc = pod_dir / "etc"
        mounts = [(str(etc / "hosts"), "/etc/hosts", False), (str(etc / "resolv.conf"), "/etc/resolv.conf", False),
                  (str(etc / "hostname"), "/etc/hostname", False)]
        mounts += volumes.container_mounts(pod, c, pod_dir)
        return env, argv, mounts

    async def exec_in(self, container_id: str, argv: list[str], seconds: float) -> tuple[int, bytes]:
        """Run a command in a container and collect its output (exec probes and hooks)."""
        try:
            proc = await self.runtime.exec(container_id, argv, tty=False, stdin=False)
        except ExecStartError as e:
            return 126, str(e).encode()

        async def drain(read: Callable[[], Awaitable[bytes]]) -> bytes:
            out = b""
            while chunk := await read():
                out += chunk
            return out

        try:
            async with asyncio.timeout(seconds):
                out, err = await asyncio.gather(drain(proc.read_stdout), drain(proc.read_stderr))
                code = await proc.wait()
        except TimeoutError:
            proc.kill()
            raise
        finally:
            proc.close()
        return code, out + err

    # -- node registration and heartbeats

    def _resources(self) -> tuple[dict[str, str], dict[str, str]]:
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

    def _conditions(self) -> list[Obj]:
        now = now_rfc3339()
        wanted = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        old = {c["type"]: c for c in self._node_conditions}
        out = []
        for type_, status, reason, message in wanted:
            prev = old.get(type_)
            out.append({
                "type": type_, "status": status, "lastHeartbeatTime": now,
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now,
                "reason": reason, "message": message,
            })
        self._node_conditions = out
        return out

    def node_status(self) -> Obj:
        capacity, allocatable = self._resources()
        uname = os.uname()
        machine_id = _read_first("/etc/machine-id", "/var/lib/dbus/machine-id")
        return {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": self._conditions(),
            "addresses": [{"type": "InternalIP", "address": self.node_ip}, {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": _read_first("/sys/class/dmi/id/product_uuid") or machine_id,
                "bootID": _read_first("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.release,
                "osImage": _os_image(),
                "containerRuntimeVersion": f"kubelite://{_version()}",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    async def register_node(self) -> None:
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
            "status": self.node_status(),
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
        await self.post_node_status()

    async def post_node_status(self) -> None:
        await self.client.patch(NODES, self.node_name, {"status": self.node_status()}, subresource="status")

    async def renew_lease(self, lease: Obj | None) -> Obj:
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": micro_time()}
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
        lease: Obj | None = None
        last_status = time.monotonic()
        while True:
            try:
                lease = await self.renew_lease(lease)
                if time.monotonic() - last_status >= NODE_STATUS_REPORT:
                    await self.post_node_status()
                    last_status = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("node heartbeat: %s", e)
                lease = None
            await asyncio.sleep(LEASE_RENEW)

    # -- pods

    def on_pod(self, kind: str, pod: Obj, old: Obj | None) -> None:
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
        pod = worker.pod or {}
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
        pods_dir = self.state_dir / "pods"
        if pods_dir.is_dir():
            for d in pods_dir.iterdir():
                if d.name not in known:
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
            await self.register_node()
            tasks.append(asyncio.create_task(self.heartbeat(), name="heartbeat"))
            await self.pods.wait_synced()
            await self.services.wait_synced()
            await self.cleanup_orphans()
            # What survived the previous agent, looked up once: the pods known now adopt it
            # (add_handler delivers them at once); pods that come later start from nothing.
            for cid, st in self.runtime.list().items():
                self._leftovers.setdefault(st.pod_uid, []).append((cid, st))
            self._leftover_nets = self.network.pods()
            self.pods.add_handler(self.on_pod)
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


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("kubelite")
    except Exception:
        return "0.0.0"


# ---------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument("--cluster-name", default="kubelite", help="cluster name: prefix of every netns (default: kubelite)")
    parser.add_argument("--node-name", default=None, help="node name (default: <cluster-name>-node)")
    parser.add_argument("--state-dir", required=True, help="the agent's state directory (pods, containers, IPAM)")
    parser.add_argument("--pod-cidr", default="10.244.0.0/24", help="this node's pod CIDR (default: 10.244.0.0/24)")
    parser.add_argument("--api-port", type=int, default=None,
                        help="API server port for the in-cluster relay (default: the kubeconfig server's port)")
    parser.add_argument("--image-catalog", default=None, help="YAML file mapping more image names")
    parser.add_argument("--dns-upstream", default="",
                        help="resolver (ip[:port]) the node's DNS relay forwards to (default: the host's resolv.conf)")


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
    )
    try:
        await agent.run()
    finally:
        await client.close()
    return 0


if __name__ == "__main__":
    # `python -m kubelite.node.agent ...` is `kubelite agent ...` (signals, logging, parent death).
    import sys

    from kubelite.cli.main import main as cli_main

    verbosity = [a for a in sys.argv[1:] if a.startswith("-v") and set(a[1:]) == {"v"}]
    rest = [a for a in sys.argv[1:] if a not in verbosity]
    raise SystemExit(cli_main([*verbosity, "agent", *rest]))
