"""The OCI runtime spec of a container of a real image, without runc: kubelite.node.ocispec."""

from __future__ import annotations

import pathlib

import pytest

from kubelite.node import ocispec
from kubelite.node.ocispec import Resources, User

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
app:x:1000:1000:app:/home/app:/bin/sh
web:x:33:33:www:/var/www:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
extra:x:2000:app,web
web:x:33:
audio:x:29:web
"""


@pytest.fixture
def rootfs(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


@pytest.mark.parametrize(("image_user", "expected"), [
    ("", User(0, 0, (0,), "/root")),
    ("app", User(1000, 1000, (1000, 2000), "/home/app")),
    ("1000", User(1000, 1000, (1000, 2000), "/home/app")),
    ("1000:29", User(1000, 29, (29, 2000), "/home/app")),
    ("web:audio", User(33, 29, (29, 2000), "/var/www")),
    ("4242", User(4242, 0, (0,), "/")),  # a uid without an entry: group 0, HOME /
    ("4242:4343", User(4242, 4343, (4343,), "/")),
])
def test_the_image_user_resolves_against_its_own_passwd_and_group(
    rootfs: pathlib.Path, image_user: str, expected: User
) -> None:
    assert ocispec.resolve_user(rootfs, image_user, None, None) == expected


def test_run_as_user_and_group_win_and_supplemental_groups_follow(rootfs: pathlib.Path) -> None:
    assert ocispec.resolve_user(rootfs, "web", 1000, None, [3000, 2000]) == User(1000, 1000, (1000, 2000, 3000), "/home/app")
    assert ocispec.resolve_user(rootfs, "web", None, 5000) == User(33, 5000, (5000, 2000, 29), "/var/www")
    assert ocispec.resolve_user(rootfs, "", 7, 8, [9]) == User(7, 8, (8, 9), "/")


def test_unknown_names_are_containerds_errors(rootfs: pathlib.Path) -> None:
    with pytest.raises(ocispec.UserError, match=r"^unable to find user nobody: no matching entries in passwd file$"):
        ocispec.resolve_user(rootfs, "nobody", None, None)
    with pytest.raises(ocispec.UserError, match=r"^unable to find group staff: no matching entries in group file$"):
        ocispec.resolve_user(rootfs, "app:staff", None, None)


def test_a_symlinked_passwd_is_not_followed_out_of_the_image(tmp_path: pathlib.Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/passwd")
    assert ocispec.resolve_user(tmp_path, "", None, None) == User(0, 0, (0,), "/")


@pytest.mark.parametrize(("sc", "user", "message"), [
    ({}, "", ""),
    ({"runAsNonRoot": False}, "", ""),
    ({"runAsNonRoot": True}, "", 'container has runAsNonRoot and image will run as root (pod: "p_ns(u)", container: c)'),
    ({"runAsNonRoot": True}, "0:1000", 'container has runAsNonRoot and image will run as root (pod: "p_ns(u)", container: c)'),
    ({"runAsNonRoot": True}, "app", "container has runAsNonRoot and image has non-numeric user (app), cannot verify "
                                    'user is non-root (pod: "p_ns(u)", container: c)'),
    ({"runAsNonRoot": True}, "1000", ""),
    ({"runAsNonRoot": True, "runAsUser": 1000}, "", ""),
    ({"runAsNonRoot": True, "runAsUser": 0}, "app",
     'container\'s runAsUser breaks non-root policy (pod: "p_ns(u)", container: c)'),
])
def test_run_as_non_root_as_the_kubelet_verifies_it(sc: dict[str, object], user: str, message: str) -> None:
    assert ocispec.verify_run_as_non_root(sc, user, "p_ns(u)", "c") == message


def test_capabilities_start_from_containerds_defaults() -> None:
    assert ocispec.capabilities({}) == list(ocispec.DEFAULT_CAPABILITIES)
    assert len(ocispec.DEFAULT_CAPABILITIES) == 14
    caps = ocispec.capabilities({"capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["chown", "KILL"]}})
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_TIME" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps and len(caps) == 14
    assert ocispec.capabilities({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}) == [
        "CAP_NET_BIND_SERVICE"]
    everything = ocispec.capabilities({"capabilities": {"add": ["ALL"], "drop": ["SYS_ADMIN"]}})
    assert set(everything) == set(ocispec.ALL_CAPABILITIES) - {"CAP_SYS_ADMIN"}
    assert ocispec.capabilities({"privileged": True}) == list(ocispec.ALL_CAPABILITIES)


def _build(**kw: object) -> dict[str, object]:
    args: dict[str, object] = dict(
        container_id="abc", argv=["sh"], env={"A": "1"}, workdir="", hostname="web-0", netns_path="/run/netns/p",
        mounts=[("/pod/etc/hosts", "/etc/hosts", False), ("/pod/vol", "/data", True)],
        user=User(1000, 1000, (1000, 5), "/home/app"), tty=False, pod_sc={}, c_sc={}, limits={}, requests={},
        can=Resources(),
    )
    args.update(kw)
    return ocispec.build(**args)  # type: ignore[arg-type]


def test_the_spec_joins_the_pods_netns_and_masks_proc() -> None:
    spec = _build()
    linux = spec["linux"]
    process = spec["process"]
    assert isinstance(linux, dict) and isinstance(process, dict)
    assert {"type": "network", "path": "/run/netns/p"} in linux["namespaces"]
    assert {n["type"] for n in linux["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert linux["maskedPaths"] == list(ocispec.MASKED_PATHS) and "/proc/kcore" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    assert linux["seccomp"] == ocispec.seccomp_profile(ocispec.DEFAULT_CAPABILITIES)  # RuntimeDefault unless asked
    assert linux["cgroupsPath"] == "/kubelite/abc"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 5]}
    assert process["env"] == ["A=1", f"PATH={ocispec.DEFAULT_PATH}", "HOME=/home/app"]
    assert process["cwd"] == "/" and process["noNewPrivileges"] is True  # unless allowPrivilegeEscalation: true
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    assert [m["destination"] for m in mounts] == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm", "/sys",
                                                  "/etc/hosts", "/data"]
    assert mounts[-1] == {"destination": "/data", "type": "bind", "source": "/pod/vol", "options": ["rbind", "rprivate", "ro"]}
    assert "ro" in mounts[5]["options"]


def test_security_context_fields_map_to_the_spec() -> None:
    spec = _build(pod_sc={"seccompProfile": {"type": "RuntimeDefault"}},
                  c_sc={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                        "capabilities": {"add": ["SYS_PTRACE"]}})
    linux, process = spec["linux"], spec["process"]
    assert isinstance(linux, dict) and isinstance(process, dict)
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert process["noNewPrivileges"] is True
    denied = linux["seccomp"]["syscalls"][0]["names"]
    assert "kexec_load" in denied and "mount" in denied and "ptrace" not in denied  # SYS_PTRACE allows ptrace
    assert linux["seccomp"]["syscalls"][0]["errnoRet"] == 1
    privileged = _build(c_sc={"privileged": True, "seccompProfile": {"type": "RuntimeDefault"}})
    linux = privileged["linux"]
    assert isinstance(linux, dict)
    assert "maskedPaths" not in linux and "seccomp" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    mounts = privileged["mounts"]
    assert isinstance(mounts, list)
    assert mounts[1] == {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rprivate", "rw"]}
    assert "rw" in mounts[5]["options"]  # /sys too


def test_limits_become_cgroup_resources_where_the_host_enforces_them() -> None:
    spec = _build(limits={"memory": "64Mi", "cpu": "250m"}, requests={"cpu": "100m"})
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert linux["resources"]["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert linux["resources"]["cpu"] == {"quota": 25000, "period": 100000, "shares": 102}
    spec = _build(limits={"memory": "64Mi"}, can=Resources(swap=False))  # no swap accounting: memory alone
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert linux["resources"]["memory"] == {"limit": 64 << 20}
    spec = _build(limits={"memory": "64Mi", "cpu": "1"}, can=Resources(memory=False, cpu=False))
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert "memory" not in linux["resources"] and "cpu" not in linux["resources"]


def test_a_catalog_entry_with_a_rootfs_is_an_oci_image(tmp_path: pathlib.Path) -> None:
    from kubelite import images
    from kubelite.images.oci import OCIImage

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"localhost/t/app:1:\n  rootfs: {tmp_path}\n  cmd: [sh]\n  user: app\n"
                       "busybox:\n  command: [echo]\n")
    image = images.resolve_oci("localhost/t/app:1", catalog)
    assert isinstance(image, OCIImage)
    assert (image.name, image.rootfs, image.cmd, image.user) == ("localhost/t/app:1", tmp_path, ["sh"], "app")
    assert image.image_id.startswith("localhost/t/app@sha256:")
    assert images.resolve_oci("busybox", catalog) is None and images.resolve_oci("x", None) is None


def test_the_pods_ipc_and_uts_namespaces_are_joined_by_path_when_kept() -> None:
    spec = _build(pod_namespaces={"ipc": "/state/podns/u/ipc", "uts": "/state/podns/u/uts"})
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert linux["namespaces"] == [{"type": "pid"}, {"type": "ipc", "path": "/state/podns/u/ipc"},
                                   {"type": "uts", "path": "/state/podns/u/uts"}, {"type": "mount"},
                                   {"type": "network", "path": "/run/netns/p"}]
    assert spec["hostname"] == "web-0"


def test_a_localhost_seccomp_profile_is_refused_not_ignored() -> None:
    with pytest.raises(ocispec.SpecError, match="seccomp profile type Localhost is not supported"):
        _build(c_sc={"seccompProfile": {"type": "Localhost", "localhostProfile": "my.json"}})
    with pytest.raises(ocispec.SpecError, match="seccomp profile type Localhost is not supported"):
        _build(pod_sc={"seccompProfile": {"type": "Localhost", "localhostProfile": "my.json"}})
    # The container's own Unconfined wins over the pod's Localhost; privileged has no filter to load.
    assert "seccomp" not in _build(pod_sc={"seccompProfile": {"type": "Localhost"}},  # type: ignore[operator]
                                   c_sc={"seccompProfile": {"type": "Unconfined"}})["linux"]
    assert "seccomp" not in _build(c_sc={"privileged": True,  # type: ignore[operator]
                                         "seccompProfile": {"type": "Localhost"}})["linux"]
    assert "seccomp" not in _build(pod_sc={"seccompProfile": {"type": "Unconfined"}})["linux"]  # type: ignore[operator]


def test_escalation_and_seccomp_defaults_are_confined_unless_the_pod_asks() -> None:
    def security(pod_sc: dict[str, object], c_sc: dict[str, object]) -> tuple[bool, bool]:
        spec = _build(pod_sc=pod_sc, c_sc=c_sc)
        process, linux = spec["process"], spec["linux"]
        assert isinstance(process, dict) and isinstance(linux, dict)
        return process["noNewPrivileges"], "seccomp" in linux

    assert security({}, {}) == (True, True)
    assert security({}, {"allowPrivilegeEscalation": False}) == (True, True)
    assert security({}, {"allowPrivilegeEscalation": True}) == (False, True)
    assert security({"seccompProfile": {"type": "Unconfined"}}, {}) == (True, False)
    assert security({"seccompProfile": {"type": "Unconfined"}}, {"seccompProfile": {"type": "RuntimeDefault"}}) \
        == (True, True)
    assert security({}, {"privileged": True, "allowPrivilegeEscalation": True}) == (False, False)


@pytest.mark.parametrize(("pod_sc", "c_sc"), [
    ({}, {}),
    ({}, {"allowPrivilegeEscalation": True}),
    ({}, {"allowPrivilegeEscalation": False, "capabilities": {"add": ["SYS_ADMIN"]}}),
    ({"seccompProfile": {"type": "Unconfined"}}, {}),
    ({"seccompProfile": {"type": "RuntimeDefault"}}, {"seccompProfile": {"type": "Unconfined"}}),
    ({"seccompProfile": {"type": "Unconfined"}}, {"seccompProfile": {"type": "RuntimeDefault"}}),
    ({}, {"privileged": True}),
    ({"seccompProfile": {"type": "Localhost"}}, {"privileged": True}),
])
def test_image_and_catalog_containers_get_the_same_confinement(pod_sc: dict[str, object],
                                                                 c_sc: dict[str, object]) -> None:
    from kubelite.node import isolation

    spec = _build(pod_sc=pod_sc, c_sc=c_sc)
    process, linux = spec["process"], spec["linux"]
    assert isinstance(process, dict) and isinstance(linux, dict)
    conf = isolation.confinement(pod_sc, c_sc, ocispec.ALL_CAPABILITIES)
    assert (conf.no_new_privs, conf.seccomp) == (process["noNewPrivileges"], "seccomp" in linux)


def test_a_localhost_profile_is_refused_on_the_catalog_path_too() -> None:
    from kubelite.node import isolation

    with pytest.raises(ocispec.SpecError, match="seccomp profile type Localhost is not supported"):
        isolation.confinement({}, {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
                              ocispec.ALL_CAPABILITIES)


def test_all_means_the_capabilities_this_process_can_hand_on() -> None:
    status = "Name:\tx\nCapBnd:\t000001fffeffffff\n"  # everything but CAP_SYS_RESOURCE (bit 24)
    current = ocispec.current_capabilities(status)
    assert "CAP_SYS_RESOURCE" not in current and len(current) == len(ocispec.ALL_CAPABILITIES) - 1
    assert ocispec.capabilities({"privileged": True}, current) == list(current)
    assert ocispec.capabilities({"capabilities": {"add": ["ALL"]}}, current) == list(current)
    assert ocispec.current_capabilities("no caps line") == ocispec.ALL_CAPABILITIES
