"""What every benchmark needs to run a real cluster: start `kubelite up`, stop it, clean up.

One copy, so that a change to how clusters start (flags, readiness) reaches every benchmark.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KubeliteProcess:
    """A `kubelite up` named ``name`` with its data in ``dir`` (as root: with the node agent)."""

    def __init__(self, name: str, directory: pathlib.Path) -> None:
        self.name = name
        self.dir = directory
        self.kubeconfig = self.dir / "kubeconfig"
        self.proc: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        log = self.dir / "up.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubelite", "up", "--name", self.name, "--data-dir", str(self.dir),
                 "--api-port", str(free_port())], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while "is ready" not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kubelite up failed:\n" + log.read_text())
            time.sleep(0.05)

    def down(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", self.name, "--data-dir", str(self.dir)],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.name}-node"

    async def sh(self, *argv: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        async with asyncio.timeout(300):
            out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])}... failed: {err.decode()}")
        return out.decode()
