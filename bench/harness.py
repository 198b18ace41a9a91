"""What every benchmark needs to run a real cluster: start `kubelite up`, stop it, clean up,
and find and measure the cluster's processes; and the load they put on it: the programs
their pods run for connection tests, and ``wrk`` POSTing to the API server.

One copy, so that a change to how clusters start (flags, readiness) reaches every benchmark,
and so that benchmarks that compare connection rates or write rates measure them the same way.
Clusters get unique names and free ports (several benchmarks and test runs share the machine),
never touch the user's kubeconfig, and are torn down with ``kubelite down`` also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_name(prefix: str = "klb") -> str:
    """A cluster name no other run on this machine uses (namespaces are named after it)."""
    return f"{prefix}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str]:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name (which may itself hold spaces or parentheses).
    return stat[stat.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (utime and stime are fields 14 and 15)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_ticks(pid: int) -> int:
    """When ``pid`` started (field 22): with the pid, identifies a process across pid reuse."""
    return int(_stat_fields(pid)[19])


def session_of(pid: int) -> int:
    """The session id of ``pid`` (field 6): the processes a benchmark starts share its session."""
    return int(_stat_fields(pid)[3])


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB, from smaps_rollup. PSS shares each page among the processes
    mapping it, so summing it over processes counts shared libraries and fork-shared memory once."""
    rss = pss = 0
    for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def cmdline(pid: int) -> list[str]:
    raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc/PID/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in pathlib.Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


@dataclass
class Proc:
    pid: int
    start: int  # start time in clock ticks: (pid, start) names one process for good
    component: str
    argv: list[str]

    def alive(self) -> bool:
        try:
            return start_ticks(self.pid) == self.start and _stat_fields(self.pid)[0] != "Z"
        except (OSError, IndexError):
            return False


def container_pids(data_dir: pathlib.Path) -> dict[int, str]:
    """The container shims and container processes a cluster's agent started, from the runtime's
    records (``<data-dir>/agent/containers/*/{shim.pid,status.json}``): they detach from the agent
    (double fork, new session) so that they survive it, so no process tree leads to them."""
    out: dict[int, str] = {}
    containers = data_dir / "agent" / "containers"
    if not containers.is_dir():
        return out
    for cdir in containers.iterdir():
        label = "pods"
        with contextlib.suppress(OSError, ValueError):
            spec = json.loads((cdir / "spec.json").read_text())
            if any("kubelite.dns" in a for a in spec.get("argv", [])):
                label = "coredns pod"
        with contextlib.suppress(OSError, ValueError):
            out[int((cdir / "shim.pid").read_text())] = "shims"
        with contextlib.suppress(OSError, ValueError):
            pid = int(json.loads((cdir / "status.json").read_text()).get("pid") or 0)
            if pid > 0:
                out[pid] = label
    return out


