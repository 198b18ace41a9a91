"""The rules of catalog containers' confinement (kubelite.node.isolation) without mounts:
which capabilities, no_new_privs and seccomp a securityContext gives, the BPF program's
shape and its effect in a child process, symlink resolution inside a root, and which mount
targets need a layer over a read-only host directory."""

from __future__ import annotations

import errno
import os
import pathlib
import struct

import pytest

from kubelite.linux import syscalls
from kubelite.node import isolation, ocispec

ALL = ocispec.ALL_CAPABILITIES


def test_defaults_are_containerds_set_no_new_privs_and_runtime_default() -> None:
    conf = isolation.confinement({}, {}, ALL)
    assert conf == isolation.Confinement(False, ocispec.DEFAULT_CAPABILITIES, True, True, False)
    assert f"{conf.capability_mask:016x}" == "00000000a80425fb"


def test_capabilities_add_drop_escalation_seccomp_and_read_only_root() -> None:
    conf = isolation.confinement(
        {"seccompProfile": {"type": "Unconfined"}},
        {"capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN"]}, "allowPrivilegeEscalation": True,
         "readOnlyRootFilesystem": True}, ALL)
    assert "CAP_NET_ADMIN" in conf.capabilities and "CAP_CHOWN" not in conf.capabilities
    assert (conf.no_new_privs, conf.seccomp, conf.read_only_root, conf.privileged) == (False, False, True, False)
    # The container's profile wins over the pod's.
    assert isolation.confinement({"seccompProfile": {"type": "Unconfined"}},
                                 {"seccompProfile": {"type": "RuntimeDefault"}}, ALL).seccomp
    assert isolation.confinement({}, {"capabilities": {"drop": ["ALL"]}}, ALL).capability_mask == 0
    # allowPrivilegeEscalation: false is the default here: no_new_privs.
    assert isolation.confinement({}, {"allowPrivilegeEscalation": False}, ALL).no_new_privs


def test_privileged_keeps_every_capability_without_filters() -> None:
    conf = isolation.confinement({"seccompProfile": {"type": "RuntimeDefault"}}, {"privileged": True}, ALL[:30])
    assert conf.capabilities == ALL[:30]
    assert (conf.privileged, conf.no_new_privs, conf.seccomp) == (True, False, False)


def _decode(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]


def test_seccomp_program_denies_each_listed_syscall_and_foreign_abis() -> None:
    program = isolation.seccomp_program(ocispec.DEFAULT_CAPABILITIES, "x86_64")
    assert program is not None
    insns = _decode(program)
    deny = len(insns) - 1
    assert insns[deny] == (0x06, 0, 0, 0x00050001) and insns[deny - 1] == (0x06, 0, 0, 0x7FFF0000)
    assert insns[1] == (0x15, 1, 0, 0xC000003E)  # other architectures fall through to EPERM
    assert insns[4][0] == 0x35 and 4 + 1 + insns[4][1] == deny  # x32 numbers: denied
    denied = set()
    for i, (code, jt, jf, k) in enumerate(insns[5:deny - 1], start=5):
        assert (code, jf, i + 1 + jt) == (0x15, 0, deny)
        denied.add(k)
    numbers = isolation._SYSCALLS["x86_64"]
    assert {numbers["mount"], numbers["unshare"], numbers["setns"], numbers["ptrace"]} <= denied
    assert numbers["chroot"] not in denied  # CAP_SYS_CHROOT is in the default set
    profile_denied = set(ocispec.seccomp_profile(ocispec.DEFAULT_CAPABILITIES)["syscalls"][0]["names"])
    assert denied == {numbers[n] for n in profile_denied if n in numbers}
    # Granting CAP_SYS_ADMIN allows mount and unshare again.
    with_admin = _decode(isolation.seccomp_program([*ocispec.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], "x86_64") or b"")
    assert numbers["mount"] not in {k for code, _, _, k in with_admin if code == 0x15}
    assert isolation.seccomp_program([], "riscv64") is None


