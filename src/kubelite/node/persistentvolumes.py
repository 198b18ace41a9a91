"""``persistentVolumeClaim`` volumes on the node: claim → bound volume → a host directory.

The kubelet's volume manager resolves a pod's claim to its PersistentVolume and mounts that
volume's plugin (``hostPath``, ``local``...). kubelite's containers bind-mount host
directories, so a claimed volume is the volume's directory, linked from the pod's volume
directory (``volumes/<name>`` → the PV's path) for :func:`kubelite.node.volumes.container_mounts`
to mount, with ``subPath`` and ``readOnly`` applied there. A claim that is missing or not yet
bound leaves the pod in ContainerCreating with the volume manager's FailedMount message.

``fsGroup`` is applied as the kubelet's ``SetVolumeOwnership`` does for volumes whose plugin
manages ownership (``local`` ones here; a ``hostPath`` volume is the host's and left as it is):
every file's group becomes the fsGroup with group read-write (read-only for a read-only
volume) and directories get the setgid bit; ``fsGroupChangePolicy: OnRootMismatch`` skips the
walk when the volume's root already has that group and those bits.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import stat

from kubelite.api.types import Obj
from kubelite.node.volumes import ClaimError, Sources, VolumeError, _check_host_path

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110


class MounterError(VolumeError):
    def event_message(self) -> str:
        return str(self)


def _requires_change(root: pathlib.Path, gid: int, read_only: bool) -> bool:
    """requiresPermissionChange: the root's group, setgid bit and group permissions."""
    st = os.stat(root)
    if st.st_gid != gid:
        return True
    if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_ISGID:
        return True
    wanted = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return (st.st_mode & 0o777) & wanted != wanted


def _change(path: str, gid: int, read_only: bool) -> None:
    os.lchown(path, -1, gid)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    mask = RO_MASK if read_only else RW_MASK
    if stat.S_ISDIR(st.st_mode):
        mask |= stat.S_ISGID | EXEC_MASK
    os.chmod(path, stat.S_IMODE(st.st_mode) | mask)


def set_volume_ownership(root: pathlib.Path, fs_group: int, policy: str = "Always", read_only: bool = False) -> bool:
    """SetVolumeOwnership; returns whether it walked the volume."""
    if policy == "OnRootMismatch" and not _requires_change(root, fs_group, read_only):
        return False
    for dirpath, dirnames, filenames in os.walk(root):
        _change(dirpath, fs_group, read_only)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            _change(os.path.join(dirpath, name), fs_group, read_only)
    return True


def volume_path(pv: Obj) -> tuple[str, str]:
    """(plugin, host path) of a volume kubelite can mount."""
    spec = pv.get("spec") or {}
    if spec.get("local") is not None:
        return "local", str(spec["local"].get("path", ""))
    if spec.get("hostPath") is not None:
        return "hostPath", str(spec["hostPath"].get("path", ""))
    kinds = [k for k in spec if k in ("nfs", "csi", "iscsi", "rbd", "cephfs", "fc", "flexVolume")]
    raise VolumeError(f"volume {pv.get('metadata', {}).get('name')!r}: unsupported volume type {', '.join(kinds) or 'none'}")


async def setup_claim(pod: Obj, vol: Obj, target: pathlib.Path, sources: Sources) -> None:
    """Resolve the claim and link ``target`` to its volume's directory (fsGroup on first link)."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    source = vol["persistentVolumeClaim"]
    name = str(source.get("claimName", ""))
    if sources.claim is None or sources.volume is None:
        raise VolumeError(f"volume {vol['name']!r}: claims are not available here")
    pvc = await sources.claim(name)
    where = f"error processing PVC {ns}/{name}"
    if pvc is None:
        raise ClaimError(vol["name"], f'{where}: failed to fetch PVC from API server: persistentvolumeclaims "{name}" not found')
    linked = await asyncio.to_thread(_link_of, target)
    if (pvc.get("metadata") or {}).get("deletionTimestamp") and linked is None:
        raise ClaimError(vol["name"], f"{where}: can't start pod because PVC {ns}/{name} is being deleted")
    pv_name = (pvc.get("spec") or {}).get("volumeName")
    if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
        raise ClaimError(vol["name"], f"{where}: PVC is not bound")
    pv = await sources.volume(pv_name)
    if pv is None:
        raise ClaimError(vol["name"], f'{where}: failed to fetch PV {pv_name} from API server: '
                                      f'persistentvolumes "{pv_name}" not found')
    plugin, path = volume_path(pv)
    if plugin == "hostPath":
        _check_host_path((pv.get("spec") or {}).get("hostPath") or {})
    elif not await asyncio.to_thread(os.path.isdir, path):
        raise MounterError(f'MountVolume.NewMounter initialization failed for volume "{pv_name}" : '
                           f'path "{path}" does not exist')
    if linked == path:
        return
    security = (pod.get("spec") or {}).get("securityContext") or {}
    fs_group = security.get("fsGroup")
    if plugin == "local" and fs_group is not None:
        read_only = bool(source.get("readOnly"))
        await asyncio.to_thread(set_volume_ownership, pathlib.Path(path), int(fs_group),
                                security.get("fsGroupChangePolicy") or "Always", read_only)
    await asyncio.to_thread(_link, target, path)


def _link_of(target: pathlib.Path) -> str | None:
    return os.readlink(target) if target.is_symlink() else None


def _link(target: pathlib.Path, path: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    os.symlink(path, tmp)
    os.replace(tmp, target)
