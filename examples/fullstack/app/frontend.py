"""The frontend tier: a web page that calls the backend by its Service name and shows what came back.

``GET /`` asks ``http://backend/`` (``BACKEND_URL``), the ClusterIP Service in front of the
backend pods, and renders which backend pod answered and what Redis and the database hold. It
never needs to know a backend pod's IP: that is the lecture's point.
"""

from __future__ import annotations

import html
import json
import os
import signal
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

POD_NAME = os.environ.get("POD_NAME", os.uname().nodename)
BACKEND_URL = os.environ.get("BACKEND_URL", "http://backend/")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>myapp</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} td, th {{ padding: 0 1em 0 0; text-align: left; }}</style>
</head><body>
<h1>myapp</h1>
<p>Frontend pod <b>{frontend}</b> called <code>{url}</code>.</p>
{content}
</body></html>
"""


def render(answer: dict[str, Any]) -> str:
    """The page for the backend's answer (pure, so it can be tested without a cluster)."""
    rows = "".join(f"<tr><td>{html.escape(str(v['pod']))}</td><td>{html.escape(str(v['at']))}</td></tr>"
                   for v in answer["db"]["recent"])
    content = (
        f"<p>Answered by backend pod <b id=\"backend-pod\">{html.escape(answer['pod'])}</b> "
        f"({html.escape(answer.get('podIP', ''))}).</p>\n"
        f"<p>Redis counts <b id=\"redis-hits\">{int(answer['redis']['hits'])}</b> calls to the backend so far.</p>\n"
        f"<p>Database: <b id=\"db-visits\">{int(answer['db']['visits'])}</b> visits recorded; the latest:</p>\n"
        f"<table><tr><th>backend pod</th><th>at</th></tr>{rows}</table>"
    )
    return PAGE.format(frontend=html.escape(POD_NAME), url=html.escape(BACKEND_URL), content=content)


def render_error(error: str) -> str:
    content = f"<p>The backend did not answer: <b id=\"error\">{html.escape(error)}</b></p>"
    return PAGE.format(frontend=html.escape(POD_NAME), url=html.escape(BACKEND_URL), content=content)


class Handler(BaseHTTPRequestHandler):
    server_version = "myapp-frontend/1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, "text/plain", "ok\n")
            return
        if self.path != "/":
            self.reply(404, "text/plain", "not found\n")
            return
        try:
            with urllib.request.urlopen(BACKEND_URL, timeout=10) as response:
                answer = json.load(response)
        except (OSError, ValueError) as e:
            reason = e.read().decode(errors="replace") if isinstance(e, urllib.error.HTTPError) else str(e)
            self.reply(502, "text/html; charset=utf-8", render_error(reason))
            return
        self.reply(200, "text/html; charset=utf-8", render(answer))

    def reply(self, status: int, content_type: str, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.path != "/healthz":
            super().log_request(code, size)


def main() -> None:
    server = ThreadingHTTPServer(("", int(os.environ.get("PORT", "80"))), Handler)
    server.daemon_threads = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"frontend {POD_NAME} listening on port {server.server_address[1]}, backend {BACKEND_URL}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
