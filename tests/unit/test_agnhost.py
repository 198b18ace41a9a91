"""kubelite's agnhost against agnhost's documented behaviour, as a real process on loopback."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kubelite.images.agnhost.common import format_duration, go_json, parse_duration

AGNHOST = [sys.executable, "-m", "kubelite.images.agnhost"]
HOSTNAME = socket.gethostname()


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def wait_http(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}")


def udp(port: int, payload: bytes) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect(("127.0.0.1", port))  # connected: a closed port raises ConnectionRefusedError at once
        s.send(payload)
        return s.recv(2048).decode()


@dataclass
class Netexec:
    proc: subprocess.Popen[bytes]
    http_port: int
    udp_port: int


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*AGNHOST, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@pytest.fixture
def netexec() -> Iterator[Netexec]:
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    proc = start("netexec", f"--http-port={http_port}", "--udp-port", str(udp_port))
    try:
        wait_http(http_port, proc)
        yield Netexec(proc, http_port, udp_port)
    finally:
        stop(proc)


def test_root_answers_go_time(netexec: Netexec) -> None:
    status, headers, body = get(netexec.http_port, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Server" not in headers
    assert re.fullmatch(r"NOW: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+ m=\+\d+\.\d{9}", body), (
        body
    )
    # Unregistered paths fall through to "/", as with Go's ServeMux.
    assert get(netexec.http_port, "/anything")[2].startswith("NOW: ")


def test_hostname_clientip_echo(netexec: Netexec) -> None:
    assert get(netexec.http_port, "/hostname")[2] == HOSTNAME
    assert get(netexec.http_port, "/hostName")[2] == HOSTNAME
    status, _, body = get(netexec.http_port, "/clientip")
    assert status == 200
    assert re.fullmatch(r"127\.0\.0\.1:\d+", body), body
    assert get(netexec.http_port, "/echo?msg=hello%20there")[::2] == (200, "hello there")
    assert get(netexec.http_port, "/echo?msg=teapot&code=418")[::2] == (418, "teapot")
    assert get(netexec.http_port, "/echo?msg=x&code=abc")[::2] == (
        200,
        "argument 'code' must be an integer or empty, got \"abc\"\n",
    )


def test_healthz_needs_the_udp_server(netexec: Netexec) -> None:
    status, headers, body = get(netexec.http_port, "/healthz")
    assert (status, body) == (200, "")
    assert headers["Content-Length"] == "0"


def test_healthz_never_ready_without_udp() -> None:
    port = free_port()
    proc = start("netexec", f"--http-port={port}", "--udp-port=-1")
    try:
        wait_http(port, proc)
        assert get(port, "/healthz")[0] == 412
    finally:
        stop(proc)


def test_shell(netexec: Netexec) -> None:
    status, _, body = get(netexec.http_port, "/shell?shellCommand=printf%20%27%3Cok%3E%5Cn%27")
    assert status == 200
    assert body == '{"output":"\\u003cok\\u003e\\n"}'
    assert json.loads(get(netexec.http_port, "/shell?cmd=echo%20out;exit%203")[2]) == {
        "output": "out\n",
        "error": "exit status 3",
    }
    assert get(netexec.http_port, "/shell?cmd=true")[2] == "{}"


def test_dial_http_and_udp(netexec: Netexec) -> None:
    p, u = netexec.http_port, netexec.udp_port
    body = get(p, f"/dial?request=hostname&protocol=http&host=127.0.0.1&port={p}&tries=3")[2]
    assert json.loads(body) == {"responses": [HOSTNAME] * 3}
    body = get(p, f"/dial?request=hostname&protocol=udp&host=localhost&port={u}&tries=2")[2]
    assert json.loads(body) == {"responses": [HOSTNAME] * 2}
    body = get(p, f"/dial?request=echo%20Hi&protocol=udp&host=127.0.0.1&port={u}")[2]
    assert json.loads(body) == {"responses": ["hi"]}  # agnhost lower-cases UDP commands


def test_dial_errors(netexec: Netexec) -> None:
    p = netexec.http_port
    closed = free_port()
    status, _, body = get(p, f"/dial?request=hostname&host=127.0.0.1&port={closed}&tries=2")
    assert status == 200
    assert json.loads(body) == {
        "errors": [
            f'Get "http://127.0.0.1:{closed}/hostname": dial tcp 127.0.0.1:{closed}: connect: connection refused'
        ]
        * 2
    }
    status, headers, body = get(p, "/dial?host=127.0.0.1&port=80")
    assert (status, body) == (400, "request parameter not specified. <nil>\n")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(p, "/dial?request=x&host=127.0.0.1&port=80&protocol=icmp")[::2] == (
        400,
        "unsupported protocol. icmp\n",
    )
    assert get(p, "/dial?request=x&host=127.0.0.1&port=80&tries=x")[::2] == (
        400,
        'tries parameter is invalid. strconv.Atoi: parsing "x": invalid syntax\n',
    )


def test_udp_commands(netexec: Netexec) -> None:
    assert udp(netexec.udp_port, b"hostname") == HOSTNAME
    assert udp(netexec.udp_port, b"echo Hello World\n") == "hello world"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", udp(netexec.udp_port, b"clientip"))


def test_exit_with_code() -> None:
    port = free_port()
    proc = start("netexec", f"--http-port={port}", "--udp-port=-1")
    try:
        wait_http(port, proc)
        assert get(port, "/exit?code=7&timeout=1s")[0] == 200
        assert proc.wait(10) == 7
    finally:
        stop(proc)


def test_exit_without_timeout_exits_before_answering() -> None:
    port = free_port()
    proc = start("netexec", f"--http-port={port}", "--udp-port=-1")
    try:
        wait_http(port, proc)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            get(port, "/exit?code=3")
        assert proc.wait(10) == 3
    finally:
        stop(proc)


def test_sigterm_kills_netexec_like_a_go_program(netexec: Netexec) -> None:
    netexec.proc.send_signal(signal.SIGTERM)
    assert netexec.proc.wait(10) == -signal.SIGTERM


def test_serve_hostname_http_and_udp() -> None:
    port = free_port()
    proc = start("serve-hostname", f"--port={port}")
    try:
        wait_http(port, proc)
        assert get(port, "/whatever")[::2] == (200, HOSTNAME)
    finally:
        stop(proc)
    proc = start("serve-hostname", "--http=false", "--udp", "--port", str(port))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert udp(port, b"x") == HOSTNAME
                break
            except (ConnectionRefusedError, TimeoutError):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        stop(proc)


def test_serve_hostname_refuses_http_with_udp() -> None:
    proc = subprocess.run([*AGNHOST, "serve-hostname", "--udp"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1
    assert proc.stderr.endswith("Can't server TCP/UDP mode and HTTP mode at the same time\n")


def test_connect() -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        ok = subprocess.run(
            [*AGNHOST, "connect", f"127.0.0.1:{port}", "--timeout=1s"], capture_output=True, timeout=10
        )
        assert (ok.returncode, ok.stderr) == (0, b"")
    refused = subprocess.run(
        [*AGNHOST, "connect", f"127.0.0.1:{port}", "--timeout=1s"], capture_output=True, text=True
    )
    assert (refused.returncode, refused.stderr) == (1, "REFUSED\n")
    bad = subprocess.run([*AGNHOST, "connect", "no-port"], capture_output=True, text=True)
    assert (bad.returncode, bad.stderr) == (1, "UNKNOWN: address no-port: missing port in address\n")
    noargs = subprocess.run([*AGNHOST, "connect"], capture_output=True, text=True)
    assert noargs.returncode == 1
    assert noargs.stderr.startswith(
        "Error: accepts 1 arg(s), received 0\nUsage:\n  app connect [host:port] [flags]"
    )


def test_pause_exits_2_on_sigterm() -> None:
    proc = start("pause")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"Paused\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 2
    finally:
        stop(proc)


def test_help_and_errors() -> None:
    help_run = subprocess.run(AGNHOST, capture_output=True, text=True)
    assert help_run.returncode == 0
    assert help_run.stdout.startswith("Usage:\n  app [command]\n\nAvailable Commands:\n")
    assert "  netexec " in help_run.stdout
    unknown = subprocess.run([*AGNHOST, "nosuch"], capture_output=True, text=True)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        'Error: unknown command "nosuch" for "app"\nRun \'app --help\' for usage.\n',
    )
    bad_flag = subprocess.run([*AGNHOST, "netexec", "--http-port=abc"], capture_output=True, text=True)
    assert bad_flag.returncode == 1
    assert bad_flag.stderr.startswith(
        'Error: invalid argument "abc" for "--http-port" flag: strconv.ParseInt: parsing "abc": invalid syntax\n'
    )
    unknown_flag = subprocess.run([*AGNHOST, "pause", "--nope"], capture_output=True, text=True)
    assert unknown_flag.stderr.startswith("Error: unknown flag: --nope\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1s", 1.0), ("1.5s", 1.5), ("300ms", 0.3), ("1m30s", 90.0), ("2h", 7200.0), ("-1s", -1.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1", 'time: missing unit in duration "1"'),
        ("x", 'time: invalid duration "x"'),
        ("", 'time: invalid duration ""'),
    ],
)
def test_parse_duration_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_duration(text)


def test_format_duration_and_json() -> None:
    assert [format_duration(s) for s in (0, 1, 1.5, 90, 0.25)] == ["0s", "1s", "1.5s", "1m30s", "250ms"]
    assert go_json({"b": ["<&>"], "a": "é"}) == '{"a":"é","b":["\\u003c\\u0026\\u003e"]}'
