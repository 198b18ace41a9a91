"""From `git clone` to the lecture's example answering, with the README's set-up command.

What a newcomer does, timed: clone the repository, run the README's set-up command
(`bash scripts/up`: Debian packages if missing, `pip install .`, `kubelite up`) until the
cluster is ready, `kubectl apply -f examples/fullstack/`, and wait until the frontend's page
answers with data that went through the backend Service, Redis and MariaDB. Goal: under
2 minutes including installs.

To be honest about installs, the package goes into a fresh virtualenv (no system site
packages) with pip's cache off, so every Python dependency is downloaded and installed.
Debian packages already on this machine are not reinstalled by the set-up command; with
``--apt`` the benchmark also times reinstalling them with an empty download cache, and
reports it beside the rest (their dependencies stay installed, so it is a lower bound).

Usage (as root): python bench/bench_setup.py [--apt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
APT = ["nftables", "conntrack", "busybox", "redis-server", "mariadb-server"]


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def apt_reinstall(tmp: pathlib.Path) -> float:
    cache = tmp / "apt-archives"
    (cache / "partial").mkdir(parents=True)
    policy = pathlib.Path("/usr/sbin/policy-rc.d")
    own = not policy.exists()
    if own:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        t0 = time.perf_counter()
        run(["apt-get", "-o", f"Dir::Cache::archives={cache}", "install", "--reinstall", "-y", "-qq",
             "--no-install-recommends", *APT], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        return time.perf_counter() - t0
    finally:
        if own:
            policy.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apt", action="store_true", help="also time reinstalling the Debian packages")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_setup needs root (the README's set-up runs kubelite up as root)", file=sys.stderr)
        return 1
    name = f"klsetup{os.getpid() % 100000}"
    port = free_port()
    result: dict[str, object] = {"cluster": name}
    with tempfile.TemporaryDirectory(prefix="kl-bench-setup-") as tmp_s:
        tmp = pathlib.Path(tmp_s)
        home = tmp / "home"
        home.mkdir()
        venv = tmp / "venv"
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "SUDO_USER", "XDG_DATA_HOME")}
        env.update(HOME=str(home), PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
        up: subprocess.Popen[bytes] | None = None
        log = tmp / "up.log"
        try:
            t0 = time.perf_counter()
            run(["git", "clone", "-q", f"file://{ROOT}", str(tmp / "kubelite")])
            clone = tmp / "kubelite"
            result["clone_s"] = time.perf_counter() - t0
            # A fresh interpreter environment: what `python3` is on a new machine (with pip).
            run([sys.executable, "-m", "venv", str(venv)])
            t1 = time.perf_counter()
            with open(log, "wb") as out:
                up = subprocess.Popen(["bash", "scripts/up", "--name", name, "--api-port", str(port)], cwd=clone,
                                      env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            installed = None
            deadline = time.monotonic() + 600
            while "is ready" not in (text := log.read_text()):
                if installed is None and "starting cluster" in text:
                    installed = time.perf_counter() - t1
                if up.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("set-up failed:\n" + text)
                time.sleep(0.05)
            result["install_s"] = installed
            result["setup_to_ready_s"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            run(["kubectl", "apply", "-f", "examples/fullstack/"], cwd=clone, env=env)
            run(["kubectl", "wait", "--for=condition=Available", "deployment", "--all", "--timeout=300s"],
                cwd=clone, env=env, timeout=330)
            page = ""
            while "redis-hits" not in page or "db-visits" not in page:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the frontend does not answer: {page[:300]}")
                res = subprocess.run(["kubectl", "exec", "deploy/frontend", "--", "python", "/app/fetch.py",
                                      "http://frontend/"], cwd=clone, env=env, capture_output=True, text=True)
                page = res.stdout
            result["apply_to_answer_s"] = time.perf_counter() - t2
            result["clone_to_answer_s"] = time.perf_counter() - t0
            if args.apt:
                result["apt_reinstall_s"] = apt_reinstall(tmp)
        finally:
            if up is not None and up.poll() is None:
                os.killpg(up.pid, signal.SIGTERM)
                try:
                    up.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(up.pid, signal.SIGKILL)
            subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", name], env=env, capture_output=True)
    total = result["clone_to_answer_s"]
    assert isinstance(total, float)
    print(f"clone {result['clone_s']:.1f} s; set-up command to ready {result['setup_to_ready_s']:.1f} s "
          f"(of which installs {result['install_s']:.1f} s); apply to the frontend answering "
          f"{result['apply_to_answer_s']:.1f} s")
    print(f"git clone -> the example answering: {total:.1f} s (goal < 120 s)")
    if "apt_reinstall_s" in result:
        print(f"Debian packages reinstalled from an empty download cache: {result['apt_reinstall_s']:.1f} s "
              f"(dependencies were installed already)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
