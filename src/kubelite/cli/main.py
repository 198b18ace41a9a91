"""The front door: ``kubelite up``, ``down`` and ``status``.

``up`` runs a whole cluster in the foreground (like ``k3s server``): it opens the store,
makes the PKI and the kubeconfig on first start, serves the API, prints one line when the
cluster is ready and stops cleanly on SIGINT/SIGTERM. A run file (``DIR/run.json``) says
which process serves which port, so ``status`` can answer and ``down`` can stop a running
cluster or clean up after one that crashed. An ``up`` after a crash keeps the pods that
still run, for its agent to adopt, as a restarted kubelet does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import importlib
import logging
import os
import pathlib
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from kubelite.cli import kubeconfig as kcfg
from kubelite.cli.progress import Progress
from kubelite.cli.supervisor import Child, die_with_parent, stop_components

if TYPE_CHECKING:
    from kubelite.apiserver.server import APIServer

# Each component is a sub-command run in its own process: importing only what the chosen
# command needs keeps a component's start at a few hundred milliseconds instead of the
# second it takes to import all of them.

log = logging.getLogger("kubelite")


def default_data_dir(name: str) -> pathlib.Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return pathlib.Path(base) / "kubelite" / name


class CLIError(Exception):
    """A problem the user can act on: printed as one line, exit code 1."""


# ---------------------------------------------------------------------------- run file


def read_run(data_dir: pathlib.Path) -> dict[str, Any] | None:
    try:
        run: dict[str, Any] = orjson.loads((data_dir / "run.json").read_bytes())
        return run
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; look at its state.
    with contextlib.suppress(OSError):
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


# ---------------------------------------------------------------------------- up


@dataclass
class UpPlan:
    """What `up` settles before its event loop starts (and before it forks its components)."""

    args: argparse.Namespace
    name: str
    data_dir: pathlib.Path
    host: str
    server_url: str
    kc_path: pathlib.Path
    config: dict[str, Any]
    dns_ip: str
    progress: Progress
    # Where pods reach the API server: the node's gateway in --pod-cidr (the node agent relays
    # it to the API server's loopback port); the `kubernetes` Service's endpoint.
    advertise_address: str = ""
    children: list[Child] = field(default_factory=list)
    # Where `up` serves its store to the API server workers (None: no workers).
    store_socket: pathlib.Path | None = None
    # The API servers' audit log ("": none).
    audit_log: str = ""


# None by default: measured on 2 cores, one process serves as many writes at the same p99
# as two or three sharing the port (README, "API server workers"): a write served by a
# worker costs the store's owner about 100 µs of its own loop, which eats the second core's
# gain. Worth trying with --api-workers on a machine with more cores.
DEFAULT_API_WORKERS = 0


async def wait_workers(server: Any, count: int, stop: asyncio.Event, limit: float = 10.0) -> bool:
    """Until ``count`` API server workers said they serve (see api_worker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while server.notes.count("serving") < count:
        server.noted.clear()
        if stop.is_set() or loop.time() > deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.noted.wait(), 0.1)
    return True


def node_comes_back(run: dict[str, Any], name: str, *, agent: bool, pod_cidr: str) -> bool:
    """Whether a run starting after ``run`` (the run file of one that crashed) has the same node
    again, whose running pods its agent can adopt: same cluster name, an agent both times, the
    same pod CIDR (the pods' addresses are in it). A run file without these (written before
    they were recorded) counts as the same node."""
    return (agent and str(run.get("name") or name) == name and bool(run.get("agent", True))
            and run.get("podCIDR", pod_cidr) == pod_cidr)


def store_socket_path(data_dir: pathlib.Path, name: str) -> pathlib.Path:
    """The store's socket, in the data dir if the path fits in a unix socket address."""
    path = data_dir / "store.sock"
    if len(os.fsencode(path)) <= 107:
        return path
    from kubelite.node.agent import SHORT_SOCKET_DIR

    short = SHORT_SOCKET_DIR / f"store-{name}"
    short.mkdir(parents=True, exist_ok=True, mode=0o700)
    return short / "store.sock"


