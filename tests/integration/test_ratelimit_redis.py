"""The rate limiter on a real Redis with the real clock: Redis TIME decides, keys share one slot, no leftovers."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.upstream.fake import FakeUpstream
from tests.support.limits_kit import A, chat, settings
from tests.support.serving import gateway_client


@pytest.mark.redis
async def test_eight_at_once_on_redis_time(redis_url: str, key_prefix: str, real_redis: aioredis.Redis) -> None:
    tenants = {"team-a": {"limits": {"requests": "5/10s", "tokens": "100000/hour"},
                          "model_limits": {"org/m": {"requests": "100/minute"}}}}
    s = settings(tenants, redis_url=redis_url, redis_prefix=key_prefix, ratelimit={"store_timeout": 1.0})
    up = FakeUpstream("hf")
    async with gateway_client(s, upstreams={"hf": up}, cancel=False) as client:  # SystemClock: Redis TIME
        answers = await asyncio.gather(*(client.post("/v1/chat/completions", json=chat(), headers=A)
                                         for _ in range(8)))
        statuses = sorted(r.status for r in answers)
        assert statuses == [200] * 5 + [429] * 3
        for r in answers:
            if r.status == 429:
                wait = int(r.headers["retry-after-ms"]) / 1000
                assert 1.9 <= wait <= 2.0  # 2 s for one token, minus the few ms since the bucket emptied
                assert r.headers["Retry-After"] == "2"
    keys = sorted([k.decode() async for k in real_redis.scan_iter(match=f"{key_prefix}:v1:rl*")])
    assert keys == [f"{key_prefix}:v1:rl:{{team-a}}:{part}" for part in ("req", "req:org/m", "tok")]
    assert len({key_slot(k.encode()) for k in keys}) == 1  # one Cluster slot: one script call
    for k in keys:
        ttl = await real_redis.pttl(k)
        assert 0 < ttl <= 3_601_000  # every bucket expires once it would be full again
