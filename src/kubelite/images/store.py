"""The image store: real OCI images, content-addressed under the data dir.

What containerd's content store and snapshotter do for a kubelet, in one directory:

    <root>/blobs/sha256/<hex>       every blob of every image (an OCI layout's blob store, shared)
    <root>/rootfs/<manifest hex>/   each manifest unpacked ONCE (images/unpack.py, or umoci), read-only,
                                    the lower layer of every container of that image
    <root>/images.json              tags: normalised reference -> manifest digest, config, size,
                                    when it was stored and last used (for the image GC)

A blob already present is never written again (skopeo skips blobs its destination has, and
archives are copied blob by blob), so two images sharing a base layer store it once. The
index is rewritten atomically under a file lock, so ``kubelite image load`` from the CLI and
the running agent share one store; the agent re-reads it when its mtime changes.

Why not containerd: its CRI plugin wants to own the pod's network namespace (see issue 16),
and its content store needs a daemon; here the store is files, and the tools are skopeo (the
distribution API, auth, platforms) and, for layers, a chroot-confined tarfile child as Docker's
chrootarchive (umoci where that cannot run: zstd layers, no root), run only when something new
arrives.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import pathlib
import platform
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubelite.images import gc as gc_policy
from kubelite.images import normalise, split_reference, unpack
from kubelite.images.oci import OCIImage

INDEX_MEDIA_TYPES = ("application/vnd.oci.image.index.v1+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json")
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class StoreError(Exception):
    """A problem with an image or archive; the message is what the user or the pod sees."""


def host_platform() -> tuple[str, str]:
    """``(os, architecture)`` in OCI's spelling (GOARCH), as skopeo picks from an index."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return "linux", arch


def reference_keys(ref: str) -> tuple[str, str]:
    """``(repository, key)``: the normalised name images.json is keyed by (``repo:tag`` or ``repo@digest``)."""
    repository, _ = split_reference(ref)
    return repository, normalise(ref)


@dataclass
class Record:
    """One tag of images.json."""

    name: str
    digest: str  # manifest
    config: dict[str, Any]  # the image config's "config" object (Entrypoint, Cmd, Env, ...)
    config_digest: str
    size: int
    created: float  # when stored here
    last_used: float
    # The registry's digest of what was pulled (a multi-arch index's, say), when it differs from
    # ``digest`` (skopeo writes OCI manifests): containerd's repo digest, the imageID users compare.
    repo_digest: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"digest": self.digest, "config": self.config, "configDigest": self.config_digest,
               "size": self.size, "created": self.created, "lastUsed": self.last_used}
        if self.repo_digest:
            out["repoDigest"] = self.repo_digest
        return out

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Record:
        return cls(name, str(data["digest"]), dict(data.get("config") or {}), str(data.get("configDigest", "")),
                   int(data.get("size", 0)), float(data.get("created", 0)), float(data.get("lastUsed", 0)),
                   str(data.get("repoDigest", "")))