def cpu_check() -> float:
    """Milliseconds for a fixed pure-Python loop, best of 5: how fast a core is right now.

    Load average sees only this machine; on a shared host, other tenants slow every core
    without showing there (here the same loop took 60 ms at best and 110 ms minutes later,
    and the API's writes/s moved with it, 4,600 against 2,600). Recorded before and after
    each run so that figures from different runs can be told apart."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        x = 0
        for i in range(2_000_000):
            x += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


# ---------------------------------------------------------------------------- clusters


class KubeliteProcess:
    """A `kubelite up` named ``name`` with its data in ``directory`` (as root: with the node agent)."""

    def __init__(self, name: str, directory: pathlib.Path, *, agent: bool | None = None,
                 up_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.dir = directory
        self.up_args = up_args  # more `kubelite up` options (--api-workers N, say)
        self.kubeconfig = self.dir / "kubeconfig"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # Without root there are no network namespaces, so no agent: the control plane only.
        self.agent = os.geteuid() == 0 if agent is None else agent
        self.ready_line = ""
        self.ready_after = 0.0  # seconds from exec to the ready line, seen from outside
        self.seen: dict[tuple[int, int], Proc] = {}  # every cluster process ever listed by processes()

    @property
    def log(self) -> pathlib.Path:
        return self.dir / "up.log"

    def up(self, timeout: float = 90) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [sys.executable, "-m", "kubelite", "up", "--name", self.name, "--data-dir", str(self.dir),
                "--api-port", str(self.port), "--no-kubeconfig-merge", *self.up_args]
        if not self.agent:
            argv.append("--no-agent")
        with open(self.log, "wb") as out:
            started = time.monotonic()
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = started + timeout
        while True:
            text = self.log.read_text(errors="replace")
            if "is ready" in text:
                self.ready_after = time.monotonic() - started
                self.ready_line = next(line for line in text.splitlines() if "is ready" in line)
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kubelite up {self.name} failed:\n{text[-4000:]}")
            time.sleep(0.01)

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.processes()  # remember the shims and pods too, for leftover checks
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", self.name, "--data-dir", str(self.dir)],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.name}-node"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def processes(self) -> list[Proc]:
        """Every live process of the cluster: `kubelite up` and its descendants, plus the
        container shims and containers, which detach from the agent (double fork, new session)
        so that they survive it: those are found from the runtime's own records."""
        if self.proc is None:
            return []
        pod_of = container_pids(self.dir)
        roots = [self.proc.pid, *pod_of]
        out: dict[int, Proc] = {}
        for root in roots:
            for pid in descendants(root):
                if pid in out:
                    continue
                try:
                    argv, start = cmdline(pid), start_ticks(pid)
                except (OSError, IndexError):
                    continue
                if not argv:  # a zombie or a kernel thread
                    continue
                out[pid] = Proc(pid, start, self._component(pid, argv, pod_of), argv)
        for p in out.values():
            self.seen[(p.pid, p.start)] = p
        return list(out.values())

    def _component(self, pid: int, argv: list[str], pod_of: dict[int, str]) -> str:
        if self.proc is not None and pid == self.proc.pid:
            return "apiserver (up)"
        if pid in pod_of:  # before the argv test: a shim forked from the zygote keeps the zygote's argv
            return pod_of[pid]
        # setproctitle (forked components) rewrites the command line as one space-separated string.
        joined = " ".join(argv)
        words = joined.split()
        for sub in ("controllers", "agent", "proxy", "apiserver"):
            if re.search(rf"-m kubelite (-v+ )?{sub}\b", joined):
                # The node agent may host the service proxy in its own process (kubelet + kube-proxy).
                if sub == "apiserver":
                    return "apiserver workers"
                return "agent+proxy" if sub == "agent" and "--with-proxy" in words else sub
        if "kubelite.node.shim" in joined:
            return "shim zygote" if "--zygote" in words else "shims"
        if "kubelite.dns" in joined:
            return "coredns pod"
        return "other"

    def memory(self) -> dict[str, Any]:
        """RSS and PSS of every cluster process, summed by component (KiB)."""
        by: dict[str, dict[str, int]] = {}
        for p in self.processes():
            try:
                rss, pss = memory_kib(p.pid)
            except OSError:
                continue
            c = by.setdefault(p.component, {"processes": 0, "rss_kib": 0, "pss_kib": 0})
            c["processes"] += 1
            c["rss_kib"] += rss
            c["pss_kib"] += pss
        return {
            "pss_total_kib": sum(c["pss_kib"] for c in by.values()),
            "rss_total_kib": sum(c["rss_kib"] for c in by.values()),
            "processes": sum(c["processes"] for c in by.values()),
            "by_component": dict(sorted(by.items(), key=lambda kv: -kv[1]["pss_kib"])),
        }

    def component_pid(self, component: str) -> int:
        for p in self.processes():
            if p.component == component:
                return p.pid
        raise RuntimeError(f"no {component} process in cluster {self.name}")

    def leftovers(self) -> list[str]:
        """What this cluster left behind after ``down()``: live processes, network namespaces."""
        left = [f"process {p.pid} ({p.component}): {' '.join(p.argv)[:120]}" for p in self.seen.values() if p.alive()]
        with contextlib.suppress(FileNotFoundError):
            left += [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(f"{self.name}-")]
        return left

    async def sh(self, *argv: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        async with asyncio.timeout(300):
            out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])}... failed: {err.decode()}")
        return out.decode()


class Cluster(KubeliteProcess):
    """A throw-away cluster for one benchmark: ``with Cluster() as c: ...``.

    Also what HTTP benchmarks need to talk to its API server directly: the CA, and a
    service-account token (a bearer token keeps client certificates out of the load generator).
    """

    def __init__(self, prefix: str = "klb", *, agent: bool | None = None, up_args: tuple[str, ...] = ()) -> None:
        super().__init__(unique_name(prefix), pathlib.Path(tempfile.mkdtemp(prefix=f"kl-bench-{prefix}-")),
                         agent=agent, up_args=up_args)
        self._token = ""

    def __enter__(self) -> Cluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def token(self) -> str:
        if not self._token:
            from kubelite.apiserver.auth import TokenSigner

            # A bound token holds only while its service account exists with the UID it names.
            kubectl = ["kubectl", "--kubeconfig", str(self.kubeconfig)]
            subprocess.run([*kubectl, "create", "serviceaccount", "bench"], capture_output=True, check=False)
            uid = subprocess.run([*kubectl, "get", "serviceaccount", "bench", "-o", "jsonpath={.metadata.uid}"],
                                 capture_output=True, text=True, check=True).stdout
            signer = TokenSigner((self.dir / "pki" / "sa.key").read_bytes())
            self._token, _ = signer.issue("default", "bench", uid, expiration_seconds=3600)
            # The service account holds nothing until bound (RBAC): bind it to cluster-admin,
            # then wait until the API server's authorizer has seen the binding.
            subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "create", "clusterrolebinding",
                            "bench-admin", "--clusterrole=cluster-admin", "--serviceaccount=default:bench"],
                           capture_output=True, check=False)
            self._wait_authorized()
        return self._token

    def _wait_authorized(self) -> None:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/api/v1/namespaces/default/configmaps?limit=1",
                                     headers={"Authorization": f"Bearer {self._token}"})
        for _ in range(200):
            try:
                with urllib.request.urlopen(req, context=self.ssl(), timeout=5):
                    return
            except urllib.error.HTTPError as e:
                if e.code != 403:
                    raise
            time.sleep(0.02)
        raise RuntimeError("the bench service account was never authorized")

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def controllers_pid(self) -> int:
        return self.component_pid("controllers")