def prepare_up(args: argparse.Namespace) -> UpPlan:
    """Everything `up` checks and writes before anything runs: a problem found here is a clear
    error with nothing started. Ends with the cluster's PKI and kubeconfig on disk, which is
    all the components need to start."""
    from kubelite.apiserver.ipalloc import ServiceCIDR
    from kubelite.apiserver.pki import ensure_pki

    name: str = args.name
    try:
        service_cidr = ServiceCIDR.parse(args.service_cidr)
    except ValueError as e:
        raise CLIError(f"invalid --service-cidr {args.service_cidr!r}: {e}") from None
    from kubelite.node.ipam import node_gateway

    try:
        advertise_address = str(node_gateway(args.pod_cidr))
    except ValueError as e:
        raise CLIError(f"invalid --pod-cidr {args.pod_cidr!r}: {e}") from None
    data_dir = pathlib.Path(args.data_dir or default_data_dir(name)).resolve()
    run = read_run(data_dir)
    if run and pid_alive(int(run.get("pid", 0))) and run.get("pid") != os.getpid():
        raise CLIError(
            f'cluster "{name}" is already running (pid {run["pid"]}, API {run.get("server")}); '
            f"stop it with: kubelite down --name {name} --data-dir {data_dir}"
        )
    if not args.no_agent:
        check_node_prerequisites()
    if run:
        # What is left of a crashed run's components goes first: an API server worker of it
        # may still hold the port for a moment (see cleanup).
        stop_components(run.get("kubeconfig") or data_dir / "kubeconfig")
    host = "127.0.0.1"
    if not port_free(host, args.api_port):
        raise CLIError(f"port {args.api_port} on {host} is already in use: pick another with --api-port")

    progress = Progress()
    progress.line(f'kubelite: starting cluster "{name}" (state in {data_dir})')
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if run:
        # A previous run that did not stop cleanly: like a kubelet or containerd restarted
        # after a crash, this run keeps the pods that still run (its agent adopts them, and
        # removes those whose Pod objects are gone). Only a node that is not coming back (no
        # agent this time, another name or pod CIDR) has all of it removed, as `down` does.
        keep_pods = node_comes_back(run, name, agent=not args.no_agent, pod_cidr=args.pod_cidr)
        cleanup(data_dir, str(run.get("name") or name), keep_pods=keep_pods)
        if keep_pods:
            progress.done(f"recovered from a previous run that did not stop cleanly (pid {run.get('pid')}): "
                          "its running pods are kept and adopted")
        else:
            progress.done(f"cleaned up after a previous run that did not stop cleanly (pid {run.get('pid')})")
    if not args.no_agent:
        from kubelite.images.tools import find_tools

        tools = find_tools()
        (progress.done if (tools.puller and tools.runtime) or args.images == "catalog" else progress.warn)(
            tools.describe(args.images))
        (data_dir / "images").mkdir(exist_ok=True)  # the auto-import directory
    from kubelite.apiserver import pki as cluster_pki

    # Each component its own client certificate and kubeconfig (kubeadm's controller-manager.conf,
    # scheduler.conf, kubelet.conf; kube-proxy's): the admin's is for people, not components.
    components = {
        "controller-manager.conf": cluster_pki.CONTROLLER_MANAGER,
        "scheduler.conf": cluster_pki.SCHEDULER,
        "kubelet.conf": cluster_pki.kubelet_identity(node_name(name)),
        "kube-proxy.conf": cluster_pki.KUBE_PROXY,
        "kube-network-policies.conf": cluster_pki.NETWORK_POLICIES,
    }
    pki = ensure_pki(data_dir / "pki", cluster_name=name, service_ip=service_cidr.nth(1),
                     clients=tuple(components.values()))
    server_url = f"https://{host}:{args.api_port}"
    kc_path = data_dir / "kubeconfig"
    config = kcfg.build(name, server_url, pki)
    kcfg.write_private(kc_path, yaml.safe_dump(config, sort_keys=False).encode())
    for file, ident in components.items():
        kcfg.write_private(data_dir / file, yaml.safe_dump(
            kcfg.build_component(name, server_url, pki, ident.base, ident.user), sort_keys=False).encode())
    plan = UpPlan(args, name, data_dir, host, server_url, kc_path, config, str(service_cidr.nth(10)), progress,
                  advertise_address=advertise_address)
    verbosity = ["-" + "v" * args.verbose] if args.verbose else []
    workers = DEFAULT_API_WORKERS if args.api_workers is None else args.api_workers
    if workers < 0:
        raise CLIError(f"--api-workers must be 0 or more, not {workers}")
    plan.store_socket = store_socket_path(data_dir, name) if workers else None
    if args.audit_log is not None:
        audit_log = pathlib.Path(args.audit_log).resolve() if args.audit_log else data_dir / "audit.log"
        try:  # a path the API server cannot write is the user's to fix, before anything starts
            audit_log.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as e:
            raise CLIError(f"cannot write the audit log {audit_log}: {e.strerror}") from None
        plan.audit_log = str(audit_log)
    if args.admission_control_config_file:
        # Refused before anything starts, as kube-apiserver refuses to start.
        from kubelite.apiserver.admission import AdmissionConfigError, load_configuration

        args.admission_control_config_file = os.path.abspath(args.admission_control_config_file)
        try:
            load_configuration(args.admission_control_config_file)
        except AdmissionConfigError as e:
            raise CLIError(str(e)) from None
    # Workers first: stopped last (in reverse), while the store they use is still served.
    plan.children = [
        Child("apiserver" if workers == 1 else f"apiserver-{i + 1}", [
            *verbosity, "apiserver", "--kubeconfig", str(kc_path), "--store", f"unix://{plan.store_socket}",
            "--pki-dir", str(data_dir / "pki"), "--api-port", str(args.api_port),
            "--service-cidr", args.service_cidr, "--advertise-address", advertise_address,
            *(["--audit-log", plan.audit_log] if plan.audit_log else []),
            f"--service-account-extend-token-expiration={str(args.service_account_extend_token_expiration).lower()}",
            *(["--admission-control-config-file", args.admission_control_config_file]
              if args.admission_control_config_file else []),
        ])
        for i in range(workers)
    ]
    # As kube-controller-manager gets the cluster CA for its csrsigning controller (kubeadm's
    # --cluster-signing-cert-file/--cluster-signing-key-file): the API server keeps no signer.
    plan.children.append(Child("controllers", [
        *verbosity, "controllers", "--kubeconfig", str(data_dir / "controller-manager.conf"),
        "--scheduler-kubeconfig", str(data_dir / "scheduler.conf"), "--use-service-account-credentials",
        "--cluster-signing-cert-file", str(pki.ca_cert), "--cluster-signing-key-file", str(pki.ca_key),
        "--local-path-dir", str(data_dir / "storage"),
    ]))
    if not args.no_agent:
        plan.children.append(Child("agent", [
            *verbosity, "agent", "--kubeconfig", str(data_dir / "kubelet.conf"), "--cluster-name", name,
            "--node-name", node_name(name), "--state-dir", str(data_dir / "agent"),
            "--pod-cidr", args.pod_cidr, "--api-port", str(args.api_port),
            "--with-proxy", "--proxy-kubeconfig", str(data_dir / "kube-proxy.conf"),
            "--network-policy-kubeconfig", str(data_dir / "kube-network-policies.conf"),
            "--service-cidr", args.service_cidr, "--cluster-dns", plan.dns_ip,
            "--images", args.images, "--image-store", str(data_dir / "imagestore"),
            "--image-import-dir", str(data_dir / "images"),
            *(f"--insecure-registry={r}" for r in args.insecure_registry),
        ]))
    return plan


