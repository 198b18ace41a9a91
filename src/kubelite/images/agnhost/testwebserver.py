"""``agnhost test-webserver``: serve the container's whole filesystem over HTTP (Go's FileServer).

Conformance uses it as a plain web server behind readiness probes, and the DNS tests fetch
the probe pods' result files through it (``/results/...``). Responses follow net/http's
FileServer: a directory without its slash is redirected (301), a directory lists its entries
(or serves its ``index.html``), a missing file is ``404 page not found``; every response
carries test-webserver's CORS and ``Cache-Control: private`` headers.
"""

from __future__ import annotations

import html
import mimetypes
import os
import urllib.parse
from email.utils import formatdate

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag, GoHandler

FLAGS = [Flag("port", "int", 80, "Port number.")]

_HEADERS = {
    "Cache-Control": "private",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,Content-Type",
}


class FileServer(GoHandler):
    root = "/"

    def end_headers(self) -> None:
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def route(self) -> None:
        url_path = urllib.parse.unquote(self.url_path)
        if not url_path.startswith("/"):
            url_path = "/" + url_path
        clean = os.path.normpath(url_path)
        full = os.path.join(self.root, clean.lstrip("/"))
        if url_path.endswith("/index.html"):
            self.redirect("./", 301)
            return
        try:
            st = os.stat(full)
        except OSError:
            self.http_error("404 page not found", 404)
            return
        if os.path.isdir(full):
            if not url_path.endswith("/"):
                self.redirect(os.path.basename(clean.rstrip("/")) + "/" if clean != "/" else "/", 301)
                return
            index = os.path.join(full, "index.html")
            if os.path.isfile(index):
                full, st = index, os.stat(index)
            else:
                self._listing(full)
                return
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError:
            self.http_error("403 Forbidden", 403)
            return
        ctype = mimetypes.guess_type(full)[0]
        if ctype is None:
            ctype = "text/plain; charset=utf-8" if _looks_text(data) else "application/octet-stream"
        elif ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        self.reply(200, data, ctype, Accept_Ranges="bytes",
                   Last_Modified=formatdate(st.st_mtime, usegmt=True))

    def _listing(self, directory: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            self.http_error("Error reading directory", 500)
            return
        lines = []
        for name in names:
            shown = name + "/" if os.path.isdir(os.path.join(directory, name)) else name
            lines.append(f'<a href="{urllib.parse.quote(shown)}">{html.escape(shown)}</a>')
        body = "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n" + \
            "".join(line + "\n" for line in lines) + "</pre>\n"
        self.reply(200, body, "text/html; charset=utf-8")


def _looks_text(data: bytes) -> bool:
    try:
        data[:512].decode()
    except UnicodeDecodeError:
        return False
    return True


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("test-webserver", FLAGS, args)
    if positional:
        common.usage_error("test-webserver", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    common.go_signal_defaults()
    try:
        server = common.GoHTTPServer(values["port"], FileServer)
    except OSError as e:
        common.fatal(f"listen tcp :{values['port']}: bind: {common.os_error_text(e)}")
    server.serve_forever()
