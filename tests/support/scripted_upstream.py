"""A raw TCP upstream scripted byte by byte, for tests of the gateway's own HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
