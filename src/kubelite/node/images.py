"""The kubelet's image manager: which image a container gets, and the events that say so.

Kubernetes' ``pkg/kubelet/images`` decides from ``imagePullPolicy`` whether to pull
(Always; IfNotPresent when the image is missing; Never refuses with ErrImageNeverPull) and
writes the ``Pulling`` / ``Pulled`` / ``Failed`` events. kubelite has two kinds of image, so
the manager also applies the node's resolution mode (``kubelite up --images``):

- ``catalog``: the catalog only, never a pull (kubelite's behaviour before real images);
- ``oci``: the image store, then the registry; never the catalog;
- ``auto`` (default): the store first; a name the catalog knows and the store does not have
  resolves from the catalog without any network round trip (an offline machine never waits
  on a registry for ``busybox``) unless the catalog's program is not installed here (then it
  is pulled); any other name is pulled; when a pull cannot reach its
  registry, or skopeo/umoci are missing, a catalog name still falls back to the catalog.

Back-off (ErrImagePull → ImagePullBackOff) stays in the pod worker, keyed per container, as
before; this module raises :class:`ImagePullError` with the waiting reason and message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kubelite import images
from kubelite.images import split_reference
from kubelite.images.oci import OCIImage
from kubelite.images.pull import Puller, PullError
from kubelite.images.store import ImageStore, StoreError

log = logging.getLogger(__name__)

MODES = ("auto", "oci", "catalog")

EventFn = Callable[[str, str, str], None]  # (type, reason, message), bound to the pod
SecretsFn = Callable[[], Awaitable[list[dict[str, Any]]]]
AnyImage = images.Image | OCIImage


class ImagePullError(Exception):
    """Why a container has no image: ``reason`` is its waiting reason, ``str()`` the message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def pull_policy(container: dict[str, Any]) -> str:
    """The container's imagePullPolicy, defaulted as the API server does (``:latest`` or no tag → Always)."""
    policy = str(container.get("imagePullPolicy") or "")
    if policy:
        return policy
    image = str(container.get("image") or "")
    if "@" in image:
        return "IfNotPresent"
    return "Always" if split_reference(image)[1] == "latest" else "IfNotPresent"


_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*"  # name
    r"(?::[\w][\w.-]{0,127})?"  # tag
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")  # digest


def reference_error(image: str) -> str:
    """Why ``image`` is no image reference (distribution's ParseNormalizedNamed), or ""."""
    name = image.split("@", 1)[0]
    slash = name.find("/")
    first = name[:slash] if slash >= 0 else ""
    remainder = name[slash + 1:] if first and ("." in first or ":" in first or first == "localhost") else name
    remainder = remainder.rsplit(":", 1)[0] if ":" in remainder.rsplit("/", 1)[-1] else remainder
    if remainder.lower() != remainder:
        path = remainder if "/" in remainder or first else f"library/{remainder}"
        return f"invalid reference format: repository name ({path}) must be lowercase"
    if not image or _REFERENCE.fullmatch(image) is None or len(name.split(":")[0]) > 255:
        return "invalid reference format"
    return ""


