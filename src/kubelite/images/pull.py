"""Pulling images from registries into the store, with skopeo.

skopeo speaks the distribution API (token auth, redirects, mirrors from registries.conf,
multi-arch indexes resolved to the host platform), so kubelite has no registry client of
its own: a pull is ``skopeo copy docker://REF oci:<temporary layout>`` whose ``blobs`` is
the store's shared blob directory (blobs present are skipped), then one ``umoci raw unpack``
per new manifest digest.

Which registries speak plain HTTP: loopback ones (``localhost:PORT``, ``127.0.0.1:PORT``,
``[::1]:PORT``) as Docker treats them, and those named with ``--insecure-registry``; every
other one HTTPS with verified certificates.

Credentials come from the pod's imagePullSecrets (``kubernetes.io/dockerconfigjson`` and
the legacy ``kubernetes.io/dockercfg``), matched against the image as the kubelet's
credential keyring does (host with ``*`` globs, then the longest path prefix), and handed to
skopeo in a temporary authfile readable only by us, removed after the pull.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import json
import os
import pathlib
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubelite.images import split_reference
from kubelite.images.oci import OCIImage
from kubelite.images.store import ImageStore, StoreError, tool_reason

PULL_TIMEOUT = 600.0
_UNREACHABLE = ("connection refused", "no such host", "network is unreachable", "i/o timeout",
                "no route to host", "server misbehaving", "dial tcp", "tls handshake timeout",
                "temporary failure in name resolution", "context deadline exceeded")


class PullError(Exception):
    """A failed pull; ``str()`` is the registry's reason (``manifest unknown``, ``unauthorized``...)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def registry_host(ref: str) -> str:
    return split_reference(ref)[0].split("/", 1)[0]


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in ("localhost", "127.0.0.1", "[::1]", "::1") or name.startswith("127.")


def plain_http(host: str, insecure: Iterable[str] = ()) -> bool:
    return is_loopback(host) or host in set(insecure)


# ---------------------------------------------------------------- credentials


def _normalise_key(key: str) -> tuple[str, str]:
    """A dockercfg key (``https://index.docker.io/v1/``, ``host:port/path``) as ``(host, path)``."""
    key = key.strip()
    for scheme in ("https://", "http://"):
        key = key.removeprefix(scheme)
    host, _, path = key.rstrip("/").partition("/")
    if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        host = "docker.io"
        if path in ("v1", "v2"):
            path = ""
    return host, path


def _host_matches(pattern: str, host: str) -> bool:
    # As the credential keyring: globs per dot-separated part, same number of parts, same port.
    p_name, _, p_port = pattern.partition(":")
    h_name, _, h_port = host.partition(":")
    if p_port != h_port:
        return False
    p_parts, h_parts = p_name.split("."), h_name.split(".")
    return len(p_parts) == len(h_parts) and all(fnmatch.fnmatchcase(h, p) for p, h in zip(p_parts, h_parts, strict=True))


def _entries(secret: dict[str, Any]) -> dict[str, dict[str, Any]]:
    data = secret.get("data") or {}
    kind = secret.get("type", "")
    raw = data.get(".dockerconfigjson") if kind == "kubernetes.io/dockerconfigjson" else data.get(".dockercfg")
    if not raw:
        return {}
    try:
        decoded = json.loads(base64.b64decode(raw))
    except ValueError:
        return {}
    auths = decoded.get("auths") if kind == "kubernetes.io/dockerconfigjson" else decoded
    return {str(k): v for k, v in (auths or {}).items() if isinstance(v, dict)}


