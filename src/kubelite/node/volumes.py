"""Pod volumes as directories under the pod's state dir, bind-mounted into its containers.

The kubelet's volume plugins mount tmpfs or block devices; a kubelite container is a process
in its own mount namespace, so every volume is simply a host directory that the shim
bind-mounts at the container's ``mountPath``. emptyDir is an empty directory that lives as
long as the pod (with ``medium: Memory`` a tmpfs mounted on it, as the kubelet's emptyDir
plugin mounts one, sized by ``sizeLimit``; unmounted when the pod's volumes go); configMap, secret, downwardAPI and projected volumes are files written
here from the API objects (rewritten on each refresh, stale files removed, as the kubelet's
atomic writer leaves no leftovers); hostPath mounts the host's own path. The service-account
token directory that kube-apiserver's admission would add as the projected
``kube-api-access-*`` volume is made here too when the pod does not mount one itself.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import shutil
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from kubelite.api.resource import parse_quantity
from kubelite.api.types import Obj
from kubelite.linux import syscalls
from kubelite.node import podspec

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_MODE = 0o644
SA_TOKEN_SECONDS = 3607  # what the kubelet asks for the kube-api-access volume


class VolumeError(Exception):
    """A volume cannot be set up yet (the kubelet's FailedMount); the pod waits in ContainerCreating."""

    def event_message(self) -> str:
        return f"MountVolume.SetUp failed: {self}"


class ClaimError(VolumeError):
    """A claim that cannot be used yet: the kubelet's volume manager says so in its own words."""

    def __init__(self, volume: str, detail: str) -> None:
        super().__init__(detail)
        self.volume = volume

    def event_message(self) -> str:
        return (f"Unable to attach or mount volumes: unmounted volumes=[{self.volume}], unattached volumes=[], "
                f"failed to process volumes=[{self.volume}]: {self}")


@dataclass
class Sources:
    """Where volume contents come from; the agent binds these to its API client."""

    configmap: Callable[[str], Awaitable[Obj | None]]  # name → ConfigMap or None when missing
    secret: Callable[[str], Awaitable[Obj | None]]
    token: Callable[[str, int, str], Awaitable[str]]  # (service account, expirationSeconds, audience)
    ca_crt: bytes
    pod_ips: Sequence[str] = ()
    host_ips: Sequence[str] = ()
    allocatable: Mapping[str, str] | None = None
    # name → PersistentVolumeClaim (in the pod's namespace) / PersistentVolume, None when missing
    claim: Callable[[str], Awaitable[Obj | None]] | None = None
    volume: Callable[[str], Awaitable[Obj | None]] | None = None


def volume_dir(pod_dir: pathlib.Path, name: str) -> pathlib.Path:
    return pod_dir / "volumes" / name


def sa_dir(pod_dir: pathlib.Path) -> pathlib.Path:
    return pod_dir / "serviceaccount"


def _write_files(target: pathlib.Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Make ``target`` hold exactly ``files`` (relative path → (content, mode)), each replaced atomically."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for rel, (content, mode) in files.items():
        path = (target / rel).resolve()
        if target.resolve() not in path.parents:
            raise VolumeError(f"invalid path {rel!r}: must not contain '..'")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        wanted.add(path)
    for root, _dirs, names in os.walk(target, topdown=False):
        for n in names:
            p = pathlib.Path(root) / n
            if p.resolve() not in wanted:
                p.unlink()
        if pathlib.Path(root) != target and not os.listdir(root):
            os.rmdir(root)


async def _write_files_async(target: pathlib.Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    # File creation waits for the disk's journal on a busy machine: keep it off the event loop.
    await asyncio.to_thread(_write_files, target, files)


def _object_data(obj: Obj, secret: bool) -> dict[str, bytes]:
    if secret:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _key_files(kind: str, name: str, data: Mapping[str, bytes], items: Sequence[Obj] | None,
               default_mode: int, optional: bool) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    files = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{kind} references non-existent config key: {key}")
        files[item.get("path") or key] = (data[key], _mode({"mode": item.get("mode")}, default_mode))
    return files


async def _object_files(sources: Sources, kind: str, source: Obj, default_mode: int) -> dict[str, tuple[bytes, int]]:
    secret = kind == "secret"
    name = source.get("secretName" if secret and "secretName" in source else "name", "")
    obj = await (sources.secret(name) if secret else sources.configmap(name))
    if obj is None:
        if source.get("optional"):
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    return _key_files(kind, name, _object_data(obj, secret), source.get("items"), default_mode, bool(source.get("optional")))


def _downward_files(pod: Obj, sources: Sources, items: Sequence[Obj], default_mode: int) -> dict[str, tuple[bytes, int]]:
    files = {}
    containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in items:
        mode = _mode({"mode": item.get("mode")}, default_mode)
        if item.get("fieldRef") is not None:
            value = podspec.field_ref_value(pod, item["fieldRef"].get("fieldPath", ""), sources.pod_ips, sources.host_ips)
        elif item.get("resourceFieldRef") is not None:
            ref = item["resourceFieldRef"]
            container = containers.get(ref.get("containerName", ""), {})
            value = podspec.resource_field_value(container, ref, sources.allocatable or {})
        else:
            continue
        files[item.get("path", "")] = (value.encode(), mode)
    return files


async def _projected_files(pod: Obj, sources: Sources, projected: Obj) -> dict[str, tuple[bytes, int]]:
    mode = _mode(projected)
    sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    files: dict[str, tuple[bytes, int]] = {}
    for src in projected.get("sources") or []:
        if src.get("configMap") is not None:
            files.update(await _object_files(sources, "configmap", src["configMap"], mode))
        elif src.get("secret") is not None:
            files.update(await _object_files(sources, "secret", src["secret"], mode))
        elif src.get("downwardAPI") is not None:
            files.update(_downward_files(pod, sources, src["downwardAPI"].get("items") or [], mode))
        elif src.get("serviceAccountToken") is not None:
            t = src["serviceAccountToken"]
            token = await sources.token(sa, int(t.get("expirationSeconds") or 3600), t.get("audience") or "")
            files[t.get("path", "token")] = (token.encode(), mode)
    return files


async def setup(pod: Obj, pod_dir: pathlib.Path, sources: Sources) -> None:
    """Create or refresh every volume of the pod (and the implicit service-account directory)."""
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        target = volume_dir(pod_dir, vol["name"])
        if vol.get("emptyDir") is not None:
            target.mkdir(parents=True, exist_ok=True)
            if (vol["emptyDir"] or {}).get("medium") == "Memory" and not _is_mount_point(target):
                _mount_tmpfs(target, (vol["emptyDir"] or {}).get("sizeLimit"))
            os.chmod(target, 0o777)
        elif vol.get("hostPath") is not None:
            _check_host_path(vol["hostPath"])
        elif vol.get("configMap") is not None:
            src = vol["configMap"]
            await _write_files_async(target, await _object_files(sources, "configmap", src, _mode(src)))
        elif vol.get("secret") is not None:
            src = vol["secret"]
            await _write_files_async(target, await _object_files(sources, "secret", src, _mode(src)))
        elif vol.get("downwardAPI") is not None:
            src = vol["downwardAPI"]
            await _write_files_async(target, _downward_files(pod, sources, src.get("items") or [], _mode(src)))
        elif vol.get("projected") is not None:
            await _write_files_async(target, await _projected_files(pod, sources, vol["projected"]))
        elif vol.get("persistentVolumeClaim") is not None:
            from kubelite.node import persistentvolumes  # it builds on this module's errors

            await persistentvolumes.setup_claim(pod, vol, target, sources)
        else:
            kinds = [k for k in vol if k != "name"]
            raise VolumeError(f"volume {vol['name']!r}: unsupported volume type {', '.join(kinds) or 'none'}")
    if wants_sa_mount(pod):
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        token = await sources.token(sa, SA_TOKEN_SECONDS, "")
        ns = (pod.get("metadata") or {}).get("namespace", "")
        await _write_files_async(sa_dir(pod_dir), {
            "token": (token.encode(), DEFAULT_MODE),
            "ca.crt": (sources.ca_crt, DEFAULT_MODE),
            "namespace": (ns.encode(), DEFAULT_MODE),
        })


async def prefetch_token(pod: Obj, sources: Sources) -> None:
    """Ask for the implicit service-account token early (``sources.token`` caches it), so
    that the round trip overlaps the sandbox's network setup; :func:`setup` reports errors."""
    if wants_sa_mount(pod):
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        await sources.token(sa, SA_TOKEN_SECONDS, "")


def _mode(source: Obj, default: int = DEFAULT_MODE) -> int:
    mode = source.get("defaultMode", source.get("mode"))
    return int(mode) if mode is not None else default


def _check_host_path(hp: Obj) -> None:
    path, kind = hp.get("path", ""), hp.get("type") or ""
    if kind == "DirectoryOrCreate":
        pathlib.Path(path).mkdir(parents=True, exist_ok=True, mode=0o755)
    elif kind not in ("", "FileOrCreate") and not os.path.exists(path):
        raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")


def wants_sa_mount(pod: Obj) -> bool:
    """The implicit token mount: unless automount is off or every container mounts the path itself."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return False
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return any(not _mounts_sa(c) for c in containers)


def _mounts_sa(container: Obj) -> bool:
    return any(m.get("mountPath", "").rstrip("/") == SA_MOUNT for m in container.get("volumeMounts") or [])


class _Missing(dict[str, str]):
    """The environment as ExpandContainerVolumeMounts reads it: an unset or empty variable
    expands to nothing and is remembered, to be reported."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.missing: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        value = self.get(key, "")
        if not value:
            self.missing.add(key)
        return value


def sub_path(mount: Obj, env: Mapping[str, str]) -> str:
    """The mount's subPath, or its subPathExpr with ``$(VAR)`` from the container's
    environment, checked as the kubelet's makeMounts checks it (with its error texts)."""
    path = mount.get("subPath") or ""
    if mount.get("subPathExpr"):
        envmap = _Missing(env)
        path = podspec.expand(mount["subPathExpr"], envmap)
        if envmap.missing:
            raise VolumeError(f"missing value for {', '.join(sorted(envmap.missing))}")
    if not path:
        return ""
    if path.startswith("/"):
        raise VolumeError(f"error SubPath `{path}` must not be an absolute path")
    if ".." in path.split("/"):
        raise VolumeError(f"unable to provision SubPath `{path}`: must not contain '..'")
    return path


def container_mounts(pod: Obj, container: Obj, pod_dir: pathlib.Path,
                     env: Mapping[str, str] | None = None) -> list[tuple[str, str, bool]]:
    """(host source, container target, read-only) for a container's volumeMounts (+ the token dir).

    ``env`` is the container's environment, for ``subPathExpr``.
    """
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    out: list[tuple[str, str, bool]] = []
    for m in container.get("volumeMounts") or []:
        vol = volumes.get(m.get("name", ""))
        if vol is None:
            raise VolumeError(f"volume {m.get('name')!r} not found")
        if vol.get("hostPath") is not None:
            source = pathlib.Path(vol["hostPath"].get("path", ""))
        elif vol.get("persistentVolumeClaim") is not None:
            # setup() linked the claim's volume directory here.
            source = volume_dir(pod_dir, vol["name"]).resolve()
        else:
            source = volume_dir(pod_dir, vol["name"])
        read_only = bool(m.get("readOnly")) or any(k in vol for k in ("configMap", "secret", "downwardAPI", "projected"))
        read_only = read_only or bool((vol.get("persistentVolumeClaim") or {}).get("readOnly"))
        sub = sub_path(m, env or {})
        if sub:
            root, source = source, source / sub
            if not source.exists():
                _make_sub_path(root, source)
        out.append((str(source), m.get("mountPath", ""), read_only))
    if wants_sa_mount(pod) and not _mounts_sa(container):
        out.append((str(sa_dir(pod_dir)), SA_MOUNT, True))
    return out


def _make_sub_path(root: pathlib.Path, sub: pathlib.Path) -> None:
    """As the kubelet's SafeMakeDir: new directories take the volume root's mode (and, through
    its setgid bit, its group), so that an fsGroup can write into a subPath the kubelet made."""
    try:
        mode = stat.S_IMODE(os.stat(root).st_mode)
    except OSError:
        mode = 0o755
        root.mkdir(parents=True, exist_ok=True)
    missing = [p for p in [sub, *sub.parents] if p != root and root in p.parents and not p.exists()]
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
        os.chmod(p, mode)
    sub.mkdir(parents=True, exist_ok=True)


def _is_mount_point(path: pathlib.Path) -> bool:
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except OSError:
        return False


def _mount_tmpfs(target: pathlib.Path, size_limit: str | int | None) -> None:
    # The kubelet's emptyDir plugin: "tmpfs" with a size= option when sizeLimit is set; without
    # one the kernel's default (half the memory) stands in for the node's allocatable memory.
    options = "mode=0777"
    if size_limit not in (None, ""):
        size = int(parse_quantity(size_limit or 0))
        if size > 0:
            options += f",size={size}"
    syscalls.mount("tmpfs", str(target), "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, options)


def unmount_under(directory: pathlib.Path) -> None:
    """Detach every mount at or below ``directory`` (memory-backed emptyDirs), deepest first,
    so that removing the directory frees their memory and never reaches into a mount."""
    prefix = os.path.realpath(directory)
    try:
        with open("/proc/self/mountinfo") as f:
            points = [_unescape_mount_path(line.split(" ")[4]) for line in f]
    except OSError:
        return
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True):
        try:
            syscalls.umount(point, syscalls.MNT_DETACH)
        except OSError:
            pass  # already gone (a second entry for the same point)


def _unescape_mount_path(field: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash in paths.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def remove(pod_dir: pathlib.Path) -> None:
    """Remove the pod's volume and token directories (emptyDir content goes with the pod)."""
    unmount_under(pod_dir / "volumes")
    for d in (pod_dir / "volumes", sa_dir(pod_dir)):
        shutil.rmtree(d, ignore_errors=True)
