"""``agnhost connect host:port``: try one TCP/UDP/SCTP connection, classify the failure.

Exit 0 on success; otherwise exit 1 with agnhost's prefixes on stderr (``TIMEOUT``,
``REFUSED``, ``DNS: ...``, ``OTHER: ...``, ``UNKNOWN: ...``) that tests match on.
"""

from __future__ import annotations

import socket
import sys
from typing import NoReturn

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag

FLAGS = [
    Flag("timeout", "duration", 0.0, "Maximum time before returning an error"),
    Flag(
        "protocol", "string", "tcp", "The protocol to use to perform the connection, can be tcp, udp or sctp"
    ),
    Flag("udp-data", "string", "hostname", "The UDP payload send to the server"),
    Flag("sctp-data", "string", "hostname", "The SCTP payload send to the server"),
]


def _fail(message: str) -> NoReturn:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _split(dest: str) -> tuple[str, str]:
    if dest.startswith("["):
        host, sep, port = dest[1:].partition("]:")
        if not sep:
            _fail(f"UNKNOWN: address {dest}: missing port in address")
        return host, port
    host, sep, port = dest.rpartition(":")
    if not sep:
        _fail(f"UNKNOWN: address {dest}: missing port in address")
    if ":" in host:
        _fail(f"UNKNOWN: address {dest}: too many colons in address")
    return host, port


def _nameserver() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return common.host_port(fields[1], 53)
    except OSError:
        pass
    return "127.0.0.1:53"


def _resolve(dest: str, kind: socket.SocketKind) -> tuple[int, tuple[str, int]]:
    host, port = _split(dest)
    try:
        port_number = int(port)
    except ValueError:
        _fail(f"DNS: lookup {kind.name.lower()}/{port}: unknown port")
    try:
        info = socket.getaddrinfo(host or None, port_number, type=kind)
    except socket.gaierror:
        _fail(f"DNS: lookup {host} on {_nameserver()}: no such host")
    family, _, _, _, addr = info[0]
    return family, (str(addr[0]), port_number)


def _connect_tcp(dest: str, timeout: float) -> None:
    family, addr = _resolve(dest, socket.SOCK_STREAM)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout or None)
        try:
            sock.connect(addr)
        except TimeoutError:
            _fail("TIMEOUT")
        except ConnectionRefusedError:
            _fail("REFUSED")
        except OSError as e:
            _fail(f"OTHER: dial tcp {common.host_port(*addr)}: connect: {common.os_error_text(e)}")


def _connect_udp(dest: str, timeout: float, data: str) -> None:
    family, addr = _resolve(dest, socket.SOCK_DGRAM)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(addr)
        except OSError as e:
            _fail(f"OTHER: dial udp {common.host_port(*addr)}: {common.os_error_text(e)}")
        local = common.host_port(*sock.getsockname()[:2])
        remote = common.host_port(*addr)
        sock.settimeout(timeout or None)
        try:
            sock.send(f"{data}\n".encode())
            received = sock.recv(1024)
        except TimeoutError as e:
            _fail(f"TIMEOUT: read udp {local}->{remote}: {common.os_error_text(e)}")
        except ConnectionRefusedError as e:
            _fail(f"REFUSED: read udp {local}->{remote}: read: {common.os_error_text(e)}")
        except OSError as e:
            _fail(f"UNKNOWN: read udp {local}->{remote}: {common.os_error_text(e)}")
        if not received:
            _fail(
                "OTHER: No data received from the server. Cannot guarantee the server received the request."
            )


def _connect_sctp(dest: str, timeout: float, data: str) -> None:
    family, addr = _resolve(dest, socket.SOCK_STREAM)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as e:
        _fail(f"OTHER: {common.os_error_text(e)}")
    with sock:
        sock.settimeout(timeout or None)
        try:
            sock.connect(addr)
            sock.send(f"{data}\n".encode())
            sock.recv(1024)
        except TimeoutError:
            _fail("TIMEOUT")
        except OSError as e:
            _fail(f"OTHER: {common.os_error_text(e)}")


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("connect [host:port]", FLAGS, args)
    if len(positional) != 1:
        common.usage_error("connect [host:port]", FLAGS, f"accepts 1 arg(s), received {len(positional)}")
    dest = positional[0]
    protocol = values["protocol"]
    if protocol in ("", "tcp"):
        _connect_tcp(dest, values["timeout"])
    elif protocol == "udp":
        _connect_udp(dest, values["timeout"], values["udp-data"])
    elif protocol == "sctp":
        _connect_sctp(dest, values["timeout"], values["sctp-data"])
    else:
        sys.stderr.write(f"Unsupported protocol\n{protocol}")  # sic: agnhost's Fprint
        raise SystemExit(1)
