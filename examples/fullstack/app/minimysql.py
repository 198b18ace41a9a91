"""A minimal MySQL/MariaDB client in the standard library: enough for the example's backend.

The backend runs on ``python:3.12-slim`` without ``pip install``, so it speaks the protocol
itself: the v10 handshake, ``mysql_native_password`` authentication (also after an auth
switch request), ``COM_QUERY`` and text result sets. Not supported: TLS, compression,
``caching_sha2_password`` (MySQL 8's default; MariaDB and MySQL users created ``WITH
mysql_native_password`` work), prepared statements and ``LOAD DATA LOCAL``.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass

MAX_PACKET = 0xFFFFFF
UTF8MB4_GENERAL_CI = 45
BINARY_CHARSET = 63

CLIENT_LONG_PASSWORD = 0x1
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000

INTEGER_TYPES = {1, 2, 3, 8, 9, 13}  # TINY, SHORT, LONG, LONGLONG, INT24, YEAR
FLOAT_TYPES = {4, 5}  # FLOAT, DOUBLE
# VARCHAR, BIT, ENUM, SET, the BLOBs, VAR_STRING, STRING, GEOMETRY: bytes when their charset is
# binary. Numbers and dates also say "binary" but are sent as ASCII text.
STRING_TYPES = {15, 16, 247, 248, 249, 250, 251, 252, 253, 254, 255}

Value = int | float | str | bytes | None


class MySQLError(Exception):
    """An ERR packet from the server (``code``, ``sqlstate``) or a protocol failure (code 0)."""

    def __init__(self, code: int, sqlstate: str, message: str) -> None:
        super().__init__(f"({code}, {sqlstate!r}) {message}" if code else message)
        self.code = code
        self.sqlstate = sqlstate
        self.message = message


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Value, ...]]
    affected_rows: int = 0
    insert_id: int = 0


def native_password(password: str, scramble: bytes) -> bytes:
    """``SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))``; empty for an empty password."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(scramble + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def literal(value: Value) -> str:
    """``value`` as an SQL literal, escaped as ``mysql_real_escape_string`` does."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return "X'" + value.hex() + "'"
    escapes = {"\0": "\\0", "\n": "\\n", "\r": "\\r", "\\": "\\\\", "'": "\\'", '"': '\\"', "\x1a": "\\Z"}
    return "'" + "".join(escapes.get(c, c) for c in value) + "'"


class Reader:
    """Reads the fields of one packet's payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MySQLError(0, "", "malformed packet: truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def lenenc_int(self) -> int | None:
        first = self.uint(1)
        if first < 0xFB:
            return first
        if first == 0xFB:
            return None  # NULL in a row
        return self.uint({0xFC: 2, 0xFD: 3, 0xFE: 8}[first])

    def lenenc_bytes(self) -> bytes | None:
        n = self.lenenc_int()
        return None if n is None else self.take(n)

    def null_terminated(self) -> bytes:
        end = self.data.index(b"\0", self.pos)
        chunk = self.data[self.pos:end]
        self.pos = end + 1
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk


def lenenc_int(n: int) -> bytes:
    if n < 0xFB:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def error_from(payload: bytes) -> MySQLError:
    r = Reader(payload)
    r.take(1)
    code = r.uint(2)
    sqlstate = ""
    if r.data[r.pos:r.pos + 1] == b"#":
        r.take(1)
        sqlstate = r.take(5).decode()
    return MySQLError(code, sqlstate, r.rest().decode(errors="replace"))


def _convert(raw: bytes | None, type_: int, charset: int) -> Value:
    if raw is None:
        return None
    if type_ in INTEGER_TYPES:
        return int(raw)
    if type_ in FLOAT_TYPES:
        return float(raw)
    return raw if charset == BINARY_CHARSET and type_ in STRING_TYPES else raw.decode()