def go_duration(seconds: float) -> str:
    """A Go ``time.Duration`` truncated to milliseconds, as the kubelet prints it (``1.234s``, ``523ms``)."""
    ms = int(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes == 0:
        return secs
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m" + secs


def tools_missing() -> list[str]:
    return [tool for tool in ("skopeo", "umoci") if shutil.which(tool) is None]


class ImageManager:
    def __init__(
        self,
        catalog: Callable[[str], images.Image | OCIImage],
        store: ImageStore | None,
        *,
        mode: str = "auto",
        insecure_registries: Iterable[str] = (),
        catalog_knows: Callable[[str], bool] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"--images must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = "catalog" if store is None else mode
        self.catalog = catalog
        self.store = store
        self.puller = Puller(store, insecure_registries) if store is not None else None
        self._catalog_knows = catalog_knows or _builtin_knows

    def catalog_knows(self, name: str) -> bool:
        return self._catalog_knows(name)

    async def ensure(self, name: str, policy: str, secrets: SecretsFn, event: EventFn) -> AnyImage:
        """The image of a container about to start (EnsureImageExists)."""
        if error := reference_error(name):
            message = f'Failed to apply default image tag "{name}": couldn\'t parse image name "{name}": {error}'
            event("Warning", "InspectFailed", message)
            raise ImagePullError("InvalidImageName", message)
        if self.mode == "catalog" or self.store is None:
            return self._from_catalog(name, event)
        present = await asyncio.to_thread(self.store.lookup, name)
        knows = self.mode == "auto" and self.catalog_knows(name)
        if present is None and knows:
            # No network round trip for catalog names; unless the catalog's program is not on
            # this machine (no redis-server, say) while the puller is: then the real image.
            try:
                image = self.catalog(name)
            except images.ImageNotFound:
                if tools_missing():
                    return self._from_catalog(name, event)
                knows = False
            else:
                event("Normal", "Pulled", f'Container image "{name}" already present on machine')
                return image
        if policy == "Never" or (policy != "Always" and present is not None):
            if present is None:
                message = f'Container image "{name}" is not present with pull policy of Never'
                event("Warning", "ErrImageNeverPull", message)
                raise ImagePullError("ErrImageNeverPull", message)
            event("Normal", "Pulled", f'Container image "{name}" already present on machine')
            await asyncio.to_thread(self.store.touch, [present.name])  # for the image GC's LRU order
            return present
        missing = tools_missing()
        if missing:
            if knows:
                return self._from_catalog(name, event)
            message = (f'failed to pull image "{name}": {" and ".join(missing)} not installed on this node '
                       f"(Debian/Ubuntu: apt-get install skopeo umoci)")
            event("Warning", "Failed", f'Failed to pull image "{name}": {message}')
            raise ImagePullError("ErrImagePull", message)
        assert self.puller is not None
        started = time.monotonic()
        event("Normal", "Pulling", f'Pulling image "{name}"')
        try:
            result = await self.puller.pull(name, await secrets())
        except (PullError, StoreError) as e:
            if knows and getattr(e, "unreachable", False):
                log.info("registry unreachable for %s, using the catalog: %s", name, e)
                return self._from_catalog(name, event)
            message = f'failed to pull and unpack image "{name}": {e}'
            if present is not None and policy == "Always":
                message += (' (the image is in the node\'s image store, loaded or pulled before, but its '
                            'imagePullPolicy is Always, the default for ":latest" or untagged images: '
                            'set imagePullPolicy: IfNotPresent to run it without a registry)')
            event("Warning", "Failed", f'Failed to pull image "{name}": {message}')
            raise ImagePullError("ErrImagePull", message) from e
        waited = time.monotonic() - started
        event("Normal", "Pulled",
              f'Successfully pulled image "{name}" in {go_duration(result.seconds)} '
              f"({go_duration(waited)} including waiting). Image size: {result.image.size} bytes.")
        return result.image

    def _from_catalog(self, name: str, event: EventFn) -> images.Image | OCIImage:
        try:
            image = self.catalog(name)
        except images.ImageNotFound as e:
            message = str(e)
            if self.mode == "auto" and self.store is not None:
                message += " (nor in the node's image store)"
            event("Warning", "Failed", message)
            raise ImagePullError("ErrImagePull", message) from e
        event("Normal", "Pulled", f'Container image "{name}" already present on machine')
        return image

    def mark_used(self, names: list[str]) -> None:
        if self.store is not None and names:
            self.store.touch(names)

    def gc(self, in_use: set[str]) -> list[str]:
        """The image GC over the store; ``in_use``: manifest digests of containers that exist."""
        if self.store is None:
            return []
        return self.store.gc(in_use)


def _builtin_knows(name: str) -> bool:
    return split_reference(name)[0] in images.BUILTIN


IMPORT_PERIOD = 2.0  # how often DATA_DIR/images/ is looked at
GC_PERIOD = 300.0  # the kubelet's ImageGCPeriod: 5 minutes
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".oci", ".oci.tar", ".docker")


def import_archives(store: ImageStore, directory: pathlib.Path, seen: dict[str, tuple[int, int]]) -> list[str]:
    """Load the archives of ``directory`` not loaded yet (or changed since), as k3s's agent/images/.

    ``seen`` (path → (size, mtime)) is kept by the caller and in ``<store>/imported.json`` so
    that an agent restart does not load every archive again."""
    names: list[str] = []
    if not directory.is_dir():
        return names
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not path.name.endswith(ARCHIVE_SUFFIXES) or path.name.startswith("."):
            continue
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        if seen.get(str(path)) == stamp or time.time() - st.st_mtime < 1.0:  # still being written
            continue
        try:
            records = store.load(path)
            names += [r.name for r in records]
            log.info("imported %s: %s", path, ", ".join(r.name for r in records))
        except (StoreError, OSError) as e:
            log.warning("could not import %s: %s", path, e)
        seen[str(path)] = stamp
    return names


async def housekeeping(manager: ImageManager, import_dir: pathlib.Path | None,
                       in_use: Callable[[], set[str]]) -> None:
    """The agent's image loop: the auto-import directory, then the image GC every GC_PERIOD."""
    store = manager.store
    if store is None:
        return
    state = store.root / "imported.json"
    try:
        seen = {k: (int(v[0]), int(v[1])) for k, v in json.loads(state.read_text()).items()}
    except (OSError, ValueError):
        seen = {}
    await asyncio.to_thread(store.clean_tmp)
    next_gc = time.monotonic() + GC_PERIOD
    while True:
        if import_dir is not None:
            before = dict(seen)
            await asyncio.to_thread(import_archives, store, import_dir, seen)
            if seen != before:
                state.write_text(json.dumps(seen))
        if time.monotonic() >= next_gc:
            next_gc = time.monotonic() + GC_PERIOD
            try:
                removed = await asyncio.to_thread(store.gc, in_use())
                if removed:
                    log.info("image GC removed %s", ", ".join(removed))
            except OSError as e:
                log.warning("image GC: %s", e)
        await asyncio.sleep(IMPORT_PERIOD)
