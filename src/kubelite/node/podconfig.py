"""What a pod's containers are started with: the kubelet's container options.

A pod worker decides *when* a container starts; this module says *with what*: the image
(resolved from kubelite's catalog, cached), the environment (ConfigMaps, Secrets, Service
links, the downward API), the command line after Kubernetes' entrypoint rules, the mounts,
the sources of the pod's volumes (ConfigMaps, Secrets, service-account tokens from the
TokenRequest API, reused as the kubelet's token manager reuses them) and the pod's DNS
(the cluster's DNS Service, or the host's resolvers for dnsPolicy Default). In the kubelet
these are ``GenerateRunContainerOptions``, the DNS configurer and the token manager; they
share the node's view of the API (the Services informer, a client), so they live together,
apart from the pod workers that use them and from the Node's own status.
"""

from __future__ import annotations

import base64
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

from kubelite import images
from kubelite.api.types import Obj
from kubelite.client import (
    CONFIGMAPS,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    SECRETS,
    SERVICEACCOUNTS,
    ApiError,
    Client,
    Informer,
)
from kubelite.images.oci import OCIImage
from kubelite.images.store import ImageStore
from kubelite.node import images as node_images
from kubelite.node import podspec, volumes
from kubelite.node.network import PodNetwork
from kubelite.node.nodestatus import read_first

log = logging.getLogger(__name__)


IMAGE_CACHE_SECONDS = 60.0  # a host program installed or removed is seen within this time

# A container's bind mounts: (host source, container target, read-only).
Mounts = list[tuple[str, str, bool]]
EventFn = Callable[[Obj, str, str, str], None]  # (object, type, reason, message)


def host_resolv() -> podspec.ResolvConf:
    """The host's resolver for dnsPolicy Default; systemd-resolved's stub is unreachable from a pod."""
    conf = podspec.parse_resolv_conf(read_first("/etc/resolv.conf"))
    if any(ns.startswith("127.") for ns in conf.nameservers):
        upstream = podspec.parse_resolv_conf(read_first("/run/systemd/resolve/resolv.conf"))
        if upstream.nameservers:
            return upstream
    return conf


MAX_TOKEN_AGE = 24 * 3600.0  # the token manager's maxTTL: a longer-lived token is renewed daily


