"""The OCI runtime spec (``config.json``) of a container run from a real image: containerd's ``oci`` package.

containerd's CRI plugin turns a container's CRI config into a runtime-spec bundle through
``oci.SpecOpts`` (default spec, image config, user, capabilities, masks, mounts, cgroup
resources); this module does the same from a :class:`~kubelite.node.runtime.ContainerSpec`
and the pod's merged securityContext, as pure functions (no runc, no mounts), so that every
rule can be unit-tested: which capabilities a container ends with, which uid/gid/groups the
image's ``/etc/passwd`` and ``/etc/group`` give it, what is masked under ``/proc``.

Namespaces: the pod's network namespace is joined by path, and so are the pod's IPC and UTS
namespaces (kept by the runtime for the pod's life, see ``Runtime.pod_namespaces``); PID and
mount are the container's own.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubelite.api.resource import parse_quantity

if TYPE_CHECKING:
    from kubelite.node.runc import Probe
    from kubelite.node.runtime import ContainerSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# containerd's default capability set (oci/spec.go populateDefaultUnixSpec), which the CRI
# plugin starts from before securityContext.capabilities adds and drops.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip

# Every capability runc 1.1 knows (privileged containers and `add: [ALL]` get them all).
ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

# containerd's defaults for unprivileged containers (oci/spec.go): hidden and read-only /proc paths.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/sys/devices/virtual/powercap", "/proc/scsi",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# seccomp RuntimeDefault. containerd's profile is an allow-list of ~400 syscalls (default
# action EPERM) with extra syscalls allowed per capability. Written as the equivalent
# deny-list: the syscalls containerd's list leaves out, denied with EPERM unless the
# capability that containerd's profile ties them to is granted. Shorter, and it keeps
# syscalls newer than the list usable, which is the one place it differs (more permissive).
_SECCOMP_DENIED: dict[str, tuple[str, ...]] = {
    "": ("acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
         "finit_module", "get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load",
         "kexec_load", "keyctl", "lookup_dcookie", "mount", "move_mount", "name_to_handle_at",
         "nfsservctl", "open_by_handle_at", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
         "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
         "query_module", "quotactl", "reboot", "request_key", "setns", "settimeofday", "stime",
         "swapon", "swapoff", "sysfs", "_sysctl", "umount", "umount2", "unshare", "uselib",
         "userfaultfd", "ustat", "vm86", "vm86old", "get_mempolicy", "mbind", "set_mempolicy",
         "move_pages"),
}  # fmt: skip
_SECCOMP_ALLOWED_BY_CAP: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": ("bpf", "clone", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
                      "mount", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open", "quotactl",
                      "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_adjtime"),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "move_pages"),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}  # fmt: skip


class SpecError(Exception):
    """The container's spec cannot be made (CreateContainerError); the message says why."""


class UserError(SpecError):
    """The image's user (or group) is not in its /etc/passwd (/etc/group); the message is containerd's."""


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


def _passwd(rootfs: pathlib.Path) -> list[_PasswdEntry]:
    entries: list[_PasswdEntry] = []
    for line in _read_lines(rootfs / "etc" / "passwd"):
        parts = line.split(":")
        if len(parts) < 7:
            continue
        try:
            entries.append(_PasswdEntry(parts[0], int(parts[2]), int(parts[3]), parts[5]))
        except ValueError:
            continue
    return entries


def _groups(rootfs: pathlib.Path) -> list[tuple[str, int, list[str]]]:
    groups: list[tuple[str, int, list[str]]] = []
    for line in _read_lines(rootfs / "etc" / "group"):
        parts = line.split(":")
        if len(parts) < 4:
            continue
        try:
            groups.append((parts[0], int(parts[2]), [m for m in parts[3].split(",") if m]))
        except ValueError:
            continue
    return groups


def _read_lines(path: pathlib.Path) -> list[str]:
    # The image's own files, never the host's: a symlink in the image is not followed out of it.
    try:
        if path.is_symlink():
            return []
        return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()
                and not line.startswith("#")]
    except OSError:
        return []


def image_uid(user: str) -> tuple[int | None, str]:
    """The kubelet's view of an image's user for runAsNonRoot: ``(uid, "")`` when numeric
    (root for an empty user), else ``(None, name)``; only the part before ``:`` counts."""
    name = user.split(":", 1)[0]
    if not name:
        return 0, ""
    try:
        return int(name), ""
    except ValueError:
        return None, name


