"""`RespConnection`: one connection to Redis (TCP, TLS or unix socket), batches written whole, parsed by hiredis.

The command queue (`pipelining.py`) sends one batch at a time; here a batch is one `write` of the
commands packed by hiredis (C) and its replies are matched in order as they arrive: none of
redis-py's per-command machinery (pool, retries, encoders, response callbacks) runs on the hot
path.

Replies are raw RESP2 values (bytes, int, list, None; b"OK" for SET, b"PONG" for PING); an error
reply is a `ResponseError` (`NoScriptError` for NOSCRIPT) in the command's place. A connection
that cannot be made, is lost, or stalls fails the whole batch with a `StoreError` naming its
cause (`causes.py`), and is replaced on the next batch.

Stalled, not slow: a batch is never given up because it is *late*. Under a burst the event loop
itself falls behind, and a timer would measure that, not Redis (each miss admitted a request
for free). The connection counts as stalled only when the server has said nothing at all for
`stall` seconds while it owes answers, and nothing is waiting unread in the socket either: the
check looks at the socket, so a loop that is slow to read never blames the server.

Invariant: replies are matched to commands strictly in order; a connection whose batch failed is
closed rather than reused, so a late reply can never be taken for another command's.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from gateway.core.redis_url import RedisUrl, TlsOptions, parse_redis_url
from gateway.store.causes import cause_of_exception, cause_of_reply
from gateway.store.protocol import StoreError

DEFAULT_STALL = 1.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one connection goes and how it introduces itself."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host:port
    tls: ssl.SSLContext | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """Host and port (or the socket path): what a message may name."""
        return self.path or f"{self.host}:{self.port}"

    @classmethod
    def of(cls, url: RedisUrl, host: str | None = None, port: int | None = None) -> Endpoint:
        """The endpoint of `url` (its first host unless `host`/`port` say otherwise: cluster nodes, a master)."""
        first = url.hosts[0] if url.hosts else ("localhost", 6379)
        return cls(host or first[0], port or first[1], url.path, tls_context(url.tls) if url.tls else None,
                   url.db, url.username, url.password)


def tls_context(opts: TlsOptions) -> ssl.SSLContext:
    """The client TLS context of a rediss:// URL."""
    ctx = ssl.create_default_context(cafile=opts.ca_file)
    ctx.check_hostname = opts.check_hostname
    if not opts.verify:
        ctx.verify_mode = ssl.CERT_NONE
    if opts.cert_file:
        ctx.load_cert_chain(opts.cert_file, opts.key_file)
    return ctx


class _Batch:
    """One batch in flight: how many replies it expects, those come so far, and the one future they go to."""

    __slots__ = ("expected", "future", "replies")

    def __init__(self, expected: int, future: asyncio.Future[list[Any]]) -> None:
        self.expected = expected
        self.replies: list[Any] = []
        self.future = future


