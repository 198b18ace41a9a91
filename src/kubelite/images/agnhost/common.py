"""What every agnhost sub-command shares: Go-style flags, durations, logs, signals and HTTP.

Real agnhost is a Go program built with cobra/pflag and net/http. Tests written against it
parse its output, so this module reproduces the observable Go behaviour: flag syntax and
error texts, ``log.Printf`` lines, durations like ``1m30s``, how a Go program dies on
SIGTERM (exit status 2 when it is PID 1 of a container, killed by the signal otherwise), and
net/http's responses (no ``Server`` header, ``text/plain; charset=utf-8``, ``http.Error``).
Only the standard library is used: agnhost must start in milliseconds.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import formatdate
from types import FrameType
from typing import Any, NoReturn


def log(message: str) -> None:
    """Go's log.Printf: local time prefix, one line on stderr."""
    sys.stderr.write(time.strftime("%Y/%m/%d %H:%M:%S ") + message.rstrip("\n") + "\n")
    sys.stderr.flush()


def fatal(message: str) -> NoReturn:
    log(message)
    os._exit(1)


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)?")


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds; raises ValueError with Go's message."""
    s = text
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while s:
        m = _DURATION_PART.match(s)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        if m.group(2) is None:
            raise ValueError(f'time: missing unit in duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        s = s[m.end() :]
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's Duration.String() for the values agnhost logs (e.g. "0s", "1.5s", "2m0s")."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if seconds >= scale:
                return f"{seconds / scale:.9g}{unit}"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


@dataclass
class Flag:
    name: str
    kind: str  # "int", "string", "bool" or "duration"
    default: Any
    usage: str
    short: str = ""  # pflag's one-letter shorthand (``-t 100``), if any


class UsageError(Exception):
    pass


def parse_flags(command: str, flags: list[Flag], args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """pflag's syntax: ``--name=value``, ``--name value``, ``--bool``, ``--bool=false``.

    klog's flags (``--v=2``, ``--logtostderr``...) are accepted and ignored, as agnhost
    registers them on every command. Errors exit 1 with cobra's message.
    """
    by_name = {f.name: f for f in flags}
    values: dict[str, Any] = {f.name: f.default for f in flags}
    positional: list[str] = []
    i = 0
    try:
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                positional.extend(args[i:])
                break
            if not arg.startswith("-") or arg == "-":
                positional.append(arg)
                continue
            if not arg.startswith("--"):
                flag = next((f for f in flags if f.short and f.short == arg[1]), None)
                if flag is None:
                    raise UsageError(f"unknown shorthand flag: '{arg[1]}' in {arg}")
                # ``-t 100``, ``-t=100`` and ``-t100`` as pflag reads them.
                name, rest = flag.name, arg[2:]
                has_value, value = (True, rest.removeprefix("=")) if rest else (False, "")
            else:
                name, has_value_sep, value = arg[2:].partition("=")
                has_value = bool(has_value_sep)
            flag = by_name.get(name)
            if flag is None:
                if name in _KLOG_FLAGS:
                    if not has_value and name not in _KLOG_BOOL_FLAGS and i < len(args):
                        i += 1
                    continue
                raise UsageError(f"unknown flag: --{name}")
            if flag.kind == "bool":
                if has_value and value.lower() not in ("true", "false", "1", "0", "t", "f"):
                    raise UsageError(
                        f'invalid argument "{value}" for "--{name}" flag: strconv.ParseBool: parsing "{value}": invalid syntax'
                    )
                values[name] = not has_value or value.lower() in ("true", "1", "t")
                continue
            if not has_value:
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: --{name}")
                value = args[i]
                i += 1
            values[name] = _convert(flag, value)
    except UsageError as e:
        usage_error(command, flags, str(e))
    return values, positional


def _convert(flag: Flag, value: str) -> Any:
    if flag.kind == "int":
        try:
            return int(value, 0) if value.lower().startswith(("0x", "0o", "0b")) else int(value)
        except ValueError:
            raise UsageError(
                f'invalid argument "{value}" for "--{flag.name}" flag: strconv.ParseInt: parsing "{value}": invalid syntax'
            ) from None
    if flag.kind == "duration":
        try:
            return parse_duration(value)
        except ValueError as e:
            raise UsageError(f'invalid argument "{value}" for "--{flag.name}" flag: {e}') from None
    return value


_KLOG_BOOL_FLAGS = {
    "logtostderr",
    "alsologtostderr",
    "add_dir_header",
    "skip_headers",
    "skip_log_headers",
    "one_output",
}
_KLOG_FLAGS = _KLOG_BOOL_FLAGS | {
    "v",
    "vmodule",
    "log_dir",
    "log_file",
    "log_file_max_size",
    "log_backtrace_at",
    "stderrthreshold",
}


def usage(command: str, flags: list[Flag]) -> str:
    lines = [f"Usage:\n  app {command} [flags]\n\nFlags:"]
    for f in flags:
        kind = "" if f.kind == "bool" else f" {f.kind}"
        default = "" if f.default in (False, "", None) else f" (default {f.default})"
        short = f"  -{f.short}, " if f.short else "      "
        lines.append(f"{short}--{f.name}{kind}   {f.usage}{default}")
    lines.append(f"  -h, --help   help for {command}")
    return "\n".join(lines) + "\n"


def usage_error(command: str, flags: list[Flag], message: str) -> NoReturn:
    sys.stderr.write(f"Error: {message}\n{usage(command, flags)}")
    sys.stderr.flush()
    raise SystemExit(1)


def _die_like_go(signum: int, _frame: FrameType | None) -> None:
    # Go's runtime re-raises an unhandled SIGTERM/SIGINT with the default action; as PID 1 of
    # a PID namespace that is ignored and the runtime exits with status 2.
    if os.getpid() == 1:
        os._exit(2)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def go_signal_defaults() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _die_like_go)


def host_port(host: str, port: int) -> str:
    """Go's net.JoinHostPort / Addr.String()."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unmap(ip: str) -> str:
    """Go shows IPv4 peers of dual-stack sockets as plain IPv4."""
    return ip.removeprefix("::ffff:") if ip.startswith("::ffff:") and "." in ip else ip


def dual_stack_socket(kind: socket.SocketKind, address: str, port: int) -> socket.socket:
    """A listening socket like Go's ``":port"``: every IPv6 and IPv4 address, when IPv6 exists."""
    if address == "" and socket.has_ipv6:
        try:
            sock = socket.socket(socket.AF_INET6, kind)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            return sock
        except OSError:
            sock.close()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address or "0.0.0.0", port))
    return sock


class GoHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        sock = dual_stack_socket(socket.SOCK_STREAM, "", port)
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.server_activate()


class GoHandler(http.server.BaseHTTPRequestHandler):
    """A net/http-like handler: subclasses implement :meth:`route`."""

    protocol_version = "HTTP/1.1"
    _form: dict[str, list[str]] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """net/http logs nothing per request; handlers log what agnhost logs."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        self.send_header("Date", formatdate(usegmt=True))

    @property
    def remote_addr(self) -> str:
        return host_port(unmap(self.client_address[0]), self.client_address[1])

    @property
    def url_path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)

    def form_value(self, name: str) -> str:
        """Go's Request.FormValue: the POST form body first, then the URL query."""
        if self._form is None:
            form: dict[str, list[str]] = {}
            length = int(self.headers.get("Content-Length") or 0)
            ctype = self.headers.get("Content-Type", "")
            if self.command in ("POST", "PUT", "PATCH") and ctype.startswith(
                "application/x-www-form-urlencoded"
            ):
                form = urllib.parse.parse_qs(
                    self.rfile.read(length).decode(errors="replace"), keep_blank_values=True
                )
            for key, vals in self.query().items():
                form.setdefault(key, []).extend(vals)
            self._form = form
        return self._form.get(name, [""])[0]

    def reply(
        self, code: int, body: str | bytes = b"", content_type: str | None = None, **headers: str
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        if data and content_type is None:
            content_type = "text/plain; charset=utf-8"
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def http_error(self, message: str, code: int) -> None:
        self.reply(code, message + "\n", X_Content_Type_Options="nosniff")

    def redirect(self, location: str, code: int) -> None:
        """Go's http.Redirect, including its small HTML body for GET."""
        if not urllib.parse.urlsplit(location).scheme and not location.startswith("/"):
            base = self.url_path.rsplit("/", 1)[0]
            location = f"{base}/{location}"
        body = f'<a href="{location}">{http.server.BaseHTTPRequestHandler.responses.get(code, ("",))[0]}</a>.\n\n'
        self.reply(code, body if self.command == "GET" else "", "text/html; charset=utf-8", Location=location)

    def route(self) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        self._form = None
        self.route()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


def go_quote(text: str) -> str:
    """Go's %q (strconv.Quote) for the strings agnhost quotes."""
    import json

    return json.dumps(text, ensure_ascii=False)


def go_json(value: Any) -> str:
    """encoding/json.Marshal: sorted keys, no spaces, UTF-8, HTML characters escaped."""
    import json

    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def go_time_now(process_start: float) -> str:
    """Go's Time.String() of time.Now(), monotonic reading included."""
    ns = time.time_ns()
    local = time.localtime(ns // 1_000_000_000)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    offset = time.strftime("%z", local)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", local) + (f".{frac}" if frac else "")
    return f"{stamp} {offset} {time.strftime('%Z', local)} m=+{time.monotonic() - process_start:.9f}"


def os_error_text(err: OSError) -> str:
    """A syscall error the way Go prints it ("connection refused")."""
    if isinstance(err, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return "i/o timeout"
    return os.strerror(err.errno).lower() if err.errno else str(err)
