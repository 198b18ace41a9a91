"""A minimal Redis client in the standard library: commands as RESP arrays, replies parsed.

Enough for the example's backend (``INCR``, ``GET``, ``PING``...) on ``python:3.12-slim``
without ``pip install``. RESP2 only; no pipelining, pub/sub or TLS.
"""

from __future__ import annotations

import socket

Reply = bytes | int | list["Reply"] | None


class RedisError(Exception):
    """An error reply (``-ERR ...``) or a broken connection."""


def encode(*args: str | bytes | int) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    def __init__(self, host: str, port: int = 6379, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def command(self, *args: str | bytes | int) -> Reply:
        self.sock.sendall(encode(*args))
        return self.read_reply()

    def read_reply(self) -> Reply:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed by the server")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body
        if kind == b"-":
            raise RedisError(body.decode(errors="replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            n = int(body)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            if len(data) != n + 2:
                raise RedisError("connection closed by the server")
            return data[:-2]
        if kind == b"*":
            n = int(body)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise RedisError(f"malformed reply {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