def credentials_for(ref: str, secrets: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(username, password)`` pairs for ``ref`` from pull secrets, best match first."""
    repository = split_reference(ref)[0]
    host, _, path = repository.partition("/")
    found: list[tuple[int, tuple[str, str]]] = []
    for secret in secrets:
        for key, entry in _entries(secret).items():
            k_host, k_path = _normalise_key(key)
            if not _host_matches(k_host, host):
                continue
            if k_path and not (path == k_path or path.startswith(k_path + "/")):
                continue
            user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
            if entry.get("auth") and not (user or password):
                with_colon = base64.b64decode(str(entry["auth"])).decode(errors="replace")
                user, _, password = with_colon.partition(":")
            if user or password:
                found.append((len(k_host) + len(k_path), (user, password)))
    found.sort(key=lambda item: -item[0])
    return [creds for _, creds in found]


def authfile_content(ref: str, creds: tuple[str, str]) -> dict[str, Any]:
    """containers-auth.json for one registry."""
    token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    return {"auths": {registry_host(ref): {"auth": token}}}


def write_authfile(directory: pathlib.Path, content: dict[str, Any]) -> pathlib.Path:
    fd, name = tempfile.mkstemp(prefix="auth-", suffix=".json", dir=directory)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f)
    return pathlib.Path(name)


# ---------------------------------------------------------------- pulling


@dataclass
class PullResult:
    image: OCIImage
    seconds: float  # the pull itself
    waited: float  # including waiting for another pull of the same image


class Puller:
    """Pulls into one store; concurrent pulls of one reference (with the same credentials) run once."""

    def __init__(self, store: ImageStore, insecure_registries: Iterable[str] = ()) -> None:
        self.store = store
        self.insecure = set(insecure_registries)
        self._inflight: dict[tuple[str, tuple[tuple[str, str], ...]], asyncio.Task[tuple[OCIImage, float]]] = {}

    async def pull(self, ref: str, secrets: Iterable[dict[str, Any]] = ()) -> PullResult:
        started = time.monotonic()
        creds = tuple(credentials_for(ref, secrets))
        key = (split_reference(ref)[0] + "@" + split_reference(ref)[1], creds)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._pull(ref, list(creds)))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        image, seconds = await asyncio.shield(task)
        return PullResult(image, seconds, time.monotonic() - started)

    async def _pull(self, ref: str, creds: list[tuple[str, str]]) -> tuple[OCIImage, float]:
        started = time.monotonic()
        last: PullError | None = None
        attempts: list[tuple[str, str] | None] = list(creds) or [None]
        for attempt in attempts:  # as the kubelet: each matching credential in turn
            try:
                image = await asyncio.to_thread(self._pull_sync, ref, attempt)
                return image, time.monotonic() - started
            except PullError as e:
                last = e
                if e.unreachable:
                    break
        assert last is not None
        raise last

    @staticmethod
    def _skopeo(args: list[str], ref: str) -> bytes:
        import subprocess

        try:
            proc = subprocess.run(["skopeo", *args], capture_output=True, timeout=PULL_TIMEOUT)
        except FileNotFoundError:
            raise PullError("skopeo is not installed (Debian/Ubuntu: apt-get install skopeo umoci)",
                            unreachable=True) from None
        except subprocess.TimeoutExpired:
            raise PullError(f"pulling {ref} took more than {PULL_TIMEOUT:.0f}s", unreachable=True) from None
        if proc.returncode != 0:
            reason = tool_reason((proc.stderr or proc.stdout).decode(errors="replace"))
            raise PullError(reason, unreachable=any(m in reason.lower() for m in _UNREACHABLE))
        return proc.stdout

    def _pull_sync(self, ref: str, creds: tuple[str, str] | None) -> OCIImage:
        repository, version = split_reference(ref)
        insecure = plain_http(registry_host(ref), self.insecure)
        layout = self.store.new_layout()
        # Never the user's ~/.docker or $XDG_RUNTIME_DIR credentials: a pod gets only its secrets.
        authfile = write_authfile(self.store.tmp, authfile_content(ref, creds) if creds else {"auths": {}})
        try:
            if version.startswith("sha256:"):
                repo_digest = version
            else:
                # The registry's digest of the tag first (containerd's repo digest: the imageID, and
                # what the copy then names, so a tag moving meanwhile cannot mix two images).
                raw = self._skopeo(["inspect", "--raw", "--retry-times", "0", "--authfile", str(authfile),
                                    *(["--tls-verify=false"] if insecure else []),
                                    f"docker://{repository}:{version}"], ref)
                repo_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            self._skopeo(["copy", "--quiet", "--retry-times", "0", "--src-authfile", str(authfile),
                          *(["--src-tls-verify=false"] if insecure else []),
                          f"docker://{repository}@{repo_digest}", f"oci:{layout}:image"], ref)
            try:
                record = self.store.import_layout(layout, [ref], ref_name="image", repo_digest=repo_digest)[0]
            except StoreError as e:
                raise PullError(str(e)) from e
            return self.store.image(record)
        finally:
            authfile.unlink(missing_ok=True)
            self.store.drop_layout(layout)
