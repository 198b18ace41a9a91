"""The image store with the real tools: pulls from a real registry (Debian's docker-registry on
127.0.0.1, without and with htpasswd auth), loads of real archives (docker save and OCI,
plain and gzipped, multi-platform), unpacked by umoci; and the kubelet's image manager on
top of it (events, pull policies, the resolution modes). No cluster: these are the node's
image half on its own; the pod-level behaviour is in tests/e2e/test_oci_images.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubelite import images
from kubelite.cli.image import ls_lines
from kubelite.images.oci import OCIImage
from kubelite.images.pull import Puller, PullError
from kubelite.images.store import ImageStore, StoreError, host_platform
from kubelite.node.images import ImageManager, ImagePullError
from tests import imagefixture as fx

USER, PASSWORD = "kubelite", "s3cret-pass"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fx.Registry]:
    with fx.registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fx.Registry]:
    with fx.registry(tmp_path_factory.mktemp("private"), user=USER, password=PASSWORD) as reg:
        yield reg


@pytest.fixture
def store(tmp_path: pathlib.Path) -> ImageStore:
    fx.require_tools("skopeo", "umoci")
    return ImageStore(tmp_path / "store")


def spec(**kw: Any) -> fx.ImageSpec:
    return fx.ImageSpec(**kw)


def test_pull_unpacks_once_and_reads_the_config(registry: fx.Registry, store: ImageStore, tmp_path: pathlib.Path) -> None:
    layout = fx.build_layout(tmp_path / "l", "v1", spec(
        files={"/app/hello.txt": "hello from the image"}, entrypoint=["/bin/sh", "-c"], cmd=["cat hello.txt"],
        workdir="/app", user="65534", env=["PATH=/bin", "GREETING=hi=there"]))
    ref = registry.push(layout, "v1", "demo/pull:v1")
    image = asyncio.run(Puller(store).pull(ref)).image
    assert (image.rootfs / "app" / "hello.txt").read_text() == "hello from the image"
    assert (image.rootfs / "bin" / "busybox").is_file()
    assert not (image.rootfs / "etc" / "os-release").exists()  # the image's files, not the host's
    assert (image.entrypoint, image.cmd, image.workdir, image.user) == (["/bin/sh", "-c"], ["cat hello.txt"], "/app", "65534")
    assert image.env == {"PATH": "/bin", "GREETING": "hi=there"}
    assert image.name == f"{ref}" and image.digest.startswith("sha256:") and image.size > 500_000
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, check=True).stdout
    assert image.image_id == f"{registry.host}/demo/pull@sha256:{hashlib.sha256(raw).hexdigest()}"
    # Resolving it again is a lookup: no unpack (the root is the same directory, untouched).
    stamp = image.rootfs.stat().st_mtime_ns
    again = store.lookup(ref)
    assert again == image and image.rootfs.stat().st_mtime_ns == stamp
    assert list(store.tmp.iterdir()) == []  # no temporary layout or authfile left


def test_concurrent_pulls_of_one_image_run_once(registry: fx.Registry, store: ImageStore, tmp_path: pathlib.Path) -> None:
    ref = registry.push(fx.build_layout(tmp_path / "l", "v1", spec(files={"/x": "1"})), "v1", "demo/once:v1")

    class Counting(Puller):
        calls = 0

        def _pull_sync(self, ref: str, creds: tuple[str, str] | None) -> OCIImage:
            Counting.calls += 1
            return super()._pull_sync(ref, creds)

    async def pull_many() -> list[OCIImage]:
        puller = Counting(store)
        return [r.image for r in await asyncio.gather(*(puller.pull(ref) for _ in range(5)))]

    pulled = asyncio.run(pull_many())
    assert Counting.calls == 1 and len({i.digest for i in pulled}) == 1


def test_blobs_present_are_never_fetched_again(registry: fx.Registry, store: ImageStore, tmp_path: pathlib.Path) -> None:
    a = registry.push(fx.build_layout(tmp_path / "a", "v1", spec(files={"/a": "a"}, busybox=True)), "v1", "demo/a:v1")
    b = registry.push(fx.build_layout(tmp_path / "b", "v1", spec(files={"/a": "a"}, busybox=True, cmd=["true"])),
                      "v1", "demo/b:v1")
    first = asyncio.run(Puller(store).pull(a)).image
    manifest = store.read_json(first.digest)
    layer = store.blob(manifest["layers"][0]["digest"])
    inode, mtime = layer.stat().st_ino, layer.stat().st_mtime_ns
    blobs_before = set(store.blobs.iterdir())
    second = asyncio.run(Puller(store).pull(b)).image
    assert store.read_json(second.digest)["layers"][0]["digest"] == manifest["layers"][0]["digest"]
    assert (layer.stat().st_ino, layer.stat().st_mtime_ns) == (inode, mtime)  # the shared layer: not rewritten
    new = set(store.blobs.iterdir()) - blobs_before
    assert len(new) == 2  # only b's manifest and config


def test_missing_tag_and_auth_errors_carry_the_registry_reason(
        registry: fx.Registry, private_registry: fx.Registry, store: ImageStore, tmp_path: pathlib.Path) -> None:
    with pytest.raises(PullError, match="manifest unknown") as missing:
        asyncio.run(Puller(store).pull(f"{registry.host}/demo/nothing:nope"))
    assert not missing.value.unreachable
    ref = private_registry.push(fx.build_layout(tmp_path / "p", "v1", spec(files={"/secret": "s"})), "v1", "team/app:v1")
    with pytest.raises(PullError, match="unauthorized"):
        asyncio.run(Puller(store).pull(ref))
    secret = fx.dockerconfigjson_secret("regcred", private_registry.host, USER, PASSWORD)
    wrong = fx.dockerconfigjson_secret("wrong", private_registry.host, USER, "nope")
    with pytest.raises(PullError, match="unauthorized"):
        asyncio.run(Puller(store).pull(ref, [wrong]))
    image = asyncio.run(Puller(store).pull(ref, [secret])).image
    assert (image.rootfs / "secret").read_text() == "s"
    assert list(store.tmp.iterdir()) == []  # the authfile is gone
    with pytest.raises(PullError, match="connection refused") as down:
        asyncio.run(Puller(store).pull(f"127.0.0.1:{fx.free_port()}/x:1"))
    assert down.value.unreachable


def test_multi_arch_index_resolves_to_the_host_platform(registry: fx.Registry, store: ImageStore,
                                                        tmp_path: pathlib.Path) -> None:
    other = "s390x" if host_platform()[1] != "s390x" else "arm64"
    layout = fx.build_layout(tmp_path / "m", "v1", spec(files={"/arch": "host"}),
                             extra_platforms={other: spec(files={"/arch": other})})
    ref = registry.push(layout, "v1", "demo/multi:v1", all_platforms=True)
    assert (asyncio.run(Puller(store).pull(ref)).image.rootfs / "arch").read_text() == "host"
    # The same out of an OCI archive holding the index.
    loaded = store.load(fx.oci_archive(layout, tmp_path / "multi.tar"), ["demo/multi-loaded:v1"])
    assert (store.rootfs(loaded[0].digest) / "arch").read_text() == "host"


def test_oci_archive_listing_one_manifest_per_platform(store: ImageStore, tmp_path: pathlib.Path) -> None:
    # Some tools write a multi-platform archive as index.json listing each platform's manifest
    # (no nested index): the host's is the one loaded.
    other = "s390x" if host_platform()[1] != "s390x" else "arm64"
    layout = fx.build_layout(tmp_path / "m", "v1", spec(files={"/arch": "host"}),
                             extra_platforms={other: spec(files={"/arch": other})})
    index_path = layout / "index.json"
    outer = json.loads(index_path.read_text())
    nested = json.loads((layout / "blobs" / "sha256" / outer["manifests"][0]["digest"].split(":")[1]).read_text())
    outer["manifests"] = list(reversed(nested["manifests"]))  # the foreign platform first
    index_path.write_text(json.dumps(outer))
    loaded = store.load(fx.oci_archive(layout, tmp_path / "flat.tar"), ["flat:1"])
    assert (store.rootfs(loaded[0].digest) / "arch").read_text() == "host"


@pytest.mark.parametrize("kind", ["docker", "docker.gz", "oci", "oci.gz"])
def test_load_archives_and_move_tags(store: ImageStore, tmp_path: pathlib.Path, kind: str) -> None:
    v1 = fx.build_layout(tmp_path / "v1", "v1", spec(files={"/version": "1"}))
    v2 = fx.build_layout(tmp_path / "v2", "v2", spec(files={"/version": "2"}))

    def archive(layout: pathlib.Path, tag: str) -> pathlib.Path:
        out = tmp_path / f"{tag}.{kind}.tar"
        if kind.startswith("docker"):
            return fx.docker_archive(layout, tag, "demo:latest", out, gzipped=kind.endswith(".gz"))
        return fx.oci_archive(layout, out, gzipped=kind.endswith(".gz"))

    names = [] if kind.startswith("docker") else ["demo:latest"]  # an OCI layout's ref.name is a bare tag here
    first = store.load(archive(v1, "v1"), names)
    assert [r.name for r in first] == ["docker.io/library/demo:latest"]
    image = store.lookup("demo")
    assert image is not None and (image.rootfs / "version").read_text() == "1"
    store.load(archive(v2, "v2"), names)  # the tag moves to the new image
    moved = store.lookup("docker.io/library/demo:latest")
    assert moved is not None and moved.digest != image.digest and (moved.rootfs / "version").read_text() == "2"
    # The old image stays, by digest only (crictl's <none>), until removed or collected.
    assert sorted(store.records()) == ["docker.io/library/demo:latest", f"docker.io/library/demo@{image.digest}"]
    assert store.lookup(f"demo@{image.digest}") == dataclasses.replace(image, name=f"docker.io/library/demo@{image.digest}")
    assert any(line.split()[:2] == ["docker.io/library/demo", "<none>"] for line in ls_lines(store))
    assert store.lookup(f"demo@{moved.digest}") == moved
    with pytest.raises(StoreError, match="neither a docker save archive nor an OCI archive"):
        (tmp_path / "junk.tar").write_bytes(b"\0" * 1024)
        store.load(tmp_path / "junk.tar")


def test_remove_and_gc_never_free_an_image_in_use(store: ImageStore, tmp_path: pathlib.Path) -> None:
    a = store.load(fx.oci_archive(fx.build_layout(tmp_path / "a", "v1", spec(files={"/a": "a"})), tmp_path / "a.tar"),
                   ["a:1"])[0]
    b = store.load(fx.oci_archive(fx.build_layout(tmp_path / "b", "v1", spec(files={"/b": "b"})), tmp_path / "b.tar"),
                   ["b:1", "b:also"])[0]
    later = time.time() + 3600  # both older than the minimum GC age
    assert store.gc(set(), now=later, disk=(1000, 500)) == []  # 50% used: under the high threshold
    removed = store.gc({b.digest}, now=later, disk=(1000, 50))
    assert removed == ["docker.io/library/a:1"]
    assert not store.rootfs(a.digest).exists() and store.rootfs(b.digest).is_dir()
    assert store.remove("b:also") == ["docker.io/library/b:also"]
    assert store.rootfs(b.digest).is_dir()  # still tagged b:1
    assert store.remove(b.config_digest.removeprefix("sha256:")[:12]) == ["docker.io/library/b:1"]
    assert not store.rootfs(b.digest).exists() and store.records() == {}
    # What a pull that died midway left: removed once old, and never the shared blobs.
    store.load(tmp_path / "a.tar", ["a:again"])
    leftover = store.new_layout()
    blobs = set(store.blobs.iterdir())
    assert blobs
    store.clean_tmp()
    assert leftover.exists()  # young: maybe a pull in progress
    store.clean_tmp(max_age=-1)
    assert not leftover.exists() and set(store.blobs.iterdir()) == blobs


# ---------------------------------------------------------------- the kubelet's image manager


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, type_: str, reason: str, message: str) -> None:
        self.items.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.items]


def catalog(name: str) -> images.Image:
    return images.Image(images.normalise(name), [], ["sh"])


async def no_secrets() -> list[dict[str, Any]]:
    return []


def test_manager_pulls_with_the_kubelets_events(registry: fx.Registry, store: ImageStore, tmp_path: pathlib.Path) -> None:
    ref = registry.push(fx.build_layout(tmp_path / "l", "v1", spec(files={"/x": "1"})), "v1", "demo/events:v1")
    manager = ImageManager(catalog, store, mode="oci")
    events = Events()
    image = asyncio.run(manager.ensure(ref, "IfNotPresent", no_secrets, events))
    assert isinstance(image, OCIImage)
    assert events.items[0] == ("Normal", "Pulling", f'Pulling image "{ref}"')
    assert re.fullmatch(rf'Successfully pulled image "{re.escape(ref)}" in [0-9.]+m?s \([0-9.]+m?s including waiting\)\. '
                        rf"Image size: {image.size} bytes\.", events.items[1][2]), events.items[1]
    events = Events()
    assert asyncio.run(manager.ensure(ref, "IfNotPresent", no_secrets, events)) == image
    assert events.items == [("Normal", "Pulled", f'Container image "{ref}" already present on machine')]
    events = Events()
    with pytest.raises(ImagePullError) as never:
        asyncio.run(manager.ensure(f"{registry.host}/demo/absent:v1", "Never", no_secrets, events))
    assert never.value.reason == "ErrImageNeverPull"
    assert str(never.value) == f'Container image "{registry.host}/demo/absent:v1" is not present with pull policy of Never'
    assert events.reasons() == ["ErrImageNeverPull"]
    events = Events()
    with pytest.raises(ImagePullError, match="manifest unknown") as missing:
        asyncio.run(manager.ensure(f"{registry.host}/demo/events:nope", "IfNotPresent", no_secrets, events))
    assert missing.value.reason == "ErrImagePull"
    assert events.items[-1][:2] == ("Warning", "Failed")
    assert events.items[-1][2].startswith(f'Failed to pull image "{registry.host}/demo/events:nope": ')


def test_manager_always_on_a_loaded_latest_image_says_how_to_fix_it(store: ImageStore, tmp_path: pathlib.Path) -> None:
    port = fx.free_port()  # nothing listens: the registry cannot be reached
    store.load(fx.oci_archive(fx.build_layout(tmp_path / "l", "v1", spec()), tmp_path / "a.tar"), [f"127.0.0.1:{port}/app"])
    manager = ImageManager(catalog, store, mode="auto")
    with pytest.raises(ImagePullError, match="set imagePullPolicy: IfNotPresent") as failed:
        asyncio.run(manager.ensure(f"127.0.0.1:{port}/app", "Always", no_secrets, Events()))
    assert failed.value.reason == "ErrImagePull"
    assert isinstance(asyncio.run(manager.ensure(f"127.0.0.1:{port}/app", "IfNotPresent", no_secrets, Events())), OCIImage)
    assert isinstance(asyncio.run(manager.ensure(f"127.0.0.1:{port}/app:latest", "Never", no_secrets, Events())), OCIImage)


def test_resolution_modes(store: ImageStore, tmp_path: pathlib.Path) -> None:
    # auto: a catalog name not in the store resolves from the catalog with no pull at all.
    auto = ImageManager(catalog, store, mode="auto")
    events = Events()
    started = time.monotonic()
    got = asyncio.run(auto.ensure("busybox", "Always", no_secrets, events))
    assert isinstance(got, images.Image) and "Pulling" not in events.reasons()
    assert time.monotonic() - started < 0.5
    # ... and from the store once it is there (loaded or pulled).
    store.load(fx.oci_archive(fx.build_layout(tmp_path / "l", "v1", spec()), tmp_path / "b.tar"), ["busybox:1.36"])
    assert isinstance(asyncio.run(auto.ensure("busybox:1.36", "IfNotPresent", no_secrets, Events())), OCIImage)
    # catalog: never the store, never a pull.
    assert isinstance(asyncio.run(ImageManager(catalog, store, mode="catalog").ensure(
        "busybox:1.36", "Always", no_secrets, Events())), images.Image)
    # oci: never the catalog (docker.io cannot be reached from here, or has no such tag).
    oci = ImageManager(catalog, store, mode="oci")
    events = Events()
    with pytest.raises(ImagePullError) as failed:
        asyncio.run(oci.ensure("registry.invalid/kubelite/busybox:0", "IfNotPresent", no_secrets, events))
    assert failed.value.reason == "ErrImagePull" and events.reasons() == ["Pulling", "Failed"]
    # auto, a catalog name whose program is not installed here: the registry (unreachable here).
    def no_program(name: str) -> images.Image:
        raise images.ImageNotFound(f'Failed to pull image "{name}": ... "redis-server", which is not installed')

    events = Events()
    with pytest.raises(ImagePullError, match="failed to pull and unpack image"):
        asyncio.run(ImageManager(no_program, store, mode="auto", catalog_knows=lambda n: True).ensure(
            f"127.0.0.1:{fx.free_port()}/library/redis:7", "IfNotPresent", no_secrets, events))
    assert events.reasons() == ["Pulling", "Failed"]
    # auto, a catalog name whose registry cannot be reached: the catalog after all.
    auto_knows = ImageManager(catalog, store, mode="auto", catalog_knows=lambda n: "kubelite/known" in n)
    store.load(fx.oci_archive(fx.build_layout(tmp_path / "k", "v1", spec()), tmp_path / "k.tar"),
               [f"127.0.0.1:{fx.free_port()}/kubelite/other"])
    got = asyncio.run(auto_knows.ensure(f"127.0.0.1:{fx.free_port()}/kubelite/known:1", "Always", no_secrets, Events()))
    assert isinstance(got, images.Image)


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=120)


def test_image_cli_pull_ls_rm(private_registry: fx.Registry, tmp_path: pathlib.Path) -> None:
    fx.require_tools("skopeo", "umoci")
    ref = private_registry.push(fx.build_layout(tmp_path / "c", "v1", spec(files={"/c": "c"})), "v1", "cli/app:v1")
    data = ["--data-dir", str(tmp_path / "data")]
    denied = kubelite("image", "pull", *data, ref)
    assert denied.returncode == 1 and "unauthorized" in denied.stderr
    pulled = kubelite("image", "pull", *data, "--creds", f"{USER}:{PASSWORD}", ref)
    assert pulled.returncode == 0, pulled.stderr
    rows = [line.split() for line in kubelite("image", "ls", *data).stdout.splitlines()]
    assert rows[0] == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert rows[1][:2] == [f"{private_registry.host}/cli/app", "v1"] and len(rows[1][2]) == 13
    assert kubelite("image", "rm", *data, ref).stdout.strip() == f"Deleted: {ref}"
    missing = kubelite("image", "rm", *data, ref)
    assert missing.returncode == 1 and "no such image" in missing.stderr
    assert kubelite("image", "ls", *data).stdout.splitlines()[1:] == []
    assert list((tmp_path / "data" / "imagestore" / "rootfs").iterdir()) == []


def test_agent_housekeeping_imports_dropped_archives_once(store: ImageStore, tmp_path: pathlib.Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from kubelite.node import images as node_images

    monkeypatch.setattr(node_images, "IMPORT_PERIOD", 0.05)
    monkeypatch.setattr(node_images, "GC_PERIOD", 0.0)
    drop = tmp_path / "images"
    drop.mkdir()
    archive = fx.docker_archive(fx.build_layout(tmp_path / "d", "v1", spec(files={"/d": "1"})), "v1",
                                "dropped:1", tmp_path / "dropped.tar")
    os.utime(archive, (time.time() - 10, time.time() - 10))  # fully written
    archive.rename(drop / "dropped.tar")
    (drop / "notes.txt").write_text("not an archive")
    gc_asked: list[set[str]] = []

    def in_use() -> set[str]:
        gc_asked.append(set())
        return set()

    async def run() -> None:
        manager = ImageManager(catalog, store, mode="auto")
        task = asyncio.create_task(node_images.housekeeping(manager, drop, in_use))
        try:
            deadline = time.monotonic() + 20
            while store.lookup("dropped:1") is None or not gc_asked:
                assert time.monotonic() < deadline, "not imported"
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(run())
    seen = json.loads((store.root / "imported.json").read_text())
    assert list(seen) == [str(drop / "dropped.tar")]  # remembered: a restarted agent does not load it again
    first = store.records()["docker.io/library/dropped:1"].last_used  # a load would set it anew
    gc_asked.clear()  # the next run returns after one whole pass: import, then the GC
    asyncio.run(run())
    assert store.records()["docker.io/library/dropped:1"].last_used == first


def test_an_archive_blob_that_does_not_match_its_digest_is_refused(store: ImageStore, tmp_path: pathlib.Path) -> None:
    layout = fx.build_layout(tmp_path / "bad", "v1", spec(files={"/x": "x"}))
    blob = max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)  # the layer
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(StoreError, match="does not match its digest"):
        store.load(fx.oci_archive(layout, tmp_path / "bad.tar"), ["bad:1"])
    assert store.records() == {} and [p.name for p in store.blobs.iterdir() if p.name.startswith(".")] == []


def test_gc_of_a_store_never_written_is_empty(tmp_path: pathlib.Path) -> None:
    # --images=catalog: the agent's GC loop runs over a store directory nothing ever made.
    store = ImageStore(tmp_path / "never")
    assert store.gc(set()) == []
    assert not (tmp_path / "never").exists()