class Connection:
    def __init__(self, host: str, port: int = 3306, user: str = "root", password: str = "",
                 database: str = "", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.seq = 0
        try:
            self._handshake(user, password, database)
        except BaseException:
            self.sock.close()
            raise

    # -------------------------------------------------------------------- packets

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise MySQLError(0, "", "connection closed by the server")
            buf += chunk
        return bytes(buf)

    def read_packet(self) -> bytes:
        """One logical packet (payloads of 16 MiB - 1 continue in the next physical packet)."""
        payload = b""
        while True:
            header = self._recv_exact(4)
            length = int.from_bytes(header[:3], "little")
            self.seq = (header[3] + 1) & 0xFF
            payload += self._recv_exact(length)
            if length < MAX_PACKET:
                return payload

    def write_packet(self, payload: bytes) -> None:
        out = bytearray()
        while True:
            chunk, payload = payload[:MAX_PACKET], payload[MAX_PACKET:]
            out += struct.pack("<I", len(chunk))[:3] + bytes([self.seq]) + chunk
            self.seq = (self.seq + 1) & 0xFF
            if len(chunk) < MAX_PACKET:
                break
        self.sock.sendall(out)

    # -------------------------------------------------------------------- connection phase

    def _handshake(self, user: str, password: str, database: str) -> None:
        r = Reader(self.read_packet())
        if r.data[:1] == b"\xff":
            raise error_from(r.data)
        version = r.uint(1)
        if version != 10:
            raise MySQLError(0, "", f"unsupported handshake protocol version {version}")
        self.server_version = r.null_terminated().decode()
        self.connection_id = r.uint(4)
        scramble = r.take(8)
        r.take(1)
        capabilities = r.uint(2)
        r.take(3)  # character set, status flags
        capabilities |= r.uint(2) << 16
        auth_data_len = r.uint(1)
        r.take(10)
        if capabilities & CLIENT_SECURE_CONNECTION:
            scramble += r.take(max(13, auth_data_len - 8))[:12]
        needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
        if capabilities & needed != needed:
            raise MySQLError(0, "", "the server lacks the 4.1 protocol with pluggable authentication")

        flags = CLIENT_LONG_PASSWORD | CLIENT_TRANSACTIONS | needed | (CLIENT_CONNECT_WITH_DB if database else 0)
        # Always answer with mysql_native_password: a server whose user has another plugin asks
        # to switch, and the switch handler says what is not supported.
        auth = native_password(password, scramble)
        response = (struct.pack("<IIB", flags, MAX_PACKET, UTF8MB4_GENERAL_CI) + bytes(23)
                    + user.encode() + b"\0" + lenenc_int(len(auth)) + auth
                    + (database.encode() + b"\0" if database else b"") + b"mysql_native_password\0")
        self.write_packet(response)
        reply = self.read_packet()
        if reply[:1] == b"\xfe":  # auth switch request: the user's plugin, with a fresh scramble
            r = Reader(reply)
            r.take(1)
            plugin = r.null_terminated().decode()
            if plugin != "mysql_native_password":
                raise MySQLError(0, "", f"unsupported authentication plugin {plugin!r}")
            self.write_packet(native_password(password, r.rest().rstrip(b"\0")))
            reply = self.read_packet()
        if reply[:1] == b"\xff":
            raise error_from(reply)
        if reply[:1] != b"\x00":
            raise MySQLError(0, "", f"unexpected reply to authentication (0x{reply[:1].hex()})")

    # -------------------------------------------------------------------- commands

    def query(self, sql: str, params: tuple[Value, ...] = ()) -> Result:
        """Run one statement; ``%s`` placeholders take ``params`` as escaped literals."""
        if params:
            sql = sql % tuple(literal(p) for p in params)
        self.seq = 0
        self.write_packet(b"\x03" + sql.encode())
        first = self.read_packet()
        if first[:1] == b"\xff":
            raise error_from(first)
        r = Reader(first)
        if first[:1] == b"\x00":
            r.take(1)
            return Result([], [], r.lenenc_int() or 0, r.lenenc_int() or 0)
        if first[:1] == b"\xfb":
            raise MySQLError(0, "", "LOAD DATA LOCAL is not supported")
        count = r.lenenc_int() or 0
        columns: list[tuple[str, int, int]] = []
        for _ in range(count):
            c = Reader(self.read_packet())
            for _ in range(4):  # catalog, schema, table, org_table
                c.lenenc_bytes()
            name = (c.lenenc_bytes() or b"").decode()
            c.lenenc_bytes()  # org_name
            c.lenenc_int()  # length of the fixed fields
            charset = c.uint(2)
            c.uint(4)  # column length
            columns.append((name, c.uint(1), charset))
        self._read_eof()
        rows: list[tuple[Value, ...]] = []
        while True:
            packet = self.read_packet()
            if packet[:1] == b"\xff":
                raise error_from(packet)
            if packet[:1] == b"\xfe" and len(packet) < 9:
                return Result([c[0] for c in columns], rows)
            row = Reader(packet)
            rows.append(tuple(_convert(row.lenenc_bytes(), type_, cs) for _, type_, cs in columns))

    def _read_eof(self) -> None:
        packet = self.read_packet()
        if packet[:1] == b"\xff":
            raise error_from(packet)
        if not (packet[:1] == b"\xfe" and len(packet) < 9):
            raise MySQLError(0, "", "malformed result set: no EOF after the column definitions")

    def close(self) -> None:
        try:
            self.seq = 0
            self.write_packet(b"\x01")  # COM_QUIT
        except OSError:
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
