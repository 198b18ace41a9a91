"""Pod isolation for catalog containers: a root of their own, containerd's capabilities,
no_new_privs and seccomp, as runc gives an image's container.

A catalog image is a program of this machine (:mod:`kubelite.images`), so its container
cannot have an image filesystem; before this module it saw the host's whole filesystem
(``/root/.kube/config``, ``/etc/shadow``, kubelite's ``pki/`` and state database) with
every capability. Now each unprivileged catalog container gets, in its private mount
namespace, a new root (a tmpfs, entered with ``pivot_root`` so that no way leads back):

- the host's program directories (``/usr``, ``/etc``, ``/opt`` and the ``/bin``, ``/lib*``
  links or directories) bound read-only, with ``/etc``'s files that only root may read
  (``shadow``, private keys) masked;
- the Python installation and kubelite's package (kubelite's own images are this
  interpreter), and the host paths the image names (:attr:`kubelite.images.Image.paths`,
  e.g. busybox's applet links), read-only at their own paths; nothing else of the host:
  ``/root``, ``/home``, ``/var`` and ``/run`` are empty, ``/tmp`` is the container's;
- ``/proc`` of its PID namespace with containerd's masked and read-only paths, a ``/dev``
  with only the default devices (the tmpfs is ``nodev``: a node made with CAP_MKNOD opens
  nothing, as runc's device cgroup ensures) and a devpts instance of its own, where its
  terminal and those of ``kubectl exec -t`` are made (:func:`open_pty`); a read-only ``/sys``;
- the pod's volumes and ``/etc`` files at their mount paths (writable binds are ``nodev``
  for the same reason). A mount target missing under a read-only host directory (a
  configMap at ``/etc/app``) is made in a scratch tmpfs laid over it as an overlay's upper
  lower layer: the host's files are never written.

``readOnlyRootFilesystem`` makes that root read-only (volumes stay as mounted). Then the
process: containerd's default capability set with ``securityContext.capabilities`` applied
(:func:`kubelite.node.ocispec.capabilities`, the same rules as an image's container),
no_new_privs unless ``allowPrivilegeEscalation: true``, and the RuntimeDefault seccomp
profile unless the pod asks for ``Unconfined`` (:func:`kubelite.node.ocispec.process_security`,
the one rule both runtime paths follow; ``Localhost`` is refused before the container is
made, a CreateContainerError, as for an image's container). The seccomp filter is the deny-list form
of containerd's profile that :mod:`kubelite.node.ocispec` writes for runc, compiled here
into a dozen-line classic BPF program (no libseccomp bindings exist for this interpreter):
check the architecture, deny x32 and foreign ABIs, return EPERM for each listed syscall
number. ``privileged: true`` keeps the host view and every capability.

Everything that costs more than a few system calls (which of ``/etc``'s files to mask,
the capability bounding set, the BPF program) is computed once in the shims' fork server
(:func:`warm`) and shared by every container it forks.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kubelite.linux import syscalls
from kubelite.node import ocispec

# The host directories every catalog container sees, read-only: where programs and their
# configuration live. Links among them (merged /usr: /bin -> usr/bin) are recreated as links.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
# The container's own (empty, in its root's tmpfs): what an image's root has.
EMPTY_DIRS = ("proc", "sys", "dev", "tmp", "run", "run/lock", "var", "var/tmp", "var/lib", "var/log",
              "var/cache", "var/spool", "home", "mnt", "srv", "media")  # fmt: skip
_STICKY = ("tmp", "var/tmp")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
              "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}  # fmt: skip
_MAX_SYMLINKS = 40

# Seccomp (linux/seccomp.h, linux/filter.h, linux/audit.h).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO_EPERM = 0x00050000 | 1
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
# The system call numbers of the names ocispec's profile lists, per architecture
# (asm/unistd_64.h; asm-generic/unistd.h for arm64); names a platform lacks are absent.
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "_sysctl": 156, "acct": 163, "add_key": 248, "bpf": 321, "chroot": 161, "clock_adjtime": 305,
        "clock_settime": 227, "clone": 56, "create_module": 174, "delete_module": 176, "fanotify_init": 300,
        "finit_module": 313, "fsconfig": 431, "fsmount": 432, "fsopen": 430, "fspick": 433,
        "get_kernel_syms": 177, "get_mempolicy": 239, "init_module": 175, "ioperm": 173, "iopl": 172,
        "kcmp": 312, "kexec_file_load": 320, "kexec_load": 246, "keyctl": 250, "lookup_dcookie": 212,
        "mbind": 237, "mount": 165, "move_mount": 429, "move_pages": 279, "name_to_handle_at": 303,
        "nfsservctl": 180, "open_by_handle_at": 304, "open_tree": 428, "perf_event_open": 298,
        "pidfd_getfd": 438, "pivot_root": 155, "process_madvise": 440, "process_vm_readv": 310,
        "process_vm_writev": 311, "ptrace": 101, "query_module": 178, "quotactl": 179, "reboot": 169,
        "request_key": 249, "set_mempolicy": 238, "setdomainname": 171, "sethostname": 170, "setns": 308,
        "settimeofday": 164, "swapoff": 168, "swapon": 167, "sysfs": 139, "syslog": 103, "umount2": 166,
        "unshare": 272, "uselib": 134, "userfaultfd": 323, "ustat": 136,
    },
    "aarch64": {
        "acct": 89, "add_key": 217, "bpf": 280, "chroot": 51, "clock_adjtime": 266, "clock_settime": 112,
        "clone": 220, "delete_module": 106, "fanotify_init": 262, "finit_module": 273, "fsconfig": 431,
        "fsmount": 432, "fsopen": 430, "fspick": 433, "get_mempolicy": 236, "init_module": 105,
        "kcmp": 272, "kexec_file_load": 294, "kexec_load": 104, "keyctl": 219, "lookup_dcookie": 18,
        "mbind": 235, "mount": 40, "move_mount": 429, "move_pages": 239, "name_to_handle_at": 264,
        "nfsservctl": 42, "open_by_handle_at": 265, "open_tree": 428, "perf_event_open": 241,
        "pidfd_getfd": 438, "pivot_root": 41, "process_madvise": 440, "process_vm_readv": 270,
        "process_vm_writev": 271, "ptrace": 117, "quotactl": 60, "reboot": 142, "request_key": 218,
        "set_mempolicy": 237, "setdomainname": 162, "sethostname": 161, "setns": 268,
        "settimeofday": 170, "swapoff": 225, "swapon": 224, "syslog": 116, "umount2": 39, "unshare": 97,
        "userfaultfd": 282,
    },
}  # fmt: skip


class IsolationError(Exception):
    """The container's root or confinement could not be set up; the message says what failed."""