def fork_components(plan: UpPlan) -> None:
    """Start the components as forks of this process, before it has an event loop or threads.

    They then start without importing again what they share with `up` (the interpreter
    state, asyncio, aiohttp, the client, TLS, YAML: about half of each one's start-up) and
    share those pages with it until written: both the cluster's start time and its memory
    (PSS, summed over the processes) go down. A component that dies later is started afresh
    with exec by the supervisor; only the first start is forked.
    """
    preload_shared_modules(plan.store_socket is not None)
    gc.collect()
    gc.freeze()  # the children's collections never walk (and so never copy) the shared objects
    sys.stdout.flush()
    sys.stderr.flush()
    for child in plan.children:
        child.fork(lambda argv: main(argv))
    plan.progress.done("started " + ", ".join(child.name for child in plan.children))


def preload_shared_modules(api_workers: bool) -> None:
    """What `up` and every component import: loaded once, before the fork."""
    import aiohttp.web  # noqa: F401
    import pyroute2  # noqa: F401

    import kubelite.client  # noqa: F401

    if api_workers:  # they serve the API: share its modules too
        importlib.import_module("kubelite.apiserver.server")

    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401


async def run_up(plan: UpPlan) -> int:
    from kubelite.apiserver.server import APIServer, ServerConfig
    from kubelite.store import StoreServer, open_store

    args, name, progress, data_dir, kc_path = plan.args, plan.name, plan.progress, plan.data_dir, plan.kc_path
    children = plan.children
    store = open_store(str(data_dir / "state.db"))
    api: APIServer | None = None
    store_server: StoreServer | None = None
    merged: pathlib.Path | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for child in children:
            child.start()  # supervise the forked components from now on
        await store.start()
        from kubelite.apiserver.pki import PKI

        api = APIServer(
            store, PKI(data_dir / "pki"),
            ServerConfig(host=plan.host, port=args.api_port, cluster_name=name, service_cidr=args.service_cidr,
                         advertise_address=plan.advertise_address, audit_log=plan.audit_log,
                         extend_token_expiration=args.service_account_extend_token_expiration,
                         admission_control_config_file=args.admission_control_config_file),
        )
        await api.start()
        if plan.store_socket is not None:
            # After the bootstrap and repair: workers start serving only once they are done.
            store_server = StoreServer(store, str(plan.store_socket))
            await store_server.start()
        # Everything loaded so far (the store's index, schemas) lives for the whole run: keep
        # the garbage collector from walking it again and again (long GC pauses show in p99).
        gc.collect()
        gc.freeze()
        progress.done(f"API server serving at {plan.server_url}"
                      + (f" (audit log: {plan.audit_log})" if plan.audit_log else ""))
        if store_server is not None:
            workers = sum(1 for child in children if child.name.startswith("apiserver"))
            async with progress.waiting(f"{workers} API server worker(s) to serve",
                                        f"{workers} API server worker(s) serving too") as step:
                if not await wait_workers(store_server, workers, stop):
                    step.warning = "API server workers are not serving after 10s; serving without them"
        previous = ""
        if not args.no_kubeconfig_merge:
            merged, previous = merge_kubeconfig(plan.config, progress)
        write_private_json(data_dir / "run.json", {
            "pid": os.getpid(), "name": name, "server": plan.server_url, "kubeconfig": str(kc_path),
            # What a restart after a crash compares to decide whether the pods can be kept.
            "agent": not args.no_agent, "podCIDR": args.pod_cidr,
            **({"mergedInto": str(merged), "previousContext": previous} if merged else {}),
        })
        await install_storage_addon(api)
        if not args.no_agent:
            await install_dns_addon(api, args.service_cidr)
            node = node_name(name)
            async with progress.waiting(f"node {node} to register and be Ready", f"node {node} is Ready") as step:
                if not await wait_node_ready(store, node, stop):
                    step.warning = f"node {node} is not Ready after 30s; serving anyway (see the agent's log above)"
            async with progress.waiting(f"cluster DNS (coredns pod behind kube-dns {plan.dns_ip})",
                                        f"cluster DNS answers at {plan.dns_ip}") as step:
                if not await wait_dns(name, plan.dns_ip, stop):
                    step.warning = f"cluster DNS at {plan.dns_ip} does not answer after 30s; serving anyway"
        if stop.is_set():
            return 0
        # One write: whoever waits for the ready line finds the summary with it.
        progress.line("\n".join([
            f'kubelite cluster "{name}" is ready in {progress.elapsed():.2f}s: API {plan.server_url}, '
            f"kubeconfig {kc_path}",
            *summary(name, kc_path, merged, data_dir, args.data_dir is not None, args.no_agent),
        ]))
        await stop.wait()
        progress.line(f'kubelite cluster "{name}" is stopping')
    finally:
        for child in reversed(children):
            await child.stop()
        if api is not None:
            await api.stop()
        if store_server is not None:
            await store_server.close()
        await store.close()
        cleanup(data_dir, name)
    return 0


