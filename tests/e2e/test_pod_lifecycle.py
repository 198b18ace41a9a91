"""Lifecycle hooks and liveness probes with real pods on a real agent (issue 19).

Hooks are shown by their effect on another pod: a handler pod runs ``agnhost netexec``, whose
log has a ``GET /echo?msg=...`` line for every request, and the hooks of the pods under test
call it: exec hooks with ``curl`` inside an agnhost container, httpGet hooks from the node to
the handler's address (as Kubernetes' conformance checks hooks, with pods of our own). A
failing postStart hook is shown by its events and the container status it leaves. Liveness
probes run against agnhost ``liveness``, whose ``/healthz`` answers 200 for ten seconds and
500 after: a probe of it restarts the container, a TCP probe of the same server does not, nor
does an HTTP probe of a healthy server over many periods. The cluster and agent come from the
agent tests' fixture; thresholds leave room for a loaded two-core machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_agent import AGNHOST, Node, Obj, condition, node, pod, status_of, wait_for
from tests.integration.cluster import kubectl_binary

__all__ = ["node"]  # the module-scoped fixture, used by name

PAUSE = "registry.k8s.io/pause:3.9"


def events_of(node: Node, name: str) -> list[tuple[str, str, str]]:
    items = json.loads(node.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}",
                                    "-o", "json"))["items"]
    return [(e["type"], e["reason"], e["message"]) for e in sorted(items, key=lambda e: e["firstTimestamp"])]


@pytest.fixture(scope="module")
def handler(node: Node) -> Iterator[str]:
    """The handler pod's IP: ``agnhost netexec`` on 8080, logging each /echo request."""
    node.apply(pod("handler", [{"name": "netexec", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                                "ports": [{"containerPort": 8080}]}], terminationGracePeriodSeconds=1))
    p = node.wait_pod("handler", "Ready", lambda p: condition(p, "Ready") == "True")
    yield str(p["status"]["podIP"])
    node.kubectl("delete", "pod", "handler", "--wait=false")


def handler_log(node: Node) -> str:
    return node.kubectl("logs", "handler")


def echoed(node: Node, msg: str) -> bool:
    """Whether the handler logged a request for /echo?msg=<msg> (netexec adds ``&code=``)."""
    return re.search(rf"GET /echo\?msg={re.escape(msg)}(&|$)", handler_log(node), re.M) is not None


def test_pre_stop_exec_and_http_hooks_reach_the_handler_before_the_container_stops(
        node: Node, handler: str) -> None:
    # agnhost with no command runs `pause`, which exits at once on SIGTERM: a hook that ran
    # after the signal would find no container to run in.
    curl = f"curl -s http://{handler}:8080/echo?msg=prestop-exec"
    exec_hook = {"name": "c", "image": AGNHOST, "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", curl]}}}}
    http_hook = {"name": "c", "image": PAUSE, "lifecycle": {"preStop": {"httpGet": {
        "host": handler, "port": 8080, "path": "/echo?msg=prestop-http"}}}}
    node.apply(pod("prestop-exec", [exec_hook]), pod("prestop-http", [http_hook]))
    for name in ("prestop-exec", "prestop-http"):
        node.wait_pod(name, "Ready", lambda p: condition(p, "Ready") == "True")
    assert not echoed(node, "prestop-exec") and not echoed(node, "prestop-http")
    started = time.monotonic()
    node.kubectl("delete", "pod", "prestop-exec", "prestop-http", "--grace-period=15")  # waits until gone
    assert time.monotonic() - started < 12  # the hooks are quick; nothing waited for the grace period
    wait_for("both preStop requests in the handler's log",
             lambda: echoed(node, "prestop-exec") and echoed(node, "prestop-http"), timeout=10)