class TokenManager:
    """The kubelet's token manager: pod-bound tokens from the TokenRequest API, each reused
    until 80 % of its lifetime (at most a day) has passed, then asked for again; the pod's
    volumes are refreshed every minute and pick the new one up, long before the old expires."""

    def __init__(self, client: Client, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[tuple[str, str, int, str], tuple[str, float]] = {}

    async def get(self, namespace: str, pod_name: str, pod_uid: str, sa: str, seconds: int, audience: str) -> str:
        key = (pod_uid, sa, seconds, audience)
        cached = self._tokens.get(key)
        if cached is not None and self.clock() < cached[1]:
            return cached[0]
        spec: Obj = {
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid},
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        requested = self.clock()
        out = await self.client.create(SERVICEACCOUNTS, body, namespace, subresource="token", name=sa)
        log.debug("token for pod %s/%s in %.3fs", namespace, pod_name, self.clock() - requested)
        self._tokens[key] = (str(out["status"]["token"]), requested + min(0.8 * seconds, MAX_TOKEN_AGE))
        return self._tokens[key][0]

    def forget(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]


class PodConfigurer:
    """Images, environment, command, mounts, volume sources and DNS of the pods of one node."""

    def __init__(
        self,
        client: Client,
        services: Informer,
        *,
        node_ip: str,
        host_resolv: podspec.ResolvConf,
        image_catalog: pathlib.Path | None,
        allocatable: Callable[[], dict[str, str]],
        event: EventFn,
        cluster_dns: str = podspec.DEFAULT_DNS_IP,
        image_store: pathlib.Path | None = None,
        image_mode: str = "catalog",
        insecure_registries: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.services = services
        self.node_ip = node_ip
        self.host_resolv = host_resolv  # what dnsPolicy Default pods resolve with
        self.image_catalog = image_catalog
        self._allocatable = allocatable
        self._event = event
        # The kubelet's --cluster-dns: what ClusterFirst pods resolve with while the kube-dns
        # Service is not (yet) in the cache; `up` passes the tenth address of its service CIDR.
        self._cluster_dns = cluster_dns
        self._ca = client.config.ca_data or b""
        self.tokens = TokenManager(client)
        self._images: dict[tuple[str, int], tuple[images.Image | OCIImage, float]] = {}
        # The kubelet's image manager: catalog, image store and registry (see node/images.py).
        self.images = node_images.ImageManager(
            self.resolve_image, ImageStore(image_store) if image_store is not None else None,
            mode=image_mode, insecure_registries=insecure_registries, catalog_knows=self.catalog_knows)

    def cluster_dns(self) -> str:
        svc = self.services.get("kube-system/kube-dns")
        ip = ((svc or {}).get("spec") or {}).get("clusterIP") or ""
        return ip if ip and ip != "None" else self._cluster_dns

    def resolve_image(self, name: str) -> images.Image | OCIImage:
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
        image: images.Image | OCIImage | None = images.resolve_oci(name, self.image_catalog)  # test hook
        if image is None:
            image = images.resolve(name, self.image_catalog)  # ImageNotFound is not cached
        self._images[key] = (image, time.monotonic())
        return image

    def catalog_knows(self, name: str) -> bool:
        """Whether the catalog (built-in or the user's file) has ``name``, without resolving it."""
        repository, version = images.split_reference(name)
        if repository in images.BUILTIN:
            return True
        if self.image_catalog is None:
            return False
        try:
            catalog = images.load_catalog(self.image_catalog)
        except (OSError, ValueError):
            return False
        return f"{repository}:{version}" in catalog or repository in catalog

    async def pull_secrets(self, pod: Obj) -> list[Obj]:
        """The pod's imagePullSecrets that exist (a missing one is skipped, as the kubelet does)."""
        ns = pod["metadata"]["namespace"]
        out = []
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            secret = await self._get_optional(SECRETS, str(ref.get("name") or ""), ns)
            if secret is not None:
                out.append(secret)
        return out

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
            return await self.tokens.get(ns, meta["name"], meta["uid"], sa, seconds, audience)

        return volumes.Sources(
            configmap=lambda name: self._get_optional(CONFIGMAPS, name, ns),
            secret=lambda name: self._get_optional(SECRETS, name, ns),
            token=token,
            ca_crt=self._ca,
            pod_ips=[net.ip] if net else [],
            host_ips=[self.node_ip],
            allocatable=self._allocatable(),
            claim=lambda name: self._get_optional(PERSISTENTVOLUMECLAIMS, name, ns),
            volume=lambda name: self._get_optional(PERSISTENTVOLUMES, name, ""),
        )

    def forget_tokens(self, pod_uid: str) -> None:
        self.tokens.forget(pod_uid)

    async def container_config(self, pod: Obj, c: Obj, image: images.Image | OCIImage, net: PodNetwork,
                               pod_dir: pathlib.Path) -> tuple[dict[str, str], list[str], Mounts]:
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
            pod_ips=[net.ip], host_ips=[self.node_ip], allocatable=self._allocatable(),
        )
        for source, keys in result.invalid_keys.items():
            kind, _, name = source.partition(" ")
            self._event(pod, "Warning", "InvalidEnvironmentVariableNames",
                        f"Keys [{', '.join(keys)}] from the EnvFrom {kind} {name} were skipped since they are "
                        "considered invalid environment variable names.")
        # HOME as runc sets it from the image's passwd (root's, or / for other users).
        sc = {**((pod.get("spec") or {}).get("securityContext") or {}), **(c.get("securityContext") or {})}
        home = "/" if sc.get("runAsUser") else "/root"
        # A real image's HOME is its own, else runc's from the image's /etc/passwd (kubelite.node.ocispec).
        base = {"HOSTNAME": podspec.uts_hostname(pod)} if isinstance(image, OCIImage) else \
            {"HOSTNAME": podspec.uts_hostname(pod), "HOME": home}
        env = {**base, **image.env, **result.env}
        argv = image.host_argv(podspec.container_argv(c, image.entrypoint, image.cmd, result.env))
        if not argv:
            raise podspec.EnvError("no command specified")
        etc = pod_dir / "etc"
        mounts = [(str(etc / "hosts"), "/etc/hosts", False), (str(etc / "resolv.conf"), "/etc/resolv.conf", False),
                  (str(etc / "hostname"), "/etc/hostname", False)]
        if any(m.get("mountPath") == "/etc/hosts" for m in c.get("volumeMounts") or []):
            # The kubelet manages /etc/hosts only for containers that do not mount a file of
            # their own there; ours would also shadow a hostPath /etc/hosts source, as binds
            # are made one after the other inside the container.
            mounts = mounts[1:]
        if isinstance(image, images.Image):
            mounts += [(host, inside, True) for inside, host in image.files.items()]
        mounts += volumes.container_mounts(pod, c, pod_dir, result.env)
        return env, argv, mounts
