"""Malformed HTTP requests logged as one line, not as a server error with a traceback.

aiohttp answers a request it cannot parse (a request line or header over its limit, junk
instead of HTTP) with a 400 and logs "Error handling request" at ERROR with the parser's
traceback. That is the client's fault, as common as port scans, and the traceback says
nothing about our code; kube-apiserver's Go server answers such requests without logging.
This filter on aiohttp's server logger turns those records into one INFO line.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

_LOGGER = "aiohttp.server"


class _ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(_LOGGER).isEnabledFor(logging.INFO)


_FILTER = _ClientErrorFilter()


def quiet_client_errors() -> None:
    """Install the filter (once; a second call changes nothing)."""
    logging.getLogger(_LOGGER).addFilter(_FILTER)
