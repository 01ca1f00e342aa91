"""Redis dies under a running gateway: the cache is bypassed, requests are still served, and it comes back.

A private `redis-server` on a free port (never the shared one; the `private_redis` fixture),
killed and restarted by the test.
"""

from __future__ import annotations

import asyncio

from gateway.core.config import load_settings
from tests.support.cache_kit import EMBED, GatedUpstream
from tests.support.redis_server import PrivateRedis
from tests.support.serving import gateway_client

BODY = {"model": EMBED, "input": "hello"}


async def test_redis_down_bypasses_the_cache_and_requests_are_still_served(private_redis: PrivateRedis) -> None:
    up = GatedUpstream()
    settings = load_settings(
        None, redis_url=private_redis.url, upstreams={"hf": {"kind": "hf", "base_url": "http://hf.test"}},
        models=[{"name": "*", "task": "feature-extraction"}], cache={"store_cooldown": 0},
    )
    async with gateway_client(settings, upstreams={"hf": up}) as client:
        first = await client.post("/v1/embeddings", json=BODY)
        second = await client.post("/v1/embeddings", json=BODY)
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")

        private_redis.kill()
        down = [await client.post("/v1/embeddings", json=BODY) for _ in range(3)]
        assert [r.status for r in down] == [200, 200, 200]
        assert [r.headers["X-Cache"] for r in down] == ["BYPASS"] * 3
        assert len(up.calls) == 4  # served by the upstream, every time

        private_redis.start()  # empty again: no persistence
        for _ in range(200):  # the store's probe finds it back within half a second (store/health.py)
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.01)
        back = [await client.post("/v1/embeddings", json=BODY) for _ in range(2)]
        assert [r.headers["X-Cache"] for r in back] == ["MISS", "HIT"]
        assert len(up.calls) == 5