def summary(name: str, kc_path: pathlib.Path, merged: pathlib.Path | None, data_dir: pathlib.Path,
            explicit_dir: bool, no_agent: bool) -> list[str]:
    """How to use the cluster: printed once it is ready."""
    where = f" --data-dir {data_dir}" if explicit_dir else ""
    example = "kubectl get namespaces" if no_agent else "kubectl get nodes,pods -A"
    lines = []
    if merged is not None:
        lines.append(f'  kubectl     context "{name}" (current) in {merged}: try `{example}`')
        lines.append(f"              or, without it: export KUBECONFIG={kc_path}")
    else:
        lines.append(f"  kubectl     export KUBECONFIG={kc_path}; then try `{example}`")
    lines.append(f"  stop        Ctrl-C here, or `kubelite down --name {name}{where}` from another terminal")
    return lines


def merge_kubeconfig(config: dict[str, Any], progress: Progress) -> tuple[pathlib.Path | None, str]:
    """Merge the cluster's context into the user's kubeconfig (returns where, and the context
    that was current); a problem there is a warning, not a failure: the cluster's own
    kubeconfig works regardless."""
    target, owner = kcfg.default_target()
    try:
        previous = kcfg.merge(target, config, owner)
    except (kcfg.KubeconfigError, OSError) as e:
        progress.warn(f"kubeconfig not merged: {e}")
        return None, ""
    progress.done(f'context "{config["current-context"]}" merged into {target} and made current')
    return target, previous


def unmerge_kubeconfig(data_dir: pathlib.Path, name: str, run: dict[str, Any] | None) -> None:
    from kubelite.apiserver.pki import PKI

    if not run or not run.get("mergedInto"):
        return
    pki = PKI(data_dir / "pki")
    try:
        kcfg.unmerge(pathlib.Path(run["mergedInto"]), kcfg.build(name, "", pki), run.get("previousContext") or "")
    except (kcfg.KubeconfigError, OSError) as e:
        log.warning("could not remove the context from %s: %s", run["mergedInto"], e)


def write_private_json(path: pathlib.Path, obj: dict[str, Any]) -> None:
    kcfg.write_private(path, orjson.dumps(obj))