async def poll(what: str, check: Callable[[], Awaitable[Any]], limit: float = 120) -> Any:
    """``await check()``'s first truthy result, tried every 50 ms; RuntimeError after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------- traffic between pods

# A pod's server for connection tests: accepts on :9000 and closes at once, as fast as it can.
ACCEPTOR = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
"""

# A client pod's side, ``python3 -c CLIENT COMMAND IP PORT ARG``:
# - "rate IP PORT SECONDS": connections/s, each one complete (the server's close seen, so a
#   proxy must have reached the server), and the client's CPU time per connection in
#   microseconds (user + system: the kernel's work for the packets it sends, conntrack, NAT and
#   the node's hooks included, mostly runs in the sender's context, and CPU time does not count
#   the waits other processes cause; less noisy than the rate);
# - "connect IP PORT N": N connect times in seconds (JSON), after 200 unmeasured ones;
# - "served IP PORT SECONDS": the wall time of the first HTTP 200 to GET /ready;
# - "reach IP PORT SECONDS": prints "ready", then tries to connect every 5 ms and prints the
#   wall time of the first connection that succeeds (or "timeout").
CLIENT = r"""
import json, resource, socket, struct, sys, time
LINGER0 = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT, no port exhaustion
cmd, ip, port, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def conn(timeout=2.0):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    s.settimeout(timeout); s.connect((ip, port)); return s
if cmd == "rate":
    end = time.perf_counter() + arg; n = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    while time.perf_counter() < end:
        s = conn()
        while s.recv(100):
            pass
        s.close(); n += 1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(n / arg, (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / n * 1e6)
elif cmd == "connect":
    for _ in range(200):
        conn().close()
    out = []
    for _ in range(int(arg)):
        t = time.perf_counter(); s = conn(); out.append(time.perf_counter() - t); s.close()
    print(json.dumps(out))
elif cmd == "served":
    end = time.time() + arg
    while time.time() < end:
        try:
            s = conn(); s.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
            if s.recv(100).startswith(b"HTTP/1.0 200"):
                print(time.time()); break
            s.close()
        except OSError:
            time.sleep(0.0005)
elif cmd == "reach":
    print("ready", flush=True)
    end = time.time() + arg
    while time.time() < end:
        try:
            conn(0.005).close()
            print(time.time(), flush=True); break
        except OSError:
            pass
    else:
        print("timeout", flush=True)
else:
    sys.exit(f"unknown command {cmd}")
"""


# ---------------------------------------------------------------------------- wrk

# POSTs one body again and again with the benchmark's bearer token; wrk's done() hook prints the
# figures in one line (its own summary rounds the latencies).
WRK_POST = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%f %%f %%f\\n", summary.requests, summary.errors.status,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


@dataclass
class WrkResult:
    requests: int
    errors: int  # answers with a status of 400 or more (wrk's errors.status)
    per_s: float
    p50_ms: float
    p99_ms: float


def wrk_threads(conns: int) -> int:
    """wrk's threads for ``conns`` connections: at most 2, so that wrk leaves the server its share of 2 cores."""
    return min(conns, 2)


def wrk_post(c: Cluster, path: str, body: dict[str, Any], conns: int, seconds: int, lua: str = "") -> WrkResult:
    """POSTs of ``body`` to ``path`` over ``conns`` connections for ``seconds``, closed loop
    unless ``lua`` (appended to the script) paces them."""
    script = c.dir / "wrk-post.lua"
    script.write_text(WRK_POST % (json.dumps(body, separators=(",", ":")), c.token) + lua)
    out = subprocess.run(
        ["wrk", "-t", str(wrk_threads(conns)), "-c", str(conns), "-d", f"{seconds}s", "-s", str(script),
         c.url + path],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    m = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    assert m, out
    reqs, errs, p50, p99, dur = int(m[1]), int(m[2]), float(m[3]), float(m[4]), float(m[5])
    return WrkResult(reqs, errs, reqs / (dur / 1e6), p50 / 1000, p99 / 1000)
