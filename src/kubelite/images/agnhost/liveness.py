"""``agnhost liveness``: healthy for 10 seconds, then ``/healthz`` answers 500 (probe demos).

Implements ``/started``, ``/healthz`` and ``/redirect``; not the ``/sleep-*`` and
``/disconnect-*`` endpoints.
"""

from __future__ import annotations

import time
import urllib.parse

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import GoHandler

_STARTED = time.monotonic()


class LivenessHandler(GoHandler):
    def route(self) -> None:
        elapsed = time.monotonic() - _STARTED
        path = self.url_path
        if path == "/started":
            self.reply(200, common.format_duration(elapsed))
        elif path == "/healthz":
            if elapsed > 10:
                self.reply(500, f"error: {elapsed:g}")
            else:
                self.reply(200, "ok")
        elif path == "/redirect":
            loc = self.query().get("loc", [""])[0]
            self.redirect(urllib.parse.unquote(loc), 302)
        else:
            self.http_error("404 page not found", 404)


def main(args: list[str]) -> None:
    _, positional = common.parse_flags("liveness", [], args)
    if positional:
        common.usage_error("liveness", [], f"accepts at most 0 arg(s), received {len(positional)}")
    common.go_signal_defaults()
    common.GoHTTPServer(8080, LivenessHandler).serve_forever()
