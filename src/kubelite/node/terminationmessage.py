"""A container's last words: ``terminationMessagePath`` and ``FallbackToLogsOnError``.

A container may write why it ended to a file (``/dev/termination-log`` unless its spec says
otherwise); once it has exited, the kubelet puts what the file holds into
``state.terminated.message``. As the kubelet does, each container instance gets its own
empty, world-writable file under the pod's directory, bind-mounted at that path (any user
the container runs as can write it), and the message is read after the exit with the
kubelet's limits: the file's last 4096 bytes; with ``terminationMessagePolicy:
FallbackToLogsOnError``, a container that failed (non-zero exit) and left the file empty
(or absent) gets the tail of its log instead: its last 80 lines, at most the last 2048
bytes. A pod's messages together stay within 12 KiB, each container's cut to an equal
share (the status manager's normalizeStatus).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from kubelite.node.runtime import ContainerStatus

MAX_MESSAGE = 4 * 1024  # MaxContainerTerminationMessageLength
MAX_LOG_LINES = 80  # MaxContainerTerminationMessageLogLines
MAX_LOG_BYTES = 2048  # MaxContainerTerminationMessageLogLength
MAX_POD_MESSAGES = 12 * 1024  # MaxPodTerminationMessageLogLength
FALLBACK = "FallbackToLogsOnError"


def host_file(pod_dir: pathlib.Path, container: str, restart: int) -> pathlib.Path:
    """Where one instance's termination message lives on the node (kept with the pod)."""
    return pod_dir / "containers" / container / str(restart)


def prepare(path: pathlib.Path) -> None:
    """An empty file any user of the container may write (the kubelet makes it 0666)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb"):
        pass
    os.chmod(path, 0o666)


def _tail_bytes(path: pathlib.Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return f.read()


def log_tail(log_path: pathlib.Path) -> str:
    """The content of the log's last 80 lines, at most its last 2048 bytes (readLastStringFromContainerLogs)."""
    try:
        raw = _tail_bytes(log_path, 1 << 20)
    except OSError:
        return ""
    lines = raw.splitlines(keepends=True)[-MAX_LOG_LINES:]
    out = b""
    for line in lines:
        # CRI format: "<time> <stream> <tag> <content>"; a "P" (partial) line goes on in the next.
        parts = line.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            continue
        content = parts[3] if len(parts) == 4 else b""
        out += content if parts[2] == b"P" else content + b"\n"
    return out[-MAX_LOG_BYTES:].decode(errors="replace")


def message(status: ContainerStatus, spec: Mapping[str, Any], file: pathlib.Path | None,
            log_path: pathlib.Path | None) -> str:
    """The exited container's message: the runtime's own (a start error), then ": ", then
    what the container left, as the kubelet's getPodContainerStatuses joins them."""
    fallback = (spec.get("terminationMessagePolicy") == FALLBACK and (status.exit_code or 0) != 0
                and status.reason != "ContainerCannotRun")
    text = ""
    check_logs = fallback
    if spec.get("terminationMessagePath") and file is not None:
        try:
            data = _tail_bytes(file, MAX_MESSAGE)
        except FileNotFoundError:
            pass
        except OSError as e:
            data, check_logs = b"", False
            text = f"Error on reading termination log {file}: {e}"
        else:
            text = data.decode(errors="replace")
            check_logs = fallback and not data
    if check_logs and log_path is not None:
        text = log_tail(log_path)
    if not text:
        return status.message
    return f"{status.message}: {text}" if status.message else text


def trim(pod_spec: Mapping[str, Any], statuses: Iterable[Mapping[str, Any]]) -> None:
    """Cut every terminated message to the pod's per-container share, in place."""
    containers = len(pod_spec.get("containers") or []) + len(pod_spec.get("initContainers") or [])
    share = MAX_POD_MESSAGES // containers if containers else MAX_POD_MESSAGES
    for s in statuses:
        for key in ("state", "lastState"):
            term = (s.get(key) or {}).get("terminated")
            if term and len(term.get("message", "").encode()) > share:
                # Go slices the string's bytes; a cut rune becomes U+FFFD in the JSON.
                term["message"] = term["message"].encode()[:share].decode(errors="replace")
