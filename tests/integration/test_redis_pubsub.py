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
        heard = b""
        while heard == b"":  # b"": "subscribed just now, look again" (notifications.py)
            got = asyncio.create_task(store.wait_for(channels[0], 5.0))
            # Published until it lands: the subscription may still be queued behind the churn's unsubscribes.
            while not got.done():
                await store.publish(channels[0], b"hello")
                await asyncio.wait({got}, timeout=0.05)
            heard = got.result() or b""
        assert heard == b"hello"
        in_use = len(store._pubsub_pool._in_use_connections)
    finally:
        await store.delete(f"{key_prefix}:k")
        await store.close()
    assert in_use <= 2  # one reader connection, no leak per waiter


async def test_a_message_between_two_waits_is_handed_to_the_next_one(redis_url: str, key_prefix: str) -> None:
    # A caller that loops `look, wait, look again` (a parked request's listener) is between two waits
    # when the news comes: the channel is still subscribed and the message is kept for its next wait.
    store = RedisStore.from_url(redis_url, stall=0.5)
    other = RedisStore.from_url(redis_url, stall=0.5)  # another replica
    channel = f"{key_prefix}:events"
    try:
        first = asyncio.create_task(store.wait_for(channel, 5.0))
        assert await first == b""  # the subscription started: anything before it could not be heard
        assert await store.wait_for(channel, 0.01) is None  # nothing yet; nobody waits from here on
        await other.publish(channel, b"changed")
        await other.ping()  # the publish has reached Redis; let the reader hear it
        for _ in range(100):
            if store.notifications._latched:
                break
            await asyncio.sleep(0.01)
        assert await store.wait_for(channel, 5.0) == b"changed"  # at once, not lost in the gap
    finally:
        await store.close()
        await other.close()
