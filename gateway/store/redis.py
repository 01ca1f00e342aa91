"""The Redis store: shared by every replica. The one place redis exceptions become `StoreError`.

Commands are pipelined automatically and run in the order they were issued (`pipelining.py`):
`send_script` / `send_get` queue a command without waiting, for work done after the response.
Scripts run as EVALSHA (loaded again on NOSCRIPT). Notifications use
one pub/sub connection per process with a single reader task that wakes local waiters; a lost
connection is re-established on the next wait, so Redis coming back needs no restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from gateway.store.ordered import forget
from gateway.store.pipelining import CommandQueue
from gateway.store.protocol import StoreError
from gateway.store.resp import RespConnection
from gateway.store.scripts import lua_source

log = logging.getLogger("gateway.store")


class RedisStore:
    """Store protocol on a Redis server."""

    kind = "redis"
    pipelined = True  # send_script / send_get exist: queued in order, answered later (see ordered.py)

    def __init__(self, client: aioredis.Redis, *, timeout: float = 0.25, raw: RespConnection | None = None) -> None:
        self.client = client
        self.timeout = timeout
        # Commands go through one FIFO pipeline (pipelining.py), on a plain hiredis connection when
        # the URL allows (resp.py); pub/sub keeps redis-py's own connection.
        self.queue = CommandQueue(client, timeout * 4, raw)
        self._shas: dict[str, tuple[str, Callable[[], str]]] = {}  # script -> (sha1, its source on demand)
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        pool_kwargs = dict(client.connection_pool.connection_kwargs, health_check_interval=0)
        self._pubsub_pool = client.connection_pool.__class__(
            connection_class=client.connection_pool.connection_class, max_connections=64, **pool_kwargs)
        self._pubsub_client = aioredis.Redis(connection_pool=self._pubsub_pool)
        self._ps_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.25, max_connections: int = 200) -> RedisStore:
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=max_connections,
            health_check_interval=30, retry_on_timeout=False,
        )
        return cls(client, timeout=timeout, raw=RespConnection.for_url(parse_url(url)))

    async def _do(self, coro: Any) -> Any:
        """A direct call outside the command queue (pub/sub); bounded without spawning a task."""
        try:
            async with asyncio.timeout(self.timeout * 4):
                return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}") from exc

    async def get(self, key: str) -> bytes | None:
        return await self.queue.submit("GET", key)  # type: ignore[no-any-return]  # bytes (no decoding)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        return bool(await self.queue.submit(*_set_args(key, value, ttl, nx)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.queue.submit("DEL", *keys)

    async def ttl(self, key: str) -> float | None:
        ms = await self.queue.submit("PTTL", key)
        return None if ms is None or ms < 0 else ms / 1000.0

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.send_script(name, keys, args)

    def send_script(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue the script now, in order; await the future for its answer, or leave it (fire and forget)."""
        known = self._shas.get(name)
        if known is None:
            source = lua_source(name)
            known = self._shas[name] = (hashlib.sha1(source.encode()).hexdigest(), partial(lua_source, name))
            # Loaded ahead of its first EVALSHA, in the same batch: a NOSCRIPT (only after the server
            # lost its scripts) is the one case a command runs after one queued behind it.
            forget(self.queue.submit("SCRIPT", "LOAD", source))
        return self.queue.submit("EVALSHA", known[0], len(keys), *keys, *args, script=known[1])

    def send_get(self, key: str) -> asyncio.Future[Any]:
        """`get`, queued now; the future answers the value (bytes) or None."""
        return self.queue.submit("GET", key)

    async def publish(self, channel: str, message: bytes) -> None:
        await self.queue.submit("PUBLISH", channel, message)

    async def wait_for(self, channel: str, timeout: float) -> bytes | None:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        first = not self._waiters.get(channel)
        self._waiters[channel].append(fut)
        try:
            self._ensure_reader()
            if first and self._pubsub is not None:
                await self._shielded(self._pubsub.subscribe, channel)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(channel)
            if waiters and fut in waiters:
                waiters.remove(fut)
            if not self._waiters.get(channel):
                self._waiters.pop(channel, None)
                if self._pubsub is not None:
                    try:
                        await self._shielded(self._pubsub.unsubscribe, channel)
                    except (StoreError, asyncio.CancelledError):
                        pass

    def _ensure_reader(self) -> None:
        """One pub/sub connection and one reader per process; synchronous, so concurrent waiters never race
        into creating several."""
        if self._reader is not None and not self._reader.done():
            return
        # Health checks off on the pub/sub connection: a health-check PING issued by SUBSCRIBE would read the
        # socket while the reader task is inside get_message ("readuntil() called while another coroutine...").
        self._pubsub = self._pubsub_client.pubsub(ignore_subscribe_messages=True)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._pubsub, list(self._waiters)))

    def _shielded(self, op: Callable[..., Any], *channels: str) -> asyncio.Future[Any]:
        """Run a pub/sub (un)subscribe to its end even if the caller is cancelled (never leave the socket
        mid-frame), one at a time (redis-py's PubSub would open a connection per concurrent first command)."""

        async def run() -> Any:
            async with self._ps_lock:
                return await self._do(op(*channels))

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(_retrieve)
        return asyncio.shield(task)

    async def _read(self, pubsub: PubSub, initial: list[str]) -> None:
        try:
            if initial:
                await self._shielded(pubsub.subscribe, *initial)
            while True:
                if not pubsub.subscribed:
                    await asyncio.sleep(0.01)
                    continue
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                for fut in self._waiters.get(channel, []):
                    if not fut.done():
                        fut.set_result(bytes(msg["data"]))
        except (RedisError, OSError, StoreError) as exc:
            log.warning("redis pub/sub reader stopped: %s", type(exc).__name__)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass

    async def ping(self) -> bool:
        try:
            return bool(await self.queue.submit("PING"))
        except StoreError:
            return False

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self.queue.drain()  # what was sent after a response (settlements, cache writes) still lands
        if self.queue.raw is not None:
            self.queue.raw.close()
        await self._pubsub_client.aclose()
        await self._pubsub_pool.disconnect()
        await self.client.aclose()


def _set_args(key: str, value: bytes, ttl: float | None, nx: bool) -> tuple[Any, ...]:
    args: tuple[Any, ...] = ("SET", key, value)
    if ttl is not None:
        args += ("PX", max(1, int(ttl * 1000)))
    return (*args, "NX") if nx else args


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shielded command's failure as seen (its caller may be gone); the waiter's polling covers it."""
    if not task.cancelled():
        task.exception()