class _Protocol(asyncio.Protocol):
    def __init__(self, stall: float) -> None:
        self.reader = hiredis.Reader()
        # One future per batch, not per command: a lost batch fails one future, which its sender
        # retrieves (or cancelled); none is left holding an exception nobody will read.
        self.waiting: deque[_Batch] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.stall = stall
        self.heard = 0.0  # loop time the server last sent anything
        self.owed_since = 0.0  # loop time the oldest unanswered batch was written
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, batch: _Batch, data: bytes) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        if not self.waiting:
            self.owed_since = loop.time()
        self.waiting.append(batch)
        self.transport.write(data)
        if self._watch is None:
            self._watch = loop.call_later(self.stall, self._check)

    def data_received(self, data: bytes) -> None:
        self.heard = asyncio.get_running_loop().time()
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # garbage on the wire: nothing after it can be trusted
                self.abort(StoreError(f"redis: protocol error: {exc}", "lost"))
                return
            if reply is False:
                return
            if not self.waiting:
                continue  # (cannot happen: every reply answers a command we sent)
            batch = self.waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.expected:
                self.waiting.popleft()
                self.owed_since = self.heard
                if not batch.future.done():
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_watch()
        self._fail(StoreError("redis: the connection was closed", "lost"))

    def abort(self, exc: StoreError) -> None:
        """Give up on this connection: fail what it owes, close it."""
        self.lost = True
        self._cancel_watch()
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def _check(self) -> None:
        """The stall watchdog: fail the connection once the server has been silent `stall` seconds
        with answers owed and nothing unread in the socket; else look again when that could be."""
        self._watch = None
        if not self.waiting or self.lost:
            return
        loop = asyncio.get_running_loop()
        silent = loop.time() - max(self.heard, self.owed_since)
        if silent < self.stall:
            self._watch = loop.call_later(self.stall - silent, self._check)
        elif self._unread():
            self._watch = loop.call_later(min(self.stall, 0.01), self._check)  # the loop is behind, not Redis
        else:
            self.abort(StoreError(f"redis: no answer for {silent:.2f}s", "stalled"))

    def _unread(self) -> bool:
        """Whether bytes (or the peer's close) wait in the socket that the loop has not read yet."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _cancel_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _fail(self, exc: Exception) -> None:
        while self.waiting:
            fut = self.waiting.popleft().future
            if not fut.done():
                fut.set_exception(exc)


class RespConnection:
    """Executes batches of commands on one lazily (re)opened connection."""

    def __init__(self, endpoint: Endpoint, *, stall: float = DEFAULT_STALL) -> None:
        self.endpoint = endpoint
        self.stall = stall
        self._proto: _Protocol | None = None

    @classmethod
    def for_url(cls, url: str, *, stall: float = DEFAULT_STALL) -> RespConnection:
        """A connection to the one server of `url` (redis://, rediss://, unix://)."""
        return cls(Endpoint.of(parse_redis_url(url)), stall=stall)

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands`, in order (an error reply is a ResponseError in its place).

        Raises StoreError (no connection, or the batch was lost) or lets a cancellation through,
        after closing the connection: replies still on their way must not be read as answers to
        a later batch.
        """
        proto = self._proto if self._proto is not None and not self._proto.lost else await self._connect()
        try:
            return await self._send(proto, commands)
        except BaseException:
            self.close()
            raise

    async def _send(self, proto: _Protocol, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        proto.send(_Batch(len(commands), fut), b"".join([hiredis.pack_command(c) for c in commands]))
        replies = await fut
        return [_error(r) if isinstance(r, hiredis.ReplyError) else r for r in replies]

    async def _connect(self) -> _Protocol:
        self.close()
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        try:
            # A black-holed address never answers a SYN; but a fresh replica's loop under a burst may be
            # slow to see the connection made: a generous bound (a timer here measures the loop too).
            async with asyncio.timeout(max(5.0, 5 * self.stall)):
                if ep.path is not None:
                    _, proto = await loop.create_unix_connection(lambda: _Protocol(self.stall), ep.path, ssl=ep.tls)
                else:
                    _, proto = await loop.create_connection(lambda: _Protocol(self.stall), ep.host, ep.port,
                                                            ssl=ep.tls)
        except (OSError, TimeoutError) as exc:
            cause = cause_of_exception(exc)
            raise StoreError(f"redis: cannot connect to {ep.label}: {_reason(exc)}", cause) from exc
        self._proto = proto
        await self._introduce(proto)
        return proto

    async def _introduce(self, proto: _Protocol) -> None:
        """AUTH and SELECT, first thing on a new connection; a refusal is a StoreError with the server's reason."""
        ep = self.endpoint
        hello: list[tuple[Any, ...]] = []
        if ep.password:
            hello.append(("AUTH", ep.username, ep.password) if ep.username else ("AUTH", ep.password))
        if ep.db:
            hello.append(("SELECT", ep.db))
        if not hello:
            return
        try:
            replies = await self._send(proto, hello)
        except BaseException:
            self.close()
            raise
        for reply in replies:
            if isinstance(reply, Exception):
                self.close()
                text = str(reply)
                raise StoreError(f"redis refused the connection setup: {text}", cause_of_reply(text))

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None and not proto.lost:
            proto.lost = True
            proto.transport.abort()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer to connect"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
