"""Test images and registries, built here without network.

An image is Debian's busybox-static (``apt-get download`` once per machine into a cache,
unpacked with ``dpkg-deb -x``, never installed) plus the test's own files and an image
config, written as an OCI layout by this module (one layer, a plain tar: the layout is what
umoci and skopeo read) and, through ``skopeo copy``, as a docker-save archive or pushed to a
registry.

A registry is Debian's ``docker-registry`` with our own config: listening on 127.0.0.1 on a
free port, its storage in the test's temporary directory, optionally behind htpasswd auth.
Everything started here is stopped and removed by the fixture, also when the test fails.

Missing tools: the tests are skipped on a developer's machine, and FAIL under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.images.store import host_platform

# The .deb is fetched once per machine (not per test run): /var/cache for root, else ~/.cache.
CACHE = pathlib.Path(os.environ.get("KUBELITE_TEST_CACHE") or (
    "/var/cache/kubelite-tests" if os.geteuid() == 0 else os.path.expanduser("~/.cache/kubelite-tests")))


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = f"missing {', '.join(missing)} (apt-get install skopeo umoci docker-registry apache2-utils)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def busybox_static() -> pathlib.Path:
    """The path of a static busybox binary, from Debian's package (fetched once, cached)."""
    target = CACHE / "busybox-static" / "bin" / "busybox"
    if target.exists():
        return target
    require_tools("apt-get", "dpkg-deb")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        debs = list(CACHE.glob("busybox-static_*.deb"))
        if not debs:
            proc = subprocess.run(["apt-get", "download", "busybox-static"], cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                message = f"apt-get download busybox-static: {proc.stderr.strip()}"
                if os.environ.get("CI") == "true":
                    pytest.fail(message)
                pytest.skip(message)
            for deb in pathlib.Path(tmp).glob("*.deb"):
                shutil.move(str(deb), CACHE / deb.name)
            debs = list(CACHE.glob("busybox-static_*.deb"))
        unpacked = pathlib.Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        final = CACHE / "busybox-static"
        with contextlib.suppress(OSError):
            (unpacked).rename(final)
    return target


@dataclass
class ImageSpec:
    files: dict[str, bytes | str] = field(default_factory=dict)  # path in the image → content
    entrypoint: list[str] | None = None
    cmd: list[str] | None = field(default_factory=lambda: ["sh"])
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    workdir: str = ""
    user: str = ""
    busybox: bool = True
    architecture: str = ""  # default: the host's


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o644,
         link: str = "", directory: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif link:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
        tar.addfile(info)
    else:
        payload = data or b""
        info.size, info.mode = len(payload), mode
        tar.addfile(info, io.BytesIO(payload))


_APPLETS = ("sh", "ls", "cat", "echo", "env", "id", "pwd", "sleep", "wget", "nc", "httpd", "touch",
            "mkdir", "rm", "head", "dd", "grep", "hostname", "true", "false", "test", "ps", "whoami", "df", "mount",
            "seq", "sed", "cp", "chmod", "stat", "readlink", "tail", "wc", "ln", "[")


def layer_tar(spec: ImageSpec) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()

        def mkdirs(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    _add(tar, d, directory=True)

        for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
            mkdirs(f"{d}/x")
        if spec.busybox:
            _add(tar, "bin/busybox", busybox_static().read_bytes(), mode=0o755)
            for applet in _APPLETS:
                _add(tar, f"bin/{applet}", link="busybox")
            _add(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
            _add(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        for path, content in spec.files.items():
            mkdirs(path)
            data = content.encode() if isinstance(content, str) else content
            _add(tar, path.lstrip("/"), data, mode=0o755 if path.endswith(".sh") else 0o644)
    return buf.getvalue()


def _blob(layout: pathlib.Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _manifest(layout: pathlib.Path, spec: ImageSpec, layer: bytes) -> dict[str, Any]:
    os_name, arch = host_platform()
    arch = spec.architecture or arch
    config: dict[str, Any] = {"Env": spec.env}
    if spec.entrypoint is not None:
        config["Entrypoint"] = spec.entrypoint
    if spec.cmd is not None:
        config["Cmd"] = spec.cmd
    if spec.workdir:
        config["WorkingDir"] = spec.workdir
    if spec.user:
        config["User"] = spec.user
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(layout, layer)}
    config_blob = json.dumps({
        "architecture": arch, "os": os_name, "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config_blob)},
        "layers": [layer_desc],
    }).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, manifest),
            "platform": {"os": os_name, "architecture": arch}}


def build_layout(layout: pathlib.Path, tag: str, spec: ImageSpec | None = None,
                 extra_platforms: dict[str, ImageSpec] | None = None) -> pathlib.Path:
    """An OCI layout holding one image under ``tag`` (an index over platforms with ``extra_platforms``)."""
    spec = spec or ImageSpec()
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descriptor = _manifest(layout, spec, layer_tar(spec))
    if extra_platforms:
        manifests = [descriptor]
        for arch, other in extra_platforms.items():
            other.architecture = arch
            manifests.append(_manifest(layout, other, layer_tar(other)))
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": manifests}).encode()
        descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", **_blob(layout, index)}
    else:
        descriptor = {k: v for k, v in descriptor.items() if k != "platform"}
    index_path = layout / "index.json"
    index_doc: dict[str, Any] = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2}
    entries: list[dict[str, Any]] = index_doc.get("manifests") or []
    index_doc["manifests"] = [m for m in entries
                              if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag]
    index_doc["manifests"].append({**descriptor, "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index_doc))
    return layout


def oci_archive(layout: pathlib.Path, out: pathlib.Path, *, gzipped: bool = False) -> pathlib.Path:
    """The layout as an OCI archive (tar of the layout), optionally gzipped."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    data = buf.getvalue()
    out.write_bytes(gzip.compress(data, 1) if gzipped else data)
    return out


def docker_archive(layout: pathlib.Path, tag: str, name: str, out: pathlib.Path, *, gzipped: bool = False) -> pathlib.Path:
    """``docker save``'s format for image ``tag`` of ``layout``, named ``name``."""
    require_tools("skopeo")
    plain = out if not gzipped else out.with_suffix(".plain")
    plain.unlink(missing_ok=True)
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:{tag}", f"docker-archive:{plain}:{name}"],
                   check=True, capture_output=True)
    if gzipped:
        out.write_bytes(gzip.compress(plain.read_bytes(), 1))
        plain.unlink()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    user: str = ""
    password: str = ""

    def push(self, layout: pathlib.Path, tag: str, repo: str, *, all_platforms: bool = False) -> str:
        """Push image ``tag`` of ``layout`` as ``HOST/repo``; returns the reference."""
        ref = f"{self.host}/{repo}"
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.user:
            argv += ["--dest-creds", f"{self.user}:{self.password}"]
        if all_platforms:
            argv.append("--all")
        argv += [f"oci:{layout}:{tag}", f"docker://{ref}"]
        subprocess.run(argv, check=True, capture_output=True)
        return ref


@contextlib.contextmanager
def registry(directory: pathlib.Path, *, user: str = "", password: str = "") -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage under ``directory``."""
    require_tools("docker-registry", "skopeo", "umoci", *(["htpasswd"] if user else []))
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if user:
        htpasswd = directory / "htpasswd"
        out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout
        htpasswd.write_text(out)
        config["auth"] = {"htpasswd": {"realm": "kubelite-test", "path": str(htpasswd)}}
    (directory / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    with open(directory / "registry.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(["docker-registry", "serve", str(directory / "config.yml")],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(directory / 'registry.log').read_text()}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", proc, user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dockerconfigjson_secret(name: str, host: str, user: str, password: str) -> dict[str, Any]:
    import base64

    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    doc = {"auths": {host: {"username": user, "password": password, "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(doc).encode()).decode()}}