def check_node_prerequisites() -> None:
    """What the node agent and the proxy need from this machine, checked before anything starts
    (each failure would otherwise surface later as a component crashing in a restart loop)."""
    import ctypes

    if os.geteuid() != 0:
        raise CLIError(
            "kubelite up needs root: pods run in network namespaces it creates "
            "(run it with sudo, or use --no-agent for the API server and controllers only)"
        )
    try:
        ctypes.CDLL("libnftables.so.1")
    except OSError:
        raise CLIError(
            "nftables is not installed (libnftables.so.1 not found): the service proxy programs "
            "ClusterIPs with the kernel's nftables. Install it (Debian/Ubuntu: apt-get install nftables), "
            "or use --no-agent"
        ) from None
    if shutil.which("conntrack") is None:
        raise CLIError(
            "conntrack is not installed: the service proxy clears stale UDP flows with it when a "
            "Service's endpoints change. Install it (Debian/Ubuntu: apt-get install conntrack), or use --no-agent"
        )
    if not os.path.exists("/proc/self/ns/net"):
        raise CLIError("this kernel has no network namespaces (/proc/self/ns/net): pods cannot run here; use --no-agent")


def node_name(cluster: str) -> str:
    return f"{cluster}-node"


async def wait_node_ready(store: Any, name: str, stop: asyncio.Event, limit: float = 30.0) -> bool:
    """Block until the node agent has registered its Node with Ready=True; False if it did not
    within ``limit`` (True when we are stopped meanwhile: nothing to warn about)."""
    key = f"/registry/core/nodes/{name}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not stop.is_set() and loop.time() < deadline:
        kv = await store.get(key)
        if kv is not None:
            node = orjson.loads(kv.value)
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or []):
                return True
        await asyncio.sleep(0.02)
    return stop.is_set()


async def install_storage_addon(api: APIServer) -> None:
    """k3s's local-storage addon: the local-path provisioner's service account, ClusterRole and
    binding, and the default StorageClass; each created when missing, then the user's to change."""
    from kubelite.controllers.localpath import addon_objects

    await _create_missing(api, addon_objects(), "")


async def install_dns_addon(api: APIServer, service_cidr: str) -> None:
    """The cluster DNS addon (kubeadm's CoreDNS phase): its ClusterRole and binding, ServiceAccount,
    kube-dns Service, coredns Deployment."""
    from kubelite.dns import manifests as dns_manifests

    await _create_missing(api, dns_manifests.objects(dns_manifests.cluster_dns_ip(service_cidr)), "kube-system")


async def _create_missing(api: APIServer, objs: list[dict[str, Any]], default_namespace: str) -> None:
    """Create each of an addon's objects that does not exist yet (an existing one is the
    user's, kept as it is), as kubeadm's and k3s's addon installers do; a namespaced object
    without a namespace goes to ``default_namespace``."""
    from kubelite.api.errors import StatusError
    from kubelite.api.registry import for_kind

    for obj in objs:
        rt = for_kind(obj["apiVersion"], obj["kind"])
        assert rt is not None
        namespace = (obj["metadata"].get("namespace") or default_namespace) if rt.namespaced else None
        if await api.store.get(rt.key(namespace, obj["metadata"]["name"])) is not None:
            continue
        try:
            await api.registry.create_object(rt, namespace, obj, manager="kubelite")
        except StatusError as e:
            if e.code != 409:
                raise


async def wait_dns(cluster: str, dns_ip: str, stop: asyncio.Event, limit: float = 30.0) -> bool:
    """Block until cluster DNS answers at its ClusterIP, asked from inside the node's namespace;
    False if it did not within ``limit``."""
    from kubelite.dns import manifests as dns_manifests
    from kubelite.linux.netns import node_netns_path, socket_in

    netns = node_netns_path(cluster)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not stop.is_set() and loop.time() < deadline:
        try:
            if await dns_manifests.probe(dns_ip, within=0.3, sock=socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)):
                return True
        except OSError:
            pass
        await asyncio.sleep(0.05)
    return stop.is_set()


def cleanup(data_dir: pathlib.Path, cluster: str | None = None, *, keep_pods: bool = False) -> None:
    """Remove what a run leaves behind outside the persistent state (the store and the PKI):
    component processes still running, container processes, pod and node network namespaces,
    the context merged into the user's kubeconfig, the run file.

    ``keep_pods``: for a restart after a crash, the node (its namespace, the pods' containers
    and namespaces) stays for the new run's agent to adopt; the rest goes all the same.
    """
    run = read_run(data_dir)
    # First: a component left over (the kernel told it to stop when `up` died) must not race
    # what follows, nor run next to the new run's own.
    stop_components((run or {}).get("kubeconfig") or data_dir / "kubeconfig")
    if cluster is not None:
        unmerge_kubeconfig(data_dir, cluster, run)
    if cluster is not None and os.geteuid() == 0 and not keep_pods:
        from kubelite.node.network import cleanup_cluster
        from kubelite.node.runtime import kill_all
        from kubelite.node.volumes import unmount_under

        agent_dir = data_dir / "agent"
        if agent_dir.exists():
            kill_all(agent_dir)
            unmount_under(agent_dir / "pods")  # memory-backed emptyDirs of pods a crash left
        cleanup_cluster(cluster)
        from kubelite.node.agent import SHORT_SOCKET_DIR

        shutil.rmtree(SHORT_SOCKET_DIR / node_name(cluster), ignore_errors=True)
    if cluster is not None:
        from kubelite.node.agent import SHORT_SOCKET_DIR

        shutil.rmtree(SHORT_SOCKET_DIR / f"store-{cluster}", ignore_errors=True)
    (data_dir / "store.sock").unlink(missing_ok=True)
    (data_dir / "run.json").unlink(missing_ok=True)


