"""The logger aiohttp's connection handler writes to, with malformed requests told apart from bugs.

aiohttp answers a request it cannot parse (CL.TE or TE.CL framing, a duplicate or unknown
`Transfer-Encoding`, `Content-Length: +5`, a bad request line or header) with a 400 and closes the
connection; that is right. But it reports each one through `logger.exception` (aiohttp 3.14,
`RequestHandler.handle_error`), an ERROR with a traceback, so any client could fill the error log.
`ServerLog` is handed to the server (`web.run_app(..., logger=...)`): such a refusal becomes one
INFO line without a traceback (nor the offending bytes, which may hold a credential) and one count
in `gateway_malformed_requests_total{kind}`. Anything else goes through as aiohttp logged it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, InvalidHeader, LineTooLong

from gateway.observability.catalogue import MalformedKind
from gateway.observability.metrics import Metrics


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`aiohttp.server`'s logger; malformed requests are counted and logged as one INFO line."""

    def __init__(self, metrics: Metrics, logger: logging.Logger | None = None) -> None:
        super().__init__(logger or logging.getLogger("aiohttp.server"), {})
        self._metrics = metrics

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = _exception_of(exc_info)
        if isinstance(exc, HttpProcessingError):
            self._refused(exc, args, logging.INFO)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # aiohttp logs a bad method on a connection's first request at DEBUG (TLS or scanner noise on
        # the HTTP port): counted, and kept at DEBUG.
        exc = _exception_of(kwargs.get("exc_info"))
        if isinstance(exc, HttpProcessingError):
            self._refused(exc, args, logging.DEBUG)
            return
        super().debug(msg, *args, **kwargs)

    def _refused(self, exc: HttpProcessingError, args: tuple[object, ...], level: int) -> None:
        kind, what = describe(exc)
        self._metrics.malformed_request(kind)
        remote = args[0] if args else "?"
        self.log(level, "malformed request from %s refused with 400: %s", remote, what)


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1]  # type: ignore[no-any-return]
    return sys.exc_info()[1] if exc_info else None


def describe(exc: HttpProcessingError) -> tuple[MalformedKind, str]:
    """(metric kind, one short line) for a parse failure; never the request's own bytes."""
    if isinstance(exc, LineTooLong):
        return "too_long", "a request line or header over the size limit"
    if isinstance(exc, InvalidHeader):
        return "header", "an invalid header"
    if isinstance(exc, BadHttpMethod):
        text = exc.message if exc.message.startswith("Received HTTPS") else "an invalid method"
        return "request_line", text
    if isinstance(exc, BadStatusLine):
        return "request_line", "an invalid request line"
    text = (exc.message or "").split("\n", 1)[0].strip().rstrip(":")[:120] or type(exc).__name__
    lowered = text.lower()
    if "transfer-encoding" in lowered or "content-length" in lowered or "chunk" in lowered:
        return "framing", text
    if "header" in lowered:
        return "header", text
    return "other", text
