"""Container lifecycle hooks (postStart, preStop), as the kubelet's handler runner runs them.

A hook is not a probe, though both are "handlers": a probe's HTTP answer is judged by its
status code, while a hook's httpGet succeeds on *any* HTTP response and fails only when no
response comes (pkg/kubelet/lifecycle/handlers.go); an exec hook fails on a non-zero exit.
Nothing bounds a hook here but its caller: the kubelet runs an exec hook without a timeout
(postStart ends when the pod is deleted; preStop gets at most the termination grace period).

The failure texts are the kubelet's, because the pod's status shows them (a postStart
failure leaves the container waiting with reason ``PostStartHookError`` and this message);
the events say only ``PostStartHook failed`` / ``PreStopHook failed``, as the kubelet keeps a
hook's output out of events so that secrets it prints do not leak.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from kubelite.api.types import Obj
from kubelite.node import probes

USER_AGENT = "kube-lifecycle/1.33"

# (container id, argv, timeout seconds or None) → (exit code, stdout, stderr); an exec that
# cannot start raises ExecError (its message is the runtime's).
ExecFn = Callable[[str, list[str], float | None], Awaitable[tuple[int, bytes, bytes]]]


class ExecError(Exception):
    """The hook's command could not be run in the container."""


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def exec_failure(command: list[str], container: str, pod_ref: str, error: str, output: bytes) -> str:
    """The kubelet's message for a failed exec hook (``%v`` of the command is Go's slice form)."""
    return (f"Exec lifecycle hook ([{' '.join(command)}]) for Container {_go_quote(container)} in Pod "
            f"{_go_quote(pod_ref)} failed - error: {error}, message: {_go_quote(output.decode(errors='replace'))}")


def exit_error(command: list[str], code: int, stderr: bytes) -> str:
    """The CRI client's error for a command that exited non-zero (ExecSync)."""
    return f"command '{' '.join(command)}' exited with {code}: {stderr.decode(errors='replace')}"


def http_failure(path: str, container: str, pod_ref: str, error: str) -> str:
    return (f"HTTP lifecycle hook ({path}) for Container {_go_quote(container)} in Pod {_go_quote(pod_ref)} "
            f"failed - error: {error}")


async def run_exec(exec_fn: ExecFn, container_id: str, command: list[str], container: str,
                   pod_ref: str) -> str | None:
    try:
        code, out, err = await exec_fn(container_id, command, None)
    except ExecError as e:
        return exec_failure(command, container, pod_ref, str(e), b"")
    if code != 0:
        return exec_failure(command, container, pod_ref, exit_error(command, code, err), out + err)
    return None


async def run_http(target: probes.Target, action: Obj, container: str, pod_ref: str,
                   seconds: float) -> str | None:
    """One GET; any HTTP answer (a 500 too) is a success, as the kubelet's ``runHTTPHandler``."""
    scheme = (action.get("scheme") or "HTTP").lower()
    host = action.get("host") or target.pod_ip
    path = str(action.get("path") or "")
    try:
        port = 80 if action.get("port") in (None, "") else probes.resolve_port(action.get("port"), target.container)
    except ValueError as e:
        return http_failure(path, container, pod_ref, str(e))
    request_path = path if path.startswith("/") else "/" + path
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    headers = {"Host": hostport, "User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        for k in [k for k in headers if k.lower() == str(h.get("name", "")).lower()]:
            del headers[k]
        headers[str(h.get("name", ""))] = str(h.get("value", ""))
    url = f"{scheme}://{hostport}{request_path}"
    try:
        await probes.exchange(target, scheme, host, port, request_path, headers, time.monotonic() + seconds)
    except TimeoutError:
        return http_failure(path, container, pod_ref, f'Get "{url}": context deadline exceeded')
    except probes.MalformedResponse as e:
        return http_failure(path, container, pod_ref, f'Get "{url}": malformed HTTP response {e.args[0]!r}')
    except OSError as e:
        return http_failure(path, container, pod_ref, f'Get "{url}": dial tcp {hostport}: {probes.errno_text(e)}')
    return None


async def run(target: probes.Target, exec_fn: ExecFn, handler: Obj, container: str, pod_ref: str,
              seconds: float) -> str | None:
    """Run one hook handler; None when it succeeded, else the kubelet's failure message.
    ``seconds`` bounds an HTTP hook's exchange (the caller bounds the whole hook)."""
    if handler.get("exec") is not None:
        command = [str(a) for a in handler["exec"].get("command") or []]
        return await run_exec(exec_fn, target.container_id, command, container, pod_ref)
    if handler.get("httpGet") is not None:
        return await run_http(target, handler["httpGet"], container, pod_ref, seconds)
    if handler.get("sleep") is not None:
        await asyncio.sleep(float(handler["sleep"].get("seconds") or 0))
        return None
    return f"Cannot run handler: invalid handler: {json.dumps(handler)}"
