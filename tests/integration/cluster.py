"""A real ``kubelite up`` in a subprocess, and the real kubectl pointed at it.

Integration tests never talk to an in-process server: they start the same command a user
runs, on a free port with its own data directory and cluster name, and drive it with the
real kubectl binaries, so what passes here is what users get. The process is always stopped
(SIGTERM, then SIGKILL) and its directory removed, also when a test fails.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import urllib3
import yaml

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
KUBECTL_VERSIONS = pathlib.Path("/usr/lib/google-cloud-sdk/bin")


def kubectl_binary(version: str | None = None) -> str | None:
    if version is None:
        return KUBECTL if os.path.exists(KUBECTL) else None
    p = KUBECTL_VERSIONS / f"kubectl.{version}"
    return str(p) if p.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    name: str
    data_dir: pathlib.Path
    port: int
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.data_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, extra: list[str] | None = None, agent: bool = False,
              merge: bool = False, env: dict[str, str] | None = None) -> None:
        """Start `kubelite up`; without ``agent`` only the control plane runs (no pods, no root).

        Without ``merge`` the user's kubeconfig is left alone: tests use the cluster's own.
        """
        cmd = [sys.executable, "-m", "kubelite", "up", "--name", self.name, "--data-dir", str(self.data_dir),
               "--api-port", str(self.port), *([] if agent else ["--no-agent"]),
               *([] if merge else ["--no-kubeconfig-merge"]), *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env={**os.environ, **(env or {})})
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if "is ready" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.is_set():
            if self.proc.poll() is not None:
                raise RuntimeError("kubelite up exited early:\n" + "".join(self.output))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("kubelite up not ready in time:\n" + "".join(self.output))
            ready.wait(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kubectl(
        self, *args: str, input: str | None = None, version: str | None = None, check: bool = False,
        env: dict[str, str] | None = None, timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        binary = kubectl_binary(version)
        assert binary, f"kubectl {version or ''} not found"
        full_env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **(env or {})}
        res = subprocess.run([binary, *args], input=input, capture_output=True, text=True, env=full_env,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
        return res


def new_cluster(base: pathlib.Path) -> Cluster:
    name = f"kl-{uuid.uuid4().hex[:6]}"
    return Cluster(name=name, data_dir=base / name, port=free_port())


@contextlib.contextmanager
def audited_cluster(base: pathlib.Path, log: pathlib.Path) -> Iterator[Cluster]:
    """A cluster of a test module's own that writes its audit log to ``log``; stopped and its
    data removed afterwards."""
    c = new_cluster(base)
    c.start(extra=["--audit-log", str(log)])
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.data_dir, ignore_errors=True)


class Raw:
    """A minimal HTTPS client presenting the admin certificate (or none)."""

    def __init__(self, cluster: Cluster, *, credentials: bool = True) -> None:
        kc = yaml.safe_load(cluster.kubeconfig.read_text())
        self._tmp = tempfile.TemporaryDirectory()
        ca = f"{self._tmp.name}/ca.crt"
        with open(ca, "wb") as f:
            f.write(base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]))
        kw: dict[str, object] = {"ca_certs": ca, "cert_reqs": ssl.CERT_REQUIRED}
        if credentials:
            user = kc["users"][0]["user"]
            cert, key = f"{self._tmp.name}/c.crt", f"{self._tmp.name}/c.key"
            with open(cert, "wb") as f:
                f.write(base64.b64decode(user["client-certificate-data"]))
            with open(key, "wb") as f:
                f.write(base64.b64decode(user["client-key-data"]))
            kw.update(cert_file=cert, key_file=key)
        self.http = urllib3.PoolManager(**kw)  # type: ignore[arg-type]
        self.base = cluster.server

    def request(
        self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        r = self.http.request(method, self.base + path, body=body, headers={"Content-Type": ctype})
        try:
            data = orjson.loads(r.data) if r.data else {}
        except orjson.JSONDecodeError:
            data = {"raw": r.data.decode(errors="replace")}
        return r.status, data

    def json(self, method: str, path: str, obj: Any, ctype: str = "application/json") -> tuple[int, dict[str, Any]]:
        return self.request(method, path, orjson.dumps(obj), ctype)