def test_post_start_hooks_run_before_the_container_counts_as_running(node: Node, handler: str) -> None:
    # The exec hook takes a while before it leaves its mark: the container must not be
    # reported running before the hook has ended. Its output goes nowhere (not to the log).
    hook = (f"curl -s http://{handler}:8080/echo?msg=poststart-exec; echo hook-output; sleep 1.5; "
            "echo done > /state/hook")
    slow = {"name": "c", "image": AGNHOST, "args": ["pause"],
            "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", hook]}}},
            "volumeMounts": [{"name": "state", "mountPath": "/state"}]}
    http_hook = {"name": "c", "image": PAUSE, "lifecycle": {"postStart": {"httpGet": {
        "host": handler, "port": 8080, "path": "/echo?msg=poststart-http"}}}}
    node.apply(pod("poststart-exec", [slow], terminationGracePeriodSeconds=1,
                   volumes=[{"name": "state", "emptyDir": {}}]),
               pod("poststart-http", [http_hook], terminationGracePeriodSeconds=1))
    node.wait_pod("poststart-exec", "running", lambda p: "running" in status_of(p, "c").get("state", {}), timeout=30)
    assert node.kubectl("exec", "poststart-exec", "--", "cat", "/state/hook") == "done\n"
    node.wait_pod("poststart-exec", "Ready", lambda p: condition(p, "Ready") == "True")
    node.wait_pod("poststart-http", "Ready", lambda p: condition(p, "Ready") == "True")
    wait_for("both postStart requests in the handler's log",
             lambda: echoed(node, "poststart-exec") and echoed(node, "poststart-http"), timeout=10)
    assert "hook-output" not in node.kubectl("logs", "poststart-exec")
    node.kubectl("delete", "pod", "poststart-exec", "poststart-http", "--wait=false")


def watch_states(node: Node, name: str, until: str, timeout: float) -> list[Obj]:
    """Every state the pod's container ``c`` is reported in (one per status write), until
    one has the waiting reason ``until``."""
    binary = kubectl_binary()
    assert binary is not None
    proc = subprocess.Popen([binary, "--kubeconfig", str(node.cluster.kubeconfig), "get", "pod", name,
                             "--watch", "-o", "json"], stdout=subprocess.PIPE, text=True)
    states: list[Obj] = []
    decoder = json.JSONDecoder()
    buffer = ""
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            state: Obj = status_of(obj, "c").get("state", {})
            states.append(state)
            if (state.get("waiting") or {}).get("reason") == until:
                break
    finally:
        proc.kill()
        proc.wait()
    return states


def test_a_failing_post_start_hook_kills_the_container(node: Node, handler: str) -> None:
    # The kubelet kills the container the way it kills any: the preStop hook runs too.
    c = {"name": "c", "image": AGNHOST, "args": ["pause"],
         "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}},
                       "preStop": {"exec": {"command": ["sh", "-c",
                                                        f"curl -s http://{handler}:8080/echo?msg=after-poststart"]}}}}
    node.apply(pod("poststart-fails", [c], terminationGracePeriodSeconds=2))
    uid = wait_for("the pod's uid", lambda: (node.pod("poststart-fails") or {}).get("metadata", {}).get("uid"))
    states = watch_states(node, "poststart-fails", "PostStartHookError", timeout=30)
    waiting = states[-1].get("waiting") or {}
    assert waiting.get("reason") == "PostStartHookError", states
    assert waiting["message"] == (
        'Exec lifecycle hook ([sh -c echo out; echo err >&2; exit 3]) for Container "c" in Pod '
        f'"poststart-fails_default({uid})" failed - error: command \'sh -c echo out; echo err >&2; exit 3\' '
        'exited with 3: err\n, message: "out\\nerr\\n"')
    assert not any("running" in s for s in states)  # never reported running: the hook came first
    wait_for("the FailedPostStartHook and Killing events", lambda: {
        ("Warning", "FailedPostStartHook", "PostStartHook failed"), ("Normal", "Killing", "FailedPostStartHook")}
        <= set(events_of(node, "poststart-fails")), timeout=10)
    wait_for("the preStop hook of the killed container", lambda: echoed(node, "after-poststart"), timeout=10)
    p = node.wait_pod("poststart-fails", "restarted", lambda p: status_of(p, "c").get("restartCount", 0) >= 1)
    assert status_of(p, "c")["lastState"]["terminated"]["exitCode"] != 0
    node.kubectl("delete", "pod", "poststart-fails", "--wait=false")


def liveness_pod(name: str, args: list[str], probe: Obj, **container: Any) -> Obj:
    return pod(name, [{"name": "c", "image": AGNHOST, "args": args, "livenessProbe": probe, **container}],
               terminationGracePeriodSeconds=2)