def verify_run_as_non_root(sc: Mapping[str, Any], image_user: str, pod_ref: str, container: str) -> str:
    """The kubelet's ``verifyRunAsNonRoot``: "" when allowed, else its error message."""
    if not sc.get("runAsNonRoot"):
        return ""
    if sc.get("runAsUser") is not None:
        if int(sc["runAsUser"]) == 0:
            return f'container\'s runAsUser breaks non-root policy (pod: "{pod_ref}", container: {container})'
        return ""
    uid, name = image_uid(image_user)
    if uid == 0:
        return f'container has runAsNonRoot and image will run as root (pod: "{pod_ref}", container: {container})'
    if uid is None:
        return (f"container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is "
                f'non-root (pod: "{pod_ref}", container: {container})')
    return ""


def resolve_user(
    rootfs: pathlib.Path,
    image_user: str,
    run_as_user: int | None,
    run_as_group: int | None,
    supplemental: Sequence[int] = (),
) -> User:
    """uid, gid and additional groups as containerd computes them (WithUser / WithUserID /
    WithAdditionalGIDs / WithSupplementalGroups) from the image's /etc/passwd and /etc/group.

    runAsUser wins over the image's user; its primary group then comes from passwd (0 if
    the uid has no entry); runAsGroup wins over any primary group. The additional groups
    are the primary group, the groups that list the user by name, then supplementalGroups
    (the kubelet has already appended fsGroup to them).
    """
    passwd = _passwd(rootfs)
    by_uid = {e.uid: e for e in reversed(passwd)}  # the first entry of a uid wins
    entry: _PasswdEntry | None
    if run_as_user is not None:
        uid = int(run_as_user)
        entry = by_uid.get(uid)
        gid = entry.gid if entry else 0
    else:
        name, _, group = image_user.partition(":")
        if not name:
            uid, entry = 0, by_uid.get(0)
            gid = entry.gid if entry else 0
        else:
            try:
                uid = int(name)
                entry = by_uid.get(uid)
            except ValueError:
                entry = next((e for e in passwd if e.name == name), None)
                if entry is None:
                    raise UserError(f"unable to find user {name}: no matching entries in passwd file") from None
                uid = entry.uid
            gid = entry.gid if entry else 0
        if group:
            try:
                gid = int(group)
            except ValueError:
                found = next((g for g in _groups(rootfs) if g[0] == group), None)
                if found is None:
                    raise UserError(f"unable to find group {group}: no matching entries in group file") from None
                gid = found[1]
    if run_as_group is not None:
        gid = int(run_as_group)
    gids = [gid]
    if entry is not None:
        gids += [g[1] for g in _groups(rootfs) if entry.name in g[2]]
    gids += [int(g) for g in supplemental]
    unique = tuple(dict.fromkeys(gids))
    return User(uid, gid, unique, entry.home if entry and entry.home else "/")


def current_capabilities(status: str | None = None) -> tuple[str, ...]:
    """The capabilities this process may hand on (its bounding set, /proc/self/status CapBnd):
    what "all" means for containerd (WithAllCurrentCapabilities), e.g. without
    CAP_SYS_RESOURCE where the host withholds it."""
    try:
        text = status if status is not None else pathlib.Path("/proc/self/status").read_text()
        line = next(line for line in text.splitlines() if line.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError, IndexError):
        return ALL_CAPABILITIES
    return tuple(name for bit, name in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)


def capabilities(sc: Mapping[str, Any], all_caps: Sequence[str] = ALL_CAPABILITIES) -> list[str]:
    """The container's capability set: containerd's defaults, then ``add: [ALL]``, ``drop:
    [ALL]``, the single adds and the single drops, in that order (CRI's WithCapabilities);
    ``all_caps`` is what ALL and privileged mean (see :func:`current_capabilities`)."""
    if sc.get("privileged"):
        return list(all_caps)
    caps_sc = sc.get("capabilities") or {}
    add = [str(c).upper() for c in caps_sc.get("add") or []]
    drop = [str(c).upper() for c in caps_sc.get("drop") or []]
    caps = list(DEFAULT_CAPABILITIES)
    if "ALL" in add:
        caps = list(all_caps)
    if "ALL" in drop:
        caps = []
    for name in add:
        if name != "ALL":
            cap = name if name.startswith("CAP_") else f"CAP_{name}"
            if cap not in caps:
                caps.append(cap)
    dropped = {name if name.startswith("CAP_") else f"CAP_{name}" for name in drop if name != "ALL"}
    return [c for c in caps if c not in dropped]


