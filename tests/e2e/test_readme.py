"""The README, followed word for word: its set-up command, then the lecture's walkthrough.

A newcomer copies the README's commands; so does this test. It reads them out of README.md
(nothing is duplicated here), runs the set-up command exactly as written from the checkout
(installing the package into a virtualenv of the test's own, so the checkout's own install is
left alone, with a home directory of its own so the kubeconfig merge lands there), then runs
every `$ ` command of the walkthrough, in order, in one shell — `kubectl` finds the cluster
through the merged context, as the user's would. Each command's output is compared with the
output the README shows, after replacing what differs from run to run (generated pod names,
IPs, ages, counts, times, the home directory). Abridged output (lines ending in `...`) matches
by prefix, and the README's lines need only appear, in any order, among the real ones.

The cluster has the default name and port, as in the README: the test needs 6443 and 8080
free on 127.0.0.1 and no cluster named "kubelite" on this machine.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import require

pytestmark = pytest.mark.timeout(900)

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@dataclass
class Step:
    command: str
    comment: str
    expected: list[str] = field(default_factory=list)


def _block_after(text: str, heading: str, fence: str) -> list[str]:
    start = text.index(heading)
    begin = text.index(fence + "\n", start) + len(fence) + 1
    return text[begin:text.index("\n```", begin)].splitlines()


def setup_command(text: str) -> str:
    return _block_after(text, "## Run it", "```sh")[0].strip()


def walkthrough(text: str) -> list[Step]:
    steps: list[Step] = []
    for line in _block_after(text, "## The lecture, step by step", "```console"):
        if line.startswith("$ "):
            command, _, comment = line[2:].partition(" # ")
            steps.append(Step(command.strip(), comment.strip()))
        elif steps and line.strip():
            steps[-1].expected.append(re.sub(r"\s{2,}#.*$", "", line))
    return steps


def normalize(line: str, home: str = "") -> str:
    if home:
        line = line.replace(home, "/root")
    line = re.sub(r"\b([a-z][a-z0-9-]*?)-[a-z0-9]{8,10}-[a-z0-9]{5}\b", r"\1-<pod>", line)  # Deployment pods
    line = re.sub(r"\b\d{1,3}(\.\d{1,3}){3}\b", "<ip>", line)
    line = re.sub(r"\d+", "<n>", line)
    return " ".join(line.split())


def missing_lines(expected: list[str], actual: list[str], home: str) -> list[str]:
    """The README's lines that are not among the real output (each real line used once)."""
    pool = [normalize(a, home) for a in actual]
    missing = []
    for e in expected:
        want = normalize(e)
        abridged = want.endswith("...")
        want = want.removesuffix("...").rstrip()
        hit = next((i for i, a in enumerate(pool) if (a.startswith(want) if abridged else a == want)), None)
        if hit is None:
            missing.append(e)
        else:
            pool.pop(hit)
    return missing


def test_the_readme_parses_into_commands_with_their_output() -> None:
    """The parser itself: what the e2e test below runs (runs anywhere, no root)."""
    text = README.read_text()
    assert setup_command(text) == "bash scripts/up"
    steps = walkthrough(text)
    assert steps[0].command == "bash scripts/up" and steps[0].expected
    assert any(s.command == "kubectl create -f examples/fullstack/backend-service.yaml" for s in steps)
    assert "fails" in next(s.comment for s in steps if "no Service yet" in s.comment)
    assert normalize("backend-6654fc5ff9-5np52   1/1   Running   0   4s   10.244.0.7   demo-node") == \
        "backend-<pod> <n>/<n> Running <n> <n>s <ip> demo-node"
    assert missing_lines(["a-1  x", "b ..."], ["b c d", "a-2 x"], "") == []
    assert missing_lines(["a-1  x", "a-1 x"], ["a-2 x"], "") == ["a-1 x"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def fresh_home(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    require(os.geteuid() == 0, "the README's set-up runs kubelite up as root")
    for tool in ("kubectl", "curl"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    require(port_free(6443) and port_free(8080), "ports 6443 and 8080 on 127.0.0.1 must be free")
    require(not os.path.exists("/run/netns/kubelite-node"), 'a cluster named "kubelite" runs on this machine')
    home = tmp_path / "home"
    home.mkdir()
    yield home


def test_following_the_readme_word_for_word(fresh_home: pathlib.Path, tmp_path: pathlib.Path) -> None:
    text = README.read_text()
    setup, steps = setup_command(text), walkthrough(text)
    assert steps[0].command == setup, "the walkthrough starts with the set-up command"
    venv = tmp_path / "venv"
    # The set-up command installs with the `python3` it finds first: a virtualenv of our own
    # that sees the test run's packages, so `pip install .` installs only kubelite, into it.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "SUDO_USER", "XDG_DATA_HOME")}
    env.update(HOME=str(fresh_home), PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
    home = str(fresh_home)

    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(["bash", "-c", setup], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "is ready" not in log.read_text():
            assert up.poll() is None, f"{setup} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{setup} not ready in time:\n{log.read_text()}"
            time.sleep(0.1)
        time.sleep(0.2)  # the summary follows the ready line
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith(("kubelite", " ", "  "))]
        assert not (gone := missing_lines(steps[0].expected, lines, home)), \
            f"{setup}: README lines not in the output: {gone}\n--- output:\n{log.read_text()}"

        script = ["exec 2>&1"]
        for i, step in enumerate(steps[1:], 1):
            script += [f"echo '@@BEGIN {i}'", step.command, f"echo \"@@END {i} $?\""]
        script += ["kill $(jobs -p) 2>/dev/null; wait"]
        res = subprocess.run(["bash", "--noprofile", "--norc", "-c", "\n".join(script)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        # What really ran, for whoever updates the README's output: KUBELITE_README_TRANSCRIPT=path.
        transcript = log.read_text() + res.stdout
        if os.environ.get("KUBELITE_README_TRANSCRIPT"):
            pathlib.Path(os.environ["KUBELITE_README_TRANSCRIPT"]).write_text(transcript)
        outputs = re.findall(r"@@BEGIN (\d+)\n(.*?)@@END \1 (\d+)\n", res.stdout, re.S)
        assert len(outputs) == len(steps) - 1, f"not every command ran:\n{res.stdout}"
        for (_, output, code), step in zip(outputs, steps[1:], strict=True):
            report = f"$ {step.command}\n--- exit code {code}, output:\n{output}"
            if "fails" in step.comment:
                assert code != "0", report
            else:
                assert code == "0", report
            gone = missing_lines(step.expected, output.splitlines(), home)
            assert not gone, f"README lines not in the output: {gone}\n{report}"
    finally:
        with_log = log.read_text() if log.exists() else ""
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        subprocess.run([sys.executable, "-m", "kubelite", "down"], env=env, capture_output=True, timeout=60)
    assert up.returncode == 0, with_log
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "kubelite-" not in netns, netns
    kubeconfig = (fresh_home / ".kube" / "config").read_text()
    assert "kubelite" not in kubeconfig, "stopping the cluster takes its context out of the kubeconfig"
