"""The Redis store: shared by every replica. The one place redis exceptions become `StoreError`.

Commands are pipelined automatically and run in the order they were issued (`pipelining.py`), on
our own connection (`resp.py`: TCP, TLS or a unix socket): `send_script` / `send_get` queue a
command without waiting, for work done after the response. Scripts run as EVALSHA (loaded again
on NOSCRIPT). Every failure is a `StoreError` with its cause, reported to the store's
`StoreHealth` (`health.py`: the breaker, the log line once per change). Notifications use one
pub/sub connection per process (`notifications.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from gateway.core.redis_url import RedisUrl, parse_redis_url
from gateway.store.cluster import ClusterConnection
from gateway.store.health import StoreHealth
from gateway.store.notifications import Notifications
from gateway.store.ordered import forget
from gateway.store.pipelining import CommandQueue, Connection
from gateway.store.protocol import StoreError
from gateway.store.resp import DEFAULT_STALL, Endpoint, RespConnection
from gateway.store.scripts import lua_source
from gateway.store.sentinel import SentinelConnection

log = logging.getLogger("gateway.store")


class RedisStore:
    """Store protocol on a Redis server."""

    kind = "redis"
    pipelined = True  # send_script / send_get exist: queued in order, answered later (see ordered.py)

    def __init__(self, client: aioredis.Redis, *, timeout: float = 0.25, raw: Connection | None = None,
                 health: StoreHealth | None = None, pubsub_client: aioredis.Redis | None = None) -> None:
        self.client = client
        self.timeout = timeout
        self.health = health or StoreHealth()
        # Commands go through one FIFO pipeline (pipelining.py), on our own connection (resp.py);
        # pub/sub keeps redis-py's own connection.
        self.queue = CommandQueue(client, timeout * 4, raw, self.health)
        self._shas: dict[str, tuple[str, Callable[[], str]]] = {}  # script -> (sha1, its source on demand)
        if pubsub_client is None:  # its own pool, health checks off (see notifications.py)
            pool_kwargs = dict(client.connection_pool.connection_kwargs, health_check_interval=0)
            pubsub_client = aioredis.Redis(connection_pool=client.connection_pool.__class__(
                connection_class=client.connection_pool.connection_class, max_connections=64, **pool_kwargs))
        self._pubsub_client = pubsub_client
        self._pubsub_pool = pubsub_client.connection_pool
        self.notifications = Notifications(self._pubsub_client, timeout * 4)

    @classmethod
    def from_url(cls, url: str, *, stall: float = DEFAULT_STALL, name: str = "main") -> RedisStore:
        """A store on the Redis of `url`: one server (redis://, rediss://, unix://) or a cluster
        (redis+cluster://). `stall`: seconds Redis may stay silent while it owes answers before the
        connection counts as lost (resp.py)."""
        parsed = parse_redis_url(url)
        raw: Connection
        if parsed.mode == "cluster":
            raw = ClusterConnection(parsed, stall=stall)
        elif parsed.mode == "sentinel":
            raw = SentinelConnection(parsed, stall=stall)
        else:
            raw = RespConnection(Endpoint.of(parsed), stall=stall)
        # redis-py serves pub/sub only: on the first host (a cluster broadcasts PUBLISH to every node),
        # or on the master the Sentinels name (redis-py follows it).
        client = _pubsub_client(parsed, stall)
        return cls(client, timeout=stall, raw=raw, health=StoreHealth(name), pubsub_client=client)

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
        """The next message on `channel`, or b"" when its subscription starts (notifications.py)."""
        return await self.notifications.wait_for(channel, timeout)

    async def info(self, section: str) -> bytes:
        """The text of `INFO <section>` (StoreError when refused)."""
        return await self.queue.submit("INFO", section)  # type: ignore[no-any-return]

    async def ping(self) -> bool:
        try:
            return bool(await self.queue.submit("PING"))
        except StoreError:
            return False

    async def close(self) -> None:
        await self.notifications.close()
        await self.queue.drain()  # what was sent after a response (settlements, cache writes) still lands
        await self.queue.close()
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


def _pubsub_client(url: RedisUrl, stall: float) -> aioredis.Redis:
    """A redis-py client for pub/sub (its timeouts bound a (un)subscribe only; no health checks: a health-check
    PING would read the socket while the reader is inside get_message)."""
    tls: dict[str, Any] = {}
    if url.tls is not None:
        tls = {"ssl": True, "ssl_ca_certs": url.tls.ca_file, "ssl_certfile": url.tls.cert_file,
               "ssl_keyfile": url.tls.key_file, "ssl_cert_reqs": "required" if url.tls.verify else "none",
               "ssl_check_hostname": url.tls.check_hostname}
    common: dict[str, Any] = {"db": url.db, "username": url.username, "password": url.password,
                              "socket_timeout": max(stall, 1.0), "socket_connect_timeout": max(stall, 1.0),
                              "max_connections": 64, "health_check_interval": 0, **tls}
    if url.mode == "sentinel":
        sentinels = Sentinel(list(url.hosts), sentinel_kwargs={"socket_timeout": max(stall, 1.0), **tls})
        master: aioredis.Redis = sentinels.master_for(url.service or "", **common)  # redis-py leaves it untyped
        return master
    host, port = url.hosts[0] if url.hosts else ("localhost", 6379)
    where: dict[str, Any] = {"unix_socket_path": url.path} if url.path else {"host": host, "port": port}
    return aioredis.Redis(**where, **common)
