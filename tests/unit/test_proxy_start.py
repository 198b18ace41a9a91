"""The proxy's start beside the node agent: waiting for the node namespace, and its entry point.

The agent makes the node's namespace and bridge while the proxy, in the same process, starts
programming them. A named namespace is an empty file under /run/netns until the namespace is
bind-mounted on it; these tests stand in for that moment with a plain empty file (entering
it fails with EINVAL for anyone, no root needed). tests/e2e/test_proxy.py mounts a real one.
"""

from __future__ import annotations

import logging
import pathlib
import subprocess
import sys

import pytest

from kubelite.linux.netns import NotANamespace, in_netns
from kubelite.proxy import proxier

CIDRS = ["10.96.0.0/12"]


def test_entering_an_empty_mount_point_says_it_is_no_namespace(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "node"
    path.touch()
    with pytest.raises(NotANamespace, match="not a network namespace") as info, in_netns(str(path)):
        pass
    assert (info.value.errno, info.value.filename) == (22, str(path))  # EINVAL, as setns reported it before


@pytest.mark.parametrize("made", ["nothing", "an empty mount point"])
async def test_the_proxy_waits_for_the_node_namespace_logs_once_and_gives_up_in_time(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, made: str,
) -> None:
    # Regression: with only the mount point there, the proxy failed at once with
    # "setns(CLONE_NEWNET): Invalid argument" and ended the agent's process with it.
    path = tmp_path / "node"
    if made != "nothing":
        path.touch()
    monkeypatch.setattr(proxier, "NODE_NETWORK_POLL", (0.01, 0.04))
    caplog.set_level(logging.INFO, logger=proxier.__name__)
    with pytest.raises(TimeoutError, match=r"the node network is not ready after 0\.3 s: .*node"):
        await proxier._route_service_cidrs(str(path), CIDRS, limit=0.3)
    waiting = [r.getMessage() for r in caplog.records if "waiting for the node network" in r.getMessage()]
    assert len(waiting) == 1, waiting


def test_python_m_kubelite_proxy_is_the_proxy_without_the_cli() -> None:
    # proxier.py's __main__ block moved here, and no longer goes through kubelite.cli.
    res = subprocess.run([sys.executable, "-m", "kubelite.proxy", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    assert "--kubeconfig" in res.stdout and "--min-sync-period" in res.stdout and "--cleanup" in res.stdout
    res = subprocess.run([sys.executable, "-c", "import sys, kubelite.proxy.__main__; "
                          "print(sorted(m for m in sys.modules if m == 'kubelite.cli' or m.startswith('kubelite.cli.')))"],
                         capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout.strip()) == (0, "[]"), res.stderr