# ---------------------------------------------------------------------------- down / status


def run_down(args: argparse.Namespace) -> int:
    data_dir = pathlib.Path(args.data_dir or default_data_dir(args.name)).resolve()
    run = read_run(data_dir)
    if run and pid_alive(int(run["pid"])):
        pid = int(run["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        print(f'kubelite cluster "{args.name}" stopped (pid {pid})')
    elif run:
        print(f'kubelite cluster "{args.name}" was not running; cleaned up after its last run')
    else:
        print(f'kubelite cluster "{args.name}" is not running')
    cleanup(data_dir, args.name)
    return 0


def run_status(args: argparse.Namespace) -> int:
    data_dir = pathlib.Path(args.data_dir or default_data_dir(args.name)).resolve()
    run = read_run(data_dir)
    if run and pid_alive(int(run["pid"])):
        print(f'kubelite cluster "{args.name}" is running: pid {run["pid"]}, API {run["server"]}, kubeconfig {run["kubeconfig"]}')
        from kubelite.cli.supervisor import component_pids

        labels = {"apiserver": "API server workers", "controllers": "controllers", "agent": "agent with the proxy"}
        parts = [f"{label} (pid {', '.join(map(str, pids))})" for c, label in labels.items()
                 if (pids := component_pids(run["kubeconfig"], c))]
        if parts:
            print("  components: " + ", ".join(parts))
        return 0
    if run:
        print(f'kubelite cluster "{args.name}" is not running (a previous run crashed; `kubelite down` cleans up)')
    else:
        print(f'kubelite cluster "{args.name}" is not running')
    return 3


# ---------------------------------------------------------------------------- main


def go_bool(flag: str) -> Callable[[str], bool]:
    """A boolean flag's value as Go's strconv.ParseBool reads it (kube-apiserver's flags)."""
    def parse(text: str) -> bool:
        if text in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if text in ("0", "f", "F", "false", "FALSE", "False"):
            return False
        raise argparse.ArgumentTypeError(
            f'invalid argument "{text}" for "{flag}" flag: strconv.ParseBool: parsing "{text}": invalid syntax')
    return parse


def add_apiserver_flags(sp: argparse.ArgumentParser) -> None:
    """kube-apiserver's own flags, shared by `up` and the API server workers it starts."""
    flag = "--service-account-extend-token-expiration"
    sp.add_argument(flag, type=go_bool(flag), nargs="?", const=True, default=True, metavar="BOOL",
                    help="pod-bound tokens asked for 3607 s (the kubelet's) last a year, with a warnafter claim "
                         "at the requested expiry (kube-apiserver's flag; default: true)")
    sp.add_argument("--admission-control-config-file", default="", metavar="PATH",
                    help="an AdmissionConfiguration (apiserver.config.k8s.io/v1) file: PodSecurity's "
                         "PodSecurityConfiguration (defaults, exemptions) (default: privileged everywhere)")


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; the component sub-commands' own options are added only for ``command``."""
    p = argparse.ArgumentParser(prog="kubelite", description="Kubernetes Services on one machine.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--name", default="kubelite", help="cluster name (default: kubelite)")
        sp.add_argument("--data-dir", default=None, help="state directory (default: ~/.local/share/kubelite/NAME)")

    up = sub.add_parser("up", help="run a cluster in the foreground")
    common(up)
    up.add_argument("--api-port", type=int, default=6443, help="API server port on 127.0.0.1 (default: 6443)")
    up.add_argument("--service-cidr", default="10.96.0.0/12", help="ClusterIP range (default: 10.96.0.0/12)")
    up.add_argument("--pod-cidr", default="10.244.0.0/24", help="the node's pod CIDR (default: 10.244.0.0/24)")
    up.add_argument("--no-agent", action="store_true",
                    help="run only the control plane (API server, controllers): no pods run; no root needed")
    up.add_argument("--no-kubeconfig-merge", action="store_true",
                    help="do not merge the cluster's context into ~/.kube/config (or $KUBECONFIG's first file)")
    up.add_argument("--api-workers", type=int, default=None, metavar="N",  # None: DEFAULT_API_WORKERS
                    help="API server processes besides up's own, sharing its port and store (default: 0)")
    up.add_argument("--images", default="auto", choices=("auto", "oci", "catalog"),
                    help="how a container's image resolves: auto (the image store, then the registry; "
                         "catalog names without a network round trip), oci (store and registry only), "
                         "catalog (never pulls) (default: auto)")
    up.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                    help="a registry spoken to over plain HTTP (loopback registries always are)")
    up.add_argument("--audit-log", nargs="?", const="", default=None, metavar="PATH",
                    help="write an audit.k8s.io/v1 event per write request (level Metadata) to PATH, one JSON "
                         "line each (without PATH: DATA_DIR/audit.log; default: no audit log)")
    add_apiserver_flags(up)
    image = sub.add_parser("image", help="the node's image store: load, ls, rm, pull")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    for verb, text in (("load", "load docker-save or OCI archives (plain or gzipped)"),
                       ("ls", "list the images (as crictl images)"), ("rm", "remove an image"),
                       ("pull", "pull an image from its registry")):
        isp = image_sub.add_parser(verb, help=text)
        common(isp)
        if verb == "load":
            isp.add_argument("--tag", action="append", default=[], help="name the archive's image (repeatable)")
            isp.add_argument("files", nargs="+", metavar="FILE")
        elif verb in ("rm", "pull"):
            isp.add_argument("refs", nargs="+", metavar="REF")
        if verb == "pull":
            isp.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                             help="a registry spoken to over plain HTTP (loopback registries always are)")
            isp.add_argument("--creds", default=None, metavar="USER:PASSWORD", help="credentials for the registry")
    down = sub.add_parser("down", help="stop a cluster and remove what a crashed run left")
    common(down)
    down.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a clean stop")
    status = sub.add_parser("status", help="tell whether a cluster runs and where")
    common(status)
    agent = sub.add_parser("agent", help="run the node agent: kubelet, pod network, runtime (started by `up`)")
    if command == "agent":
        from kubelite.node import agent as node_agent

        node_agent.add_arguments(agent)
        agent.add_argument("--with-proxy", action="store_true",
                           help="run the service proxy in this process too (as `up` does)")
        agent.add_argument("--service-cidr", default="10.96.0.0/12",
                           help="with --with-proxy: ClusterIP range(s), comma-separated (default: 10.96.0.0/12)")
        agent.add_argument("--proxy-kubeconfig", default="",
                           help="with --with-proxy: the proxy's own kubeconfig (default: --kubeconfig)")
        agent.add_argument("--network-policy-kubeconfig", default="",
                           help="with --with-proxy: the NetworkPolicy enforcement's own kubeconfig "
                                "(default: --kubeconfig)")
    proxy = sub.add_parser("proxy", help="run the service proxy: the nftables ClusterIP datapath on its own")
    if command == "proxy":
        from kubelite.proxy import proxier

        proxier.add_arguments(proxy)
    apiserver = sub.add_parser("apiserver", help="run an API server worker on up's store and port (started by `up`)")
    apiserver.add_argument("--kubeconfig", required=True, help="the cluster's kubeconfig (names the cluster)")
    apiserver.add_argument("--store", required=True, help="the store: unix://SOCKET where `up` serves it")
    apiserver.add_argument("--pki-dir", required=True, help="the cluster's PKI directory (serving certificate, CA)")
    apiserver.add_argument("--api-port", type=int, default=6443)
    apiserver.add_argument("--service-cidr", default="10.96.0.0/12")
    apiserver.add_argument("--advertise-address", default="10.244.0.1",
                           help="where pods reach the API server: the node's gateway in its pod CIDR")
    apiserver.add_argument("--audit-log", default="", metavar="PATH", help="the audit log to append to (default: none)")
    add_apiserver_flags(apiserver)
    ctrl = sub.add_parser("controllers", help="run the controllers and the scheduler (started by `up`)")
    ctrl.add_argument("--kubeconfig", required=True)
    ctrl.add_argument("--controllers", default="", help="comma-separated subset (default: all)")
    ctrl.add_argument("--scheduler-kubeconfig", default="",
                      help="the scheduler's own kubeconfig (kube-scheduler's identity; default: --kubeconfig)")
    ctrl.add_argument("--use-service-account-credentials", action="store_true",
                      help="each controller acts as its own service account in kube-system, as "
                           "kube-controller-manager's flag of this name (kubeadm sets it)")
    ctrl.add_argument("--cluster-signing-cert-file", default="",
                      help="the CA certificate approved CertificateSigningRequests are signed with")
    ctrl.add_argument("--cluster-signing-key-file", default="", help="that CA's private key")
    ctrl.add_argument("--local-path-dir", default="",
                      help="where the local-path provisioner makes volume directories (default: it provisions none)")
    return p


