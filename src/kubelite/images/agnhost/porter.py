"""``agnhost porter``: answer on every port named by a ``SERVE_*_PORT_N`` variable with its value.

The API server's proxy conformance test (services and pods proxied over HTTP and HTTPS,
by port name and number) runs porter with ``SERVE_PORT_80=foo``, ``SERVE_TLS_PORT_443=tls
baz``... Each variable starts a server: ``SERVE_PORT_``/``SERVE_TCP_PORT_`` HTTP,
``SERVE_TLS_PORT_`` HTTPS, ``SERVE_UDP_PORT_`` UDP (SCTP is not served here: no SCTP in the
pod network). HTTPS uses ``CERT_FILE``/``KEY_FILE`` (default ``localhost.crt``/``localhost.key``
in the working directory, as the image ships them); when those files do not exist, a
self-signed certificate for 127.0.0.1 and ::1 is made at start, as the image's own is.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag, GoHandler, log

FLAGS = [Flag("json-response", "bool", False,
              "Responds to requests with a json response that includes the default value with the http.Request Method")]

_JSON = False


def _handler(value: str) -> type[GoHandler]:
    class Handler(GoHandler):
        def route(self) -> None:
            if _JSON:
                self.reply(200, common.go_json({"Method": self.command, "Body": value}), "application/json")
            else:
                self.reply(200, value)

    return Handler


def _self_signed() -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * 50))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tempfile.mkdtemp(prefix="porter-")
    cert_file, key_file = os.path.join(directory, "localhost.crt"), os.path.join(directory, "localhost.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_file, key_file


def _serve_http(port: str, value: str, tls: ssl.SSLContext | None) -> None:
    try:
        server = common.GoHTTPServer(int(port), _handler(value))
    except (OSError, ValueError) as e:
        log(f"server on port {common.go_quote(port)} failed: listen tcp 0.0.0.0:{port}: {e}")
        return
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def _serve_udp(port: str, value: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", int(port)))
    except (OSError, ValueError) as e:
        common.fatal(f"UDP: failed to listen on port {port}: {e}")
    log(f"Started UDP server on port {port}")
    while True:
        _, client = sock.recvfrom(16)
        sock.sendto(value.encode(), client)


def main(args: list[str]) -> None:
    global _JSON
    values, positional = common.parse_flags("porter", FLAGS, args)
    if positional:
        common.usage_error("porter", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    _JSON = values["json-response"]
    common.go_signal_defaults()
    tls: ssl.SSLContext | None = None
    threads: list[threading.Thread] = []
    for key, value in os.environ.items():
        for prefix in ("SERVE_PORT_", "SERVE_TCP_PORT_"):
            if key.startswith(prefix):
                threads.append(threading.Thread(target=_serve_http, args=(key[len(prefix):], value, None)))
        if key.startswith("SERVE_UDP_PORT_"):
            threads.append(threading.Thread(target=_serve_udp, args=(key[len("SERVE_UDP_PORT_"):], value)))
        if key.startswith("SERVE_TLS_PORT_"):
            if tls is None:
                cert_file = os.environ.get("CERT_FILE") or "localhost.crt"
                key_file = os.environ.get("KEY_FILE") or "localhost.key"
                if not (os.path.exists(cert_file) and os.path.exists(key_file)):
                    cert_file, key_file = _self_signed()
                tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls.load_cert_chain(cert_file, key_file)
            threads.append(threading.Thread(target=_serve_http, args=(key[len("SERVE_TLS_PORT_"):], value, tls)))
    for t in threads:
        t.daemon = True
        t.start()
    threading.Event().wait()
