"""RedisStore notifications under churn: waiters that subscribe, get cancelled half way and time out,
while the reader task is reading, never break the store's other commands."""

from __future__ import annotations

import asyncio
import random

from gateway.store.redis import RedisStore


async def test_cancelled_waiters_leave_the_store_usable(redis_url: str, key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, stall=0.5)
    rng = random.Random(7)
    try:
        channels = [f"{key_prefix}:ch:{i}" for i in range(5)]
        for _ in range(20):
            waiters = [asyncio.create_task(store.wait_for(rng.choice(channels), 0.05)) for _ in range(20)]
            await asyncio.sleep(rng.random() * 0.01)
            for w in waiters[::2]:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            await store.set(f"{key_prefix}:k", b"v", ttl=5)
            assert await store.get(f"{key_prefix}:k") == b"v"
        got = asyncio.create_task(store.wait_for(channels[0], 5.0))
        # Published until it lands: the subscription may still be queued behind the churn's unsubscribes.
        while not got.done():
            await store.publish(channels[0], b"hello")
            await asyncio.wait({got}, timeout=0.05)
        assert got.result() == b"hello"
        in_use = len(store._pubsub_pool._in_use_connections)
    finally:
        await store.delete(f"{key_prefix}:k")
        await store.close()
    assert in_use <= 2  # one reader connection, no leak per waiter