@pytest.mark.skipif(os.uname().machine not in isolation._SYSCALLS, reason="syscall numbers unknown here")
def test_seccomp_program_in_a_child_refuses_unshare_and_allows_the_rest() -> None:
    program = isolation.seccomp_program(ocispec.DEFAULT_CAPABILITIES)
    assert program is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(r)
            syscalls.set_no_new_privs()
            syscalls.install_seccomp_filter(program)
            try:
                syscalls.unshare(0)
                result = b"allowed"
            except OSError as e:
                result = b"EPERM" if e.errno == errno.EPERM else b"other"
            os.write(w, result + b" %d" % (os.getpid() > 0))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = os.read(r, 64)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == b"EPERM 1"


def test_resolve_in_follows_links_inside_the_root(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")
    (root / "escape").symlink_to("../../../../etc")
    assert isolation.resolve_in(str(root), "/bin/sh") == str(root / "usr" / "bin" / "sh")
    assert isolation.resolve_in(str(root), "/var/run/x") == str(root / "run" / "x")
    assert isolation.resolve_in(str(root), "/escape/passwd") == str(root / "etc" / "passwd")
    assert isolation.resolve_in(str(root), "/../../a/./b") == str(root / "a" / "b")
    (root / "loop").symlink_to("loop")
    with pytest.raises(isolation.IsolationError, match="too many levels"):
        isolation.resolve_in(str(root), "/loop/x")


def test_targets_missing_under_read_only_host_directories(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "vol"
    source.mkdir()
    file_source = tmp_path / "f"
    file_source.write_text("")
    missing = isolation._missing_in_system(
        [(str(source), "/etc/kubelite-no-such-dir/conf.d", False), (str(file_source), "/etc/hosts", False),
         (str(file_source), "/usr/share/kubelite-no-such-file", True), (str(source), "/data", False)],
        "/opt/kubelite-no-such-workdir" if os.path.isdir("/opt") and not os.path.islink("/opt") else "")
    assert missing["etc"] == [("kubelite-no-such-dir/conf.d", True)]
    assert missing["usr"] == [("share/kubelite-no-such-file", False)]
    assert "data" not in missing  # made in the container's own root
    if os.path.isdir("/opt") and not os.path.islink("/opt"):
        assert missing["opt"] == [("kubelite-no-such-workdir", True)]


def test_etc_secrets_are_what_others_cannot_read() -> None:
    for path in isolation.etc_secrets():
        assert not os.lstat(path).st_mode & 0o004
        assert not any(path.startswith(other + "/") for other in isolation.etc_secrets())
    if os.path.exists("/etc/shadow") and not os.stat("/etc/shadow").st_mode & 0o004:
        assert "/etc/shadow" in isolation.etc_secrets()


@pytest.mark.parametrize(("machine", "header", "pattern"), [
    ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", r"#define __NR_(\w+) (\d+)"),
    ("aarch64", "/usr/include/asm-generic/unistd.h", r"#define __NR(?:3264)?_(\w+)\s+(\d+)"),
])
def test_syscall_numbers_match_the_kernel_headers(machine: str, header: str, pattern: str) -> None:
    import re

    if not os.path.exists(header):
        pytest.skip(f"no {header} (linux-libc-dev) to check against")
    numbers = {name: int(nr) for name, nr in re.findall(pattern, pathlib.Path(header).read_text())}
    assert {n: v for n, v in isolation._SYSCALLS[machine].items() if numbers.get(n) != v} == {}


def test_a_mount_target_swapped_for_a_link_out_of_the_root_is_refused(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    (root / "vol").mkdir(parents=True)
    (root / "vol" / "target").mkdir()
    fd = isolation._open_inside(str(root), str(root / "vol" / "target"))
    os.close(fd)
    # A container sharing the volume replaces the checked directory by a link to the host's /etc.
    (root / "vol" / "target").rmdir()
    (root / "vol" / "target").symlink_to("/etc")
    (root / "vol" / "link").symlink_to("/etc")
    with pytest.raises(isolation.IsolationError, match="became a symbolic link"):
        isolation._open_inside(str(root), str(root / "vol" / "target"))
    with pytest.raises(isolation.IsolationError, match="leads out of the container's root"):
        isolation._open_inside(str(root), str(root / "vol" / "link" / "ssl"))
