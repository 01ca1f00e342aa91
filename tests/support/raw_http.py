"""One HTTP/1.1 exchange written and read byte for byte, for requests no HTTP client would send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

CLIENT_TIMEOUT = 15.0  # the client's own hard limit: an answer later than this is a hang

@dataclass
class RawAnswer:
    """An HTTP/1.1 answer read off a raw socket: status, headers (lower-cased names, repeated kept), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


async def raw_request(url: str, head: bytes, body: bytes = b"", *, timeout: float = CLIENT_TIMEOUT) -> RawAnswer:
    """Send `head` (request line and headers, CRLF-terminated, without the blank line) and `body`
    exactly as given, then read one answer. The socket is never half-closed (aiohttp drops a
    connection whose client shut its side down), so a body shorter than promised stays pending."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        return await asyncio.wait_for(_read_answer(reader), timeout)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection without an answer")
    status = int(status_line.split(b" ", 2)[1])
    headers: list[tuple[str, str]] = []
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip().lower(), value.strip()))
    length = next((int(v) for k, v in headers if k == "content-length"), None)
    body = await reader.readexactly(length) if length is not None else await reader.read()
    return RawAnswer(status, headers, body)