async def node_with_proxy(args: argparse.Namespace) -> int:
    """The node's components in one process, as DESIGN's "node agent (kubelet + proxy)":
    the kubelet, kube-proxy and the NetworkPolicy enforcement (kube-network-policies). One
    interpreter less (about 20 MiB, and its start-up CPU); the proxy's and the policies' heavy
    work (libnftables) runs on their own threads outside the GIL, so pods do not wait for it.
    If any fails, the process ends and `up` restarts them all."""
    from kubelite.networkpolicy import controller as netpol
    from kubelite.node import agent as node_agent
    from kubelite.proxy import proxier

    proxy_args = argparse.Namespace(
        kubeconfig=args.proxy_kubeconfig or args.kubeconfig, cluster_name=args.cluster_name, node_name=args.node_name,
        service_cidr=args.service_cidr, min_sync_period=proxier.MIN_SYNC_PERIOD, cleanup=False,
    )
    netpol_args = argparse.Namespace(kubeconfig=args.network_policy_kubeconfig or args.kubeconfig,
                                     cluster_name=args.cluster_name,
                                     min_sync_period=netpol.MIN_SYNC_PERIOD, cleanup=False)
    tasks = [asyncio.create_task(node_agent.main(args), name="kubelet"),
             asyncio.create_task(proxier.main(proxy_args), name="proxy"),
             asyncio.create_task(netpol.main(netpol_args), name="network-policy")]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a failure ends the process (the supervisor restarts it)
        return 1  # neither returns while it runs
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def api_worker(args: argparse.Namespace) -> int:
    """An API server worker: serves until stopped, or fails when it loses the store."""
    from kubelite.apiserver.pki import PKI
    from kubelite.apiserver.server import APIServer, ServerConfig
    from kubelite.store import RemoteStore, open_store

    store = open_store(args.store)
    if not isinstance(store, RemoteStore):
        raise CLIError(f"an API server worker needs the store `up` serves (unix://SOCKET), not {args.store!r}")
    await store.start()
    api = APIServer(store, PKI(pathlib.Path(args.pki_dir)),
                    ServerConfig(port=args.api_port, service_cidr=args.service_cidr,
                                 advertise_address=args.advertise_address, audit_log=args.audit_log,
                                 extend_token_expiration=args.service_account_extend_token_expiration,
                                 admission_control_config_file=args.admission_control_config_file),
                    primary=False)
    try:
        await api.start()
        await store.note("serving")  # `up` waits for this before it says the cluster is ready
        gc.collect()
        gc.freeze()
        await store.lost.wait()
        return 1  # its supervisor starts it again, on the store `up` serves again
    finally:
        await api.stop()
        await store.close()


