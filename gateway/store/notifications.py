"""`Notifications`: one process's Redis pub/sub: one connection, one reader task, waiters per channel.

`wait_for(channel, timeout)` answers the next message on `channel`, or `b""` when the channel's
subscription has just started (or restarted after a lost connection): whatever was published
before could not be heard, so the waiter should look at the state again. Pub/sub is lossy by
nature; these rules make it lossless for a caller that loops `look, wait, look again`:
- a channel stays subscribed for `linger` seconds after its last waiter left, so a caller that
  waits again at once never finds a gap in the subscription;
- a message that arrives while nobody waits on its (subscribed) channel is kept for `linger`
  seconds and handed to the next waiter at once.

A lost connection is re-established on the next wait, so Redis coming back needs no restart.
Subscribe and unsubscribe run one at a time, to their end even if their caller is cancelled
(never leaving the socket mid-frame).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gateway.store.pipelining import store_error
from gateway.store.protocol import StoreError

log = logging.getLogger("gateway.store")


class Notifications:
    """Waiters per channel over one pub/sub connection of `client`."""

    def __init__(self, client: aioredis.Redis, timeout: float, linger: float = 1.0) -> None:
        self.client = client
        self.timeout = timeout  # bounds one (un)subscribe
        self.linger = linger
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)
        self._subscribed: set[str] = set()
        self._latched: dict[str, tuple[float, bytes]] = {}  # channel -> (when, message) heard with no waiter
        self._leaving: dict[str, asyncio.TimerHandle] = {}  # channel -> its pending unsubscribe
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def wait_for(self, channel: str, timeout: float) -> bytes | None:
        """The next message on `channel` within `timeout` seconds (b"": subscribed just now), else None."""
        loop = asyncio.get_running_loop()
        latched = self._latched.pop(channel, None)
        if latched is not None and loop.time() - latched[0] < self.linger:
            return latched[1]
        fut: asyncio.Future[bytes] = loop.create_future()
        self._waiters[channel].append(fut)
        leaving = self._leaving.pop(channel, None)
        if leaving is not None:
            leaving.cancel()
        try:
            self._ensure_reader()
            if channel not in self._subscribed and self._pubsub is not None:
                self._subscribed.add(channel)
                try:
                    await self._shielded(self._pubsub.subscribe, channel)
                except BaseException:
                    self._subscribed.discard(channel)
                    raise
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(channel)
            if waiters and fut in waiters:
                waiters.remove(fut)
            if not self._waiters.get(channel):
                self._waiters.pop(channel, None)
                if channel in self._subscribed and channel not in self._leaving:
                    self._leaving[channel] = loop.call_later(self.linger, self._leave, channel)

    def _leave(self, channel: str) -> None:
        """Unsubscribe a channel nobody waited on for `linger` seconds."""
        self._leaving.pop(channel, None)
        self._latched.pop(channel, None)
        if self._waiters.get(channel) or channel not in self._subscribed or self._pubsub is None:
            return
        self._subscribed.discard(channel)
        self._shielded(self._pubsub.unsubscribe, channel).add_done_callback(_retrieve)

    def _ensure_reader(self) -> None:
        """One pub/sub connection and one reader per process; synchronous, so concurrent waiters never race
        into creating several."""
        if self._reader is not None and not self._reader.done():
            return
        # Health checks off on the pub/sub connection (the pool is made so): a health-check PING issued by
        # SUBSCRIBE would read the socket while the reader is inside get_message.
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
        channels = list(self._waiters)
        self._subscribed = set(channels)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._pubsub, channels))

    def _shielded(self, op: Callable[..., Any], *channels: str) -> asyncio.Future[Any]:
        """Run a pub/sub (un)subscribe to its end even if the caller is cancelled, one at a time (redis-py's
        PubSub would open a connection per concurrent first command)."""

        async def run() -> Any:
            async with self._lock:
                try:
                    async with asyncio.timeout(self.timeout):
                        return await op(*channels)
                except (RedisError, OSError, TimeoutError) as exc:
                    raise store_error(exc) from exc

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
                if msg is not None:
                    self._heard(msg)
        except (RedisError, OSError, StoreError) as exc:
            log.warning("redis pub/sub reader stopped: %s", type(exc).__name__)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass

    def _heard(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind not in ("message", "subscribe"):
            return
        channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else str(msg["channel"])
        data = bytes(msg["data"]) if kind == "message" else b""
        woken = 0
        for fut in self._waiters.get(channel, []):
            if not fut.done():
                fut.set_result(data)
                woken += 1
        if not woken and kind == "message" and channel in self._subscribed:
            self._latched[channel] = (asyncio.get_running_loop().time(), data)

    async def close(self) -> None:
        for handle in self._leaving.values():
            handle.cancel()
        self._leaving.clear()
        reader = self._reader
        # Cancelled again until it ends: a cancellation that lands as a read completes can be swallowed
        # inside the client (asyncio.wait_for on 3.11), and the reader would read on.
        for _ in range(50):
            if reader is None or reader.done():
                break
            reader.cancel()
            await asyncio.wait({reader}, timeout=0.1)
        if reader is not None and reader.done() and not reader.cancelled():
            reader.exception()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a shielded command's failure as seen (its caller may be gone); the waiter's polling covers it."""
    if not task.cancelled():
        task.exception()
