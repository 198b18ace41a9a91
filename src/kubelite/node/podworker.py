"""Pod workers: one sync loop per pod, the kubelet's pod workers and ``SyncPod``.

Each pod bound to the node has one :class:`PodWorker` (keyed by UID) running a
level-triggered sync: the desired state is the Pod object, the actual state is what the
runtime and the network report, and every sync converges one onto the other and reports
the result through pods/status. It makes the sandbox (network namespace, the pod's
/etc/hosts, resolv.conf and hostname, its volumes), runs init containers one by one and
then the containers, with probes, restarts with back-off, graceful termination and status
reports following the kubelet's rules (kept pure in :mod:`kubelite.node.podspec`).

A worker reaches the rest of the node only through :class:`PodHost`, which names each
collaborator it uses: the runtime, the pod network, the API client (its own pod's status
and final deletion), the container configuration (:mod:`kubelite.node.podconfig`), the
event recorder and the directory pods live in. The agent that dispatches pods to workers
(:mod:`kubelite.node.agent`) is one such host; nothing here depends on how it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import pathlib
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelite.api import timeutil
from kubelite.api.resource import pod_qos_class
from kubelite.api.types import Obj
from kubelite.client import PODS, ApiError, Client
from kubelite.images.oci import OCIImage
from kubelite.node import activedeadline, lifecycle, ocispec, podspec, probes, terminationmessage, volumes
from kubelite.node import images as node_images
from kubelite.node.network import NodeNetwork, PodNetwork
from kubelite.node.podconfig import PodConfigurer
from kubelite.node.runtime import ContainerNotFound, ContainerSpec, ContainerStatus, ExecStartError, Runtime

log = logging.getLogger(__name__)

POLL = 1.0  # how often running containers are checked for exits when their exit cannot be watched
# How often a pod whose running containers all have their exits watched (Runtime.watch_exit)
# is synced anyway: the kubelet's periodic resync, for what no event tells (volume contents).
RESYNC = 10.0
HOOK_HTTP_TIMEOUT = 60.0  # one postStart httpGet exchange (the kubelet's client has none; a dead peer would hang it)
RETRY = 2.0  # retry of a sandbox or config that could not be made yet
MIN_GRACE = 2  # the kubelet never gives SIGTERM less than this before SIGKILL
# A terminating pod first reports Ready=False and leaves the Service datapath; its processes
# get SIGTERM only after this much (bounded by half the grace period). See PodWorker.terminate.
DRAIN_DELAY = 1.5
OWNED_STATUS = ("phase", "conditions", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
                "initContainerStatuses", "containerStatuses", "qosClass", "reason", "message")


class PodHost(Protocol):
    """What a pod worker needs from the node agent that runs it, and nothing else."""

    @property
    def client(self) -> Client:
        """Writes the pod's status and, once it has terminated, deletes it."""

    @property
    def runtime(self) -> Runtime:
        """Starts, stops, inspects and removes the pod's containers."""

    @property
    def network(self) -> NodeNetwork:
        """Makes and removes the pod's network namespace (its sandbox)."""

    @property
    def config(self) -> PodConfigurer:
        """Images, environment, command, mounts, volume sources and DNS of the pod."""

    @property
    def pods_dir(self) -> pathlib.Path:
        """Where each pod has its directory (named by UID): etc files, volumes, logs."""

    @property
    def node_ip(self) -> str:
        """The pod's hostIP."""

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Record an Event about ``obj`` (without waiting for it to be written)."""

    def pod_worker_done(self, worker: PodWorker) -> None:
        """``worker``'s loop has ended: its pod is gone and everything of it removed."""


