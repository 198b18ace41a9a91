"""What a catalog container's root shows of the Python installation (kubelite.node.isolation):
the directories the site-packages' ``.pth`` files name, read again when one changes (another
checkout installed with ``pip install -e`` while the cluster runs)."""

from __future__ import annotations

import os
import pathlib

from kubelite.node import isolation


def test_a_changed_pth_file_is_read_again(tmp_path: pathlib.Path) -> None:
    site, first, second = tmp_path / "site", tmp_path / "one", tmp_path / "two"
    for d in (site, first, second):
        d.mkdir()
    pth = site / "__editable__.kubelite.pth"
    pth.write_text(f"{first}\n")
    sites = (str(site),)
    before = isolation._install_paths_for(sites, isolation._pth_signature(sites))
    assert str(first) in before and str(second) not in before
    pth.write_text(f"{second}\nimport this_is_not_a_path\n")
    os.utime(pth, ns=(1, 1))  # a different mtime, whatever the filesystem's resolution
    after = isolation._install_paths_for(sites, isolation._pth_signature(sites))
    assert str(second) in after and str(first) not in after
    # Unchanged files: the cached answer, no re-reading.
    assert isolation._install_paths_for(sites, isolation._pth_signature(sites)) is after


def test_the_running_installation_is_always_there() -> None:
    import sys

    paths = isolation.install_paths()
    assert sys.prefix in paths and str(pathlib.Path(isolation.__file__).resolve().parents[2]) in paths
