"""The image store's and image manager's pure logic: references, pull policies, pull
secrets to authfiles, the image GC's choice (fake clock), the texts the kubelet prints."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import stat
from typing import Any

import pytest

from kubelite.images import gc as image_gc
from kubelite.images import normalise, split_reference
from kubelite.images.pull import authfile_content, credentials_for, is_loopback, plain_http, write_authfile
from kubelite.images.store import tool_reason
from kubelite.node.images import go_duration, pull_policy, reference_error


@pytest.mark.parametrize(("ref", "expected"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("acme/api:1.4", "docker.io/acme/api:1.4"),
    ("ghcr.io/acme/api:1.4", "ghcr.io/acme/api:1.4"),
    ("localhost/api", "localhost/api:latest"),
    ("localhost:5000/api:2", "localhost:5000/api:2"),
    ("127.0.0.1:5000/a/b/c:3", "127.0.0.1:5000/a/b/c:3"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
    ("quay.io/x/y:tag@sha256:" + "b" * 64, "quay.io/x/y@sha256:" + "b" * 64),
    ("localhost:5000/y:tag@sha256:" + "b" * 64, "localhost:5000/y@sha256:" + "b" * 64),
])
def test_reference_normalisation_as_containerd(ref: str, expected: str) -> None:
    # containerd's reference.ParseDockerRef: docker.io/library/ for short names, :latest when
    # neither tag nor digest; a digest wins over a tag for what is pulled.
    assert normalise(ref) == expected


def test_split_reference_keeps_registry_ports() -> None:
    assert split_reference("localhost:5000/x") == ("localhost:5000/x", "latest")
    assert split_reference("127.0.0.1:5000/x:1") == ("127.0.0.1:5000/x", "1")


@pytest.mark.parametrize(("container", "policy"), [
    ({"image": "busybox"}, "Always"),
    ({"image": "busybox:latest"}, "Always"),
    ({"image": "busybox:1.36"}, "IfNotPresent"),
    ({"image": "localhost:5000/x"}, "Always"),
    ({"image": "localhost:5000/x:2"}, "IfNotPresent"),
    ({"image": "busybox@sha256:" + "a" * 64}, "IfNotPresent"),
    ({"image": "busybox", "imagePullPolicy": "Never"}, "Never"),
    ({"image": "busybox:1", "imagePullPolicy": "Always"}, "Always"),
])
def test_pull_policy_defaults(container: dict[str, Any], policy: str) -> None:
    assert pull_policy(container) == policy


def _secret(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    key = ".dockerconfigjson" if kind == "kubernetes.io/dockerconfigjson" else ".dockercfg"
    return {"type": kind, "data": {key: base64.b64encode(json.dumps(doc).encode()).decode()}}


def test_dockerconfigjson_and_dockercfg_credentials() -> None:
    auth = base64.b64encode(b"bob:s3cret").decode()
    json_secret = _secret("kubernetes.io/dockerconfigjson", {"auths": {"127.0.0.1:5000": {"auth": auth}}})
    assert credentials_for("127.0.0.1:5000/x/y:1", [json_secret]) == [("bob", "s3cret")]
    assert credentials_for("127.0.0.1:5001/x/y:1", [json_secret]) == []  # another port, another registry
    cfg_secret = _secret("kubernetes.io/dockercfg", {"https://index.docker.io/v1/": {"username": "u", "password": "p"}})
    assert credentials_for("busybox", [cfg_secret]) == [("u", "p")]
    assert credentials_for("ghcr.io/x/y", [cfg_secret]) == []
    # Globs per host part, and the longest path prefix first (the credential keyring's order).
    wild = _secret("kubernetes.io/dockerconfigjson", {"auths": {
        "*.example.com": {"username": "any", "password": "1"},
        "reg.example.com/team": {"username": "team", "password": "2"},
    }})
    assert credentials_for("reg.example.com/team/app:1", [wild]) == [("team", "2"), ("any", "1")]
    assert credentials_for("reg.example.com/other/app:1", [wild]) == [("any", "1")]
    assert credentials_for("a.b.example.com/x", [wild]) == []
    assert credentials_for("x", [{"type": "Opaque", "data": {}}]) == []


def test_authfile_is_private_and_names_the_registry(tmp_path: pathlib.Path) -> None:
    content = authfile_content("127.0.0.1:5000/x:1", ("bob", "s3cret"))
    assert content == {"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"bob:s3cret").decode()}}}
    assert authfile_content("busybox", ("u", "p"))["auths"].keys() == {"docker.io"}
    path = write_authfile(tmp_path, content)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == content


def test_plain_http_only_for_loopback_and_named_registries() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com:5000") and not is_loopback("10.0.0.1:5000")
    assert plain_http("localhost:5000") and not plain_http("ghcr.io")
    assert plain_http("10.0.0.1:5000", ["10.0.0.1:5000"])


def _c(digest: str, size: int, first: float, last: float) -> image_gc.Candidate:
    return image_gc.Candidate(digest, size, first, last)


def test_gc_frees_least_recently_used_down_to_the_low_threshold() -> None:
    now = 10_000.0
    images = [_c("old", 30, 0, 100), _c("newer", 30, 0, 5_000), _c("used", 30, 0, 0), _c("young", 30, now - 10, now - 10)]
    # 90% used of 1000: above 85, free 100 to get to 80: "old" then "newer" (30 + 30 < 100: all eligible ones).
    chosen = image_gc.choose(images, {"used"}, capacity=1000, available=100, now=now)
    assert chosen == ["old", "newer"]  # never the image in use, never one younger than the minimum age
    # Under the high threshold: nothing.
    assert image_gc.choose(images, set(), capacity=1000, available=200, now=now) == []
    # Freeing stops once enough is freed.
    big = [_c("a", 200, 0, 1), _c("b", 200, 0, 2)]
    assert image_gc.choose(big, set(), capacity=1000, available=100, now=now) == ["a"]
    # The maximum age deletes unused images whatever the disk.
    policy = image_gc.GCPolicy(max_age=6_000)
    assert image_gc.choose(images, {"used"}, capacity=1000, available=900, now=now, policy=policy) == ["old"]


def test_go_durations_as_the_kubelet_prints_them() -> None:
    assert go_duration(1.2345) == "1.234s"
    assert go_duration(0.5234) == "523ms"
    assert go_duration(0.0004) == "0s"
    assert go_duration(2.0) == "2s"
    assert go_duration(62.5) == "1m2.5s"


def test_tool_reason_is_the_registry_reason() -> None:
    out = ('time="2026-12-07T05:00:00Z" level=fatal msg="initializing source docker://127.0.0.1:5000/x:nope: '
           'reading manifest nope in 127.0.0.1:5000/x: manifest unknown: manifest unknown"\n')
    assert tool_reason(out).endswith("manifest unknown: manifest unknown")
    assert not tool_reason(out).startswith("time=")


def test_up_says_what_it_found_and_what_to_install() -> None:
    from kubelite.images.tools import Tools

    found = Tools("runc", "/usr/sbin/runc", "/usr/bin/skopeo", "/usr/bin/umoci")
    assert found.describe("auto") == "images: --images=auto, runtime runc (/usr/sbin/runc), puller skopeo + umoci"
    missing = Tools("", "", "", "/usr/bin/umoci")
    assert missing.describe("auto").endswith("missing runc, skopeo (catalog images only): apt-get install runc skopeo")
    assert "real images fail to start" in missing.describe("oci")
    assert missing.describe("catalog") == "images: catalog only (--images=catalog): no pulls"


@pytest.mark.parametrize(("image", "error"), [
    ("busybox", ""), ("busybox:1.36", ""), ("localhost:5000/a/b_c/d-e:v1.2_3", ""),
    ("ghcr.io/acme/api@sha256:" + "a" * 64, ""), ("[::1]:5000/x:1", ""), ("quay.io/x/y:t@sha256:" + "b" * 64, ""),
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("ghcr.io/Acme/api:1", "invalid reference format: repository name (Acme/api) must be lowercase"),
    ("busybox:", "invalid reference format"), ("bad image", "invalid reference format"),
    ("x:tag:more", "invalid reference format"), ("x@sha256:short", "invalid reference format"),
    ("-x", "invalid reference format"), ("", "invalid reference format"),
])
def test_reference_errors_as_distribution_reports_them(image: str, error: str) -> None:
    assert reference_error(image) == error


def test_sizes_as_crictl_prints_them() -> None:
    from kubelite.cli.image import human_size

    assert [human_size(n) for n in (999, 1084463, 31_234_567, 4190, 2_500_000_000)] == \
        ["999B", "1.08MB", "31.2MB", "4.19kB", "2.5GB"]
