"""One upstream response read from a `Connection`: head and framing parsed by llhttp (httptools).

llhttp (the parser of Node.js, and of uvicorn through httptools) does the RFC 9112 work in strict
mode: the status line, header syntax (no NUL, bare CR or LF, obs-fold, or space in a name), one
valid Content-Length, chunk sizes, extensions and trailers, and refuses Content-Length together
with Transfer-Encoding. This module adds what a proxy must refuse on top, each a `BadResponse`:
a head over `MAX_HEAD` bytes or `MAX_HEADERS` fields, a status outside 100-599, a protocol switch
nobody asked for, any Transfer-Encoding but a single `chunked` (the gateway sends no `TE`, so no
other coding was asked for, and a body "until the connection closes" behind an unknown coding
would never end), and more than `MAX_HEAD` bytes of framing without a byte of body.

A body ends by Content-Length, by the last chunk, or with the connection; a body that runs to the
end of the connection is whole only if the connection ended cleanly (a FIN): a reset is `Reset`.
It is read whole (`read`), piece by piece (`chunks`) or line by line (`readline`, for SSE, which
accepts CR, LF and CRLF line ends). `release()` hands the connection back for reuse only when the
body was read to its end, nothing arrived after it and neither side said `Connection: close`;
`close()` never reuses it and drops what was buffered.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.upstream.transport.connection import (
    MAX_HEAD,
    MAX_HEADERS,
    BadResponse,
    Connection,
    Disconnected,
    LineTooLong,
    Reset,
    Truncated,
    WireError,
)

FEED = 64 * 1024  # bytes handed to the parser at a time: the most one step decodes into memory
_EOL = re.compile(rb"[\r\n]")


class _After(Exception):
    """Raised inside the parser when bytes follow the end of the answer: parsing stops there."""


class _Sink:
    """The parser's callbacks: what it found. The parser holds the sink and the sink the parser (the
    status code is read at the moment the head ends); `Reader.detach` breaks that cycle. The
    callbacks run for every answer: they do the least they can."""

    __slots__ = ("after", "body", "done", "framing", "head_done", "head_only", "headers", "keep_alive", "length",
                 "parser", "status", "trailer_bytes", "until_close")

    def __init__(self, head_only: bool) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.head_only = head_only  # a HEAD request: the answer has no body whatever its head says
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: int | None = None  # the final head's Content-Length
        self.keep_alive = False
        self.head_done = False  # the final (non-1xx) head is complete
        self.done = False  # the answer is complete
        self.after = False  # bytes followed the answer on the connection
        self.until_close = False  # the body runs to the end of the connection
        self.body: list[bytes] = []  # decoded body bytes not yet taken
        self.trailer_bytes = 0
        self.framing = 0  # bytes fed since the last sign of progress (head end, body data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer (or the head of an answer nobody asked for): bounded, skipped
            self.trailer_bytes += len(name) + len(value) + 4
            if self.trailer_bytes > MAX_HEAD:
                raise BadResponse(f"trailers over {MAX_HEAD} bytes")
            return
        self.headers.append((name, value))  # (their size is bounded by the bytes fed before the head ends)

    def on_headers_complete(self) -> None:
        if self.head_done:  # a second answer on the same bytes: nothing asked for it
            self.after = True
            raise _After
        assert self.parser is not None
        status = self.parser.get_status_code()
        if not 100 <= status <= 599:
            raise BadResponse(f"status {status} is not an HTTP status code")
        if status == 101:
            raise BadResponse("the upstream switched protocols (101) though nobody asked it to")
        if status < 200:  # interim (100 Continue, 103 Early Hints): skipped, the final answer follows
            self.headers = []
            return
        headers = self.headers
        if len(headers) > MAX_HEADERS:
            raise BadResponse(f"a response head with more than {MAX_HEADERS} header fields")
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        self.framing = 0
        codings = []
        has_length = False
        for name, value in headers:
            size = len(name)
            if size == 17 and name.lower() == b"transfer-encoding":
                codings.append(value)
            elif size == 14 and name.lower() == b"content-length":
                has_length = True
                self.length = int(value)  # llhttp let through one field of digits only
        if codings and (len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
            raise BadResponse(f"Transfer-Encoding {b', '.join(codings)[:60]!r}: only chunked can be read")
        if self.head_only:
            self.done = True
        elif status != 204 and status != 304:
            self.until_close = not codings and not has_length

    def on_body(self, data: bytes) -> None:
        if self.done:  # a body after a HEAD answer, or bytes the parser took for one
            self.after = True
            raise _After
        self.body.append(data)
        self.framing = 0

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True


class Reader:
    """One answer's parser: bytes in, the head and decoded body pieces out through its `_Sink`."""

    def __init__(self, method: str) -> None:
        self.sink = _Sink(method == "HEAD")
        self.parser = httptools.HttpResponseParser(self.sink)
        self.sink.parser = self.parser
        self.fed = 0  # bytes fed before the head was complete

    def feed(self, data: bytes) -> None:
        """Parse `data`; BadResponse for what the parser or the limits refuse."""
        sink = self.sink
        if sink.done:  # bytes after the answer (release() sees `after`)
            sink.after = True
            return
        sink.framing += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise BadResponse("the upstream switched protocols (101) though nobody asked it to") from exc
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, WireError):
                raise cause from None
            if sink.done or isinstance(cause, _After):
                sink.after = True  # the answer is whole; what follows it is not ours to read
                return
            raise BadResponse(str(exc) or "an answer llhttp cannot parse") from None
        if sink.framing > MAX_HEAD + FEED and sink.head_done:
            raise BadResponse("over 64 KiB of chunk framing or trailers without body data")

    def feed_head(self, conn: Connection) -> None:
        """Feed what `conn` has buffered, but never more than `MAX_HEAD` + 1 bytes before the head ends: a
        head still incomplete then is over the limit, however the bytes arrived."""
        data = conn.take(min(FEED, MAX_HEAD + 1 - self.fed))
        if self.fed == 0 and not data.startswith(b"HTTP/1."):
            raise BadResponse(f"not an HTTP/1.x status line: {data[:40]!r}")
        self.fed += len(data)
        self.feed(data)
        if not self.sink.head_done and self.fed > MAX_HEAD:
            raise BadResponse(f"a response head over {MAX_HEAD} bytes")

    def detach(self) -> None:
        """Break the parser <-> sink cycle and drop buffered body bytes (the answer is done with)."""
        self.sink.parser = None
        self.sink.body.clear()