async def exec_split(runtime: Runtime, container_id: str, argv: list[str],
                     seconds: float | None) -> tuple[int, bytes, bytes]:
    """Run a command in a container; its exit code, stdout and stderr (the CRI's ExecSync).
    Past ``seconds`` (None: no limit, as the kubelet runs hooks) it is killed: TimeoutError."""
    try:
        proc = await runtime.exec(container_id, argv, tty=False, stdin=False)
    except ExecStartError as e:
        raise lifecycle.ExecError(str(e)) from None

    async def drain(read: Callable[[], Awaitable[bytes]]) -> bytes:
        out = b""
        while chunk := await read():
            out += chunk
        return out

    try:
        async with asyncio.timeout(seconds):
            out, err = await asyncio.gather(drain(proc.read_stdout), drain(proc.read_stderr))
            code = await proc.wait()
    except BaseException:  # the timeout, or the hook's caller giving up (cancelled)
        proc.kill()
        raise
    finally:
        proc.close()
    return code, out, err


async def exec_in(runtime: Runtime, container_id: str, argv: list[str], seconds: float) -> tuple[int, bytes]:
    """Run a command in a container and collect its output (exec probes)."""
    try:
        code, out, err = await exec_split(runtime, container_id, argv, seconds)
    except lifecycle.ExecError as e:
        return 126, str(e).encode()
    return code, out + err


def _epoch(ts: str | None) -> float:
    """Seconds since the epoch of a runtime's RFC 3339 stamp; now when it is absent or unreadable."""
    t = timeutil.parse_time(ts)
    return t.timestamp() if t is not None else time.time()