def seccomp_profile(caps: Iterable[str]) -> dict[str, Any]:
    """RuntimeDefault (see ``_SECCOMP_DENIED``)."""
    granted = set(caps)
    allowed = {s for cap, names in _SECCOMP_ALLOWED_BY_CAP.items() if cap in granted for s in names}
    denied = sorted(s for s in _SECCOMP_DENIED[""] if s not in allowed)
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }


def seccomp_type(pod_sc: Mapping[str, Any], c_sc: Mapping[str, Any]) -> str:
    """The effective seccompProfile type: the container's, else the pod's, else
    RuntimeDefault (kubelite's default on both runtime paths, see :func:`process_security`)."""
    profile = c_sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    return str(profile.get("type") or "RuntimeDefault")


@dataclass(frozen=True)
class ProcessSecurity:
    """What a container's process gets beyond its capabilities: no_new_privs, and whether
    the RuntimeDefault seccomp profile confines it."""

    no_new_privs: bool
    seccomp: bool  # RuntimeDefault


def process_security(pod_sc: Mapping[str, Any], c_sc: Mapping[str, Any]) -> ProcessSecurity:
    """kubelite's security defaults, one rule for image-based containers (the runtime spec
    :func:`build` writes for runc) and catalog containers (:mod:`kubelite.node.isolation`),
    so that the two paths cannot drift: no_new_privs unless ``allowPrivilegeEscalation:
    true``, and RuntimeDefault seccomp unless ``seccompProfile.type: Unconfined``.

    This is stricter than the kubelet, which sets no_new_privs only for
    ``allowPrivilegeEscalation: false`` and leaves a pod Unconfined unless it asks (or
    ``--seccomp-default`` is on): issue 18 asks for containerd-like confinement by default,
    and a pod that needs the looser one says so in its securityContext, as it must anyway on a
    cluster whose nodes run with ``--seccomp-default``. ``privileged: true`` gets neither,
    as containerd gives a privileged container no seccomp filter (and Kubernetes' validation
    refuses ``allowPrivilegeEscalation: false`` with it). ``Localhost`` profiles are refused
    (:class:`SpecError`, the pod's CreateContainerError): kubelite has no seccomp profile
    directory, and running the container without the confinement it asked for would be worse.
    """
    if c_sc.get("privileged"):
        return ProcessSecurity(no_new_privs=False, seccomp=False)
    kind = seccomp_type(pod_sc, c_sc)
    if kind == "Localhost":
        raise SpecError("seccomp profile type Localhost is not supported by kubelite (use RuntimeDefault)")
    escalation = c_sc.get("allowPrivilegeEscalation", pod_sc.get("allowPrivilegeEscalation"))
    return ProcessSecurity(no_new_privs=escalation is not True, seccomp=kind != "Unconfined")


@dataclass
class Resources:
    """What the host can enforce (probed once by :func:`kubelite.node.runc.probe`)."""

    memory: bool = True
    cpu: bool = True
    swap: bool = True
    pids: bool = True
    notes: list[str] = field(default_factory=list)


