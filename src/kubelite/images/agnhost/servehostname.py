"""``agnhost serve-hostname``: answer every request with the hostname (HTTP, raw TCP or UDP).

As in agnhost, SIGTERM is caught and the process lingers 60 s ("Awaiting pod deletion")
before exiting 0: the kubelet's grace period usually ends it first.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from types import FrameType

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag, GoHandler, log

FLAGS = [
    Flag("tcp", "bool", False, "Serve raw over TCP."),
    Flag("udp", "bool", False, "Serve raw over UDP."),
    Flag("http", "bool", True, "Serve HTTP."),
    Flag("close", "bool", False, "Close connection per each HTTP request."),
    Flag("port", "int", 9376, "Port number."),
]


class HostnameHandler(GoHandler):
    close = False

    def route(self) -> None:
        log(f"HTTP request from {self.remote_addr}")
        if self.close:
            self.close_connection = True
            self.reply(200, socket.gethostname(), Connection="close")
        else:
            self.reply(200, socket.gethostname())


def _serve_tcp(sock: socket.socket, hostname: str) -> None:
    sock.listen(128)
    while True:
        conn, client = sock.accept()
        log(f"TCP request from {common.host_port(common.unmap(client[0]), client[1])}")
        with conn:
            conn.sendall(hostname.encode())


def _serve_udp(sock: socket.socket, hostname: str) -> None:
    while True:
        _, client = sock.recvfrom(16)
        log(f"UDP request from {common.host_port(common.unmap(client[0]), client[1])}")
        sock.sendto(hostname.encode(), client)


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("serve-hostname", FLAGS, args)
    if positional:
        common.usage_error("serve-hostname", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    port = values["port"]
    if values["http"] and (values["tcp"] or values["udp"]):
        common.fatal("Can't server TCP/UDP mode and HTTP mode at the same time")
    hostname = socket.gethostname()
    stop = threading.Event()

    def on_term(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    try:
        if values["tcp"]:
            sock = common.dual_stack_socket(socket.SOCK_STREAM, "", port)
            threading.Thread(target=_serve_tcp, args=(sock, hostname), daemon=True).start()
        if values["udp"]:
            sock = common.dual_stack_socket(socket.SOCK_DGRAM, "", port)
            threading.Thread(target=_serve_udp, args=(sock, hostname), daemon=True).start()
        if values["http"]:
            HostnameHandler.close = values["close"]
            server = common.GoHTTPServer(port, HostnameHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
    except OSError as e:
        common.fatal(f"listen tcp :{port}: bind: {common.os_error_text(e)}")
    log(f"Serving on port {port}.")
    while not stop.wait(1):
        pass
    log("Shutting down after receiving signal: terminated.")
    log("Awaiting pod deletion.")
    time.sleep(60)
