"""``agnhost nettest``: a web server that records who wrote to it, and writes to its peers.

Conformance's PreStop test runs it as the handler pod: the tester's preStop hook POSTs
``{"Source": "prestop"}`` to ``/write`` and the test reads the counts back from ``/read``
(through the API server's pods/proxy). As in agnhost, a background task asks the API server
(in-cluster: the service-account token, ``KUBERNETES_SERVICE_HOST``) for its version, then
for the endpoints of ``--service`` until ``--peers`` of them exist (at most 5 minutes), and
writes to each of them 15 times; ``/status`` says ``pass`` once it has sent to and heard from
that many peers. ``/read`` is the state as encoding/json's MarshalIndent writes it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag, GoHandler, log

FLAGS = [
    Flag("port", "int", 8080, "Port number to serve at."),
    Flag("peers", "int", 8, "Must find at least this many peers for the test to pass."),
    Flag("service", "string", "nettest", "Service to find other network test pods in."),
    Flag("namespace", "string", "default", "Namespace of this pod. TODO: kubernetes should make this discoverable."),
    Flag("delay-shutdown", "int", 0, "Number of seconds to delay shutdown when receiving SIGTERM."),
]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class State:
    """agnhost's State: its exported fields, in their order, are what /read shows."""

    def __init__(self, hostname: str, peers: int) -> None:
        self.lock = threading.Lock()
        self.hostname = hostname
        self.peers = peers
        self.sent: dict[str, int] | None = None
        self.received: dict[str, int] | None = None
        self.errors: list[str] | None = None
        self.log: list[str] | None = None
        self.still_contacting = True

    def as_json(self) -> str:
        return json.dumps({"Hostname": self.hostname, "Sent": self.sent, "Received": self.received,
                           "Errors": self.errors, "Log": self.log,
                           "StillContactingPeers": self.still_contacting}, indent="\t", ensure_ascii=False)

    def append_error(self, text: str) -> None:  # with the lock held
        self.errors = [*(self.errors or []), text]

    def logf(self, text: str) -> None:
        with self.lock:
            self.log = [*(self.log or []), text][-500:]


class NettestHandler(GoHandler):
    state: State
    service: str
    namespace: str

    def route(self) -> None:
        path = self.url_path
        if path == "/quit":
            os._exit(0)
        if path == "/read":
            with self.state.lock:
                body = self.state.as_json()
            self.reply(200, body)
        elif path == "/write":
            self._write()
        elif path == "/status":
            self._status()
        else:
            self.http_error("404 page not found", 404)

    def _write(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state = self.state
        with state.lock:
            source = ""
            try:
                post = json.loads(raw) if raw.strip() else None
                if post is None and not raw.strip():
                    state.append_error("EOF")
                elif isinstance(post, dict):
                    source = str(post.get("Source") or "")
            except ValueError as e:
                state.append_error(f"invalid character in JSON: {e}")
            if source == "":
                state.append_error(f"{state.hostname}: Got request with no source")
            else:
                state.received = state.received or {}
                state.received[source] = state.received.get(source, 0) + 1
            body = json.dumps({"Hostname": state.hostname}, separators=(",", ":")) + "\n"
        self.reply(200, body)

    def _status(self) -> None:
        state = self.state
        with state.lock:
            if len(state.sent or {}) >= state.peers and len(state.received or {}) >= state.peers:
                answer = "pass"
            elif state.still_contacting:
                answer = "running"
            else:
                answer = "fail"
        if answer == "fail":
            state.logf(f"Declaring failure for {self.namespace}/{self.service} with {len(state.sent or {})} sent "
                       f"and {len(state.received or {})} received and {state.peers} peers")
        self.reply(200, answer)


class InCluster:
    """client-go's InClusterConfig, for the two reads nettest makes."""

    def __init__(self) -> None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise RuntimeError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
                               "KUBERNETES_SERVICE_PORT must be defined")
        with open(f"{SA_DIR}/token") as f:
            self.token = f.read().strip()
        self.base = f"https://{common.host_port(host, int(port))}"
        self.context = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}",
                                                                     "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return json.load(response)


def endpoints(client: InCluster, namespace: str, service: str) -> set[str]:
    try:
        obj = client.get(f"/api/v1/namespaces/{namespace}/endpoints/{service}")
    except (OSError, ValueError):
        return set()  # agnhost logs this to a State nobody reads
    found = set()
    for subset in obj.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or []:
                found.add(f"http://{common.host_port(address['ip'], int(port['port']))}")
    return found


def contact(state: State, endpoint: str) -> None:
    body = json.dumps({"Source": state.hostname, "Dest": endpoint}, separators=(",", ":")).encode()
    request = urllib.request.Request(endpoint + "/write", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.read()
    except (OSError, urllib.error.URLError) as e:
        state.logf(f'Warning: unable to contact the endpoint "{endpoint}": {e}')
        return
    try:
        hostname = str(json.loads(answer)["Hostname"])
    except (ValueError, KeyError, TypeError) as e:
        state.logf(f"Warning: unable to unmarshal response ({answer.decode(errors='replace')}) from '{endpoint}': '{e}'")
        return
    with state.lock:
        state.sent = state.sent or {}
        state.sent[hostname] = state.sent.get(hostname, 0) + 1


def contact_others(state: State, namespace: str, service: str) -> None:
    sleep = max(5.0, float(state.peers // 10))
    timeout = max(300.0, float(state.peers))
    try:
        try:
            client = InCluster()
        except (OSError, RuntimeError) as e:
            common.fatal(f"Unable to create config; error: {e}")
        error: Exception | None = None
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                version = client.get("/version")
                log(f"Server version: {version}")
                error = None
                break
            except (OSError, ValueError) as e:
                error = e
                log(f"Unable to get server version: {e}; retrying.")
            time.sleep(1 + sleep)
        if error is not None:
            common.fatal(f"Unable to contact Kubernetes: {error}")
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            found = endpoints(client, namespace, service)
            if len(found) >= state.peers:
                break
            state.logf(f"{namespace}/{service} has {len(found)} endpoints ({sorted(found)}), which is less than "
                       f"{state.peers} as expected. Waiting for all endpoints to come up.")
            time.sleep(sleep)
        for _ in range(15):
            for endpoint in sorted(endpoints(client, namespace, service)):
                state.logf(f"Attempting to contact {endpoint}")
                contact(state, endpoint)
            time.sleep(sleep)
    finally:
        with state.lock:
            state.still_contacting = False


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("nettest", FLAGS, args)
    if positional:
        common.usage_error("nettest", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    if not values["service"]:
        common.fatal("Must provide -service flag.")
    common.go_signal_defaults()
    delay = values["delay-shutdown"]
    if delay > 0:
        def on_term(_signum: int, _frame: FrameType | None) -> None:
            log(f"Sleeping {delay} seconds before exit ...")
            threading.Timer(delay, os._exit, args=(0,)).start()

        signal.signal(signal.SIGTERM, on_term)
    state = State(socket.gethostname(), values["peers"])
    handler = type("Handler", (NettestHandler,), {"state": state, "service": values["service"],
                                                   "namespace": values["namespace"]})
    threading.Thread(target=contact_others, args=(state, values["namespace"], values["service"]), daemon=True).start()
    try:
        server = common.GoHTTPServer(values["port"], handler)
    except OSError as e:
        common.fatal(f"listen tcp :{values['port']}: bind: {common.os_error_text(e)}")
    sys.stdout.flush()
    server.serve_forever()
