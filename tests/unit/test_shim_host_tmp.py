"""Whether a container keeps the host's /tmp (kubelite.node.shim._needs_host_tmp).

A container gets a private /tmp unless what its exec needs lives under the host's: then the
tmpfs would hide the program. Issue 14: kubelite installed in a venv under /tmp never got
DNS, because ``/tmp/venv/bin/python3`` is a symlink to an interpreter outside /tmp and the
decision looked only at where the link led.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

from kubelite.node import shim

# The real interpreter (outside /tmp unless this checkout's Python lives there).
REAL_PYTHON = os.path.realpath(sys.executable)


def _under_tmp(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/")


@pytest.fixture
def in_tmp() -> Iterator[pathlib.Path]:
    """A directory under the host's /tmp (as /tmp/venv would be)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="kubelite-host-tmp-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def outside_tmp() -> Iterator[pathlib.Path]:
    """A directory that is not under /tmp, even once resolved."""
    base = "/var/tmp" if os.path.isdir("/var/tmp") else os.path.expanduser("~")
    d = pathlib.Path(tempfile.mkdtemp(prefix="kubelite-host-tmp-", dir=base))
    try:
        if _under_tmp(os.path.realpath(d)):
            pytest.skip(f"{base} is under /tmp here")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def installed_outside_tmp() -> None:
    """The default decision also looks at where kubelite's Python lives: that must not be /tmp
    for a test of the program alone to mean anything."""
    install = [sys.executable, sys.prefix, sys.exec_prefix, sys.base_prefix, str(pathlib.Path(shim.__file__).parents[2])]
    if _under_tmp(REAL_PYTHON) or any(_under_tmp(os.path.realpath(p)) or _under_tmp(os.path.abspath(p))
                                      for p in install):
        pytest.skip("this Python or kubelite lives under /tmp: every container keeps the host's /tmp")


def test_a_venv_python_under_tmp_linking_out_keeps_the_host_tmp(in_tmp: pathlib.Path,
                                                                 installed_outside_tmp: None) -> None:
    # The DNS pod's program: /tmp/venv/bin/python3 -> /usr/bin/python3.X.
    (in_tmp / "bin").mkdir()
    python3 = in_tmp / "bin" / "python3"
    python3.symlink_to(REAL_PYTHON)
    assert not _under_tmp(os.path.realpath(python3))
    assert shim._needs_host_tmp([str(python3), "-m", "kubelite.dns"], {"PATH": "/usr/bin:/bin"})


def test_a_program_found_through_path_under_tmp(in_tmp: pathlib.Path, installed_outside_tmp: None) -> None:
    # An image's program directory (busybox's applet links) in a cache under /tmp.
    (in_tmp / "sh").symlink_to(REAL_PYTHON)
    assert shim._needs_host_tmp(["sh", "-c", "true"], {"PATH": f"{in_tmp}:/usr/bin:/bin"})


def test_a_symlink_chain_passing_through_tmp(in_tmp: pathlib.Path, outside_tmp: pathlib.Path,
                                            installed_outside_tmp: None) -> None:
    # Neither the name nor the end of the chain is under /tmp; the link in the middle is.
    (in_tmp / "hop").symlink_to(REAL_PYTHON)
    (outside_tmp / "prog").symlink_to(in_tmp / "hop")
    assert shim._needs_host_tmp([str(outside_tmp / "prog")], {})
    # A directory on the way counts as much as the file.
    (outside_tmp / "dir").symlink_to(in_tmp)
    assert shim._needs_host_tmp([str(outside_tmp / "dir" / "hop")], {})


def test_a_script_whose_interpreter_is_under_tmp(in_tmp: pathlib.Path, outside_tmp: pathlib.Path,
                                                 installed_outside_tmp: None) -> None:
    # pip's console scripts: #!/tmp/venv/bin/python3, itself a link out of /tmp.
    (in_tmp / "python3").symlink_to(REAL_PYTHON)
    script = outside_tmp / "tool"
    script.write_text(f"#!{in_tmp / 'python3'}\nprint('hi')\n")
    script.chmod(0o755)
    assert shim._needs_host_tmp([str(script)], {})
    # Through env, looked up in the container's PATH.
    script.write_text("#!/usr/bin/env python3\nprint('hi')\n")
    assert shim._needs_host_tmp([str(script)], {"PATH": f"{in_tmp}:/usr/bin:/bin"})
    assert not shim._needs_host_tmp([str(script)], {"PATH": "/usr/bin:/bin"})


def test_programs_outside_tmp_get_a_private_tmp(outside_tmp: pathlib.Path, installed_outside_tmp: None) -> None:
    assert not shim._needs_host_tmp([REAL_PYTHON, "-c", "pass"], {})
    (outside_tmp / "python3").symlink_to(REAL_PYTHON)
    assert not shim._needs_host_tmp(["python3"], {"PATH": str(outside_tmp)})
    # A name the exec will not find is not a reason either (the start fails with runc's error).
    assert not shim._needs_host_tmp(["no-such-program"], {"PATH": str(outside_tmp)})
    assert not shim._needs_host_tmp([], {})


def test_kubelite_installed_under_tmp_keeps_it_for_every_container(in_tmp: pathlib.Path,
                                                                    installed_outside_tmp: None) -> None:
    # Its own images run this interpreter: a venv under /tmp, looked at without resolving.
    (in_tmp / "python3").symlink_to(REAL_PYTHON)
    assert shim._needs_host_tmp(["/bin/sh"], {}, install=[str(in_tmp / "python3")])
    assert not shim._needs_host_tmp(["/bin/sh"], {}, install=[REAL_PYTHON])


def test_lookup_walk_visits_every_link_and_where_it_leads(outside_tmp: pathlib.Path) -> None:
    base = os.path.realpath(outside_tmp)
    (outside_tmp / "real").mkdir()
    (outside_tmp / "real" / "f").write_text("")
    (outside_tmp / "link").symlink_to("real")  # relative: from the link's directory
    (outside_tmp / "abs").symlink_to(f"{base}/link/f")
    walk = shim._lookup_walk(f"{base}/./abs")
    # base's own components (no links: it is resolved), the link, base again from "/", and on.
    assert walk[base.count("/")] == f"{base}/abs"
    assert walk[-3:] == [f"{base}/link", f"{base}/real", f"{base}/real/f"]
    assert shim._lookup_walk(f"{base}/real/../link/f")[-4:] == [f"{base}/real", f"{base}/link", f"{base}/real",
                                                                f"{base}/real/f"]
    # A loop ends (the kernel says ELOOP; the exec fails on its own).
    (outside_tmp / "a").symlink_to("b")
    (outside_tmp / "b").symlink_to("a")
    assert len(shim._lookup_walk(f"{base}/a")) < 100
