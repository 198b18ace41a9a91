"""The image catalog: what a container's ``image`` means when there is no image to pull.

kubelite runs containers as host processes, so an image reference selects a program on
this machine instead of a filesystem: built-in images written in Python (agnhost, the pause
image, cluster DNS), host binaries with their images' usual defaults (busybox, python,
redis, nginx, mariadb and mysql), and whatever a user catalog file adds. References are normalised as
container runtimes do (``busybox``, ``busybox:1.36`` and ``docker.io/library/busybox:1.36``
are one image) and tags are ignored: there is one version of each program here.

The trade-off: an image's files are the host's (its program directories, read-only in a root
of the container's own, with the paths an image names in ``paths``: see
:mod:`kubelite.node.isolation`). Where a command name matters (busybox's
``sh`` must be busybox's, not the host's ``/bin/sh``) the image's ``PATH`` starts with a
directory of symlinks generated once in a cache directory (``$KUBELITE_CACHE_DIR``, else
``/var/cache/kubelite`` for root, else ``~/.cache/kubelite``).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubelite.images.oci import OCIImage

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageNotFound(Exception):
    """The reference names no image of the catalog; the message is what the pod shows."""


@dataclass(frozen=True)
class Image:
    name: str  # the normalised reference, e.g. "docker.io/library/busybox:1.36"
    entrypoint: list[str]  # the image's ENTRYPOINT
    cmd: list[str]  # the image's CMD
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    workdir: str = ""
    ports: tuple[int, ...] = ()
    # Programs at fixed paths inside the real image (agnhost's /agnhost), as the argv that
    # runs them here: manifests written for a real cluster say `command: ["/agnhost", ...]`.
    binaries: dict[str, list[str]] = field(default_factory=dict)
    # Files at fixed paths inside the real image that must be this image's own, also for
    # programs the container runs by that path (busybox's /bin/sh, whose messages start with
    # its argv[0]): in-image path -> the host file bound there, read-only.
    files: dict[str, str] = field(default_factory=dict)
    # What the program needs of the host besides its program directories, the Python
    # installation and kubelite's package (kubelite.node.isolation): paths shown read-only
    # in the container's root, and directories it writes (empty and private at each start).
    paths: tuple[str, ...] = ()
    writable_paths: tuple[str, ...] = ()

    def host_argv(self, argv: list[str]) -> list[str]:
        """``argv`` with an in-image program path replaced by how it runs on this machine."""
        if argv and argv[0] in self.binaries:
            return [*self.binaries[argv[0]], *argv[1:]]
        return argv

    @property
    def image_id(self) -> str:
        """A stable ``repo@sha256:...`` for containerStatuses[].imageID (a digest of the name)."""
        repository = split_reference(self.name)[0]
        return f"{repository}@sha256:{hashlib.sha256(self.name.encode()).hexdigest()}"


def split_reference(image: str) -> tuple[str, str]:
    """``(repository, tag-or-digest)`` with Docker's defaults: docker.io, library/, latest.

    ``busybox`` → ``("docker.io/library/busybox", "latest")``;
    ``registry.k8s.io/pause:3.9`` → ``("registry.k8s.io/pause", "3.9")``;
    ``x@sha256:ab..`` → ``("docker.io/library/x", "sha256:ab..")``.
    """
    ref = image.strip()
    if "@" in ref:
        repository, version = ref.split("@", 1)
        if repository.rfind(":") > repository.rfind("/"):  # name:tag@digest: the digest names the image
            repository = repository[:repository.rfind(":")]
    else:
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        repository, version = (ref[:colon], ref[colon + 1 :]) if colon > slash else (ref, "latest")
    first, _, rest = repository.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        repository = f"docker.io/{repository}"
        if not rest:
            repository = f"docker.io/library/{first}"
    repository = repository.replace("index.docker.io/", "docker.io/", 1)
    if repository.startswith("docker.io/") and repository.count("/") == 1:
        repository = "docker.io/library/" + repository.removeprefix("docker.io/")  # as containerd: official images
    return repository, version


def normalise(image: str) -> str:
    repository, version = split_reference(image)
    return f"{repository}@{version}" if version.startswith("sha256:") else f"{repository}:{version}"


def cache_dir() -> pathlib.Path:
    if configured := os.environ.get("KUBELITE_CACHE_DIR"):
        return pathlib.Path(configured)
    if os.geteuid() == 0:
        return pathlib.Path("/var/cache/kubelite")
    return pathlib.Path.home() / ".cache" / "kubelite"


def _link_dir(name: str, links: dict[str, str]) -> str:
    """A directory of ``name -> target`` symlinks, built once per content and then reused."""
    import tempfile  # here, not at the top: agnhost containers import this package and must start fast

    digest = hashlib.sha256(repr(sorted(links.items())).encode()).hexdigest()[:16]
    final = cache_dir() / "bin" / f"{name}-{digest}"
    if final.is_dir():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    for link, target in links.items():
        (tmp / link).symlink_to(target)
    tmp.chmod(0o755)
    try:
        tmp.rename(final)
    except OSError:  # built concurrently by someone else: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def _require(program: str, image: str) -> str:
    found = shutil.which(program, path=DEFAULT_PATH) or shutil.which(program)
    if found is None:
        raise ImageNotFound(
            f'Failed to pull image "{image}": the kubelite image catalog maps it to the host program '
            f'"{program}", which is not installed on this machine'
        )
    return found


def _busybox(image: str) -> Image:
    import subprocess

    busybox = _require("busybox", image)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    applet_dir = _link_dir("busybox", {applet: busybox for applet in applets if "/" not in applet})
    # The image's /bin/sh is busybox's ash (the host's may be dash or bash, with other messages).
    return Image(normalise(image), [], ["sh"], {"PATH": f"{applet_dir}:{DEFAULT_PATH}"}, paths=(applet_dir, busybox),
                 files={"/bin/sh": busybox})


def _python(image: str) -> Image:
    python3 = shutil.which("python3", path=DEFAULT_PATH) or sys.executable
    bin_dir = _link_dir("python", {"python": python3, "python3": python3})
    return Image(normalise(image), [], ["python3"], {"PATH": f"{bin_dir}:{DEFAULT_PATH}", "LANG": "C.UTF-8"},
                 paths=(bin_dir, python3))


def _redis(image: str) -> Image:
    _require("redis-server", image)
    # Our docker-entrypoint.sh: protected mode off, a private working directory for dumps,
    # the redis user. A command that names the server directly gets the same treatment.
    entrypoint = [sys.executable, "-m", "kubelite.images.redis"]
    server = [*entrypoint, "redis-server"]
    return Image(normalise(image), entrypoint, ["redis-server"], ports=(6379,),
                 binaries={"redis-server": server, "/usr/local/bin/redis-server": server})


def _mariadb(flavour: str) -> Callable[[str], Image]:
    """``mariadb`` and ``mysql``: the host's MariaDB server behind the official images' set-up."""
    server = "mysqld" if flavour == "mysql" else "mariadbd"

    def build(image: str) -> Image:
        _require("mariadbd", image)
        _require("mariadb-install-db", image)
        entrypoint = [sys.executable, "-m", "kubelite.images.mariadb", flavour]
        return Image(normalise(image), entrypoint, [server], ports=(3306,),
                     binaries={"docker-entrypoint.sh": entrypoint, "/usr/local/bin/docker-entrypoint.sh": entrypoint},
                     writable_paths=("/run/mysqld", "/var/lib/mysql"))

    return build


_NGINX_CONF = """\
# Generated by kubelite: behaves like the official nginx image (port 80, /usr/share/nginx/html,
# logs to the container's stdout/stderr) with every writable path under /tmp.
worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr notice;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    client_body_temp_path /tmp/nginx-client-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;
    server {
        listen 80;
        listen [::]:80;
        server_name localhost;
        location / { root /usr/share/nginx/html; index index.html index.htm; }
    }
}
"""


def _nginx(image: str) -> Image:
    _require("nginx", image)
    conf = cache_dir() / "nginx" / "nginx.conf"
    if not conf.exists() or conf.read_text() != _NGINX_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(_NGINX_CONF)
    # nginx opens its compiled-in log and temporary paths before it reads the configuration.
    return Image(normalise(image), [], ["nginx", "-c", str(conf), "-g", "daemon off;"], ports=(80,),
                 paths=(str(conf.parent),), writable_paths=("/var/log/nginx", "/var/lib/nginx", "/run/nginx"))


def _python_module(module: str, *args: str, binary: str = "") -> Callable[[str], Image]:
    def build(image: str) -> Image:
        argv = [sys.executable, "-m", module, *args]
        return Image(normalise(image), argv, [], binaries={binary: argv} if binary else {})

    return build


def _agnhost(image: str) -> Image:
    # The real image: ENTRYPOINT ["/agnhost"], CMD ["pause"], and /agnhost-2 a symlink to it
    # (entrypoint tests override the entrypoint with it and check argv[0]).
    def run_as(path: str) -> list[str]:
        return [sys.executable, "-m", "kubelite.images.agnhost", f"--argv0={path}"]

    return Image(normalise(image), run_as("/agnhost"), ["pause"], ports=(80, 8080, 8081, 9376),
                 binaries={"/agnhost": run_as("/agnhost"), "/agnhost-2": run_as("/agnhost-2")})



_pause = _python_module("kubelite.images.pause")

# Repository (without tag) -> how to build the image.
BUILTIN: dict[str, Callable[[str], Image]] = {
    "registry.k8s.io/e2e-test-images/agnhost": _agnhost,
    "k8s.gcr.io/e2e-test-images/agnhost": _agnhost,
    "gcr.io/kubernetes-e2e-test-images/agnhost": _agnhost,
    "registry.k8s.io/pause": _pause,
    "k8s.gcr.io/pause": _pause,
    "docker.io/kubelite/pause": _pause,
    "docker.io/kubelite/dns": _python_module("kubelite.dns"),
    "docker.io/library/busybox": _busybox,
    "registry.k8s.io/e2e-test-images/busybox": _busybox,
    "gcr.io/google-containers/busybox": _busybox,
    "docker.io/library/python": _python,
    "docker.io/library/redis": _redis,
    "docker.io/library/mariadb": _mariadb("mariadb"),
    "docker.io/library/mysql": _mariadb("mysql"),
    "docker.io/library/nginx": _nginx,
    "registry.k8s.io/e2e-test-images/nginx": _nginx,
}


def _oci_from_catalog_entry(image: str, entry: dict[str, Any]) -> OCIImage:
    """TEST HOOK until the image store resolves names (issue 16): a catalog entry with a
    ``rootfs`` (a directory holding an unpacked image) is that real image, run with runc."""
    from kubelite.images.oci import OCIImage

    rootfs = pathlib.Path(str(entry["rootfs"]))
    return OCIImage(
        name=normalise(image),
        digest="sha256:" + hashlib.sha256(str(rootfs.resolve()).encode()).hexdigest(),
        rootfs=rootfs,
        entrypoint=[str(a) for a in entry.get("entrypoint") or []],
        cmd=[str(a) for a in entry.get("cmd") or []],
        env={str(k): str(v) for k, v in (entry.get("env") or {}).items()},
        workdir=str(entry.get("workdir", "")),
        user=str(entry.get("user", "")),
    )


def _program_dirs(argv: list[str], path_env: str) -> list[str]:
    """The directories of the program ``argv`` runs and of its ``#!`` interpreter: a catalog
    entry's own program (a script of the user's) is part of its image."""
    dirs: list[str] = []
    program = argv[0] if argv else ""
    for _ in range(4):  # the kernel nests interpreters at most 4 deep
        found = program if "/" in program else shutil.which(program, path=path_env)
        if not found or not os.path.isfile(found):
            break
        for path in (found, os.path.realpath(found)):
            dirs.append(os.path.dirname(os.path.abspath(path)))
        try:
            with open(found, "rb") as f:
                first = f.readline(256)
        except OSError:
            break
        words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
        if not words:
            break
        program = words[1] if os.path.basename(words[0]) == "env" and len(words) > 1 else words[0]
    return list(dict.fromkeys(dirs))


def _from_catalog_entry(image: str, entry: dict[str, Any]) -> Image:
    env = {"PATH": DEFAULT_PATH, **{str(k): str(v) for k, v in (entry.get("env") or {}).items()}}
    entrypoint = [str(a) for a in entry.get("command", entry.get("entrypoint")) or []]
    cmd = [str(a) for a in entry.get("args", entry.get("cmd")) or []]
    # The entry's PATH directories outside the system's, its program's directory and the
    # paths it names are its image's files.
    path_dirs = [d for d in env["PATH"].split(":") if d and d not in DEFAULT_PATH.split(":")]
    paths = [*path_dirs, *_program_dirs(entrypoint or cmd, env["PATH"]), *(str(p) for p in entry.get("paths") or ())]
    return Image(
        normalise(image),
        entrypoint,
        cmd,
        env,
        str(entry.get("workingDir", entry.get("workdir", ""))),
        tuple(int(p) for p in entry.get("ports") or ()),
        paths=tuple(dict.fromkeys(paths)),
        writable_paths=tuple(str(p) for p in entry.get("writablePaths") or ()),
    )


def load_catalog(catalog_file: pathlib.Path) -> dict[str, dict[str, Any]]:
    """The user catalog: YAML mapping image names to ``command``/``entrypoint``,
    ``args``/``cmd``, ``env``, ``workingDir``, ``ports``, and ``paths`` (host paths the
    program needs, read-only in its containers) and ``writablePaths`` (directories it writes,
    private to each container). Keys are normalised like
    references; a key without tag matches every tag of its repository."""
    import yaml

    data = yaml.safe_load(catalog_file.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{catalog_file}: an image catalog is a mapping of image names to images")
    catalog: dict[str, dict[str, Any]] = {}
    for key, entry in data.items():
        repository, version = split_reference(str(key))
        has_version = "@" in str(key) or str(key).rfind(":") > str(key).rfind("/")
        catalog[f"{repository}:{version}" if has_version else repository] = dict(entry or {})
    return catalog


def resolve_oci(image: str, catalog_file: pathlib.Path | None) -> OCIImage | None:
    """TEST HOOK (see _oci_from_catalog_entry): the catalog entry of ``image`` if it has a ``rootfs``."""
    if catalog_file is None:
        return None
    repository, version = split_reference(image)
    catalog = load_catalog(catalog_file)
    entry = catalog.get(f"{repository}:{version}", catalog.get(repository))
    return _oci_from_catalog_entry(image, entry) if entry is not None and entry.get("rootfs") else None


def resolve(image: str, catalog_file: pathlib.Path | None = None) -> Image:
    repository, version = split_reference(image)
    if catalog_file is not None:
        catalog = load_catalog(catalog_file)
        entry = catalog.get(f"{repository}:{version}", catalog.get(repository))
        if entry is not None:
            return _from_catalog_entry(image, entry)
    build = BUILTIN.get(repository)
    if build is None:
        known = ", ".join(sorted(name.removeprefix("docker.io/library/") for name in BUILTIN))
        raise ImageNotFound(
            f'Failed to pull image "{image}": image not found in the kubelite image catalog; known images: {known}'
        )
    return build(image)
