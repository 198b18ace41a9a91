"""The backend tier: answers ``GET /`` with which pod it is and what Redis and the database hold.

Every visit increments a counter in Redis (``INCR hits``) and adds a row to the ``visits``
table in MySQL/MariaDB, then reports both, with the pod's name and IP (downward API), so a
client of the ``backend`` Service sees which pod answered and that the data went through both
stores. Redis and the database are reached by their Service names (``REDIS_ADDRESS``
``redis:6379``, ``DB_ADDRESS`` ``db:3306``; not ``REDIS_PORT``/``DB_PORT``, which Kubernetes
sets in every pod to ``tcp://<ClusterIP>:<port>`` for the Services ``redis`` and ``db``).

One connection to each store is kept and reused under a lock (a pool of one); a reused
connection that fails is replaced once, so a store that restarted costs no request. On SIGTERM
the server stops accepting connections and finishes the requests in progress before exiting.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, TypeVar

import minimysql
import miniredis

T = TypeVar("T")

POD_NAME = os.environ.get("POD_NAME", os.uname().nodename)
POD_IP = os.environ.get("POD_IP", "")
SCHEMA = """CREATE TABLE IF NOT EXISTS visits (
    id INT AUTO_INCREMENT PRIMARY KEY,
    pod VARCHAR(253) NOT NULL,
    at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)"""


class Stores:
    """The Redis and database connections, shared by the request threads."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lock = threading.Lock()
        self.redis: miniredis.Connection | None = None
        self.db: minimysql.Connection | None = None

    def _address(self, name: str, default: str) -> tuple[str, int]:
        host, _, port = self.env.get(name, default).rpartition(":")
        return host, int(port)

    def _redis(self) -> miniredis.Connection:
        if self.redis is None:
            self.redis = miniredis.Connection(*self._address("REDIS_ADDRESS", "redis:6379"))
        return self.redis

    def _db(self) -> minimysql.Connection:
        if self.db is None:
            db = minimysql.Connection(*self._address("DB_ADDRESS", "db:3306"), self.env.get("DB_USER", "root"),
                                      self.env.get("DB_PASSWORD", ""), self.env.get("DB_NAME", ""))
            db.query(SCHEMA)
            self.db = db
        return self.db

    def _once_more(self, name: str, use: Callable[[], T]) -> T:
        """``use()``, again on a new connection if a reused one turns out broken."""
        reused = getattr(self, name) is not None
        try:
            return use()
        except (OSError, miniredis.RedisError, minimysql.MySQLError) as e:
            broken = not isinstance(e, minimysql.MySQLError) or e.code == 0
            conn = getattr(self, name)
            if conn is not None and broken:
                conn.close()
                setattr(self, name, None)
            if not (reused and broken):
                raise
            return use()

    def visit(self) -> dict[str, Any]:
        with self.lock:
            hits = self._once_more("redis", lambda: self._redis().command("INCR", "hits"))

            def record() -> tuple[int, list[dict[str, Any]]]:
                db = self._db()
                db.query("INSERT INTO visits (pod) VALUES (%s)", (POD_NAME,))
                count = db.query("SELECT COUNT(*) FROM visits").rows[0][0]
                recent = db.query("SELECT pod, at FROM visits ORDER BY id DESC LIMIT 3").rows
                return int(count or 0), [{"pod": pod, "at": at} for pod, at in recent]

            visits, recent = self._once_more("db", record)
        return {"pod": POD_NAME, "podIP": POD_IP, "redis": {"hits": hits},
                "db": {"visits": visits, "recent": recent}}


class Handler(BaseHTTPRequestHandler):
    stores: Stores
    server_version = "myapp-backend/1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, "text/plain", b"ok\n")
        elif self.path == "/":
            try:
                body = json.dumps(self.stores.visit()) + "\n"
            except (OSError, miniredis.RedisError, minimysql.MySQLError) as e:
                self.reply(503, "application/json", json.dumps({"pod": POD_NAME, "error": str(e)}).encode())
                return
            except Exception as e:  # a bug: say so instead of dropping the connection
                self.reply(500, "application/json", json.dumps({"pod": POD_NAME, "error": repr(e)}).encode())
                raise
            self.reply(200, "application/json", body.encode())
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.path != "/healthz":  # probes would drown the requests
            super().log_request(code, size)


def main() -> None:
    Handler.stores = Stores(dict(os.environ))
    server = ThreadingHTTPServer(("", int(os.environ.get("PORT", "80"))), Handler)
    server.daemon_threads = False  # server_close() waits for the requests in progress

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"backend {POD_NAME} listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