@dataclass(frozen=True)
class Confinement:
    """What a catalog container's securityContext asks of its process and root."""

    privileged: bool
    capabilities: tuple[str, ...]
    no_new_privs: bool
    seccomp: bool  # RuntimeDefault
    read_only_root: bool

    @property
    def capability_mask(self) -> int:
        return sum(1 << ocispec.ALL_CAPABILITIES.index(c) for c in set(self.capabilities)
                   if c in ocispec.ALL_CAPABILITIES)


def confinement(pod_sc: Mapping[str, Any], c_sc: Mapping[str, Any],
                all_caps: Sequence[str] | None = None) -> Confinement:
    """The confinement of a catalog container from the pod's and the container's securityContext."""
    privileged = bool(c_sc.get("privileged"))
    caps = ocispec.capabilities({"privileged": True} if privileged else c_sc,
                                host_capabilities() if all_caps is None else all_caps)
    security = ocispec.process_security(pod_sc, c_sc)  # the rule image-based containers follow too
    return Confinement(
        privileged=privileged,
        capabilities=tuple(caps),
        no_new_privs=security.no_new_privs,
        seccomp=security.seccomp,
        read_only_root=bool(c_sc.get("readOnlyRootFilesystem")),
    )


@cache
def host_capabilities() -> tuple[str, ...]:
    return ocispec.current_capabilities()


