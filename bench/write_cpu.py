"""The API server's CPU per write, for comparing source trees on a noisy, shared host.

Throughput (bench_api) on a busy 2-core host swings by 30% run to run, more than a
regression of a few percent. What one write costs the server does not: this starts one
`kubelite up --no-agent` per source tree side by side, POSTs the same ConfigMap bench_api
sends (HTTPS, service-account bearer token) in rounds of N writes, rotating the order of the
trees each round, and reads the CPU time (utime + stime from /proc) the `kubelite up`
process (the API server) and the controller-manager spent per write. It prints the median
over the rounds.

Usage: python bench/write_cpu.py [--rounds 8] [--posts 2000] [--clients 1] SRC [SRC ...]
where each SRC is a tree's ``src`` directory (put first on PYTHONPATH of that cluster), or
``-`` for the installed kubelite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import cmdline, cpu_seconds, descendants, free_port, unique_name

BODY = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"b-"},"data":{"k":"'
        + b"x" * 100 + b'"}}')


class Up:
    """One `kubelite up --no-agent` running the kubelite of ``src``."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.name = unique_name("klcpu")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="kl-bench-cpu-"))
        self.env = dict(os.environ)
        if src != "-":
            self.env["PYTHONPATH"] = os.path.abspath(src)
        self.port = 0
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "kubelite", "up", "--name", self.name, "--data-dir", str(self.dir),
                "--api-port", str(self.port), "--no-kubeconfig-merge", "--no-agent"]
        log = self.dir / "up.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)
        deadline = time.monotonic() + 120
        while "is ready" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kubelite up ({self.src}) failed:\n{log.read_text()[-4000:]}")
            time.sleep(0.05)
        from kubelite.apiserver.auth import TokenSigner

        # A bound token holds only while its service account exists with the UID it names
        # (trees from before bound tokens accept any UID).
        kubectl = ["kubectl", "--kubeconfig", str(self.dir / "kubeconfig")]
        subprocess.run([*kubectl, "create", "serviceaccount", "bench"], capture_output=True, check=False)
        uid = subprocess.run([*kubectl, "get", "serviceaccount", "bench", "-o", "jsonpath={.metadata.uid}"],
                             capture_output=True, text=True, check=False).stdout or "bench-uid"
        signer = TokenSigner((self.dir / "pki" / "sa.key").read_bytes())
        self.token, _ = signer.issue("default", "bench", uid, expiration_seconds=3600)
        # Under RBAC the service account holds nothing until bound (trees from before RBAC
        # have no such kind: there the command fails and nothing is needed).
        bound = subprocess.run(["kubectl", "--kubeconfig", str(self.dir / "kubeconfig"), "create",
                                "clusterrolebinding", "bench-admin", "--clusterrole=cluster-admin",
                                "--serviceaccount=default:bench"], capture_output=True, check=False)
        if bound.returncode == 0:
            self._wait_authorized()

    def _wait_authorized(self) -> None:
        import urllib.error
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/api/v1/namespaces/default/configmaps?limit=1",
                                     headers={"Authorization": f"Bearer {self.token}"})
        for _ in range(200):
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5):
                    return
            except urllib.error.HTTPError as e:
                if e.code != 403:
                    raise
            time.sleep(0.02)
        raise RuntimeError("the bench service account was never authorized")

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the API server (`up`) and of the controller-manager."""
        assert self.proc is not None
        out: dict[str, float] = {}
        for pid in descendants(self.proc.pid):
            try:
                argv, seconds = " ".join(cmdline(pid)), cpu_seconds(pid)
            except OSError:
                continue
            part = "apiserver" if pid == self.proc.pid else "controllers" if " controllers" in argv else ""
            if part:
                out[part] = out.get(part, 0.0) + seconds
        return out

    async def post(self, n: int, clients: int) -> tuple[float, list[float]]:
        """``n`` POSTs from ``clients`` closed-loop clients: (seconds in all, each one's latency)."""
        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        url = f"https://127.0.0.1:{self.port}/api/v1/namespaces/default/configmaps"
        latencies: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=clients)) as s:
            async def client(k: int) -> None:
                for _ in range(k):
                    sent = time.perf_counter()
                    async with s.post(url, data=BODY, headers=headers) as r:
                        await r.read()
                        if r.status != 201:
                            raise RuntimeError(f"POST: {r.status}")
                    latencies.append(time.perf_counter() - sent)

            started = time.perf_counter()
            await asyncio.gather(*(client(n // clients) for _ in range(clients)))
            return time.perf_counter() - started, latencies

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", self.name, "--data-dir", str(self.dir)],
                       capture_output=True, env=self.env, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--posts", type=int, default=2000, help="writes per round")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("src", nargs="+")
    args = ap.parse_args()
    ups = [Up(src) for src in args.src]
    try:
        for u in ups:
            u.up()
        for u in ups:  # warm up: first-use imports, caches, the store's files
            asyncio.run(u.post(200, args.clients))
        per_write: dict[str, list[dict[str, float]]] = {u.src: [] for u in ups}
        for r in range(args.rounds):
            for u in ups[r % len(ups):] + ups[:r % len(ups)]:
                before = u.cpu()
                seconds, latencies = asyncio.run(u.post(args.posts, args.clients))
                time.sleep(0.5)  # the watchers' and the store's trailing work belongs to the round
                after = u.cpu()
                us = {k: (after[k] - before.get(k, 0.0)) / args.posts * 1e6 for k in after}
                # Throughput and tail latency of the round too (noisier than CPU on a shared host).
                us["writes_per_s"] = len(latencies) / seconds
                us["p99_ms"] = sorted(latencies)[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))] * 1000
                per_write[u.src].append(us)
                print(f"round {r} {u.src}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(us.items())), flush=True)
        for src, rounds in per_write.items():
            medians = {k: statistics.median(d.get(k, 0.0) for d in rounds) for k in rounds[0]}
            print(f"median {src}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(medians.items())))
    finally:
        for u in ups:
            u.down()


if __name__ == "__main__":
    main()
