"""The Redis store: shared by every replica. The one place redis exceptions become `StoreError`.

Scripts are registered once (`register_script`, EVALSHA with automatic reload). Notifications use
one pub/sub connection per process with a single reader task that wakes local waiters; a lost
connection is re-established on the next wait, so Redis coming back needs no restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .base import StoreError
from .scripts import lua_source

log = logging.getLogger("gateway.store")


class RedisStore:
    """Store protocol on a Redis server."""

    kind = "redis"

    def __init__(self, client: aioredis.Redis, *, timeout: float = 0.25) -> None:
        self.client = client
        self.timeout = timeout
        self._scripts: dict[str, AsyncScript] = {}
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.25, max_connections: int = 200) -> RedisStore:
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=max_connections,
            health_check_interval=30, retry_on_timeout=False,
        )
        return cls(client, timeout=timeout)

    async def _do(self, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self.timeout * 4)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}") from exc

    async def get(self, key: str) -> bytes | None:
        value = await self._do(self.client.get(key))
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        px = max(1, int(ttl * 1000)) if ttl is not None else None
        return bool(await self._do(self.client.set(key, value, px=px, nx=nx)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._do(self.client.delete(*keys))

    async def ttl(self, key: str) -> float | None:
        ms = await self._do(self.client.pttl(key))
        return None if ms is None or ms < 0 else ms / 1000.0

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(lua_source(name))
        return await self._do(script(keys=keys, args=args))

    async def publish(self, channel: str, message: bytes) -> None:
        await self._do(self.client.publish(channel, message))

    async def wait_for(self, channel: str, timeout: float) -> bytes | None:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        first = not self._waiters.get(channel)
        self._waiters[channel].append(fut)
        try:
            await self._ensure_reader()
            if first and self._pubsub is not None:
                await self._do(self._pubsub.subscribe(channel))
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
                        await self._pubsub.unsubscribe(channel)
                    except (RedisError, OSError):
                        pass

    async def _ensure_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            return
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        channels = list(self._waiters)
        if channels:
            await self._do(self._pubsub.subscribe(*channels))
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        try:
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
        except (RedisError, OSError) as exc:
            log.warning("redis pub/sub reader stopped: %s", type(exc).__name__)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass

    async def ping(self) -> bool:
        try:
            return bool(await self._do(self.client.ping()))
        except StoreError:
            return False

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.aclose()
