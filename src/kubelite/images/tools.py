"""What this machine has for real images: an OCI runtime and the puller's tools.

``kubelite up`` says what it found and what to install, once, instead of every pod of a
real image failing later. The runtime probe is cheap: runc always works where it is
installed; crun 1.8 refuses to run on a hybrid (v1 + v2) cgroup layout, so it is chosen only
on a unified cgroup v2 hierarchy (the node runtime may probe further before using it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

INSTALL_HINT = "apt-get install runc skopeo umoci"


@dataclass(frozen=True)
class Tools:
    runtime: str  # "runc", "crun" or "" when none works
    runtime_path: str
    skopeo: str
    umoci: str

    @property
    def puller(self) -> bool:
        return bool(self.skopeo and self.umoci)

    def describe(self, mode: str) -> str:
        """One line for `kubelite up`."""
        if mode == "catalog":
            return "images: catalog only (--images=catalog): no pulls"
        runtime = f"{self.runtime} ({self.runtime_path})" if self.runtime else "no OCI runtime"
        puller = "skopeo + umoci" if self.puller else "no puller"
        missing = [name for name, path in (("runc", self.runtime_path), ("skopeo", self.skopeo),
                                           ("umoci", self.umoci)) if not path]
        line = f"images: --images={mode}, runtime {runtime}, puller {puller}"
        if missing:
            fallback = "catalog images only" if mode == "auto" else "real images fail to start"
            line += f"; missing {', '.join(missing)} ({fallback}): apt-get install {' '.join(missing)}"
        return line


def unified_cgroup() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def find_tools() -> Tools:
    crun, runc = shutil.which("crun"), shutil.which("runc")
    if crun and unified_cgroup():
        runtime, path = "crun", crun
    elif runc:
        runtime, path = "runc", runc
    else:
        runtime, path = "", ""
    return Tools(runtime, path, shutil.which("skopeo") or "", shutil.which("umoci") or "")
