"""A small real image root for OCI runtime tests, built offline from Debian's busybox-static.

``apt-get download busybox-static`` (once per test run, into a temporary directory) and
``dpkg-deb -x``: the package is never installed. The root holds busybox with a symlink per
applet, an /etc/passwd and /etc/group with a non-root user, and a file "baked into the
image" that the host does not have. It stands in for an unpacked image until the image
store's fixture (issue 16) builds real OCI layouts.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

from tests.conftest import require

BAKED = "/baked/hello.txt"
BAKED_TEXT = "baked into the image"
PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
extra:x:2000:app
nogroup:x:65534:
"""


def busybox_deb(cache: pathlib.Path) -> pathlib.Path:
    """The busybox-static .deb, downloaded into ``cache`` unless already there."""
    found = sorted(cache.glob("busybox-static_*.deb"))
    if found:
        return found[0]
    require(shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None,
            "needs apt-get and dpkg-deb to fetch busybox-static")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", "busybox-static"], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob("busybox-static_*.deb"))
    require(done.returncode == 0 and bool(found), f"apt-get download busybox-static failed: {done.stderr[-300:]}")
    return found[0]


def build_rootfs(deb: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """An unpacked image root at ``dest`` (read by the overlay as its lower layer, never written)."""
    extract = dest.with_name(dest.name + "-deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extract)], check=True)
    busybox = extract / "bin" / "busybox"
    for sub in ("bin", "etc", "tmp", "root", "home/app", "app", "proc", "sys", "dev", "baked", "var"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    (dest / BAKED.lstrip("/")).write_text(BAKED_TEXT + "\n")
    os.chown(dest / "home" / "app", 1000, 1000)
    shutil.rmtree(extract)
    return dest