def _env(config: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


class ImageStore:
    def __init__(self, root: pathlib.Path, unpacker: str = "chroot") -> None:
        self.root = pathlib.Path(root)
        self.unpacker = unpacker  # "chroot" (images/unpack.py where it can) or "umoci" (always)
        self.blobs = self.root / "blobs" / "sha256"
        self.rootfs_dir = self.root / "rootfs"
        self.tmp = self.root / "tmp"
        self.index_path = self.root / "images.json"
        self._cache: tuple[int, dict[str, Record]] | None = None

    def ensure(self) -> None:
        for d in (self.blobs, self.rootfs_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            layout.write_text('{"imageLayoutVersion":"1.0.0"}')

    # -- the tag index

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.ensure()
        with open(self.root / "images.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def records(self) -> dict[str, Record]:
        """The tags, re-read only when images.json changed (the CLI writes it too)."""
        try:
            mtime = self.index_path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is not None and self._cache[0] == mtime:
            return self._cache[1]
        data = json.loads(self.index_path.read_bytes() or b"{}")
        records = {name: Record.from_json(name, entry) for name, entry in (data.get("images") or {}).items()}
        self._cache = (mtime, records)
        return records

    def _write(self, records: dict[str, Record]) -> None:
        tmp = self.index_path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({"images": {n: r.to_json() for n, r in sorted(records.items())}}, indent=1))
        os.replace(tmp, self.index_path)
        self._cache = None

    def find(self, ref: str) -> Record | None:
        """The record a reference names: its tag, or for ``repo@sha256:..`` any tag of that digest."""
        repository, key = reference_keys(ref)
        records = self.records()
        if key in records:
            return records[key]
        _, version = split_reference(ref)
        if version.startswith("sha256:"):
            for record in records.values():
                if version in (record.digest, record.repo_digest) and split_reference(record.name)[0] == repository:
                    return record
        return None

    def image(self, record: Record) -> OCIImage:
        config = record.config
        return OCIImage(
            name=record.name, digest=record.digest, rootfs=self.rootfs(record.digest),
            entrypoint=[str(a) for a in config.get("Entrypoint") or []],
            cmd=[str(a) for a in config.get("Cmd") or []],
            env=_env(config), workdir=str(config.get("WorkingDir") or ""), user=str(config.get("User") or ""),
            size=record.size, repo_digest=record.repo_digest,
        )

    def lookup(self, ref: str) -> OCIImage | None:
        record = self.find(ref)
        if record is None or not self.rootfs(record.digest).is_dir():
            return None
        return self.image(record)

    def touch(self, names: list[str], now: float | None = None) -> None:
        """Mark images used (the image GC frees the least recently used first)."""
        now = time.time() if now is None else now
        with self.locked():
            records = dict(self.records())
            changed = False
            for name in names:
                record = records.get(name)
                if record is not None and now - record.last_used > 60:  # not one write per container start
                    record.last_used = now
                    changed = True
            if changed:
                self._write(records)

    def tag(self, names: list[str], digest: str, now: float | None = None, repo_digest: str = "") -> list[Record]:
        """Point ``names`` at manifest ``digest`` (an existing tag moves, as `ctr images import`).

        The image a tag moves away from stays, under its digest (``repo@sha256:...``, crictl's
        ``<none>`` tag), until nothing else names it and the image GC or ``image rm`` frees it:
        a running container may still use it."""
        manifest = self.read_json(digest)
        config_digest = str(manifest["config"]["digest"])
        config = self.read_json(config_digest).get("config") or {}
        size = int(manifest["config"].get("size", 0)) + sum(int(layer.get("size", 0))
                                                            for layer in manifest.get("layers") or [])
        now = time.time() if now is None else now
        out = []
        with self.locked():
            records = dict(self.records())
            for name in names:
                key = normalise(name)
                old = records.get(key)
                created = old.created if old is not None and old.digest == digest else now
                records[key] = Record(key, digest, config, config_digest, size, created, now,
                                      repo_digest if repo_digest != digest else "")
                out.append(records[key])
                if old is not None and old.digest != digest and \
                        not any(r.digest == old.digest for r in records.values()):
                    dangling = f"{split_reference(key)[0]}@{old.digest}"
                    records[dangling] = Record(dangling, old.digest, old.config, old.config_digest, old.size,
                                               old.created, old.last_used, old.repo_digest)
            self._write(records)
        return out

    def remove(self, ref: str) -> list[str]:
        """Untag ``ref`` (a name, or a digest / image-id prefix: every tag of it); unused content goes."""
        with self.locked():
            records = dict(self.records())
            key = normalise(ref)
            if key in records:
                names = [key]
            else:
                wanted = ref.removeprefix("sha256:")
                names = [n for n, r in records.items()
                         if len(wanted) >= 4 and (r.config_digest.removeprefix("sha256:").startswith(wanted)
                                                  or r.digest.removeprefix("sha256:").startswith(wanted))]
                if not names and (record := self.find(ref)) is not None:
                    names = [record.name]
            for name in names:
                del records[name]
            self._write(records)
            self._prune(records)
        return names

    def gc(self, in_use: set[str], *, now: float | None = None, policy: gc_policy.GCPolicy | None = None,
           disk: tuple[int, int] | None = None) -> list[str]:
        """The kubelet's image GC over this store; ``in_use``: manifest digests containers use.

        ``disk`` is ``(capacity, available)`` bytes, by default the store's filesystem's."""
        now = time.time() if now is None else now
        if not self.root.exists():
            return []  # nothing pulled or loaded yet (or --images=catalog): nothing to collect
        if disk is None:
            st = os.statvfs(self.root)
            disk = (st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
        in_use = set(in_use) | {r.digest for r in self.records().values() if r.repo_digest in in_use}
        candidates: dict[str, gc_policy.Candidate] = {}
        for record in self.records().values():
            old = candidates.get(record.digest)
            candidates[record.digest] = gc_policy.Candidate(
                record.digest, record.size,
                min(record.created, old.first_seen) if old else record.created,
                max(record.last_used, old.last_used) if old else record.last_used)
        chosen = gc_policy.choose(candidates.values(), in_use, capacity=disk[0], available=disk[1], now=now,
                                  policy=policy or gc_policy.GCPolicy())
        if not chosen:
            return []
        removed: list[str] = []
        with self.locked():
            records = dict(self.records())
            for name in [n for n, r in records.items() if r.digest in chosen and r.digest not in in_use]:
                del records[name]
                removed.append(name)
            self._write(records)
            self._prune(records)
        return removed

    def _prune(self, records: dict[str, Record]) -> None:
        """Delete unpacked roots and blobs no tag reaches any more (under the lock)."""
        live_manifests = {r.digest for r in records.values()}
        live_blobs: set[str] = set()
        for digest in live_manifests:
            live_blobs.add(digest.removeprefix("sha256:"))
            with contextlib.suppress(FileNotFoundError, KeyError, ValueError):
                manifest = self.read_json(digest)
                live_blobs.add(str(manifest["config"]["digest"]).removeprefix("sha256:"))
                live_blobs.update(str(layer["digest"]).removeprefix("sha256:") for layer in manifest["layers"])
        mounted = self.mounted_roots()
        for d in self.rootfs_dir.iterdir():
            if not d.name.startswith(".") and f"sha256:{d.name}" not in live_manifests:
                if d.name in mounted:
                    # A container's overlay still has it as its lower layer: changing a lower dir
                    # under a mounted overlay is undefined. Its blobs go; the root goes once unused.
                    continue
                self._rmtree(d)
        for blob in self.blobs.iterdir():
            # A pull in progress writes its blobs before it tags: leave recent ones alone.
            if blob.name not in live_blobs and time.time() - blob.stat().st_mtime > 60:
                blob.unlink(missing_ok=True)

    def mounted_roots(self) -> set[str]:
        """Manifest hexes whose unpacked root is a lower dir of a mounted overlay, in any mount
        namespace (a runtime may mount a container's root in the container's own)."""
        prefix = f"{self.rootfs_dir}/"
        found: set[str] = set()
        seen_ns: set[str] = set()
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                ns = os.readlink(f"/proc/{pid}/ns/mnt")
                if ns in seen_ns:
                    continue
                seen_ns.add(ns)
                with open(f"/proc/{pid}/mountinfo") as f:
                    text = f.read()
            except OSError:
                continue  # gone, or not ours to read
            start = 0
            while (i := text.find(prefix, start)) >= 0:
                found.add(text[i + len(prefix):].split("/", 1)[0].split(",", 1)[0].split(":", 1)[0].split()[0])
                start = i + len(prefix)
        return found

    @staticmethod
    def _rmtree(path: pathlib.Path) -> None:
        # umoci leaves directories read-only where the image has them so; make them writable to delete.
        def onerror(func: Any, p: str, exc: Any) -> None:
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(p), 0o700)
                func(p)

        shutil.rmtree(path, onerror=onerror)

    # -- blobs and unpacking

    def blob(self, digest: str) -> pathlib.Path:
        return self.blobs / digest.removeprefix("sha256:")

    def read_json(self, digest: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.blob(digest).read_bytes())
        return data

    def rootfs(self, digest: str) -> pathlib.Path:
        return self.rootfs_dir / digest.removeprefix("sha256:")

    def usage(self) -> int:
        """Bytes of blobs and unpacked roots (what the image GC frees)."""
        total = 0
        for d in (self.blobs, self.rootfs_dir):
            for dirpath, _, files in os.walk(d):
                for f in files:
                    with contextlib.suppress(OSError):
                        total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
        return total

    def select_manifest(self, descriptor: dict[str, Any]) -> dict[str, Any]:
        """The host platform's manifest descriptor under ``descriptor`` (an index is walked)."""
        want_os, want_arch = host_platform()
        while descriptor.get("mediaType") in INDEX_MEDIA_TYPES:
            index = self.read_json(str(descriptor["digest"]))
            descriptor = self._pick_platform(index.get("manifests") or [], want_os, want_arch, str(descriptor["digest"]))
        return descriptor

    @staticmethod
    def _pick_platform(manifests: list[dict[str, Any]], want_os: str, want_arch: str, what: str) -> dict[str, Any]:
        for m in manifests:
            p = m.get("platform") or {}
            if p.get("os", want_os) == want_os and p.get("architecture", want_arch) == want_arch:
                return m
        raise StoreError(f"no image for platform {want_os}/{want_arch} in {what}")

    def unpack(self, digest: str) -> pathlib.Path:
        """Unpack manifest ``digest`` once into its read-only root: layers of tar or tar+gzip
        by chroot-confined tarfile as root (images/unpack.py: several times faster), others (zstd)
        and rootless by ``umoci raw unpack``."""
        final = self.rootfs(digest)
        if final.is_dir():
            return final
        self.ensure()
        work = pathlib.Path(tempfile.mkdtemp(prefix="unpack-", dir=self.tmp))
        try:
            layers = self.read_json(digest).get("layers") or []
            if self.unpacker == "chroot" and os.geteuid() == 0 and \
                    all(layer.get("mediaType") in unpack.FAST_MEDIA_TYPES for layer in layers):
                target = work / "rootfs"
                target.mkdir(mode=0o755)
                try:
                    unpack.apply_layers(target, [self.blob(str(layer["digest"])) for layer in layers])
                except unpack.UnpackError as e:
                    raise StoreError(str(e)) from e
                self._publish(target, final)
                return final
            layout = work / "layout"
            layout.mkdir()
            (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            (layout / "blobs").symlink_to(self.root / "blobs")
            manifest = self.blob(digest)
            (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                "size": manifest.stat().st_size, "annotations": {REF_NAME: "unpack"}}]}))
            target = work / "rootfs"
            run_tool(["umoci", "raw", "unpack", *([] if os.geteuid() == 0 else ["--rootless"]),
                      "--image", f"{layout}:unpack", str(target)])
            self._publish(target, final)
        finally:
            self._rmtree(work)
        return final

    @staticmethod
    def _publish(target: pathlib.Path, final: pathlib.Path) -> None:
        try:
            target.rename(final)
        except OSError:  # unpacked meanwhile by another process: keep theirs
            if not final.is_dir():
                raise

    # -- import from an OCI layout (a pull's, or an archive's)

    def import_layout(self, layout: pathlib.Path, names: list[str], ref_name: str | None = None,
                      repo_digest: str = "") -> list[Record]:
        """Tag and unpack the image(s) of ``layout`` whose blobs are already in this store.

        ``ref_name`` picks one entry of its index.json; without it every named entry is
        imported under its own name (an archive of several images), or the only one under ``names``.
        """
        index = json.loads((layout / "index.json").read_bytes())
        entries = list(index.get("manifests") or [])
        if ref_name is not None:
            entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == ref_name] or entries[:1]
        out: list[Record] = []
        if not entries:
            raise StoreError(f"{layout}: no image in the archive")
        named = [(e, self._entry_names(e)) for e in entries]
        if names or not any(n for _, n in named):
            # One image under the names given: a multi-platform archive lists one per platform.
            if len(entries) > 1 and all(e.get("mediaType") not in INDEX_MEDIA_TYPES for e in entries):
                want_os, want_arch = host_platform()
                entry = self._pick_platform(entries, want_os, want_arch, str(layout)) \
                    if any(e.get("platform") for e in entries) else entries[0]
            else:
                entry = entries[0]
            named = [(entry, names or self._entry_names(entry))]
        for entry, entry_names in named:
            if not entry_names:
                continue
            manifest = self.select_manifest(entry)
            digest = str(manifest["digest"])
            self.unpack(digest)
            out.extend(self.tag(entry_names, digest, repo_digest=repo_digest))
        if not out:
            raise StoreError("the archive's images have no name: give one with --tag")
        return out

    @staticmethod
    def _entry_names(entry: dict[str, Any]) -> list[str]:
        annotations = entry.get("annotations") or {}
        if name := annotations.get(CONTAINERD_NAME):
            return [str(name)]
        ref = str(annotations.get(REF_NAME) or "")
        # A bare tag ("latest", "1.0") names no repository; a full reference does.
        return [ref] if ref and ("/" in ref or ":" in ref) else []

    def clean_tmp(self, max_age: float = 3600.0) -> None:
        """Remove what pulls and loads that died midway left in tmp/ (a live one is younger)."""
        if not self.tmp.is_dir():
            return
        for entry in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if time.time() - entry.lstat().st_mtime > max_age:
                    if entry.is_dir() and not entry.is_symlink():
                        (entry / "blobs").unlink(missing_ok=True)  # the shared blobs stay
                        self._rmtree(entry)
                    else:
                        entry.unlink()

    def new_layout(self) -> pathlib.Path:
        """A temporary OCI layout whose blobs are this store's (skopeo writes straight into it)."""
        self.ensure()
        layout = pathlib.Path(tempfile.mkdtemp(prefix="layout-", dir=self.tmp))
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "blobs").symlink_to(self.root / "blobs")
        return layout

    def drop_layout(self, layout: pathlib.Path) -> None:
        (layout / "blobs").unlink(missing_ok=True)
        shutil.rmtree(layout, ignore_errors=True)

    # -- archives (docker save, OCI), plain or gzipped

    def load(self, archive: pathlib.Path, names: list[str] | None = None) -> list[Record]:
        names = list(names or [])
        self.ensure()
        work = pathlib.Path(tempfile.mkdtemp(prefix="load-", dir=self.tmp))
        try:
            path = archive
            with open(archive, "rb") as f:
                gzipped = f.read(2) == b"\x1f\x8b"
            if gzipped:  # skopeo's docker-archive reader and tarfile's seeking both want it plain
                path = work / "archive.tar"
                with gzip.open(archive, "rb") as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            try:
                with tarfile.open(path) as tar:
                    members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
                    if "index.json" in members and "oci-layout" in members:
                        return self._load_oci(tar, members, names, work)
                    if "manifest.json" in members:
                        pass
                    else:
                        raise StoreError(f"{archive}: neither a docker save archive nor an OCI archive")
            except tarfile.TarError as e:
                raise StoreError(f"{archive}: not a tar archive: {e}") from e
            return self._load_docker(path, names)
        finally:
            self._rmtree(work)

    def _load_oci(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], names: list[str],
                  work: pathlib.Path) -> list[Record]:
        for name, member in members.items():
            if not name.startswith("blobs/sha256/") or not member.isfile():
                continue
            hexdigest = name.rsplit("/", 1)[1]
            target = self.blobs / hexdigest
            if target.exists():
                continue  # content-addressed: never written twice
            src = tar.extractfile(member)
            assert src is not None
            self._copy_blob(src, expected=hexdigest)
        layout = work / "layout"
        layout.mkdir()
        index = tar.extractfile(members["index.json"])
        assert index is not None
        (layout / "index.json").write_bytes(index.read())
        return self.import_layout(layout, names)

    def _copy_blob(self, src: Any, expected: str = "") -> tuple[str, int]:
        """Copy a file object into the blob store, hashing on the way; ``(digest, size)``."""
        tmp = self.blobs / f".incoming.{uuid.uuid4().hex}"
        h = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        hexdigest = h.hexdigest()
        if expected and expected != hexdigest:
            tmp.unlink()
            raise StoreError(f"blob sha256:{expected} of the archive does not match its digest")
        target = self.blobs / hexdigest
        if target.exists():
            tmp.unlink()  # content-addressed: the one present stays
        else:
            os.replace(tmp, target)
        return f"sha256:{hexdigest}", size

    def _load_docker(self, path: pathlib.Path, names: list[str]) -> list[Record]:
        """A docker save archive, converted as is: its layers are blobs already (plain tars, or
        compressed ones), its config is an OCI config; only the manifest is new. No recompression
        (skopeo would gzip every layer: seconds for a large image)."""
        out: list[Record] = []
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            assert member is not None
            entries = json.loads(member.read())
            if not names and not any(e.get("RepoTags") for e in entries):
                raise StoreError(f"{path}: the archive's images have no name: give one with --tag")

            def blob(name: str) -> tuple[str, int, bytes]:
                src = tar.extractfile(name)
                if src is None:
                    raise StoreError(f"{path}: {name} is missing from the archive")
                head = src.read(2)
                src.seek(0)
                digest, size = self._copy_blob(src)
                return digest, size, head

            for entry in entries:
                entry_names = names if names else [str(t) for t in entry.get("RepoTags") or []]
                if not entry_names:
                    continue
                config_digest, config_size, _ = blob(str(entry["Config"]))
                layers = []
                for layer in entry.get("Layers") or []:
                    digest, size, head = blob(str(layer))
                    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if head == b"\x1f\x8b" else "")
                    layers.append({"mediaType": media, "digest": digest, "size": size})
                manifest = json.dumps({
                    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": config_digest, "size": config_size},
                    "layers": layers,
                }).encode()
                import io

                digest, _ = self._copy_blob(io.BytesIO(manifest))
                self.unpack(digest)
                out.extend(self.tag(entry_names, digest))
                if names:
                    break
        return out


def run_tool(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Run skopeo/umoci; a failure raises StoreError with the tool's own last words."""
    import subprocess

    if shutil.which(argv[0]) is None:
        raise StoreError(f"{argv[0]} is not installed (Debian/Ubuntu: apt-get install {argv[0]})")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise StoreError(tool_reason(proc.stderr or proc.stdout))
    return proc.stdout


def tool_reason(output: str) -> str:
    """skopeo's error line without its log prefix (``time=... level=fatal msg="..."``)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "failed"
    if 'msg="' in line:
        line = line.split('msg="', 1)[1].rstrip('"').replace('\\"', '"')
    return line.strip()