def _run_component(coro: Any, kubeconfig: str | None) -> int:
    """Run a component until SIGTERM/SIGINT (its parent, `kubelite up`, stops it that way)."""

    parent = os.environ.get("KUBELITE_PARENT_PID")
    if parent:
        die_with_parent(int(parent))

    async def main() -> int:
        if parent and kubeconfig:
            # Started by `up` while its API server is still starting: wait for it to listen
            # rather than fail the first requests and back off.
            await wait_for_api(kubeconfig)
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            code = await task
        except asyncio.CancelledError:
            return 0
        return code if isinstance(code, int) else 0

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main())


async def wait_for_api(kubeconfig: str, limit: float = 60.0) -> None:
    from urllib.parse import urlparse

    server = urlparse(yaml.safe_load(pathlib.Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(server.hostname, server.port or 443)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return


def _loop_factory() -> Any:
    """uvloop where installed: its event loop and TLS are several times cheaper than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = parser(command).parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug output floods -vv
    try:
        if args.command == "up":
            plan = prepare_up(args)
            try:
                fork_components(plan)
                with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                    return runner.run(run_up(plan))
            finally:
                for child in plan.children:
                    child.kill_now()  # a failure before supervision began must not leave them behind
        if args.command == "down":
            return run_down(args)
        if args.command == "image":
            from kubelite.cli.image import run_image

            return run_image(args, pathlib.Path(args.data_dir or default_data_dir(args.name)).resolve())
        if args.command == "status":
            return run_status(args)
        if args.command == "agent":
            from kubelite.node import agent as node_agent

            if args.with_proxy:
                return _run_component(node_with_proxy(args), args.kubeconfig)
            return _run_component(node_agent.main(args), args.kubeconfig)
        if args.command == "proxy":
            from kubelite.proxy import proxier

            return _run_component(proxier.main(args), args.kubeconfig)
        if args.command == "apiserver":
            return _run_component(api_worker(args), None)
        if args.command == "controllers":
            from kubelite.controllers import manager as controller_manager
            from kubelite.controllers.base import Options

            options = Options(cluster_signing_cert_file=args.cluster_signing_cert_file,
                              cluster_signing_key_file=args.cluster_signing_key_file,
                              local_path_dir=args.local_path_dir,
                              use_service_account_credentials=args.use_service_account_credentials)
            return _run_component(
                controller_manager.run(args.kubeconfig, [c for c in args.controllers.split(",") if c], options,
                                       scheduler_kubeconfig=args.scheduler_kubeconfig or None),
                args.kubeconfig,
            )
    except CLIError as e:
        print(f"kubelite: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