def linux_resources(limits: Mapping[str, Any], requests: Mapping[str, Any], can: Resources) -> dict[str, Any]:
    """``linux.resources`` from limits (and the cpu request, as the kubelet's cpu shares)."""
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if can.memory and limits.get("memory") is not None:
        memory = int(parse_quantity(str(limits["memory"])))
        out["memory"] = {"limit": memory}
        if can.swap:  # memory+swap = memory: an allocation over the limit is OOM-killed, never swapped
            out["memory"]["swap"] = memory
    if can.cpu:
        cpu: dict[str, Any] = {}
        if limits.get("cpu") is not None:
            millis = int(parse_quantity(str(limits["cpu"])) * 1000)
            period = 100000
            cpu.update(quota=max(1000, millis * period // 1000), period=period)
        request = requests.get("cpu", limits.get("cpu"))
        if request is not None:
            cpu["shares"] = max(2, int(parse_quantity(str(request)) * 1024))
        if cpu:
            out["cpu"] = cpu
    return out


# The devices every container has (runc creates the nodes), and their cgroup rules.
_DEFAULT_DEVICES = (("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0),
                    ("c", 5, 1), ("c", 5, 2), ("c", 136, -1), ("c", 10, 200))  # fmt: skip


def build(
    *,
    container_id: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    workdir: str,
    hostname: str,
    netns_path: str,
    mounts: Sequence[tuple[str, str, bool]],
    user: User,
    tty: bool,
    pod_sc: Mapping[str, Any],
    c_sc: Mapping[str, Any],
    limits: Mapping[str, Any],
    requests: Mapping[str, Any],
    can: Resources,
    cgroup_parent: str = "/kubelite",
    pod_namespaces: Mapping[str, str] | None = None,
    all_caps: Sequence[str] = ALL_CAPABILITIES,
) -> dict[str, Any]:
    """The whole ``config.json``; ``root.path`` is ``rootfs`` in the bundle (the overlay's mount point)."""
    sc = {**pod_sc, **c_sc}
    privileged = bool(c_sc.get("privileged"))
    caps = capabilities(c_sc if not privileged else {"privileged": True}, all_caps)
    security = process_security(pod_sc, c_sc)
    process_env = dict(env)
    process_env.setdefault("PATH", DEFAULT_PATH)
    if "HOME" not in process_env:
        process_env["HOME"] = user.home
    process: dict[str, Any] = {
        "terminal": tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
        "args": list(argv),
        "env": [f"{k}={v}" for k, v in process_env.items()],
        "cwd": workdir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": security.no_new_privs,
    }
    if not process["user"]["additionalGids"]:
        del process["user"]["additionalGids"]
    oci_mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"]},
    ]  # fmt: skip
    if privileged:
        # Every host device, as containerd's WithDevices(all) gives a privileged container:
        # the host's /dev itself (runc then creates no device nodes of its own).
        oci_mounts[1] = {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rprivate", "rw"]}
    for source, target, read_only in mounts:
        options = ["rbind", "rprivate", "ro" if read_only else "rw"]
        oci_mounts.append({"destination": target, "type": "bind", "source": source, "options": options})
    # The pod's IPC and UTS namespaces are joined by path when the runtime keeps them
    # (Runtime.pod_namespaces), as its network namespace; else the container's own.
    shared = pod_namespaces or {}
    namespaces: list[dict[str, str]] = [{"type": "pid"}]
    for kind in ("ipc", "uts"):
        namespaces.append({"type": kind, "path": shared[kind]} if shared.get(kind) else {"type": kind})
    namespaces += [{"type": "mount"}, {"type": "network", "path": netns_path}]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": f"{cgroup_parent}/{container_id}",
        "resources": linux_resources(limits, requests, can),
    }
    if privileged:
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        rules = linux["resources"]["devices"]
        for kind, major, minor in _DEFAULT_DEVICES:
            rule: dict[str, Any] = {"allow": True, "type": kind, "major": major, "access": "rwm"}
            if minor >= 0:
                rule["minor"] = minor
            rules.append(rule)
        if security.seccomp:
            linux["seccomp"] = seccomp_profile(caps)
    return {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs", "readonly": bool(sc.get("readOnlyRootFilesystem"))},
        "hostname": hostname,
        "mounts": oci_mounts,
        "linux": linux,
    }


def config_for(spec: ContainerSpec, container_id: str, found: Probe,
               pod_namespaces: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``config.json`` of ``spec`` (whose ``oci`` is set), its user resolved in the image's root."""
    assert spec.oci is not None
    pod_sc, c_sc = spec.pod_security_context, spec.security_context
    sc = {**pod_sc, **c_sc}
    supplemental = ([pod_sc["fsGroup"]] if pod_sc.get("fsGroup") is not None else []) + list(
        pod_sc.get("supplementalGroups") or [])
    user = resolve_user(spec.oci.rootfs, spec.oci.user, sc.get("runAsUser"), sc.get("runAsGroup"), supplemental)
    resources = spec.resources or {}
    return build(
        container_id=container_id, argv=spec.argv, env=spec.env, workdir=spec.workdir, hostname=spec.hostname,
        netns_path=spec.netns_path, mounts=spec.mounts, user=user, tty=spec.tty, pod_sc=pod_sc, c_sc=c_sc,
        limits=resources.get("limits") or {}, requests=resources.get("requests") or {},
        can=Resources(memory=found.memory, cpu=found.cpu, swap=found.swap), pod_namespaces=pod_namespaces or {},
        all_caps=current_capabilities(),
    )


def write(cdir: pathlib.Path, spec_json: str, config: dict[str, Any]) -> None:
    """The container's directory with its bundle: config.json, the root's mount point, and
    the overlay's private upper and work directories (removed with the directory)."""
    cdir.mkdir(parents=True, mode=0o700)
    for sub in ("bundle/rootfs", "upper", "work"):
        (cdir / sub).mkdir(parents=True)
    (cdir / "bundle" / "config.json").write_text(json.dumps(config))
    (cdir / "spec.json").write_text(spec_json)
    (cdir / "shim.log").touch(mode=0o600)
    os.chmod(cdir / "upper", 0o755)  # the container's "/" gets the upper dir's mode once written
