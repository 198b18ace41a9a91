"""``agnhost netexec``: the HTTP/UDP(/SCTP) test server of Kubernetes' network e2e tests.

Endpoints, parameters, response bodies and status codes follow
kubernetes/test/images/agnhost/netexec, quirks included (``/healthz`` answers 412 until a
UDP or SCTP server runs, so with ``--udp-port=-1`` it never turns ready; ``/exit`` without
``timeout`` exits before answering; UDP commands are lower-cased, echoes too). Not
implemented: ``/upload`` and TLS (``--tls-cert-file``).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag, GoHandler, log

FLAGS = [
    Flag("http-port", "int", 8080, "HTTP Listen Port"),
    Flag("udp-port", "int", 8081, "UDP Listen Port"),
    Flag("sctp-port", "int", -1, "SCTP Listen Port"),
    Flag(
        "http-override",
        "string",
        "",
        "Override the HTTP handler to always respond as if it were a GET with this path & params",
    ),
    Flag(
        "udp-listen-addresses",
        "string",
        "",
        "A comma separated list of ip addresses the udp servers listen from",
    ),
    Flag("tls-cert-file", "string", "", "File containing an x509 certificate for HTTPS."),
    Flag(
        "tls-private-key-file", "string", "", "File containing an x509 private key matching --tls-cert-file"
    ),
]
SHELL_PATH = "/bin/sh"
_ready = threading.Event()
_START = time.monotonic()


def _resolve(host: str, port: str, kind: socket.SocketKind) -> tuple[str, int]:
    """net.ResolveTCPAddr/ResolveUDPAddr: the first address of ``host``."""
    try:
        port_number = int(port) if port else 0
    except ValueError:
        try:
            port_number = socket.getservbyname(port)
        except OSError:
            raise ValueError(f"address {common.host_port(host, 0)[:-1]}{port}: unknown port") from None
    if not host:
        return "", port_number
    try:
        info = socket.getaddrinfo(host, port_number, type=kind)
    except socket.gaierror:
        raise ValueError(f"lookup {host}: no such host") from None
    return str(info[0][4][0]), port_number


def _dial_http(request: str, addr: str) -> str:
    url = f"http://{addr}/{request}"
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
    try:
        conn.request("GET", f"/{request}")
        return conn.getresponse().read().decode(errors="replace")
    except TimeoutError:
        raise ValueError(
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        ) from None
    except ConnectionRefusedError as e:
        raise ValueError(f'Get "{url}": dial tcp {addr}: connect: {common.os_error_text(e)}') from None
    except OSError as e:
        raise ValueError(f'Get "{url}": dial tcp {addr}: {common.os_error_text(e)}') from None
    except http.client.HTTPException as e:
        raise ValueError(f'Get "{url}": {e}') from None
    finally:
        conn.close()


def _dial_udp(request: str, addr: str) -> str:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, int(port)))
        except OSError as e:
            raise ValueError(f"udp dial failed. err:dial udp {addr}: {common.os_error_text(e)}") from None
        local = common.host_port(*sock.getsockname()[:2])
        try:
            sock.send(request.encode())
        except OSError as e:
            raise ValueError(
                f"udp connection write failed. err:write udp {local}->{addr}: write: {common.os_error_text(e)}"
            ) from None
        sock.settimeout(5)
        try:
            data = sock.recv(2048)
        except TimeoutError as e:
            raise ValueError(
                f"reading from udp connection failed. err:'read udp {local}->{addr}: {common.os_error_text(e)}'"
            ) from None
        except OSError as e:
            raise ValueError(
                f"reading from udp connection failed. err:'read udp {local}->{addr}: read: {common.os_error_text(e)}'"
            ) from None
        if not data:
            raise ValueError("reading from udp connection failed. err:'<nil>'")
        return data.decode(errors="replace")


def _dial_sctp(request: str, addr: str) -> str:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as e:
        raise ValueError(f"sctp dial failed. err:{common.os_error_text(e)}") from None
    with sock:
        sock.settimeout(5)
        try:
            sock.connect((host, int(port)))
        except OSError as e:
            raise ValueError(f"sctp dial failed. err:{common.os_error_text(e)}") from None
        sock.send(request.encode())
        try:
            data = sock.recv(1024)
        except OSError as e:
            raise ValueError(
                f"reading from sctp connection failed. err:'{common.os_error_text(e)}'"
            ) from None
        if not data:
            raise ValueError("reading from sctp connection failed. err:'EOF'")
        return data.decode(errors="replace")


class NetexecHandler(GoHandler):
    override = ""

    def route(self) -> None:
        if self.override:
            self.command = "GET"
            self.path = self.override
        handler = _ROUTES.get(self.url_path, NetexecHandler.root)
        handler(self)

    def root(self) -> None:
        log("GET /")
        self.reply(200, f"NOW: {common.go_time_now(_START)}")

    def clientip(self) -> None:
        log("GET /clientip")
        self.reply(200, self.remote_addr)

    def echo(self) -> None:
        msg = self.form_value("msg")
        code_string = self.form_value("code")
        log(f"GET /echo?msg={msg}&code={code_string}")
        code = 200
        if code_string:
            try:
                code = int(code_string)
            except ValueError:
                self.reply(
                    200, f"argument 'code' must be an integer or empty, got {common.go_quote(code_string)}\n"
                )
                return
        self.reply(code, msg)

    def exit(self) -> None:
        wait_string = self.form_value("wait")
        timeout_string = self.form_value("timeout")
        code_string = self.form_value("code")
        log(f"GET /exit?code={code_string}&timeout={timeout_string}&wait={wait_string}")
        try:
            timeout = common.parse_duration(timeout_string) if timeout_string else 0.0
        except ValueError:
            self.reply(
                200,
                f"argument 'timeout' must be a valid golang duration or empty, got \"{timeout_string}\"\n",
            )
            return
        try:
            wait = common.parse_duration(wait_string) if wait_string else 0.0
        except ValueError:
            self.reply(
                200, f"argument 'wait' must be a valid golang duration or empty, got \"{wait_string}\"\n"
            )
            return
        try:
            code = int(code_string) if code_string else 0
        except ValueError:
            self.reply(200, f"argument 'code' must be an integer [0-127] or empty, got \"{code_string}\"\n")
            return
        log(
            f"Will begin shutdown in {common.format_duration(wait)}, allowing "
            f"{common.format_duration(timeout)} for connections to close, then will exit with {code}"
        )
        time.sleep(wait)
        if timeout == 0:
            os._exit(code)
        # Graceful: this request is answered, then the process exits.
        self.reply(200, "", Connection="close")
        self.close_connection = True
        threading.Thread(target=_exit_soon, args=(code,), daemon=True).start()

    def healthz(self) -> None:
        log("GET /healthz")
        self.reply(200 if _ready.is_set() else 412)

    def hostname(self) -> None:
        log("GET /hostname")
        self.reply(200, socket.gethostname())

    def host_name(self) -> None:
        log("GET /hostName")
        self.reply(200, socket.gethostname())

    def redirect_handler(self) -> None:
        location = self.form_value("location")
        code_string = self.form_value("code")
        log(f"{self.command} /redirect?msg={location}&code={code_string}")
        code = 302
        if code_string:
            try:
                code = int(code_string)
            except ValueError:
                self.reply(
                    200, f"argument 'code' must be an integer or empty, got {common.go_quote(code_string)}\n"
                )
                return
        self.redirect(location, code)

    def shell(self) -> None:
        cmd = self.form_value("shellCommand") or self.form_value("cmd")
        log(f"GET /shell?cmd={cmd}")
        proc = subprocess.run([SHELL_PATH, "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output: dict[str, str] = {}
        if proc.stdout:
            output["output"] = proc.stdout.decode(errors="replace")
        if proc.returncode > 0:
            output["error"] = f"exit status {proc.returncode}"
        elif proc.returncode < 0:
            output["error"] = f"signal: {_signal_name(-proc.returncode)}"
        log(f"Output: map[{' '.join(f'{k}:{v}' for k, v in sorted(output.items()))}]")
        self.reply(200, common.go_json(output))

    def shutdown(self) -> None:
        log("GET /shutdown")
        os._exit(0)

    def dial(self) -> None:
        query = self.query()

        def get(name: str) -> str:
            return query.get(name, [""])[0]

        host, port, request, protocol, try_param = (
            get("host"),
            get("port"),
            get("request"),
            get("protocol"),
            get("tries"),
        )
        log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={try_param}")
        tries = 1
        if try_param:
            try:
                tries = int(try_param)
            except ValueError:
                self.http_error(
                    f'tries parameter is invalid. strconv.Atoi: parsing "{try_param}": invalid syntax', 400
                )
                return
        if not request:
            self.http_error("request parameter not specified. <nil>", 400)
            return
        dialers = {"": (_dial_http, socket.SOCK_STREAM), "http": (_dial_http, socket.SOCK_STREAM),
                   "udp": (_dial_udp, socket.SOCK_DGRAM), "sctp": (_dial_sctp, socket.SOCK_STREAM)}  # fmt: skip
        if protocol.lower() not in dialers:
            self.http_error(f"unsupported protocol. {protocol}", 400)
            return
        dialer, kind = dialers[protocol.lower()]
        try:
            ip, port_number = _resolve(host, port, kind)
        except ValueError as e:
            self.http_error(f"host and/or port param are invalid. {e}", 400)
            return
        addr = common.host_port(ip, port_number)
        responses: list[str] = []
        errors: list[str] = []
        response = ""
        for _ in range(tries):
            try:
                response = dialer(request, addr)
                responses.append(response)
            except ValueError as e:
                response = ""
                errors.append(str(e))
        output: dict[str, list[str]] = {}
        if response:  # sic: agnhost keys "responses" on the last attempt only
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        self.reply(200, common.go_json(output))


_ROUTES: dict[str, Any] = {
    "/": NetexecHandler.root,
    "/clientip": NetexecHandler.clientip,
    "/dial": NetexecHandler.dial,
    "/echo": NetexecHandler.echo,
    "/exit": NetexecHandler.exit,
    "/healthz": NetexecHandler.healthz,
    "/hostname": NetexecHandler.hostname,
    "/redirect": NetexecHandler.redirect_handler,
    "/shell": NetexecHandler.shell,
    "/hostName": NetexecHandler.host_name,
    "/shutdown": NetexecHandler.shutdown,
}


def _signal_name(signum: int) -> str:
    import signal

    return (signal.strsignal(signum) or str(signum)).lower()


def _exit_soon(code: int) -> None:
    time.sleep(0.05)
    log("Graceful shutdown completed with: <nil>")
    os._exit(code)


def _serve_udp(address: str, port: int) -> None:
    try:
        sock = common.dual_stack_socket(socket.SOCK_DGRAM, address, port)
    except OSError as e:
        common.fatal(
            f"Error occurred: failed to create listener for UDP address {common.host_port(address, port)}:listen udp :{port}: bind: {common.os_error_text(e)}"
        )
    log(f"Started UDP server on port {address} {port}")
    _ready.set()
    while True:
        data, client = sock.recvfrom(2048)
        text = data.decode(errors="replace").strip().lower()
        peer = common.host_port(common.unmap(client[0]), client[1])
        if text == "hostname":
            log("Sending udp hostName response")
            sock.sendto(socket.gethostname().encode(), client)
        elif text.startswith("echo "):
            reply = text.split(" ", 1)[1]
            log(f"Echoing {reply} to UDP client {peer}")
            sock.sendto(reply.encode(), client)
        elif text == "clientip":
            log(f"Sending clientip back to UDP client {peer}")
            sock.sendto(peer.encode(), client)
        elif text:
            log(f"Unknown UDP command received from {peer}: {text}")


def _serve_sctp(port: int) -> None:
    try:
        sock = socket.socket(
            socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP
        )
        sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", port))
        sock.listen(128)
    except OSError as e:
        common.fatal(
            f"Error occurred: failed to create listener for SCTP address :{port}:{common.os_error_text(e)}"
        )
    log("Started SCTP server")
    _ready.set()
    while True:
        conn, client = sock.accept()
        with conn:
            text = conn.recv(1024).decode(errors="replace").strip().lower()
            peer = common.host_port(common.unmap(client[0]), client[1])
            if text == "hostname":
                conn.send(socket.gethostname().encode())
            elif text.startswith("echo "):
                conn.send(text.split(" ", 1)[1].encode())
            elif text == "clientip":
                conn.send(peer.encode())


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("netexec", FLAGS, args)
    if positional:
        common.usage_error("netexec", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    if values["tls-cert-file"]:
        common.fatal("kubelite's agnhost does not implement HTTPS (--tls-cert-file)")
    common.go_signal_defaults()
    NetexecHandler.override = values["http-override"]
    if values["udp-port"] != -1:
        addresses = (
            sorted(set(values["udp-listen-addresses"].split(","))) if values["udp-listen-addresses"] else [""]
        )
        for address in addresses:
            threading.Thread(target=_serve_udp, args=(address, values["udp-port"]), daemon=True).start()
    if values["sctp-port"] != -1:
        threading.Thread(target=_serve_sctp, args=(values["sctp-port"],), daemon=True).start()
    log(f"Started HTTP server on port {values['http-port']}")
    try:
        server = common.GoHTTPServer(values["http-port"], NetexecHandler)
    except OSError as e:
        common.fatal(f"listen tcp :{values['http-port']}: bind: {common.os_error_text(e)}")
    sys.stderr.flush()
    server.serve_forever()