async def read_head(conn: Connection, method: str) -> Reader:
    """Parse bytes from `conn` until the final response head is complete (1xx answers skipped)."""
    reader = Reader(method)
    sink = reader.sink
    try:
        while not sink.head_done:
            buffered = len(conn.buffer)
            if buffered and (reader.fed or buffered >= 7 or conn.closed):
                reader.feed_head(conn)  # (the first 7 bytes are awaited: the protocol is checked on them)
            elif conn.closed:
                if reader.fed or buffered:
                    raise BadResponse("the connection ended inside the response head")
                raise Disconnected("the upstream closed the connection before answering")
            else:
                await conn.more()
    except BaseException:
        reader.detach()
        raise
    return reader


class Response:
    """One response on `conn`: its head parsed, its body read on demand, then `release()` or `close()`."""

    def __init__(self, conn: Connection, reader: Reader, on_done: Callable[[Connection, bool], None]) -> None:
        sink = reader.sink
        self.status = sink.status
        headers: CIMultiDict[str] = CIMultiDict(
            [(name.decode("latin-1"), value.decode("latin-1").strip(" \t")) for name, value in sink.headers])
        self.headers = CIMultiDictProxy(headers)
        self.content_length = 0 if sink.done or sink.status in (204, 304) else sink.length  # as announced
        self._conn = conn
        self._reader = reader
        self._sink = sink
        self._on_done = on_done
        self._pending = bytearray()  # decoded body bytes read but not consumed (readline)
        self._skip_lf = False  # the last line ended with a CR: a LF right after it belongs to it
        self._released = False

    # --- reading --------------------------------------------------------------------------------
    async def _next(self) -> bytes:
        """The next piece of decoded body; b"" at its end."""
        sink = self._sink
        conn = self._conn
        while True:
            if sink.body:
                data = sink.body[0] if len(sink.body) == 1 else b"".join(sink.body)
                sink.body.clear()
                return data
            if sink.done:
                return b""
            if conn.buffer:
                self._reader.feed(conn.take(FEED))
                continue
            if conn.closed:
                if sink.until_close and conn.ended_cleanly():
                    sink.done = True
                    return b""
                if sink.until_close:
                    raise Reset(f"the connection failed before the end of the answer: {conn.error!r}")
                raise Truncated("the upstream closed the connection before the end of the body")
            await conn.more()

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body (at most `limit` bytes when given)."""
        parts = [bytes(self._pending)]
        self._pending.clear()
        size = len(parts[0])
        while limit is None or size < limit:
            data = await self._next()
            if not data:
                break
            parts.append(data)
            size += len(data)
        body = b"".join(parts)
        if limit is not None and len(body) > limit:
            self._pending[:0] = body[limit:]
            body = body[:limit]
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body piece by piece, as it arrives."""
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            yield data
        while True:
            data = await self._next()
            if not data:
                return
            yield data

    async def readline(self, limit: int) -> bytes:
        """The next line with its end (CR, LF or CRLF); b"" at the end of the body; LineTooLong past `limit`."""
        pending = self._pending
        start = 0
        while True:
            if self._skip_lf and pending:
                self._skip_lf = False
                if pending[0] == 0x0A:  # the LF of a CRLF split across two reads
                    del pending[0]
            match = _EOL.search(pending, start)
            if match is not None:
                end = match.end()
                if pending[end - 1] == 0x0D:
                    if end < len(pending):
                        end += pending[end] == 0x0A
                    else:
                        self._skip_lf = True  # decide on the next byte without waiting for it
                if end > limit:
                    raise LineTooLong(f"a line of more than {limit} bytes")
                line = bytes(pending[:end])
                del pending[:end]
                return line
            if len(pending) > limit:
                raise LineTooLong(f"a line of more than {limit} bytes")
            start = len(pending)
            data = await self._next()
            if not data:
                line = bytes(pending)
                pending.clear()
                return line
            pending += data

    # --- the end --------------------------------------------------------------------------------
    def release(self) -> None:
        """Done with this response: its connection goes back to the pool if the body was read to its end."""
        if self._released:
            return
        self._released = True
        sink = self._sink
        reusable = (sink.done and not sink.after and sink.keep_alive and not sink.body and not self._pending
                    and self._conn.usable())
        self._reader.detach()
        self._on_done(self._conn, reusable)

    def close(self) -> None:
        """Done with this response, whatever was read: the connection is closed, never reused."""
        if self._released:
            return
        self._released = True
        self._pending = bytearray()
        self._reader.detach()
        self._conn.close()
        self._on_done(self._conn, False)

    def __del__(self) -> None:
        # A safety net, not a way of working: a response dropped without release() or close() would
        # hold its pool slot for ever; the connection is closed and the slot given back.
        if not getattr(self, "_released", True):
            self._released = True
            self._reader.detach()
            self._conn.close()
            self._on_done(self._conn, False)