def test_liveness_probes_restart_a_container_whose_healthz_fails_and_leave_healthy_ones(
        node: Node, handler: str) -> None:
    # agnhost liveness: /healthz is 200 for 10 s, then 500. Probed every 2 s, two failures in a
    # row restart it (about 13 s after its start). Its preStop hook runs before the kill.
    # (From 3 s on: a server not listening yet at the first probe would count as a failure.)
    sick_probe = {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3, "periodSeconds": 2,
                  "failureThreshold": 2}
    curl = f"curl -s http://{handler}:8080/echo?msg=prestop-liveness"
    # The healthy ones get generous timeouts and thresholds: a busy machine must not fail them.
    tolerant = {"initialDelaySeconds": 3, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 3}
    node.apply(
        liveness_pod("sick", ["liveness"], sick_probe,
                     lifecycle={"preStop": {"exec": {"command": ["sh", "-c", curl]}}}),
        # A redirect on the same host is followed: to the failing /healthz.
        liveness_pod("sick-redirect", ["liveness"], {**sick_probe, "httpGet": {
            "path": "/redirect?loc=%2Fhealthz", "port": 8080}}),
        # The same server probed by TCP: it keeps listening, so it is alive.
        liveness_pod("tcp", ["liveness"], {"tcpSocket": {"port": 8080}, **tolerant}),
        # A redirect to another host is not followed: a success, with a ProbeWarning event.
        liveness_pod("redirect-away", ["liveness"], {"httpGet": {
            "path": "/redirect?loc=http%3A%2F%2F0.0.0.0%2F", "port": 8080}, **tolerant}),
        liveness_pod("healthy", ["netexec", "--http-port=8080"],
                     {"httpGet": {"path": "/healthz", "port": 8080}, **tolerant}),
    )
    names = ("sick", "sick-redirect", "tcp", "redirect-away", "healthy")
    first = {n: node.wait_pod(n, "running", lambda p: "running" in status_of(p, "c").get("state", {}), timeout=30)
             for n in names}
    restarted = {n: node.wait_pod(n, "a restart", lambda p: status_of(p, "c").get("restartCount", 0) >= 1,
                                  timeout=45) for n in ("sick", "sick-redirect")}
    s = status_of(restarted["sick"], "c")
    last = s["lastState"]["terminated"]
    assert last["containerID"] == status_of(first["sick"], "c")["containerID"] != s["containerID"]
    assert last["exitCode"] != 0
    # The container lived past its 10 healthy seconds and a second failure, not less.
    started = status_of(first["sick"], "c")["state"]["running"]["startedAt"]
    assert _seconds(last["finishedAt"]) - _seconds(started) >= 11, (started, last)
    events = events_of(node, "sick")
    assert ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500") in events
    assert ("Normal", "Killing", "Container c failed liveness probe, will be restarted") in events
    wait_for("the preStop hook of the unhealthy container", lambda: echoed(node, "prestop-liveness"), timeout=10)
    # By now every other container has been probed for more than a dozen periods, /healthz
    # of the TCP-probed one failing for several seconds: none was restarted.
    time.sleep(max(0.0, 20 - (time.monotonic() - _probe_start(first))))
    for n in ("tcp", "redirect-away", "healthy"):
        s = status_of(node.pod(n), "c")
        assert s["restartCount"] == 0 and "running" in s["state"], (n, s)
        # (A server still starting may refuse a first probe on a busy machine: not a failure of it.)
        assert not [e for e in events_of(node, n) if e[1] == "Killing" or (
            e[1] == "Unhealthy" and not e[2].endswith("connect: connection refused"))], (n, events_of(node, n))
    assert ("Warning", "ProbeWarning", 'Liveness probe warning: Probe terminated redirects, Response body: '
            '<a href="http://0.0.0.0/">Found</a>.\n\n') in events_of(node, "redirect-away")
    node.kubectl("delete", "pod", *names, "--wait=false")


def test_an_exec_liveness_probe_past_its_timeout_fails(node: Node) -> None:
    c = {"name": "c", "image": "busybox", "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
         "livenessProbe": {"exec": {"command": ["sh", "-c", "sleep 5"]}, "timeoutSeconds": 1,
                           "periodSeconds": 3, "failureThreshold": 1}}
    node.apply(pod("exec-timeout", [c], terminationGracePeriodSeconds=2))
    p = node.wait_pod("exec-timeout", "a restart", lambda p: status_of(p, "c").get("restartCount", 0) >= 1,
                      timeout=30)
    assert status_of(p, "c")["lastState"]["terminated"]["exitCode"] == 0  # its TERM trap
    assert ("Warning", "Unhealthy", 'Liveness probe failed: command "sh -c sleep 5" timed out') in events_of(
        node, "exec-timeout")
    node.kubectl("delete", "pod", "exec-timeout", "--wait=false")


def _seconds(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _probe_start(first: dict[str, Obj]) -> float:
    """The monotonic time at which the latest of the pods started running (approximately)."""
    latest = max(_seconds(status_of(p, "c")["state"]["running"]["startedAt"]) for p in first.values())
    return time.monotonic() - (time.time() - latest)
