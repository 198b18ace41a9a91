"""The remote-command channel protocols (``channel.k8s.io`` .. ``v5.channel.k8s.io``).

exec and attach multiplex stdin (0), stdout (1), stderr (2), the error channel (3) and
terminal resizes (4) over one connection: as the first byte of each websocket message, or
as one SPDY stream per channel. The versions differ in what the error channel carries (text
up to v3, a JSON ``Status`` from v4, which is how the exit code reaches kubectl) and in how
stdin's end is signalled (v5's CLOSE message on channel 255; SPDY half-closes the stream).

Over websockets each version also has a ``base64.`` variant (``base64.channel.k8s.io``,
``v4.base64.channel.k8s.io``) for clients that can only send text: every frame is then a text
frame, its channel an ASCII digit and its data base64. Clients of the binary variants may send
text frames too (the official Python client's ``write_stdin`` does for a ``str``): the
apiserver's wsstream reads either frame type as the same bytes, and so does kubelite.

The node agent speaks only v5 over a websocket; the API server translates to whatever the
client negotiated, so this module holds the few rules that translation needs.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import orjson

V1 = "channel.k8s.io"
V2 = "v2.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
# Server preference when a client offers several; kubectl 1.30+ offers v5 only over websockets.
PROTOCOLS = (V5, V4, V3, V2, V1)
# Over a websocket the kubelet also speaks the base64 variants (there is no v5 one).
WEBSOCKET_PROTOCOLS = (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: ``[255, channel]`` means the sender finished writing that channel

STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}


def version(protocol: str | None) -> int:
    """1..5 for a negotiated subprotocol; no subprotocol means v1, as client-go assumes."""
    if not protocol or not protocol.startswith("v"):
        return 1
    return int(protocol[1])


def is_base64(protocol: str | None) -> bool:
    return bool(protocol) and ".base64." in f".{protocol}"


def negotiate(offered: list[str]) -> str | None:
    """The first protocol the client offered that we speak (client order wins, as in apimachinery)."""
    for p in offered:
        if p in PROTOCOLS:
            return p
    return None


def offered_protocols(values: list[str]) -> list[str]:
    """Header values as a list, whether sent as repeated headers or comma-separated."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def message(channel: int, data: bytes) -> bytes:
    return bytes((channel,)) + data


def split(msg: bytes) -> tuple[int, bytes]:
    if not msg:
        raise ValueError("empty channel message")
    return msg[0], msg[1:]


def read_frame(data: bytes | str, b64: bool) -> tuple[int, bytes] | None:
    """(channel, data) of a client's frame, text or binary; None for one to skip.

    As the apiserver's wsstream reads them: a text frame is the same bytes as a binary one
    (UTF-8); with a base64 protocol the channel is an ASCII digit and the data is decoded
    (undecodable frames are dropped, as there). v5's CLOSE (``[255, channel]``) comes back
    as channel 255 with the closed channel as its data.
    """
    raw = data.encode() if isinstance(data, str) else data
    if not raw:
        return None
    channel, payload = raw[0], raw[1:]
    if b64 and channel != CLOSE:
        channel = (channel - ord("0")) & 0xFF  # a byte, as Go computes it: junk becomes a high channel
        try:
            payload = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
    return channel, payload


def write_frame(channel: int, data: bytes, b64: bool) -> bytes | str:
    """A frame for the client: binary, or text (digit + base64) for a base64 protocol."""
    if b64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes((channel,)) + data


def error_payload(status: dict[str, Any], ver: int) -> bytes:
    """What the error channel carries for a final ``Status`` in protocol version ``ver``.

    v4+ send the Status itself; earlier versions send only a failure's message text (and
    nothing on success), which is all their clients can decode.
    """
    if ver >= 4:
        return orjson.dumps(status)
    if status.get("status") == "Success":
        return b""
    return str(status.get("message", "")).encode()


_MAX_PENDING = 64 * 1024


class JSONStream:
    """Decode back-to-back JSON values (Go's json.Encoder output on the SPDY resize stream)."""

    def __init__(self) -> None:
        self._buf = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data.decode("utf-8", "replace")
        values: list[Any] = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return values
            try:
                value, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                # Incomplete: wait for more, unless it can never become a value.
                self._buf = text if len(text) < _MAX_PENDING else ""
                return values
            values.append(value)
            self._buf = text[end:]
