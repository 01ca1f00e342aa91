"""A keep-alive HTTP/1.1 client on a raw socket, answers parsed with llhttp (httptools).

Client libraries hide what these tests look for: a connection left desynchronised (bytes before
an answer, or after it), a second answer where one was due, a close where keep-alive was
promised. `RawConnection` writes one request at a time and reads exactly one answer by its own
framing, keeping whatever came after it as `stray`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson


@dataclass
class RawAnswer:
    """One answer as it came off the wire."""

    status: int
    headers: dict[str, str]  # lower-case names (the last of repeated fields)
    body: bytes
    keep_alive: bool

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def events(self) -> list[bytes]:
        """SSE events (without their blank line)."""
        return [e for e in self.body.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]

    @property
    def data(self) -> list[bytes]:
        """The `data:` payloads of the events, in order."""
        out = []
        for event in self.events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append(line[5:].strip())
        return out


@dataclass
class _Sink:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    done: bool = False
    after: bool = False

    def on_message_begin(self) -> None:
        if self.done:
            self.after = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.done = True


class RawConnection:
    """One client connection to `host:port`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.stray = b""  # bytes that came after an answer, before the next request: a desynchronised connection

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      within: float = 10.0, started: asyncio.Event | None = None) -> RawAnswer:
        """Send one request; its answer (TimeoutError past `within` seconds, ConnectionError if the socket ends
        first). `started` is set when the first body bytes arrive (a stream has begun)."""
        fields = {"Host": "gateway", "Content-Length": str(len(body)), **(headers or {})}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.writer.write(head.encode("latin-1") + body)
        async with asyncio.timeout(within):
            return await self._answer(started)

    async def post_json(self, path: str, obj: Any, headers: dict[str, str] | None = None,
                        within: float = 10.0, started: asyncio.Event | None = None) -> RawAnswer:
        return await self.request("POST", path, orjson.dumps(obj), {"Content-Type": "application/json",
                                                                  **(headers or {})}, within, started)

    async def _answer(self, started: asyncio.Event | None) -> RawAnswer:
        sink = _Sink()
        parser = httptools.HttpResponseParser(sink)
        while not sink.done:
            data = await self.reader.read(65536)
            if not data:
                try:
                    parser.feed_data(b"")  # nothing: a body that runs to the close ends here
                except httptools.HttpParserError:
                    pass
                if sink.headers and not sink.done and "content-length" not in sink.headers \
                        and "transfer-encoding" not in sink.headers:
                    break  # a close-delimited answer
                raise ConnectionError(f"the gateway closed the connection mid-answer ({len(b''.join(sink.body))} "
                                      "body bytes read)")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                if not sink.done:
                    raise AssertionError(f"the gateway sent a malformed answer: {exc}: {data[:200]!r}") from exc
            if sink.done and sink.after:
                self.stray += data  # (roughly: whatever shared the read with the next message)
            if started is not None and sink.body:
                started.set()
        keep_alive = parser.get_http_version() == "1.1" and "close" not in sink.headers.get("connection", "").lower()
        return RawAnswer(parser.get_status_code(), sink.headers, b"".join(sink.body), keep_alive)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