def _stable_key(pod: Obj, name: str) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('uid', '')}/{name}"


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

    def __init__(self, host: PodHost, pod: Obj) -> None:
        self.host = host
        # The pod as the API last gave it, never None: a sync runs across many awaits, during
        # which the agent may deliver a newer object or the pod's deletion. A deleted pod keeps
        # its last object (for the sync under way, names, the final status write) and sets
        # ``gone`` instead, which only the start of a sync reads: it tears down then.
        self.pod: Obj = pod
        self.gone = False
        self.uid: str = pod["metadata"]["uid"]
        self.dir = host.pods_dir / self.uid
        self.wake = asyncio.Event()
        self.updated = asyncio.Event()  # a newer object or the deletion arrived (see _unless_deleted)
        self.net: PodNetwork | None = None
        self.sandbox_ready = False
        self.volumes_refreshed = 0.0
        self.volumes_meta: tuple[Any, Any] = _downward_meta(pod)  # what the volumes were last written from
        self.start_time: str = (pod.get("status") or {}).get("startTime") or ""
        self.containers: dict[str, ContainerState] = {}
        self.init_containers: dict[str, ContainerState] = {}
        self.terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        self.terminating = False
        # (reason, message) once the kubelet itself has failed the pod (its active deadline):
        # the phase is Failed whatever the containers say.
        self.failed_by_node: tuple[str, str] | None = None
        if (pod.get("status") or {}).get("reason") == activedeadline.REASON:
            self.failed_by_node = (activedeadline.REASON, activedeadline.MESSAGE)
        self.done = False
        self.task: asyncio.Task[None] | None = None
        # Crash-loop back-off (keyed by <uid>/<container>) and image pull back-off: the
        # kubelet keeps one of each for all pods, but their keys are this pod's alone.
        self._backoff = podspec.Backoff()
        self._image_backoff = podspec.Backoff()
        self._pull_errors: dict[str, tuple[str, float]] = {}  # image back-off key → the last pull's error, when
        self._tasks: set[asyncio.Task[None]] = set()  # kills of unhealthy containers
        self._born = time.monotonic()

    # -- state from the runtime (adoption after an agent restart)

    def adopt(self, instances: list[tuple[str, ContainerStatus]], net: PodNetwork | None) -> None:
        pod = self.pod
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
            for _, st in found[-2:]:
                self._read_termination_message(name, st, st.restart_count)
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

    def _read_termination_message(self, name: str, st: ContainerStatus, restart: int) -> None:
        """Put what an exited instance left (file or log tail) into its status message, once."""
        if st.state != "exited":
            return
        spec = self.pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        c: Obj = next((c for c in containers if c.get("name") == name), {})
        st.message = terminationmessage.message(
            st, c, terminationmessage.host_file(self.dir, name, restart),
            pathlib.Path(st.log_path) if st.log_path else self.dir / "logs" / name / f"{restart}.log")

    def _state(self, name: str, init: bool) -> ContainerState:
        table = self.init_containers if init else self.containers
        cs = table.get(name)
        if cs is None:
            cs = table[name] = ContainerState(name, init)
        return cs

    # -- the loop

    def update(self, pod: Obj | None) -> None:
        """The pod's newest object, or None once it is deleted from the API. A UID is never
        reused, so a deleted pod stays deleted (a late update for it changes nothing)."""
        if pod is None:
            self.gone = True
        elif not self.gone:
            self.pod = pod
        self.wake.set()
        self.updated.set()

    @property
    def deleting(self) -> bool:
        return self.gone or bool((self.pod.get("metadata") or {}).get("deletionTimestamp"))

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
        self.host.pod_worker_done(self)

    @property
    def name(self) -> str:
        meta = self.pod.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', self.uid)}"

    def event(self, type_: str, reason: str, message: str) -> None:
        if not self.gone:
            self.host.event(self.pod, type_, reason, message)

    async def sync(self) -> float:
        if self.gone:  # gone from the API (force deletion, or after our own final DELETE)
            await self.kill_all(MIN_GRACE)
            await self.cleanup(remove_dir=True)
            self.done = True
            return 0
        pod = self.pod
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            await self.terminate()
            return 0
        if self.terminal:
            await self.finish()
            return 3600
        if not self.start_time:
            self.start_time = timeutil.now_rfc3339()
        deadline = activedeadline.remaining(pod, self.start_time, time.time())
        if deadline is not None and deadline <= 0:
            await self.deadline_exceeded()
            return 3600
        if not self.sandbox_ready:
            if not await self.ensure_sandbox():
                await self.report()
                return RETRY
            log.debug("pod %s: sandbox ready after %.3fs", self.name, time.monotonic() - self._born)
            if self.gone:
                return 0  # deleted meanwhile: start nothing, the next sync tears down
        poll = RESYNC if await self.refresh() else POLL
        delays = [poll] if deadline is None else [poll, deadline]
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
        if time.monotonic() - self.volumes_refreshed > 60 or _downward_meta(pod) != self.volumes_meta:
            # Labels and annotations changed: downward API files follow at once, as the
            # kubelet remounts such volumes when the pod is updated.
            await self.refresh_volumes()
        return max(0.05, min(delays))

    # -- sandbox

    async def ensure_sandbox(self) -> bool:
        pod = self.pod
        if self.sandbox_ready and self.net is not None:
            return True
        try:
            t0 = time.monotonic()
            token = asyncio.ensure_future(volumes.prefetch_token(pod, self.host.config.volume_sources(pod, None)))
            try:
                self.net = await self.host.network.add_pod(self.uid)
            finally:
                with contextlib.suppress(Exception):
                    await token  # errors come again, and are reported, from refresh_volumes
            t1 = time.monotonic()
            await self.write_etc_files()
            await self.refresh_volumes(raise_errors=True)
            log.debug("pod %s: network %.3fs, files and volumes %.3fs", self.name, t1 - t0, time.monotonic() - t1)
        except volumes.VolumeError as e:
            self.event("Warning", "FailedMount", e.event_message())
            return False
        except ApiError as e:
            self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {e.status.get('message', e)}")
            return False
        self.sandbox_ready = True
        return True

    async def write_etc_files(self) -> None:
        pod = self.pod
        assert self.net is not None
        # A hostNetwork pod sees the node's own hosts file (read here, as the kubelet reads its node's).
        node_hosts = None
        if (pod.get("spec") or {}).get("hostNetwork"):
            node_hosts = await asyncio.to_thread(pathlib.Path("/etc/hosts").read_text)
        files = {
            "hosts": podspec.hosts_file(pod, [self.net.ip], node_hosts),
            "resolv.conf": podspec.resolv_conf(pod, cluster_dns=self.host.config.cluster_dns(),
                                               host=self.host.config.host_resolv),
            "hostname": podspec.uts_hostname(pod) + "\n",
        }
        # Creating files can take milliseconds on a busy disk: not on the event loop, which
        # serves every other pod's start meanwhile.
        await asyncio.to_thread(_write_files, self.dir / "etc", files)

    async def refresh_volumes(self, raise_errors: bool = False) -> None:
        pod = self.pod
        self.volumes_refreshed = time.monotonic()
        self.volumes_meta = _downward_meta(pod)
        try:
            await volumes.setup(pod, self.dir, self.host.config.volume_sources(pod, self.net))
        except (volumes.VolumeError, ApiError):
            if raise_errors:
                raise
            log.info("refreshing volumes of %s failed", self.name, exc_info=True)

    # -- containers

    async def refresh(self) -> bool:
        """The containers' states now; True when the exit of each running one is watched (it
        wakes this worker), so the next look need not come soon."""
        watched = True
        for cs in [*self.init_containers.values(), *self.containers.values()]:
            if cs.current and (cs.status is None or cs.status.state == "running"):
                try:
                    cs.status = await self.host.runtime.status(cs.current)
                except ContainerNotFound:
                    cs.status = ContainerStatus("exited", None, 137, "", timeutil.now_rfc3339(), "ContainerStatusUnknown",
                                                "The container could not be located when the pod was terminated")
                else:
                    self._read_termination_message(cs.name, cs.status, cs.restart_count)
                if cs.exited:
                    cs.ready = cs.started = False
                    cs.stop_probes()
                elif not self.host.runtime.watch_exit(cs.current, self.wake.set):
                    watched = False
        return watched

    async def restart_or_wait(self, c: Obj, cs: ContainerState) -> float:
        """An exited container that the restart policy restarts: now, or after its back-off."""
        pod = self.pod
        assert cs.status is not None
        key = _stable_key(pod, c["name"])
        finished = _epoch(cs.status.finished_at)
        backoff = self._backoff
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
        assert self.net is not None
        host = self.host
        image_name = c.get("image", "")
        image_key = _stable_key(pod, c["name"]) + "/image"
        now = time.time()
        if cs.waiting and cs.waiting[0] in ("ErrImagePull", "ImagePullBackOff") and \
                self._image_backoff.in_backoff_since_update(image_key, now):
            # As the kubelet: no pull while in back-off, the last pull's error in the message.
            message, failed_at = self._pull_errors.get(image_key, ("", 0.0))
            if cs.waiting[0] == "ErrImagePull" and now - failed_at < RETRY:
                # Our own status write wakes this worker at once: ErrImagePull stays visible a
                # moment, as the kubelet's next sync of a failed pod comes seconds later.
                return RETRY - (now - failed_at)
            cs.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image_name}": ErrImagePull: {message}')
            self.event("Normal", "BackOff", f'Back-off pulling image "{image_name}"')
            self.event("Warning", "Failed", "Error: ImagePullBackOff")
            return max(0.05, self._image_backoff.until_retry(image_key, now))
        try:
            image = await host.config.images.ensure(
                image_name, node_images.pull_policy(c), lambda: host.config.pull_secrets(pod),
                lambda type_, reason, message: self.event(type_, reason, message))
        except node_images.ImagePullError as e:
            if e.reason == "ErrImagePull":
                self._image_backoff.next(image_key, now)
                self._pull_errors[image_key] = (str(e), now)
            cs.waiting = (e.reason, str(e))
            self.event("Warning", "Failed", f"Error: {e.reason}")
            return RETRY
        cs.image_id, cs.image = image.image_id, image.name
        try:
            env, argv, mounts = await host.config.container_config(pod, c, image, self.net, self.dir)
        except (podspec.EnvError, volumes.VolumeError) as e:
            cs.waiting = ("CreateContainerConfigError", str(e))
            self.event("Warning", "Failed", f"Error: {e}")
            return RETRY
        restart = cs.restart_count + 1 if cs.current else 0
        if c.get("terminationMessagePath"):
            term_file = terminationmessage.host_file(self.dir, c["name"], restart)
            await asyncio.to_thread(terminationmessage.prepare, term_file)
            mounts = [*mounts, (str(term_file), c["terminationMessagePath"], False)]
            # Only the current and the previous instance are kept (lastState): not their files.
            terminationmessage.host_file(self.dir, c["name"], restart - 2).unlink(missing_ok=True)
        sc = {**((pod.get("spec") or {}).get("securityContext") or {}), **(c.get("securityContext") or {})}
        oci = image if isinstance(image, OCIImage) else None
        if oci is not None and (msg := ocispec.verify_run_as_non_root(
                sc, oci.user, podspec.pod_ref(pod), c["name"])):
            cs.waiting = ("CreateContainerConfigError", msg)
            self.event("Warning", "Failed", f"Error: {msg}")
            return RETRY
        if oci is None and sc.get("runAsNonRoot") and not sc.get("runAsUser"):
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
            groups=podspec.supplementary_groups(pod),
            log_path=self.dir / "logs" / c["name"] / f"{restart}.log",
            tty=bool(c.get("tty")),
            stdin=bool(c.get("stdin")),
            stdin_once=bool(c.get("stdinOnce")),
            oci=oci,
            pod_security_context=dict((pod.get("spec") or {}).get("securityContext") or {}),
            security_context=dict(c.get("securityContext") or {}),
            resources=dict(c.get("resources") or {}),
            image_paths=[] if isinstance(image, OCIImage) else list(image.paths),
            writable_paths=[] if isinstance(image, OCIImage) else list(image.writable_paths),
            image_binaries={} if isinstance(image, OCIImage) else dict(image.binaries),
        )
        try:
            cid = await host.runtime.start(spec)
        except ocispec.SpecError as e:  # e.g. the image's user is not in its /etc/passwd: containerd's create fails
            cs.waiting = ("CreateContainerError", str(e))
            self.event("Warning", "Failed", f"Error: {e}")
            return RETRY
        except Exception as e:
            cs.waiting = ("RunContainerError", str(e))
            self.event("Warning", "Failed", f"Error: {e}")
            return RETRY
        # Keep the current and the previous instance (lastState), as the kubelet's container GC.
        if cs.previous:
            with contextlib.suppress(Exception):
                await host.runtime.remove(cs.previous)
        if cs.current:
            cs.previous, cs.prev_status = cs.current, cs.status
        cs.current, cs.restart_count, cs.waiting = cid, restart, None
        cs.status = await host.runtime.status(cid)
        self._read_termination_message(c["name"], cs.status, restart)  # a quick one may be done already
        cs.started_mono = time.monotonic()
        self.event("Normal", "Created", f"Created container: {c['name']}")
        if cs.status.state == "exited" and cs.status.reason == "StartError":
            self.event("Warning", "Failed", f"Error: {cs.status.message}")
            return POLL
        self.event("Normal", "Started", f"Started container {c['name']}")
        post_start = (c.get("lifecycle") or {}).get("postStart")
        if post_start and cs.running:
            # As the kubelet's startContainer: the sync waits for the hook, so the container is
            # reported running (and probed) only once it has succeeded. Only the pod's deletion
            # ends a hook that never does (the kubelet cancels the sync's context then).
            hook = asyncio.ensure_future(self.run_hook(c, cs, post_start, HOOK_HTTP_TIMEOUT))
            if not await self._unless_deleted(hook):
                return 0
            failure = hook.result()
            if failure is not None:
                log.info("pod %s: postStart hook of %s failed: %s", self.name, c["name"], failure)
                self.event("Warning", "FailedPostStartHook", "PostStartHook failed")
                await self.kill_container(c, cs, "FailedPostStartHook", self.grace_for(c))
                with contextlib.suppress(ContainerNotFound):
                    cs.status = await host.runtime.status(cid)
                policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
                if cs.exited and cs.status and podspec.should_restart(policy, cs.status.exit_code or 0):
                    # The kubelet's reason cache: until the next start, the container waits
                    # with the start's error (a container that stays terminated shows that).
                    cs.waiting = ("PostStartHookError", failure)
                return 0.05
        if not cs.init:
            self.start_probes(c, cs)
        return POLL

    def grace_for(self, c: Obj, probe: Obj | None = None) -> int:
        """The kubelet's setTerminationGracePeriod: a deleted pod's deletion grace period,
        else the probe's own (a liveness or startup kill), else the pod's."""
        meta = self.pod.get("metadata") or {}
        if meta.get("deletionGracePeriodSeconds") is not None:
            return int(meta["deletionGracePeriodSeconds"])
        spec = self.pod.get("spec") or {}
        if probe and probe.get("terminationGracePeriodSeconds") is not None:
            return int(probe["terminationGracePeriodSeconds"])
        return int(spec.get("terminationGracePeriodSeconds", 30))

    async def _unless_deleted(self, task: asyncio.Future[Any]) -> bool:
        """Wait for ``task``; if the pod is deleted first, cancel it and return False."""
        while not task.done():
            if self.deleting:
                task.cancel()
                await asyncio.wait({task})  # (its cancellation is not ours: nothing raised here)
                return False
            self.updated.clear()
            updated = asyncio.ensure_future(self.updated.wait())
            try:
                await asyncio.wait({task, updated}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                updated.cancel()
        return True

    def _target(self, c: Obj, cs: ContainerState) -> probes.Target:
        assert self.net is not None
        return probes.Target(self.net.ip, c, cs.current, self.host.network.netns_path,
                             functools.partial(exec_in, self.host.runtime))

    async def run_hook(self, c: Obj, cs: ContainerState, handler: Obj, http_seconds: float) -> str | None:
        """Run a lifecycle hook of ``c``'s current instance: None, or why it failed."""
        return await lifecycle.run(self._target(c, cs), functools.partial(exec_split, self.host.runtime), handler,
                                   c["name"], podspec.pod_ref(self.pod), http_seconds)

    async def kill_container(self, c: Obj, cs: ContainerState, message: str, grace: int,
                             sigterm_at: float = 0.0) -> None:
        """The kubelet's killContainer: the Killing event, the preStop hook within the grace
        period (its time taken from it), then SIGTERM, and SIGKILL once the rest has passed
        (never less than MIN_GRACE). ``sigterm_at`` (the event loop's clock) holds the SIGTERM
        back until then (a terminating pod's drain, see :meth:`terminate`)."""
        cid = cs.current
        self.event("Normal", "Killing", message)
        clock = asyncio.get_running_loop().time
        started = clock()
        pre_stop = (c.get("lifecycle") or {}).get("preStop")
        if pre_stop and grace > 0 and cs.running:
            try:
                async with asyncio.timeout(grace):
                    failure = await self.run_hook(c, cs, pre_stop, grace)
            except TimeoutError:
                log.info("pod %s: the preStop hook of %s did not complete in %ds", self.name, c["name"], grace)
            else:
                if failure is not None:
                    log.info("pod %s: preStop hook of %s failed: %s", self.name, c["name"], failure)
                    self.event("Warning", "FailedPreStopHook", "PreStopHook failed")
        if (hold := sigterm_at - clock()) > 0:
            await asyncio.sleep(hold)
        grace -= int(clock() - started)  # whole seconds, as the kubelet counts a hook's
        cs.stop_probes()
        await self.host.runtime.stop(cid, max(MIN_GRACE, grace))

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
                on_failure=self.on_probe_failure, on_warning=self.on_probe_warning,
                gate=functools.partial(getattr, cs, "started"), initial=initial,
            )
            cs.probes[kind] = worker
            cs.probe_tasks.append(asyncio.create_task(worker.run(), name=f"probe-{kind}-{c['name']}"))

    def on_probe_failure(self, _kind: str, message: str) -> None:
        self.event("Warning", "Unhealthy", message)

    def on_probe_warning(self, _kind: str, message: str) -> None:
        self.event("Warning", "ProbeWarning", message)

    def on_probe(self, c: Obj, cs: ContainerState, kind: str, ok: bool) -> None:
        if kind == "readiness":
            cs.ready = ok and cs.started
        elif kind == "startup" and ok:
            cs.started = True
            cs.ready = c.get("readinessProbe") is None or bool(
                cs.probes.get("readiness") and cs.probes["readiness"].result)
            if "readiness" in cs.probes:
                cs.probes["readiness"].trigger()
        elif kind in ("liveness", "startup") and not ok:
            self._spawn(self.kill_unhealthy(c, cs, kind))
        self.wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Kept referenced until done: the event loop holds tasks only weakly.
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def kill_unhealthy(self, c: Obj, cs: ContainerState, kind: str) -> None:
        cs.ready = False
        with contextlib.suppress(Exception):
            await self.kill_container(c, cs, f"Container {c['name']} failed {kind} probe, will be restarted",
                                      self.grace_for(c, c.get(f"{kind}Probe")))
        self.wake.set()

    # -- status

    def build_status(self, *, force_unready: bool = False, terminal: bool = False) -> Obj:
        pod = self.pod
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
        terminationmessage.trim(spec, [*init_statuses, *statuses])
        phase = podspec.pod_phase(pod, init_statuses, statuses, terminal)
        if self.failed_by_node is not None:
            phase = "Failed"
        status: Obj = {
            "phase": phase,
            "conditions": podspec.pod_conditions(
                pod, phase, init_statuses, statuses, sandbox_ready=self.sandbox_ready and not terminal,
                now=timeutil.now_rfc3339(), force_unready=force_unready,
            ),
            "hostIP": self.host.node_ip,
            "hostIPs": [{"ip": self.host.node_ip}],
            "startTime": self.start_time or timeutil.now_rfc3339(),
            "containerStatuses": statuses,
            "qosClass": pod_qos_class(pod.get("spec") or {}),
        }
        if self.net is not None:
            status["podIP"] = self.net.ip
            status["podIPs"] = [{"ip": self.net.ip}]
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if self.failed_by_node is not None:
            status["reason"], status["message"] = self.failed_by_node
        return status

    async def report(self, **kw: bool) -> str:
        """Compute the status and write it through pods/status when it changed; returns the phase."""
        pod = self.pod
        status = self.build_status(**kw)
        current = pod.get("status") or {}
        changed = {k: status.get(k) for k in OWNED_STATUS if status.get(k) != current.get(k)}
        if changed:
            meta = pod["metadata"]
            try:
                new = await self.host.client.patch(PODS, meta["name"], {"status": changed}, meta["namespace"],
                                                    subresource="status")
            except ApiError as e:
                if not e.not_found:
                    raise
            else:
                if new.get("metadata", {}).get("uid") == self.uid and self.pod is pod:
                    self.pod = new
        return str(status["phase"])

    # -- the end of a pod

    async def deadline_exceeded(self) -> None:
        """Past ``activeDeadlineSeconds``: stop every container with the pod's grace period,
        as the kubelet's pod worker kills a pod its sync handlers evict, and report Failed."""
        self.failed_by_node = (activedeadline.REASON, activedeadline.MESSAGE)
        self.event("Normal", activedeadline.REASON, activedeadline.MESSAGE)
        await self.refresh()
        running = [cs for cs in [*self.init_containers.values(), *self.containers.values()] if cs.running]
        for cs in running:
            cs.stop_probes()
            cs.ready = False
        grace = int((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        specs = self._container_specs()
        await asyncio.gather(*(self.kill_container(specs.get(cs.name, {"name": cs.name}), cs,
                                                   f"Stopping container {cs.name}", grace) for cs in running),
                             return_exceptions=True)
        await self.refresh()
        self.terminal = True
        await self.finish()
        await self.report(terminal=True)

    async def finish(self) -> None:
        """A pod that has run to completion: stop probes, free its network; logs stay."""
        for cs in [*self.init_containers.values(), *self.containers.values()]:
            cs.stop_probes()
        await self.kill_all(MIN_GRACE)
        if self.net is not None or self.uid in self.host.network.pods():
            await self.host.network.remove_pod(self.uid)
            self.net = None
        self.sandbox_ready = False

    async def kill_all(self, grace: int) -> None:
        running = [cs for cs in [*self.init_containers.values(), *self.containers.values()] if cs.running]
        for cs in running:
            cs.stop_probes()
        await asyncio.gather(*(self.host.runtime.stop(cs.current, grace) for cs in running),
                             return_exceptions=True)
        await self.refresh()

    async def terminate(self) -> None:
        """Graceful deletion: leave the Service datapath, preStop, SIGTERM, SIGKILL after grace, DELETE."""
        pod = self.pod
        meta = pod["metadata"]
        grace = int(meta.get("deletionGracePeriodSeconds", (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)))
        deadline = time.monotonic() + grace
        self.terminating = True
        containers = self._container_specs()
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
                cs.stop_probes()
            with contextlib.suppress(ApiError):
                await self.report(force_unready=True)
            sigterm_at = asyncio.get_running_loop().time() + min(DRAIN_DELAY, grace / 2)
            remaining = max(0, math.ceil(deadline - time.monotonic()))
            await asyncio.gather(*(self.kill_container(containers.get(cs.name, {"name": cs.name}), cs,
                                                       f"Stopping container {cs.name}", remaining, sigterm_at)
                                   for cs in running), return_exceptions=True)
            await self.refresh()
            with contextlib.suppress(ApiError):
                await self.report(terminal=True)
        await self.cleanup(remove_dir=False)
        try:
            await self.host.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                          preconditions={"uid": self.uid})
        except ApiError as e:
            if not (e.not_found or e.code == 409):
                raise
        shutil.rmtree(self.dir, ignore_errors=True)
        self.done = True

    def _container_specs(self) -> dict[str, Obj]:
        spec = self.pod.get("spec") or {}
        return {c["name"]: c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}

    async def cleanup(self, remove_dir: bool) -> None:
        """Remove every container instance and the sandbox."""
        for cs in [*self.init_containers.values(), *self.containers.values()]:
            cs.stop_probes()
            for cid in (cs.current, cs.previous):
                if cid:
                    with contextlib.suppress(Exception):
                        await self.host.runtime.remove(cid)
        await self.host.network.remove_pod(self.uid)
        await self.host.runtime.remove_pod(self.uid)  # its IPC and UTS namespaces
        self.net = None
        self.sandbox_ready = False
        volumes.remove(self.dir)
        self._backoff.forget(self.uid + "/")
        self.host.config.forget_tokens(self.uid)
        if remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _downward_meta(pod: Obj) -> tuple[Any, Any]:
    meta = pod.get("metadata") or {}
    return meta.get("labels"), meta.get("annotations")


def _write_files(directory: pathlib.Path, files: dict[str, str]) -> None:
    """Replace each file atomically (mode 0644), so a container never reads half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)
