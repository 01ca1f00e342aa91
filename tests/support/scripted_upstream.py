"""Raw TCP upstreams (asyncio streams, no HTTP library), for tests of the gateway's own HTTP client.

`Scripted` answers each request with the next scripted bytes; `Hostile` answers each by the case
its JSON body names (malformed, truncated, flooding, stray bytes...), and a well-formed answer
echoes the request's marker, so a test can check that every answer reached the request it belongs to.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson

from gateway.upstream.transport.pool import Pool

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
CLOSE = b""  # script entry: close the connection instead of answering


class Scripted:
    """Answers each request with the next scripted bytes (CLOSE: hang up); counts connections."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0) if self.answers else OK
                if answer == CLOSE:
                    break
                writer.write(answer)
                await writer.drain()
                head = answer.split(b"\r\n\r\n")[0].lower()
                if b"connection: close" in head or (b"content-length" not in head and b"chunked" not in head):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # (cancelled: the test is over and the server closes)
        finally:
            writer.close()


@asynccontextmanager
async def serving(answers: list[bytes], **pool_args: float) -> AsyncIterator[tuple[Scripted, Pool]]:
    script = Scripted(answers)
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    args = {"limit": 4, "connect_timeout": 2.0, "read_timeout": 5.0, **pool_args}
    pool = Pool(f"http://127.0.0.1:{port}", **args)  # type: ignore[arg-type]
    try:
        yield script, pool
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


# --- an upstream that answers each request by its case ----------------------------------------------
# Every request carries a case (its JSON body's `model`) and a marker (its first message's content) that
# a well-formed answer echoes, so a test can tell whose answer reached whom.

STRAY = "STRAY-MARKER"  # the marker of answers nobody asked for


@dataclass
class Exchange:
    """One request the hostile upstream received, and the writer to answer it on."""

    writer: asyncio.StreamWriter
    case: str
    marker: str
    stream: bool
    upstream: Hostile

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def reset(self) -> None:
        """Abort the connection with a TCP reset (SO_LINGER 0), not a clean FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Action = Callable[[Exchange], Awaitable[bool]]  # answers one request; True keeps the connection open


def chat_json(marker: str) -> bytes:
    return orjson.dumps({"id": marker, "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": marker}, "finish_reason": "stop"}]})


def chat_event(marker: str, index: int = 0) -> bytes:
    chunk = {"id": marker, "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": {"content": f"{marker}#{index}"}, "finish_reason": None}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def sse_body(marker: str, events: int = 3, done: bool = True) -> bytes:
    return b"".join(chat_event(marker, i) for i in range(events)) + (b"data: [DONE]\n\n" if done else b"")


def chunked(data: bytes, size: int = 40, end: bool = True) -> bytes:
    """`data` in chunked transfer coding (pieces of `size` bytes), with the last chunk when `end`."""
    pieces = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(pieces) + (b"0\r\n\r\n" if end else b"")


def good_answer(ex: Exchange, extra_head: bytes = b"") -> bytes:
    """The well-formed answer to `ex`: JSON with Content-Length, or a chunked SSE stream ending in [DONE]."""
    if ex.stream:
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                + extra_head + b"\r\n" + chunked(sse_body(ex.marker)))
    body = chat_json(ex.marker)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
            + extra_head + b"\r\n" + body)


async def good(ex: Exchange) -> bool:
    ex.send(good_answer(ex))
    return True


class Hostile:
    """A raw TCP upstream: reads each request (head and Content-Length body) and answers it with the
    action its case names (`good` for unknown cases). Counts connections and answers."""

    def __init__(self, cases: Mapping[str, Action]) -> None:
        self.cases = dict(cases)
        self.connections = 0
        self.requests: list[tuple[str, str]] = []  # (case, marker)
        self.go = asyncio.Event()  # set by a test when an action may go on (e.g. send stray bytes now)
        self._writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = orjson.loads(await reader.readexactly(length)) if length else {}
                case, marker = str(body.get("model", "")), str(body.get("messages", [{}])[0].get("content", ""))
                self.requests.append((case, marker))
                ex = Exchange(writer, case, marker, body.get("stream") is True, self)
                if not await self.cases.get(case, good)(ex):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    def close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()


@asynccontextmanager
async def hostile(cases: Mapping[str, Action]) -> AsyncIterator[tuple[Hostile, str]]:
    """A `Hostile` upstream listening on loopback: (upstream, base URL)."""
    upstream = Hostile(cases)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    try:
        yield upstream, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        upstream.close_all()
        await server.wait_closed()
