"""`RespConnection`: one plain TCP connection to Redis, batches written whole, replies parsed by hiredis.

The command queue (`pipelining.py`) sends one batch at a time; here a batch is one `write` of the
commands packed by hiredis (C) and its replies are matched in order as they arrive: none of
redis-py's per-command machinery (pool, retries, encoders, response callbacks) runs on the hot
path. Used by `RedisStore.from_url` for plain `redis://host:port/db` URLs when hiredis is
installed; anything else (TLS, unix sockets, fakeredis) goes through redis-py.

Replies are raw RESP2 values (bytes, int, list, None; b"OK" for SET, b"PONG" for PING); an error
reply is a `ResponseError` (`NoScriptError` for NOSCRIPT) in the command's place. A lost or
timed-out connection fails the whole batch with `ConnectionError` and is replaced on the next one.

Invariant: replies are matched to commands strictly in order; a connection whose batch timed out
is closed rather than reused, so a late reply can never be taken for another command's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import ConnectKwargs
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

try:
    import hiredis
except ImportError:  # pragma: no cover - a dependency; without it redis-py does the work
    _HIREDIS = False
else:
    _HIREDIS = True


class _Batch:
    """One batch in flight: how many replies it expects, those come so far, and the one future they go to."""

    __slots__ = ("expected", "future", "replies")

    def __init__(self, expected: int, future: asyncio.Future[list[Any]]) -> None:
        self.expected = expected
        self.replies: list[Any] = []
        self.future = future


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # One future per batch, not per command: a lost batch fails one future, which its sender
        # retrieves (or cancelled); none is left holding an exception nobody will read.
        self.waiting: deque[_Batch] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # garbage on the wire: nothing after it can be trusted
                self._fail(RedisConnectionError(f"protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:
                return
            if not self.waiting:
                continue  # (cannot happen: every reply answers a command we sent)
            batch = self.waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.expected:
                self.waiting.popleft()
                if not batch.future.done():
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(RedisConnectionError("Connection closed by server."))

    def _fail(self, exc: Exception) -> None:
        while self.waiting:
            fut = self.waiting.popleft().future
            if not fut.done():
                fut.set_exception(exc)


class RespConnection:
    """Executes batches of commands on one lazily (re)opened connection."""

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.username = username
        self.password = password
        self._proto: _Protocol | None = None

    @classmethod
    def for_url(cls, params: ConnectKwargs) -> RespConnection | None:
        """A connection for `redis.asyncio.connection.parse_url(url)`'s result; None when not plain TCP."""
        if not _HIREDIS or set(params) - {"host", "port", "db", "username", "password"}:
            return None  # TLS (connection_class), a unix socket (path), or options we do not handle
        return cls(str(params.get("host", "localhost")), int(params.get("port", 6379)), db=int(params.get("db", 0)),
                   username=params.get("username"), password=params.get("password"))

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands`, in order (an error reply is a ResponseError in its place).

        Raises ConnectionError (batch lost) or lets a cancellation through, after closing the
        connection: replies still on their way must not be read as answers to a later batch.
        """
        proto = self._proto if self._proto is not None and not self._proto.lost else await self._connect()
        try:
            return await self._send(proto, commands)
        except BaseException:
            self.close()
            raise

    async def _send(self, proto: _Protocol, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        assert proto.transport is not None
        if not commands:
            return []
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        proto.waiting.append(_Batch(len(commands), fut))
        proto.transport.write(b"".join([hiredis.pack_command(c) for c in commands]))
        replies = await fut
        return [_error(r) if isinstance(r, hiredis.ReplyError) else r for r in replies]

    async def _connect(self) -> _Protocol:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(_Protocol, self.host, self.port)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to {self.host}:{self.port}: {exc.strerror}") from exc
        self._proto = proto
        hello: list[tuple[Any, ...]] = []
        if self.password:
            hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        if hello:
            for reply in await self.execute(hello):
                if isinstance(reply, Exception):
                    self.close()
                    raise RedisConnectionError(f"redis refused the connection setup: {reply}")
        return proto

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None and not proto.lost:
            proto.transport.abort()


def _error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
