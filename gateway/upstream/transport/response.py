"""One upstream response read from a `wire.Connection`: its head parsed, its body framed per RFC 9112.

A body ends by Content-Length, by chunked encoding (extensions and trailers skipped), or with the
connection; it is read whole (`read`), piece by piece (`chunks`) or line by line (`readline`, for
SSE). `release()` hands the connection back for reuse only when the body was read to its end,
nothing extra arrived and neither side said `Connection: close`; `close()` never reuses it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.upstream.transport.connection import (
    MAX_HEAD,
    BadResponse,
    Connection,
    Disconnected,
    LineTooLong,
    Truncated,
)

_MAX_CHUNK_LINE = 1024


class Response:
    """One response on `conn`: its head parsed, its body read on demand, then `release()` or `close()`."""

    def __init__(self, conn: Connection, status: int, headers: CIMultiDictProxy[str], keep_alive: bool,
                 method: str, on_done: Callable[[Connection, bool], None]) -> None:
        self._released = True  # until fully made: a head refused below gives nothing back twice (see __del__)
        self._mode, self._left, reusable = _framing(headers, status, method)
        self.status = status
        self.headers = headers
        self._conn = conn
        self._on_done = on_done
        self._pending = bytearray()  # decoded body bytes read but not consumed (readline)
        self._released = False
        self.content_length = self._left if self._mode in ("length", "none") else None  # as announced
        self._keep_alive = keep_alive and reusable
        self._ended = self._mode == "none"

    # --- reading --------------------------------------------------------------------------------
    async def _next(self) -> bytes:
        """The next piece of decoded body; b"" at its end."""
        if self._ended:
            return b""
        conn = self._conn
        while True:
            if self._mode == "length":
                if self._left == 0:
                    return self._end()
                if conn.buffer:
                    data = conn.take(self._left)
                    self._left -= len(data)
                    return data
                if conn.closed:
                    raise Truncated(f"the upstream closed the connection with {self._left} body bytes unsent")
            elif self._mode == "close":
                if conn.buffer:
                    return conn.take(len(conn.buffer))
                if conn.closed:
                    return self._end()
            else:  # chunked
                piece = self._chunked_step()
                if piece is not None:
                    return piece
                if conn.closed:
                    raise Truncated("the upstream closed the connection inside a chunked body")
            await conn.more()

    def _chunked_step(self) -> bytes | None:
        """Advance the chunked decoder on what is buffered: data, or None when more bytes are needed."""
        buf = self._conn.buffer
        while True:
            if self._left > 0:
                if not buf:
                    return None
                data = self._conn.take(self._left)
                self._left -= len(data)
                if self._left == 0:
                    self._left = -2  # the CRLF after the chunk's data
                return data
            if self._left == -2:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise BadResponse("a chunk is not followed by CRLF")
                self._conn.take(2)
                self._left = 0
            if self._left == -3:  # trailers after the last chunk: skip up to the empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    _need_more(buf)
                    return None
                line = self._conn.take(end + 2)
                if line == b"\r\n":
                    self._end()
                    return b""
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                _need_more(buf)
                return None
            line = self._conn.take(end + 2)[:-2]
            digits = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):
                raise BadResponse(f"bad chunk size line {line[:40]!r}")
            size = int(digits, 16)
            if size == 0:
                self._left = -3
                continue
            self._left = size

    def _end(self) -> bytes:
        self._ended = True
        return b""

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
        """The next line, `\\n` included (b"" at the end of the body); LineTooLong past `limit` bytes."""
        pending = self._pending
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end >= 0:
                if end + 1 > limit:
                    raise LineTooLong(f"a line of more than {limit} bytes")
                line = bytes(pending[: end + 1])
                del pending[: end + 1]
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
        reusable = self._ended and self._keep_alive and not self._pending and self._conn.usable()
        self._on_done(self._conn, reusable)

    def close(self) -> None:
        """Done with this response, whatever was read: the connection is closed, never reused."""
        if self._released:
            return
        self._released = True
        self._conn.close()
        self._on_done(self._conn, False)

    def __del__(self) -> None:
        # A safety net, not a way of working: a response dropped without release() or close() would
        # hold its pool slot for ever; the connection is closed and the slot given back.
        if not getattr(self, "_released", True):
            self._released = True
            self._conn.close()
            self._on_done(self._conn, False)


def _need_more(buf: bytearray) -> None:
    """No complete chunk-size or trailer line yet: None (wait for more), unless it is already too long."""
    if len(buf) > _MAX_CHUNK_LINE:
        raise BadResponse("an overlong chunk size or trailer line")


def _framing(headers: CIMultiDictProxy[str], status: int, method: str) -> tuple[str, int, bool]:
    """How the body ends, ("none" | "length" | "chunked" | "close", length), and whether the framing allows
    keeping the connection (RFC 9112 §6.3)."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0, status != 101  # (after a protocol switch the connection is not HTTP any more)
    codings = headers.getall("Transfer-Encoding", [])
    if codings:
        last = ",".join(codings).rsplit(",", 1)[-1].strip().lower()
        if last != "chunked":
            return "close", 0, False  # another coding last: the body runs to the end of the connection
        return "chunked", 0, "Content-Length" not in headers  # both: chunked wins, the connection is not kept
    lengths = headers.getall("Content-Length", [])
    if lengths:
        if len(set(lengths)) > 1 or not _DIGITS.fullmatch(lengths[0]):
            raise BadResponse(f"bad or conflicting Content-Length {lengths[0][:40]!r}")
        size = int(lengths[0])
        return ("length", size, True) if size else ("none", 0, True)
    return "close", 0, False


_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


async def read_head(conn: Connection) -> tuple[int, CIMultiDictProxy[str], bool]:
    """(status, headers, keep_alive) of the next final response on `conn` (1xx answers skipped)."""
    while True:
        buf = conn.buffer
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise BadResponse(f"a response head over {MAX_HEAD} bytes")
            if conn.closed:
                if buf:
                    raise BadResponse("the connection ended inside the response head")
                raise Disconnected("the upstream closed the connection before answering")
            await conn.more()
            end = buf.find(b"\r\n\r\n")
        head = conn.take(end + 4)
        status, headers, keep_alive = parse_head(head[:-4])
        if status >= 200 or status == 101:
            return status, headers, keep_alive


def parse_head(head: bytes) -> tuple[int, CIMultiDictProxy[str], bool]:
    """Status, headers and whether the connection may be kept, from a response head without its CRLFCRLF."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadResponse(f"a malformed header line {line[:60]!r}")
        headers.add(name.decode("latin-1"), value.strip().decode("latin-1"))
    connection = headers.get("Connection", "").lower()
    keep_alive = "close" not in connection if version == b"HTTP/1.1" else "keep-alive" in connection
    return int(code), CIMultiDictProxy(headers), keep_alive
