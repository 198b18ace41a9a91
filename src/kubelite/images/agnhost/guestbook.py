"""``agnhost guestbook``: the guestbook application of kubectl's conformance test.

One program plays three parts: the primary store (``--http-port 6379``), its replicas
(``--replicaof agnhost-primary``: each registers its own address with the primary and takes
the primary's store; the primary pushes every ``/set`` to them) and the frontend (``/guestbook``
sends ``set`` to the ``agnhost-primary`` Service and ``get`` to ``agnhost-replica``). Answers
are encoding/json's (``{"data":...}``, ``{"message":"Updated"}``); errors are http.Error texts
with agnhost's status codes; a replica that cannot register within 15 s dies (log.Fatal), so
the kubelet restarts it, as with the Go program.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag, GoHandler, log

FLAGS = [
    Flag("http-port", "string", "80", "HTTP Listen Port"),
    Flag("backend-port", "string", "6379", "Backend's HTTP Listen Port"),
    Flag("replicaof", "string", "", "The host's name to register to"),
]

REGISTER_TIMEOUT = 15.0
RETRY_SLEEP = 1.0
DIAL_TIMEOUT = 5.0


class State:
    """The store and the registered replicas, shared by the HTTP threads and the registration."""

    def __init__(self, backend_port: str) -> None:
        self.backend_port = backend_port
        self.lock = threading.Lock()
        self.store: dict[str, Any] = {}
        self.replicas: list[str] = []


def dial_http(request: str, host_port: str) -> str:
    """GET http://host_port/request with agnhost's 5 s client timeout; the body as text."""
    with urllib.request.urlopen(f"http://{host_port}/{request}", timeout=DIAL_TIMEOUT) as response:
        return str(response.read().decode(errors="replace"))


def _dial_error(err: Exception) -> str:
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, OSError):
        err = err.reason
    return common.os_error_text(err) if isinstance(err, OSError) else str(err)


def _query(request: str, **params: str) -> str:
    # agnhost formats "set?key=%s&value=%s" unescaped; escaping keeps odd values one request.
    return request + "?" + "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params.items())


def _local_ip_towards(host: str, port: str) -> str:
    """The address this pod uses to reach ``host`` (Go's UDP dial, LocalAddr)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    infos = socket.getaddrinfo(host, int(port), 0, socket.SOCK_DGRAM)
    family, _, _, _, address = next((i for i in infos if i[0] == family), infos[0])
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(address)
        return str(s.getsockname()[0])


def register(state: State, primary: str) -> None:
    """A replica subscribes to the primary and takes its store; fatal after 15 s of failures."""
    host_port = common.host_port(primary, int(state.backend_port))
    start = time.monotonic()
    while time.monotonic() - start < REGISTER_TIMEOUT:
        try:
            ip = _local_ip_towards(primary, state.backend_port)
        except OSError as e:
            log(f"unable to get IP {host_port}: {e}. Retrying in 1s.")
            time.sleep(RETRY_SLEEP)
            continue
        request = f"register?host={ip}"
        log(f"Registering to primary: {host_port}/{request}")
        try:
            response = dial_http(request, host_port)
        except (OSError, urllib.error.URLError) as e:
            log(f"encountered error while registering to primary: {_dial_error(e)}. Retrying in 1s.")
            time.sleep(RETRY_SLEEP)
            continue
        try:
            data = json.loads(response)["data"]
        except (ValueError, KeyError, TypeError) as e:
            common.fatal(f"Error while unmarshaling primary's response: {e}")
        if not isinstance(data, dict):
            common.fatal(f"Could not cast responseJSON: {data}")
        with state.lock:
            state.store = data
        log(f"Registered to node: {primary}")
        return
    common.fatal("Timed out while registering to primary.")


class GuestbookHandler(GoHandler):
    state: State

    def route(self) -> None:
        handler = {
            "/register": self._register,
            "/get": self._get,
            "/set": self._set,
            "/guestbook": self._guestbook,
        }.get(self.url_path)
        if handler is None:
            self.http_error("404 page not found", 404)
            return
        handler()

    def _param(self, name: str) -> str:
        return self.query().get(name, [""])[0]

    def _register(self) -> None:
        ip = self._param("host")
        log(f"GET /register?host={ip}")
        with self.state.lock:
            body = common.go_json({"data": self.state.store})
            self.state.replicas.append(ip)
        self.reply(200, body)
        log(f"Node '{ip}' registered.")

    def _get(self) -> None:
        key = self._param("key")
        log(f"GET /get?key={key}")
        with self.state.lock:
            value = dict(self.state.store) if key == "" else self.state.store.get(key, "")
        self.reply(200, common.go_json({"data": value}))

    def _set(self) -> None:
        key, value = self._param("key"), self._param("value")
        log(f"GET /set?key={key}&value={value}")
        if key == "":
            self.http_error("cannot set with empty key.", 400)
            return
        with self.state.lock:
            self.state.store[key] = value
            replicas = list(self.state.replicas)
        for replica in replicas:
            try:
                dial_http(_query("set", key=key, value=value), common.host_port(replica, int(self.state.backend_port)))
            except (OSError, urllib.error.URLError) as e:
                self.http_error(f"encountered error while propagating to replica '{replica}': {_dial_error(e)}", 417)
                return
        self.reply(200, common.go_json({"message": "Updated"}))

    def _guestbook(self) -> None:
        cmd = self._param("cmd").lower()
        key, value = self._param("key"), self._param("value")
        log(f"GET /guestbook?cmd={cmd}&key={key}&value={value}")
        if cmd not in ("get", "set"):
            self.http_error(f"unsupported cmd: '{cmd}'", 400)
            return
        if cmd == "set" and key == "":
            self.http_error("cannot set with empty key.", 400)
            return
        host = "agnhost-replica" if cmd == "get" else "agnhost-primary"
        host_port = common.host_port(host, int(self.state.backend_port))
        try:
            socket.getaddrinfo(host, int(self.state.backend_port), 0, socket.SOCK_STREAM)
        except OSError as e:
            self.http_error(f"host and/or port param are invalid. {e}", 400)
            return
        try:
            response = dial_http(_query(cmd, key=key, value=value), host_port)
        except (OSError, urllib.error.URLError) as e:
            self.http_error(f"encountered error: {_dial_error(e)}", 417)
            return
        self.reply(200, response)


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("guestbook", FLAGS, args)
    if positional:
        common.usage_error("guestbook", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    for name in ("http-port", "backend-port"):
        if not values[name].isdigit():
            common.fatal(f"listen tcp: address {values[name]}: invalid port")
    common.go_signal_defaults()
    state = State(values["backend-port"])
    handler = type("Handler", (GuestbookHandler,), {"state": state})
    if values["replicaof"]:
        threading.Thread(target=register, args=(state, values["replicaof"]), daemon=True).start()
    try:
        server = common.GoHTTPServer(int(values["http-port"]), handler)
    except OSError as e:
        common.fatal(f"listen tcp :{values['http-port']}: bind: {common.os_error_text(e)}")
    server.serve_forever()
