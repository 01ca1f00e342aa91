"""HTTP/1.1 to an upstream on one connection: the request written in one go, bytes read as they come.

Why not aiohttp's client here: on loopback it costs ~75 µs of CPU per request against ~24 µs for this
(uvloop; bench/client_cost.py, bench/RESULTS.md 2026-12-04), and the upstream call happens on every request. The gateway
needs little of what a general client does (no cookies, redirects or multipart; it asks for no
compression), so `connection` (the socket and the request), `response` (reading an answer, parsed
by llhttp through httptools), `pool` (keep-alive reuse) and `tunnel` (a forward proxy's CONNECT or
absolute-form requests) do only what `HttpUpstream` needs.

Invariants:
- Every wait for bytes has the read timeout (`ReadTimeout`); none waits forever.
- The connection stops reading from the socket while more than `_HIGH` bytes wait to be consumed
  (a slow client of a fast stream does not buffer the upstream's whole answer in memory).
- A connection that receives a byte while it idles in the pool is closed at once: nothing was
  asked, so whatever arrives belongs to an earlier answer (or is hostile), and the next request on
  it would read it as its own answer (see docs/security.md).
- How the connection ended is kept: a clean end (`eof`) or a failure (`error`, e.g. a reset), so a
  body that runs to the end of the connection can tell a complete answer from a cut one.
- Failures are `WireError`s; `HttpUpstream` turns them into the gateway's errors.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

MAX_HEAD = 64 * 1024  # status line + headers (and, later, chunk-size and trailer lines): more is refused
MAX_HEADERS = 100  # header fields in one response head (Envoy's default limit)
_HIGH, _LOW = 256 * 1024, 64 * 1024  # pause reading above, resume below (bytes waiting in the buffer)


class WireError(Exception):
    """The exchange with the upstream failed at the transport or framing level."""


class ConnectFailed(WireError):
    """No connection: refused, unreachable, name not resolved, TLS handshake failed."""


class ProxyRefused(ConnectFailed):
    """The forward proxy answered a CONNECT (or, for a plain-http upstream, a request) with a refusal."""

    def __init__(self, status: int, what: str = "tunnel") -> None:
        super().__init__(f"the proxy refused the {what} (status {status})")
        self.status = status


class ConnectTimeout(WireError):
    """No connection within the connect timeout (the request was never sent)."""


class Disconnected(WireError):
    """The connection closed before the response's head arrived."""


class ReadTimeout(WireError):
    """Nothing arrived within the read timeout while a response was awaited."""


class Truncated(WireError):
    """The connection ended before the body did."""


class BadResponse(WireError):
    """Not a well-formed HTTP/1.1 response."""


class Reset(Truncated):
    """The connection failed (reset, aborted) before the body's end: even a body that runs to the end
    of the connection is incomplete then."""


class BadHeader(WireError):
    """A header of the request holds a line break (it would end the head early)."""


class LineTooLong(BadResponse):
    """A body line (an SSE line) over the caller's limit."""


class Connection(asyncio.Protocol):
    """One socket to the upstream: bytes in, a waiter woken when more arrive or the peer closes."""

    def __init__(self, read_timeout: float | None) -> None:
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the peer closed, or the connection was lost
        self.eof = False  # the peer ended its side cleanly (a FIN, not a reset)
        self.error: BaseException | None = None  # why the connection was lost, when it failed (None: a clean end)
        self.idle_since = 0.0  # loop time it went back to the pool
        self.idle = False  # in the pool, no request on it: any byte arriving now retires it
        self.on_stray: Callable[[Connection, int], None] | None = None  # told when bytes arrive while idle
        self.reused = False  # it served a response before this one
        self.partition: str | None = None  # the tenant whose requests it carries (see Pool)
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # Nothing was asked: these bytes are the rest of an earlier answer or an attack. Either
            # way the connection can no longer tell one answer from the next (nginx does the same
            # with an idle cached upstream connection).
            self.close()
            if self.on_stray is not None:
                self.on_stray(self, len(data))
            return
        self.buffer += data
        if len(self.buffer) > _HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        self.closed = True
        self._wake()

    # --- for the response reader ----------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        """Wait until more bytes arrive or the peer closes (ReadTimeout after `read_timeout`)."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self.read_timeout, _expire, waiter) if self.read_timeout else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self, size: int) -> bytes:
        """Up to `size` buffered bytes, consumed."""
        buf = self.buffer
        if size >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:size])
            del buf[:size]
        if self._paused and len(buf) < _LOW and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        """Close the socket (never reused again); unread bytes are dropped at once, not kept for the collector."""
        if not self.closed and self.error is None:
            self.error = ConnectionAbortedError("closed by the gateway")  # never a clean end of a body
        self.closed = True
        self.buffer = bytearray()
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def ended_cleanly(self) -> bool:
        """The peer closed its side (FIN) and nothing failed: a body that runs to the connection's end is whole."""
        return self.eof and self.error is None

    def usable(self) -> bool:
        return not self.closed and not self.buffer and self.transport is not None and not self.transport.is_closing()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("no data from the upstream within the read timeout"))


def client_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """TLS settings for an https upstream: the system's CAs, or only those of `ca_file`; `verify=False`
    checks nothing (no certificate, no name)."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def request_bytes(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request as it goes on the wire (Host and Content-Length added here)."""
    fields = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
        raise BadHeader("a header name or value holds a line break")  # never a smuggled header
    length = f"Content-Length: {len(body) if body else 0}\r\n" if body is not None or method == "POST" else ""
    try:  # bytes a client sent that were not UTF-8 go back out as they came (aiohttp decodes them so)
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{fields}{length}\r\n".encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise BadHeader("a header holds characters that cannot be sent") from exc
    return head + body if body else head
