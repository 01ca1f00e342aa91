"""Scripts the server lost (a restart, SCRIPT FLUSH): the command queue (store/pipelining.py) loads them again.

Runs on a private redis-server (SCRIPT FLUSH empties the script cache of the whole server, so never
on the shared one).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.policies.cache.claims import FlightKeys, read_claim, send_claim
from gateway.policies.limits.buckets import Bucket, parse_reply, send_decision
from gateway.store.ordered import send_get
from gateway.store.protocol import StoreError
from gateway.store.redis import RedisStore
from gateway.store.resp import RespConnection
from tests.support.redis_server import PrivateRedis

pytestmark = pytest.mark.redis


class CountingConnection(RespConnection):
    """The plain connection, counting its round trips (one `execute` is one write and one read)."""

    round_trips = 0

    async def execute(self, commands: Any) -> list[Any]:
        self.round_trips += 1
        return await super().execute(commands)


async def test_a_batch_after_a_script_flush_reloads_each_script_once_in_one_extra_round_trip(
    private_redis: PrivateRedis,
) -> None:
    raw = CountingConnection.for_url(private_redis.url)
    assert isinstance(raw, CountingConnection)
    store = RedisStore(aioredis.Redis.from_url(private_redis.url), timeout=1.0, raw=raw)
    admin = aioredis.Redis.from_url(private_redis.url)
    bucket = [Bucket("rl:b", rate=0.001, capacity=3.0)]
    keys = FlightKeys("entry")
    try:
        await send_decision(store, [Bucket("rl:warm", 1.0, 1.0)], now=1000.0)  # both scripts known to the store
        await send_claim(store, FlightKeys("warm"), "w", 30.0)
        await admin.script_flush()
        await admin.config_resetstat()
        before = raw.round_trips

        # One batch, the two scripts interleaved: every EVALSHA answers NOSCRIPT the first time.
        sent = []
        for i in range(4):
            sent.append(send_decision(store, bucket, now=1000.0))
            sent.append(send_claim(store, keys, f"token-{i}", 30.0))
        replies = await asyncio.gather(*sent)

        assert [parse_reply(r).allowed for r in replies[0::2]] == [True, True, True, False]  # in queue order
        claims = [read_claim(r, f"token-{i}") for i, r in enumerate(replies[1::2])]
        assert [c.lead for c in claims] == [True, False, False, False]
        assert {c.holder for c in claims[1:]} == {b"token-0"}
        assert raw.round_trips - before == 2  # the batch, then every script loaded and every command run again
        stats = await admin.info("commandstats")
        assert stats["cmdstat_script|load"]["calls"] == 2  # once per distinct script, not once per command
    finally:
        await store.close()
        await admin.aclose()


class ReloadFails(RespConnection):
    """The plain connection, lost exactly when the scripts are being loaded again."""

    fail_loads = True

    async def execute(self, commands: Any) -> list[Any]:
        if self.fail_loads and any(c[0] == "SCRIPT" for c in commands):
            raise StoreError("redis: lost during the reload", "lost")
        return await super().execute(commands)


async def test_a_reload_that_fails_keeps_the_answers_the_batch_already_had(private_redis: PrivateRedis) -> None:
    raw = ReloadFails.for_url(private_redis.url)
    assert isinstance(raw, ReloadFails)
    store = RedisStore(aioredis.Redis.from_url(private_redis.url), timeout=1.0, raw=raw)
    admin = aioredis.Redis.from_url(private_redis.url)
    try:
        raw.fail_loads = False
        await send_decision(store, [Bucket("rl:warm", 1.0, 1.0)], now=1000.0)  # the store knows the script
        raw.fail_loads = True
        await admin.set("plain", b"kept")
        await admin.script_flush()
        got = send_get(store, "plain")  # one batch: a plain read that succeeds, and a script that must be reloaded
        taken = send_decision(store, [Bucket("rl:lost", rate=1.0, capacity=1.0)], now=1000.0)
        results = await asyncio.gather(got, taken, return_exceptions=True)
        assert results[0] == b"kept"  # settled before the reload: an answer that happened is never taken back
        assert isinstance(results[1], StoreError)
    finally:
        await store.close()
        await admin.aclose()
