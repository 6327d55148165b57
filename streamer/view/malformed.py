"""Requests the HTTP parser refuses, logged as one warning line instead of an error traceback."""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"
# Where aiohttp's message starts quoting the request's own bytes ("Got more than 8190 bytes when
# reading: b'Bearer ..."): a header or an address can carry the view's token.
_QUOTED = re.compile(r""":\s*(?:b'|b"|bytearray\()""")
_SECRETS = re.compile(r"(?i)(access_token=|bearer\s+)[^\s&'\"]+")


class MalformedRequests(logging.Filter):
    """A request line or header over 8190 bytes, `Content-Length: -1`, `HTTP/9.9`...: aiohttp
    answers 400 and logged each at `error` with a traceback, so any client could fill the error
    log. Such a record becomes one `warning` line naming the problem, without the request bytes
    aiohttp quotes in it (an oversized `Authorization` header or address quoted the view's token
    into the log); others pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            problem = str(error.message or type(error).__name__).splitlines()[0]
            problem = _SECRETS.sub(r"\1<redacted>", _QUOTED.split(problem, maxsplit=1)[0])[:200]
            record.msg, record.args = "refused a malformed HTTP request: %s", (problem,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    """Install the filter on aiohttp's server logger (once)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(existing, MalformedRequests) for existing in logger.filters):
        logger.addFilter(MalformedRequests())
