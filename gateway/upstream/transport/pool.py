"""One upstream origin's keep-alive connections: at most `limit` in use, idle ones reused newest first.

A pool is for one origin reached one way: directly, or through one forward proxy (`tunnel.py`). A
connection to a proxy is not a connection to the upstream, so whoever keeps pools keys them by
origin and proxy together, and connections never move between pools.

`Pool.request` writes a request on a connection (reused or new) and returns the `Response`
once its head arrived; the response hands its connection back through `release()` / `close()`.

Invariants:
- At most `limit` connections are in use; a request beyond that waits for one (FIFO).
- An idle connection is reused only if it is still open, has nothing unread, and has been idle
  less than `keepalive` seconds; otherwise it is closed. A byte arriving while it idles closes it
  at once (logged as a warning naming the origin).
- Connections are partitioned: one carries the requests of one partition (the caller passes the
  tenant) for its whole life. HTTP/1.1 matches answers to requests by order alone, so an upstream
  that sends a stray answer shifts every later answer on that connection by one; partitioning keeps
  such a shift inside one tenant. At most `limit` connections idle across all partitions (the
  oldest goes first).
- A reused connection that closes before a byte of the answer arrived (the upstream dropped it
  while it sat idle) is replaced once by a new one; a new connection that does the same fails.
- Waiting for a free connection and opening one each count against `connect_timeout` (ConnectTimeout).
- Nothing leaks on cancellation: a request cancelled before its head arrived closes its connection.
- Through a proxy, a plain-http request that the proxy answers with 407 is `ProxyRefused`, never an
  answer relayed as the upstream's (an https upstream's refusals come from the tunnel: `tunnel.py`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import deque
from urllib.parse import quote, urlsplit

from gateway.core.proxies import ProxyUrl
from gateway.upstream.transport.connection import (
    ConnectFailed,
    Connection,
    ConnectTimeout,
    Disconnected,
    ProxyRefused,
    client_context,
    request_bytes,
)
from gateway.upstream.transport.response import Response, read_head
from gateway.upstream.transport.tunnel import open_via_proxy

log = logging.getLogger("gateway.upstream")
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")


class Pool:
    """The connections to one `scheme://host:port`."""

    def __init__(self, base_url: str, *, limit: int, connect_timeout: float, read_timeout: float | None,
                 keepalive: float = 30.0, proxy: ProxyUrl | None = None, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        https = parts.scheme == "https"
        self.port = parts.port or (443 if https else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        name = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal keeps its brackets
        self.host_header = name if self.port == (443 if https else 80) else f"{name}:{self.port}"
        self.ssl: ssl.SSLContext | None = (tls or client_context()) if https else None
        # Through a proxy, an https origin is reached in a CONNECT tunnel; a plain-http one is asked of
        # the proxy itself, each request naming it in absolute form (tunnel.py).
        self.proxy = proxy
        self._absolute = f"http://{self.host_header}" if proxy is not None and not https else ""
        auth = proxy.authorization if proxy is not None and not https else None
        self._proxy_headers = {"Proxy-Authorization": auth} if auth else {}
        self.where = f"{self.host}:{self.port}" + (f" through the proxy {proxy.shown}" if proxy else "")
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[str | None, deque[Connection]] = {}  # per partition, oldest first
        self._idle_count = 0
        self._open: set[Connection] = set()
        self.active = 0
        self.stray = 0  # connections retired because bytes arrived while they idled

    def stats(self) -> tuple[int, int]:
        """(in use, idle) connections."""
        return self.active, self._idle_count

    def target(self, url: str) -> str:
        """The request target (path and query) of `url`, which must be on this pool's origin."""
        if url.startswith(self.origin) and url[len(self.origin):len(self.origin) + 1] in ("/", "?", ""):
            rest = url[len(self.origin):] or "/"
        else:
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" != self.origin:
                raise ValueError(f"{url!r} is not on {self.origin}")
            rest = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if rest[0] == "?":
            rest = "/" + rest
        return quote(rest, safe="/:@!$&'()*+,;=%?-._~") if _UNSAFE.search(rest) else rest

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                      partition: str | None = None) -> Response:
        """Send one request on a connection of `partition`; the response once its head arrived (body still to read)."""
        if self._proxy_headers:
            headers = {**headers, **self._proxy_headers}
        data = request_bytes(method, self._absolute + self.target(url), self.host_header, headers, body)
        if self._slots.locked():  # every connection in use: waiting for one counts against the connect timeout
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise ConnectTimeout(f"no free connection to {self.where} within "
                                     f"{self.connect_timeout:g} s ({self.limit} in use)") from exc
        else:
            await self._slots.acquire()
        self.active += 1
        try:
            conn = self._reusable(partition) or await self._connect(partition)
            try:
                return await self._exchange(conn, method, data)
            except Disconnected:
                if not conn.reused:
                    raise
            # A reused connection that closed before a byte of an answer: almost always the upstream
            # closing an idle keep-alive connection just as it was taken (a POST goes again, once, on a
            # new connection; the retry stage would resend it anyway, after a backoff).
            return await self._exchange(await self._connect(partition), method, data)
        except BaseException:
            self._give_back(None, False)
            raise

    async def _exchange(self, conn: Connection, method: str, data: bytes) -> Response:
        try:
            conn.send(data)
            reader = await read_head(conn, method)
            if self._absolute and reader.sink.status == 407:  # the proxy's refusal, not the upstream's answer
                reader.detach()
                raise ProxyRefused(407, "request")
            return Response(conn, reader, self._give_back)
        except BaseException:
            self._forget(conn)
            raise

    def _reusable(self, partition: str | None) -> Connection | None:
        idle = self._idle.get(partition)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle and now - idle[0].idle_since > self.keepalive:  # the oldest first: expired ones go
            self._forget(self._unidle(idle, oldest=True))
        while idle:
            conn = self._unidle(idle, oldest=False)  # the newest: the most likely to be open still
            if conn.usable():
                conn.reused = True
                return conn
            self._forget(conn)
        return None

    def _unidle(self, idle: deque[Connection], *, oldest: bool) -> Connection:
        conn = idle.popleft() if oldest else idle.pop()
        conn.idle = False
        self._idle_count -= 1
        return conn

    async def _connect(self, partition: str | None) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: Connection(self.read_timeout), self.host, self.port, ssl=self.ssl,
                        server_hostname=self.host if self.ssl else None)
                else:
                    conn = await open_via_proxy(self.proxy, self.host, self.port, self.ssl, self.read_timeout)
        except TimeoutError as exc:
            raise ConnectTimeout(f"no connection to {self.where} within {self.connect_timeout:g} s") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {self.where}: {exc}") from exc
        conn.partition = partition
        conn.on_stray = self._stray
        self._open.add(conn)
        return conn

    def _give_back(self, conn: Connection | None, reusable: bool) -> None:
        """A request is over: its slot is free; its connection idles for the next one, or is closed."""
        self.active -= 1
        self._slots.release()
        if conn is None:
            return
        if not reusable:
            self._forget(conn)
            return
        conn.idle_since = asyncio.get_running_loop().time()
        conn.idle = True
        idle = self._idle.get(conn.partition)
        if idle is None:  # (not `setdefault`: that would make a deque for every answer)
            idle = self._idle[conn.partition] = deque()
        idle.append(conn)
        self._idle_count += 1
        if self._idle_count > self.limit:  # partitions must not multiply the idle connections: the oldest goes
            oldest = min((q for q in self._idle.values() if q), key=lambda q: q[0].idle_since)
            self._forget(self._unidle(oldest, oldest=True))

    def _stray(self, conn: Connection, size: int) -> None:
        """Bytes arrived on an idle connection (it closed itself): counted and said once per connection."""
        self.stray += 1
        idle = self._idle.get(conn.partition)
        if idle is not None and conn in idle:
            idle.remove(conn)
            conn.idle = False
            self._idle_count -= 1
        self._open.discard(conn)
        log.warning("upstream %s sent %d bytes on an idle keep-alive connection that nobody asked for; "
                    "the connection is closed", self.origin, size)

    def _forget(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def close(self) -> None:
        """Close every connection, idle or in use."""
        for conn in list(self._open):
            self._forget(conn)
        self._idle.clear()
        self._idle_count = 0
