"""The chroot-confined layer applier (images/unpack.py) against umoci, on layers made to be hard:
whiteouts, opaque directories, entries replacing other kinds, hard links, set-uid bits,
owners, read-only directories, xattrs, symlinks through which a layer tries to write outside
the root. Both unpack the same image; the trees must be identical, and the host untouched."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pathlib
import secrets
import stat
import tarfile
from typing import Any

import pytest

from kubelite.images.store import ImageStore
from tests import imagefixture as fx
from tests.conftest import require


def _tar(entries: list[tuple[str, str, Any]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            opts: dict[str, Any] = dict(arg) if isinstance(arg, dict) else {}
            data = b""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, opts.get("mode", 0o755)
            elif kind == "file":
                data = opts.get("data", b"")
                info.size, info.mode = len(data), opts.get("mode", 0o644)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            info.uid, info.gid = opts.get("uid", 0), opts.get("gid", 0)
            if "xattr" in opts:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in opts["xattr"].items()}
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


def _layout(path: pathlib.Path, layers: list[bytes]) -> pathlib.Path:
    path.mkdir()
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (path / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descs = []
    for i, layer in enumerate(layers):
        gz = i % 2 == 1  # one plain, one gzipped
        data = gzip.compress(layer, 1) if gz else layer
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""), **blob(data)})
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                              "rootfs": {"type": "layers", "diff_ids": [
                                  "sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]}}).encode())
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                                "layers": descs}).encode())
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    return path


def _tree(root: pathlib.Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            extra: Any = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = (pathlib.Path(p).read_bytes(), inodes.setdefault(st.st_ino, rel))
                try:
                    extra = (*extra, os.getxattr(p, "user.kubelite", follow_symlinks=False))
                except OSError:
                    pass
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else 0,
                        st.st_uid, st.st_gid, extra)
    return out


def test_chroot_unpack_matches_umoci_and_stays_inside(tmp_path: pathlib.Path) -> None:
    require(os.geteuid() == 0, "needs root (chroot, chown)")
    fx.require_tools("umoci")
    mark = secrets.token_hex(4)
    layer1 = _tar([
        ("dir", "a", {}), ("file", "a/x", {"data": b"x1"}), ("file", "a/y", {"data": b"y1"}),
        ("dir", "b", {}), ("file", "b/z", {"data": b"z1"}), ("dir", "b/sub", {}), ("file", "b/sub/q", {"data": b"q"}),
        ("sym", "link", "/a/x"), ("hard", "h", "a/y"),
        ("file", "s", {"data": b"suid", "mode": 0o4755}),
        ("file", "owned", {"data": b"o", "uid": 1234, "gid": 5678, "mode": 0o640}),
        ("dir", "ro", {"mode": 0o555}), ("file", "ro/f", {"data": b"f"}),
        ("sym", "escape", "/"), ("sym", "dotdot", "../../../../.."),
        ("dir", "lib-real", {}), ("sym", "lib", "lib-real"),
        ("file", "xattr", {"data": b"x", "xattr": {"user.kubelite": "yes"}}),
        ("dir", "gone-dir", {}), ("file", "gone-dir/inside", {"data": b"i"}),
    ])
    layer2 = _tar([
        ("file", "a/.wh.x", {}),
        ("dir", "b", {}), ("file", "b/.wh..wh..opq", {}), ("file", "b/new", {"data": b"new"}),
        ("file", "link", {"data": b"now a file"}),
        ("file", f"escape/tmp/pwned-{mark}", {"data": b"inside"}),
        ("file", f"dotdot/etc/pwned-{mark}", {"data": b"inside"}),
        ("file", "lib/inlib", {"data": b"in lib-real"}),
        ("dir", "a", {"mode": 0o700}),
        ("file", "ro/g", {"data": b"g"}),
        ("file", ".wh.gone-dir", {}),
        ("file", "gone-dir", {"data": b"now a file"}),
    ])
    layout = _layout(tmp_path / "layout", [layer1, layer2])
    archive = fx.oci_archive(layout, tmp_path / "hard.tar")
    trees = {}
    for unpacker in ("umoci", "chroot"):
        store = ImageStore(tmp_path / unpacker, unpacker=unpacker)
        record = store.load(archive, ["hard:1"])[0]
        trees[unpacker] = _tree(store.rootfs(record.digest))
    assert not os.path.exists(f"/tmp/pwned-{mark}") and not os.path.exists(f"/etc/pwned-{mark}")
    chroot = trees["chroot"]
    assert chroot["tmp/pwned-" + mark][4][0] == b"inside" and chroot["etc/pwned-" + mark][4][0] == b"inside"
    assert "a/x" not in chroot and set(k for k in chroot if k.startswith("b/")) == {"b/new"}
    assert chroot["link"][4][0] == b"now a file" and chroot["lib-real/inlib"][4][0] == b"in lib-real"
    assert chroot["h"][4][1] == chroot["a/y"][4][1]  # one inode
    assert chroot["s"][1] == 0o4755 and chroot["owned"][1:4] == (0o640, 1234, 5678) and chroot["a"][1] == 0o700
    assert chroot["gone-dir"][0] == stat.S_IFREG
    assert trees["chroot"] == trees["umoci"]


@pytest.mark.parametrize("unpacker", ["umoci", "chroot"])
def test_unpack_of_a_busybox_image_runs(tmp_path: pathlib.Path, unpacker: str) -> None:
    require(os.geteuid() == 0, "needs root (chroot)")
    fx.require_tools("umoci")
    layout = fx.build_layout(tmp_path / "l", "v1", fx.ImageSpec(files={"/hello": "hi"}))
    store = ImageStore(tmp_path / "store", unpacker=unpacker)
    root = store.rootfs(store.load(fx.oci_archive(layout, tmp_path / "a.tar", gzipped=True), ["bb:1"])[0].digest)
    import subprocess

    out = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "cat /hello; echo; ls /bin/sh"], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["hi", "/bin/sh"]


def test_a_root_mounted_as_an_overlay_lower_dir_is_kept_until_unmounted(tmp_path: pathlib.Path) -> None:
    import subprocess

    require(os.geteuid() == 0, "needs root (mount namespaces, overlay)")
    fx.require_tools("unshare")
    store = ImageStore(tmp_path / "store")
    record = store.load(fx.oci_archive(fx.build_layout(tmp_path / "l", "v1", fx.ImageSpec()), tmp_path / "a.tar"),
                        ["inuse:1"])[0]
    root = store.rootfs(record.digest)
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    # A container's root as a runtime mounts it, in a mount namespace of its own.
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount -t overlay overlay -o lowerdir={root},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'} "
         f"{tmp_path / 'merged'} && echo mounted && exec sleep 60"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mounted"
        assert record.digest.removeprefix("sha256:") in store.mounted_roots()
        assert store.remove("inuse:1") == ["docker.io/library/inuse:1"]
        assert root.is_dir() and (root / "bin" / "busybox").is_file()  # kept: a container stands on it
    finally:
        holder.kill()
        holder.wait()
    store.remove("nothing-else")  # any later prune
    assert not root.exists()
