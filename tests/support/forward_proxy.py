"""A small HTTP forward proxy for tests, on 127.0.0.1: CONNECT tunnels and absolute-form requests.

What a corporate proxy (Squid, tinyproxy) does for the gateway, in the test's own event loop:

- `CONNECT host:port`: dials the target, answers `200 Connection established`, then copies bytes
  both ways until either side closes; the first bytes the client sends through the tunnel are kept
  (`tunnel_starts`), so a test can see that TLS (a handshake record, 0x16) went through, not HTTP;
- `GET http://host:port/path HTTP/1.1` (absolute form): forwards the request to the target in
  origin form without the `Proxy-*` headers, on one upstream connection per client connection
  (reused for the next request, as the gateway reuses its connection to the proxy), and copies the
  answers back;
- with `credentials`, every CONNECT and every request must carry the matching
  `Proxy-Authorization: Basic`; otherwise the answer is `407` and the connection is closed;
- `refuse = N` answers every CONNECT and request with status N (403, 502...) and closes.

It only ever dials loopback (`localhost` is taken as 127.0.0.1); any other target is refused with
a 403 without a connection attempt. Counts: `connections` (accepted), `tunnels` (authorities of
CONNECTs that were let through), `requests` (`METHOD absolute-URL` forwarded), `refused` (answers
407 / `refuse`), `authorizations` (each Proxy-Authorization value received, for the test to compare).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

_MAX_HEAD = 64 * 1024


@dataclass
class ForwardProxy:
    """The running proxy: its address, what it requires, what it saw."""

    credentials: tuple[str, str] | None = None
    refuse: int | None = None
    port: int = 0
    connections: int = 0
    tunnels: list[str] = field(default_factory=list)
    tunnel_starts: list[bytes] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: int = 0
    authorizations: list[str | None] = field(default_factory=list)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The proxy URL without credentials."""
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """The proxy URL with `user:password@` (percent-encoded)."""
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    @property
    def used(self) -> int:
        """Tunnels plus forwarded requests."""
        return len(self.tunnels) + len(self.requests)

    # -- serving ----------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                method, target, headers = head
                if not self._admit(headers, writer):
                    return
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    await _answer(writer, 400, "not an absolute http URL")
                    return
                if upstream is None:
                    upstream = await self._dial(parts.hostname, parts.port or 80, writer)
                    if upstream is None:
                        return
                    pump = asyncio.create_task(_copy(upstream[0], writer))
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(f"{method} {target}")
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                kept = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if not k.startswith("proxy-"))
                upstream[1].write(f"{method} {path} HTTP/1.1\r\n{kept}\r\n".encode("latin-1") + body)
                await upstream[1].drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            if pump is not None:
                pump.cancel()
            if upstream is not None:
                upstream[1].close()
            writer.close()
            self._tasks.discard(task)

    def _admit(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """Check the credentials and the refusal mode; answer and return False when refused."""
        given = headers.get("proxy-authorization")
        self.authorizations.append(given)
        if self.refuse is not None:
            self.refused += 1
            writer.write(f"HTTP/1.1 {self.refuse} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            return False
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if given != expected:
                self.refused += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return False
        return True

    async def _dial(self, host: str, port: int,
                    writer: asyncio.StreamWriter) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        address = "127.0.0.1" if host == "localhost" else host
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        if not loopback:  # the tests' network is loopback only: never dial anything else
            await _answer(writer, 403, "this test proxy only reaches loopback")
            return None
        try:
            return await asyncio.open_connection(address, port)
        except OSError:
            await _answer(writer, 502, "cannot reach the target")
            return None

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        upstream = await self._dial(host.strip("[]"), int(port), writer)
        if upstream is None:
            return
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        first = await reader.read(64 * 1024)
        self.tunnel_starts.append(first)
        upstream[1].write(first)
        back = asyncio.create_task(_copy(upstream[0], writer))
        try:
            await _copy(reader, upstream[1])
        finally:
            back.cancel()
            upstream[1].close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """(method, target, lower-cased headers) of the next request; None when the client closed."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise ValueError("request head too long") from exc
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode()
    writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reader ends; then end the writer's side."""
    try:
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def forward_proxy(credentials: tuple[str, str] | None = None,
                        refuse: int | None = None) -> AsyncIterator[ForwardProxy]:
    """A started proxy on 127.0.0.1 (a free port) until the block ends."""
    proxy = ForwardProxy(credentials=credentials, refuse=refuse)
    server = await asyncio.start_server(proxy._client, "127.0.0.1", 0, limit=_MAX_HEAD)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in list(proxy._tasks):
            task.cancel()
        await asyncio.gather(*proxy._tasks, return_exceptions=True)
        await server.wait_closed()
