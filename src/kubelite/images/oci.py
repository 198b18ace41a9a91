"""Real OCI images: the contract between the image store and the node's OCI runtime.

kubelite's catalog (``kubelite.images``) maps an image name to a program on this machine.
An :class:`OCIImage` is the other kind of image: a real one, pulled or loaded into the image
store under the data dir and unpacked once per manifest digest into a read-only root
filesystem that every container of that image shares as its overlay's lower layer.

The store (pull with skopeo, unpack with umoci, load, GC) lives beside this contract; the
node's runtime only needs what is here: the unpacked root and the image config's defaults.
Both kinds of image answer the same questions (``name``, ``entrypoint``, ``cmd``, ``env``,
``workdir``, ``image_id``, ``host_argv``), so the pod worker builds a container's argv and
environment the same way for each, as the kubelet does from any image config.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from kubelite.images import split_reference


@dataclass(frozen=True)
class OCIImage:
    name: str  # the normalised reference, e.g. "docker.io/library/busybox:1.36"
    digest: str  # the manifest's digest, "sha256:<hex>"
    rootfs: pathlib.Path  # the unpacked image: read-only, shared, the overlay's lower dir
    entrypoint: list[str] = field(default_factory=list)  # config.Entrypoint
    cmd: list[str] = field(default_factory=list)  # config.Cmd
    env: dict[str, str] = field(default_factory=dict)  # config.Env, in order
    workdir: str = ""  # config.WorkingDir
    user: str = ""  # config.User: "uid", "uid:gid", "name" or "name:group", resolved in the rootfs
    size: int = 0  # bytes of the image's layers, for events and `kubelite image ls`
    repo_digest: str = ""  # the registry's digest of what was pulled (an index's), if not ``digest``

    @property
    def image_id(self) -> str:
        """``repo@sha256:...`` for containerStatuses[].imageID, as containerd reports it: the
        registry's digest for a pulled image (what `docker pull` prints), else the manifest's."""
        return f"{split_reference(self.name)[0]}@{self.repo_digest or self.digest}"

    def host_argv(self, argv: list[str]) -> list[str]:
        """Inside its own root a container's argv needs no translation (a catalog image's does)."""
        return argv