# --- seccomp -------------------------------------------------------------------------------


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_program(caps: Iterable[str], machine: str | None = None) -> bytes | None:
    """The RuntimeDefault filter as classic BPF (``struct sock_filter[]``), or None where this
    architecture's syscall numbers are not known here.

    Foreign ABIs (i386 on x86_64, x32) get EPERM for every call: containerd's profile lists
    them, but nothing a catalog image runs uses them, and a filter that checked only native
    numbers would let them pass under other numbers.
    """
    machine = machine or os.uname().machine
    numbers = _SYSCALLS.get(machine)
    if numbers is None:
        return None
    profile = ocispec.seccomp_profile(caps)
    names = [n for rule in profile["syscalls"] for n in rule["names"]]
    denied = sorted({numbers[n] for n in names if n in numbers})
    count = len(denied)
    deny = 5 + count + 1  # index of the EPERM return
    program = [
        _insn(_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _insn(_BPF_JEQ_K, 1, 0, _AUDIT_ARCH[machine]),
        _insn(_BPF_RET_K, 0, 0, _RET_ERRNO_EPERM),
        _insn(_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        _insn(_BPF_JGE_K, deny - 5, 0, _X32_SYSCALL_BIT),
    ]
    for i, nr in enumerate(denied):
        program.append(_insn(_BPF_JEQ_K, deny - (5 + i) - 1, 0, nr))
    program += [_insn(_BPF_RET_K, 0, 0, _RET_ALLOW), _insn(_BPF_RET_K, 0, 0, _RET_ERRNO_EPERM)]
    return b"".join(program)


@cache
def _seccomp_for(caps: frozenset[str]) -> bytes | None:
    return seccomp_program(caps)


# --- the process ---------------------------------------------------------------------------


def confine(conf: Confinement, uid: int | None, gid: int | None, groups: Sequence[int] | None) -> None:
    """Last step before ``execve``: capabilities, no_new_privs, seccomp, then the user.

    As runc: the bounding set is cut to the container's capabilities (root gets exactly them
    at exec; another user none, having no ambient set), the inheritable and ambient sets are
    emptied, and the seccomp filter goes in while the process still holds CAP_SYS_ADMIN (or
    after no_new_privs).
    """
    if not conf.privileged:
        keep = conf.capability_mask
        for cap in range(64):
            if not keep >> cap & 1:
                try:
                    syscalls.drop_bounding_capability(cap)
                except OSError as e:
                    if e.errno == 22:  # beyond the kernel's last capability
                        break
                    raise
        syscalls.clear_ambient_capabilities()
        effective, permitted, _ = syscalls.get_capabilities()
        syscalls.set_capabilities(effective, permitted, 0)
        if conf.no_new_privs:
            syscalls.set_no_new_privs()
        if conf.seccomp:
            program = _seccomp_for(frozenset(conf.capabilities))
            if program is not None:
                syscalls.install_seccomp_filter(program)
    if uid is None and gid is None and not groups:
        return
    os.setgroups(list(groups or []))
    os.setgid(gid if gid is not None else 0)
    os.setuid(uid if uid is not None else 0)


# --- the root ------------------------------------------------------------------------------


@cache
def etc_secrets() -> tuple[str, ...]:
    """Entries under the host's /etc that other users may not read (shadow, gshadow, private
    keys, sudoers): masked in the container's /etc. Top-most only: a masked directory hides
    what is under it."""
    found: list[str] = []
    for top, dirs, files in os.walk("/etc"):
        for name in sorted(files) + sorted(dirs):
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or st.st_mode & stat.S_IROTH:
                continue
            found.append(path)
            if name in dirs:
                dirs.remove(name)
    return tuple(sorted(found))


def install_paths() -> tuple[str, ...]:
    """The Python installation and kubelite's package: kubelite's own images are this
    interpreter. With the directories its site-packages' ``.pth`` files add to ``sys.path``
    (an editable install of kubelite): what ``python -m kubelite...`` imports in a container.

    Computed again when a ``.pth`` file changes: a ``pip install -e`` of another checkout
    while the cluster runs points the containers' interpreter elsewhere, and that directory
    must be in their root (where this package is shown) or no container of kubelite's own
    images starts."""
    sites = _site_dirs()
    return _install_paths_for(sites, _pth_signature(sites))


@cache
def _site_dirs() -> tuple[str, ...]:
    import sysconfig

    return tuple(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))


def _pth_signature(sites: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for site in sites:
        try:
            with os.scandir(site) as entries:
                found += [(e.path, e.stat().st_mtime_ns) for e in entries if e.name.endswith(".pth")]
        except OSError:
            continue
    return tuple(sorted(found))


@cache
def _install_paths_for(sites: tuple[str, ...], signature: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    package_root = str(Path(__file__).resolve().parents[2])
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, os.path.dirname(sys.executable), package_root}
    for pth, _ in signature:
        try:
            lines = Path(pth).read_text(errors="replace").splitlines()
        except OSError:
            continue
        paths.update(line.strip() for line in lines
                     if line.startswith("/") and os.path.isdir(line.strip()))
    return tuple(sorted(paths))


def _this_kubelite(root: str) -> None:
    """Where the interpreter's ``sys.path`` would find another kubelite package (an editable
    install of another checkout, while this one runs from a PYTHONPATH), show this one there:
    kubelite's images (``python -m kubelite.images...``) are part of the agent that runs them."""
    own = str(Path(__file__).resolve().parents[1])
    for directory in install_paths():
        package = os.path.join(directory, "kubelite")
        if os.path.realpath(package) == own or not os.path.isdir(package) or _system(os.path.realpath(package)):
            continue
        _bind(own, os.path.join(root, os.path.realpath(package).lstrip("/")), read_only=True)


def warm() -> None:
    """Compute once in the fork server what every container start needs (see the docstring)."""
    etc_secrets()
    install_paths()
    host_capabilities()
    _seccomp_for(frozenset(ocispec.DEFAULT_CAPABILITIES))


def _system(path: str) -> bool:
    """Whether ``path`` (absolute, symlink-free) lies in a host directory every container sees."""
    top = path.lstrip("/").split("/", 1)[0]
    return top in SYSTEM_DIRS and not os.path.islink("/" + top)


def resolve_in(root: str, path: str) -> str:
    """``path`` as seen inside ``root`` (a directory of the host), symlinks followed within
    ``root`` as the container's lookup follows them (an absolute link starts again at
    ``root``, ``..`` never leaves it); the result is a host path under ``root``. Missing
    components are kept as they are."""
    pending = [c for c in path.split("/") if c]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(here)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise IsolationError(f"{path}: too many levels of symbolic links")
        if target.startswith("/"):
            resolved = []
        pending[:0] = [c for c in target.split("/") if c]
    return os.path.join(root, *resolved)


def _host_real(path: str) -> str:
    return os.path.realpath(path)


def _bind(source: str, target: str, read_only: bool, nodev: bool = False) -> None:
    syscalls.mount(source, target, None, syscalls.MS_BIND | syscalls.MS_REC)
    if read_only or nodev:
        flags = syscalls.MS_BIND | syscalls.MS_REMOUNT
        flags |= (syscalls.MS_RDONLY if read_only else 0) | (syscalls.MS_NODEV if nodev else 0)
        syscalls.mount(None, target, None, flags)


def _open_inside(root: str, path: str) -> int:
    """``path`` opened without following a last symlink, checked to be under ``root``."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    real = os.readlink(f"/proc/self/fd/{fd}")
    if real != root and not real.startswith(root + "/"):
        os.close(fd)
        raise IsolationError(f"mount target {path} leads out of the container's root (to {real})")
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsolationError(f"mount target {path} became a symbolic link")
    return fd


def _bind_inside(root: str, source: str, target: str, read_only: bool, nodev: bool) -> None:
    """A bind onto ``target`` (under ``root``) that a symlink swapped in meanwhile cannot send
    elsewhere: a volume shared with a running container may change between the lookup and
    the mount (runc's CVE-2021-30465), so the mount goes onto the descriptor of what was
    checked, and so does the remount (opened anew: the new mount's root)."""
    fd = _open_inside(root, target)
    try:
        syscalls.mount(source, f"/proc/self/fd/{fd}", None, syscalls.MS_BIND | syscalls.MS_REC)
    finally:
        os.close(fd)
    if read_only or nodev:
        fd = _open_inside(root, target)
        try:
            flags = syscalls.MS_BIND | syscalls.MS_REMOUNT
            flags |= (syscalls.MS_RDONLY if read_only else 0) | (syscalls.MS_NODEV if nodev else 0)
            syscalls.mount(None, f"/proc/self/fd/{fd}", None, flags)
        finally:
            os.close(fd)


def _make(target: str, is_dir: bool, mode: int = 0o755) -> None:
    if os.path.lexists(target):
        return
    if is_dir:
        os.makedirs(target, mode=mode, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _mount_error(source: str, target: str, e: OSError) -> IsolationError:
    reason = e.strerror if e.strerror and e.strerror.startswith("stat ") else os.strerror(e.errno or 0).lower()
    return IsolationError(f'error during container init: error mounting "{source}" to rootfs at "{target}": {reason}')


def _expose(root: str, path: str, bound: list[str]) -> None:
    """Make the host's ``path`` visible read-only at the same path in ``root``: the symlinks on
    the way to it recreated, the place they lead to bound (unless a system directory or an
    already bound place holds it)."""
    if not os.path.exists(path):
        return
    walked = "/"
    for part in [c for c in path.split("/") if c]:
        here = os.path.join(walked, part)
        if os.path.islink(here):
            # The link itself, where its directory is in the root (unless a system directory holds it).
            inside = os.path.join(resolve_in(root, os.path.dirname(here)), part)
            if not _system(_host_real(os.path.dirname(here))) and not os.path.lexists(inside):
                os.makedirs(os.path.dirname(inside), mode=0o755, exist_ok=True)
                os.symlink(os.readlink(here), inside)
            walked = _host_real(here)
        else:
            walked = here
    real = _host_real(path)
    if _system(real) or any(real == b or real.startswith(b.rstrip("/") + "/") for b in bound):
        return
    target = os.path.join(root, real.lstrip("/"))
    _make(target, os.path.isdir(real))
    _bind(real, target, read_only=True)
    bound.append(real)


def _missing_in_system(mounts: Sequence[tuple[str, str, bool]], workdir: str) -> dict[str, list[tuple[str, bool]]]:
    """Mount targets (and the working directory) that would have to be made inside a read-only
    host directory: ``{top dir: [(path relative to it, is_dir)]}``."""
    wanted = [(target, os.path.isdir(source)) for source, target, _ in mounts]
    if workdir:
        wanted.append((workdir, True))
    missing: dict[str, list[tuple[str, bool]]] = {}
    for target, is_dir in wanted:
        real = resolve_in("/", target)
        if not _system(real) or os.path.lexists(real):
            continue
        top, _, rest = real.lstrip("/").partition("/")
        missing.setdefault(top, []).append((rest, is_dir))
    return missing


def enter_root(container_dir: str, mounts: Sequence[tuple[str, str, bool]], workdir: str,
               conf: Confinement, image_paths: Sequence[str] = (), writable_paths: Sequence[str] = ()) -> None:
    """Build the container's root (see the module docstring) and ``pivot_root`` into it.

    Runs in the container's process, in its own mount namespace with every mount private.
    """
    root = os.path.join(container_dir, "rootfs")
    os.makedirs(root, exist_ok=True)
    nosuid_nodev = syscalls.MS_NOSUID | syscalls.MS_NODEV
    syscalls.mount("tmpfs", root, "tmpfs", nosuid_nodev, "mode=755")
    missing = _missing_in_system(mounts, workdir)
    scratch = os.path.join(container_dir, "scratch")
    if missing:
        os.makedirs(scratch, exist_ok=True)
        syscalls.mount("tmpfs", scratch, "tmpfs", nosuid_nodev, "mode=755")
    for name in SYSTEM_DIRS:
        host = "/" + name
        inside = os.path.join(root, name)
        if os.path.islink(host):
            os.symlink(os.readlink(host), inside)
        elif os.path.isdir(host):
            os.mkdir(inside, 0o755)
            if name in missing:
                upper = os.path.join(scratch, name)
                for rest, is_dir in missing[name]:
                    _make(os.path.join(upper, rest), is_dir)
                # Read-only by construction (lower layers only): the made targets over the host's directory.
                syscalls.mount("overlay", inside, "overlay", syscalls.MS_NODEV, f"lowerdir={upper}:{host}")
            else:
                _bind(host, inside, read_only=True)
    for path in etc_secrets():
        inside = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(path):
            syscalls.mount("tmpfs", inside, "tmpfs", syscalls.MS_RDONLY | nosuid_nodev, "mode=755,size=4k")
        elif os.path.lexists(inside):
            syscalls.mount("/dev/null", inside, None, syscalls.MS_BIND)
    for rel in EMPTY_DIRS:
        os.makedirs(os.path.join(root, rel), mode=0o1777 if rel in _STICKY else 0o755, exist_ok=True)
    for rel in _STICKY:
        os.chmod(os.path.join(root, rel), 0o1777)
    os.symlink("/run", os.path.join(root, "var", "run"))
    os.symlink("/run/lock", os.path.join(root, "var", "lock"))
    bound: list[str] = []
    for path in [*install_paths(), *image_paths]:
        _expose(root, path, bound)
    _this_kubelite(root)
    for path in writable_paths:
        os.makedirs(resolve_in(root, path), mode=0o755, exist_ok=True)
    if not os.path.lexists(os.path.join(root, "root")):
        os.mkdir(os.path.join(root, "root"), 0o700)  # HOME of root, empty as in an image

    _proc(root)
    _dev(root)
    try:
        syscalls.mount("sysfs", os.path.join(root, "sys"), "sysfs",
                       syscalls.MS_RDONLY | nosuid_nodev | syscalls.MS_NOEXEC)
    except OSError:  # no sysfs of the pod's network namespace to be had: the host's, read-only
        _bind("/sys", os.path.join(root, "sys"), read_only=True)
    _mask(root, [p for p in ocispec.MASKED_PATHS if p.startswith("/sys/")])

    real_root = os.path.realpath(root)
    for source, target, read_only in mounts:
        try:
            if not os.path.exists(source):
                raise FileNotFoundError(2, f"stat {source}: no such file or directory")
            inside = resolve_in(root, target)
            _make(inside, os.path.isdir(source))
            # A writable volume is nodev: a device node made there (CAP_MKNOD) opens nothing.
            _bind_inside(real_root, source, inside, read_only,
                         nodev=not source.startswith("/dev/") and source != "/dev")
        except OSError as e:
            raise _mount_error(source, target, e) from None
    if workdir:
        workdir_inside = resolve_in(root, workdir)
        if not os.path.lexists(workdir_inside):
            os.makedirs(workdir_inside, mode=0o755, exist_ok=True)  # runc creates a missing working directory
    if conf.read_only_root:
        syscalls.mount(None, root, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | nosuid_nodev)
    os.chdir(root)
    syscalls.pivot_root(".", ".")
    syscalls.umount(".", syscalls.MNT_DETACH)  # the host's root, stacked on ours by pivot_root(".", ".")
    os.chdir("/")


_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def open_pty(pts: str) -> tuple[int, int]:
    """A new terminal of the devpts mounted at ``pts`` (``/dev/pts`` inside the container, or
    ``/proc/<pid>/root/dev/pts`` from the agent): ``(master, slave)``, both close-on-exec."""
    import fcntl

    master = os.open(os.path.join(pts, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        number = struct.unpack("i", fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"))[0]
        slave = os.open(os.path.join(pts, str(number)), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def container_pts(pid: int) -> str | None:
    """The devpts of the running container ``pid`` as the agent reaches it, if it has one of
    its own (an unprivileged catalog container), else None (the host's terminals serve)."""
    pts = f"/proc/{pid}/root/dev/pts"
    try:
        if os.stat(pts).st_dev == os.stat("/dev/pts").st_dev or not os.path.exists(os.path.join(pts, "ptmx")):
            return None
    except OSError:
        return None
    return pts


def _mask(root: str, paths: Iterable[str]) -> None:
    for path in paths:
        inside = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(inside):
            syscalls.mount("tmpfs", inside, "tmpfs", syscalls.MS_RDONLY, "size=0")
        elif os.path.lexists(inside):
            syscalls.mount("/dev/null", inside, None, syscalls.MS_BIND)


def _proc(root: str) -> None:
    proc = os.path.join(root, "proc")
    syscalls.mount("proc", proc, "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    _mask(root, [p for p in ocispec.MASKED_PATHS if p.startswith("/proc/")])
    for path in ocispec.READONLY_PATHS:
        inside = os.path.join(root, path.lstrip("/"))
        if os.path.lexists(inside):
            _bind(inside, inside, read_only=True)


def _dev(root: str) -> None:
    dev = os.path.join(root, "dev")
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    syscalls.mount("tmpfs", dev, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=755,size=65536k")
    for name in _DEVICES:
        target = os.path.join(dev, name)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        syscalls.mount("/dev/" + name, target, None, syscalls.MS_BIND)
    for name, link in _DEV_LINKS.items():
        os.symlink(link, os.path.join(dev, name))
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, name), 0o755)
    # A devpts of its own: the host's terminals (other pods', an admin's session) are not
    # there. The container's terminal and an exec's are made in it (see open_pty).
    syscalls.mount("devpts", os.path.join(dev, "pts"), "devpts", syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5")
    syscalls.mount("shm", os.path.join(dev, "shm"), "tmpfs", flags, "mode=1777,size=65536k")
    try:
        syscalls.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", flags)
    except OSError:
        pass  # a kernel without POSIX message queues
