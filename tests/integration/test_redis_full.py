"""A Redis at maxmemory filled by the cache keeps the rate limiter exact: the cache degrades, not the limiter.

A private redis-server with a small `maxmemory` (noeviction: a full Redis refuses writes, the
policy docs/redis.md asks for when the limiter shares its Redis) and large cacheable answers:
far more than fits is sent. The cache stops writing at `cache.redis_max_fill` of maxmemory
(sampled `INFO memory`, not per request); the bucket writes keep their room, so a tenant limited
to 40 requests an hour gets exactly 40, and `/readyz` stays 200. Then the same with the cache on
its own Redis (`cache.redis_url`): that one may fill up completely, the limiter's never notices.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.call import Answer, Call, Reply
from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.middleware.auth import hash_key
from gateway.upstream.fake import FakeUpstream
from tests.support.redis_server import running_private_redis

pytestmark = pytest.mark.redis

KEY = "gwk_fake_test_key_full"  # the limited tenant
FILLER = "gwk_fake_test_key_filler"  # another tenant, unlimited: fills the cache
LIMIT = 40
ANSWER_BYTES = 64 * 1024
FULL = ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]


def _big(call: Call, model: str) -> Answer:
    """An embeddings answer of ANSWER_BYTES (incompressible enough: digits of the request's text)."""
    seed = sum(call.raw) + 1
    vector = [((seed * (i + 7)) % 1_000_003) / 1_000_003 for i in range(ANSWER_BYTES // 20)]
    return Reply(200, orjson.dumps({"object": "list", "data": [{"embedding": vector}]}))


def _settings(main_url: str, **cache: Any) -> Any:
    return load_settings(
        None, redis_url=main_url, redis_prefix="gwfull",
        keys=[{"sha256": hash_key(KEY), "tenant": "t"}, {"sha256": hash_key(FILLER), "tenant": "filler"}],
        tenants={"t": {"limits": {"requests": f"{LIMIT}/hour"}}},
        cache={"compress_over_bytes": 10 * ANSWER_BYTES, "max_entry_bytes": 4 * ANSWER_BYTES, **cache},
    )


async def _fill_then_limit(client: TestClient) -> tuple[Counter[str], Counter[int]]:
    """Many distinct cacheable requests (far more than Redis holds), then chat requests against the limit;
    the X-Cache outcomes of the first and the statuses of the second."""
    auth = {"Authorization": f"Bearer {KEY}"}
    cache: Counter[str] = Counter()
    for i in range(120):  # ~7.7 MB of answers into a 4 MB Redis
        r = await client.post("/v1/embeddings", json={"model": "org/m", "input": f"text {i}"},
                              headers={"Authorization": f"Bearer {FILLER}"})
        assert r.status == 200
        cache[r.headers.get("X-Cache", "none")] += 1
    statuses: Counter[int] = Counter()
    for i in range(LIMIT + 30):
        body = {"model": "org/m", "messages": [{"role": "user", "content": f"q{i}"}]}
        statuses[(await client.post("/v1/chat/completions", json=body, headers=auth)).status] += 1
    return cache, statuses


async def test_a_cache_sharing_the_limiters_redis_stops_writing_before_it_is_full() -> None:
    with running_private_redis(extra=FULL) as server:
        settings = _settings(server.url, redis_memory_check=0.05)
        app = create_app(settings, upstreams={"hf": FakeUpstream("hf", default=_big)})
        async with TestClient(TestServer(app)) as client:
            cache, statuses = await _fill_then_limit(client)
            ready = await client.get("/readyz")
            assert ready.status == 200, await ready.text()
        admin = redis.Redis(port=server.port)
        memory = admin.info("memory")
        infos = admin.info("commandstats").get("cmdstat_info", {}).get("calls", 0)
        admin.close()
    assert statuses == {200: LIMIT, 429: 30}, statuses  # exact: the buckets kept their memory
    assert cache["MISS"] == 120  # every one missed; some were stored, the rest skipped
    assert memory["used_memory"] < memory["maxmemory"]
    assert infos < 120 + LIMIT  # sampled, not one INFO per request


async def test_a_cache_on_its_own_redis_may_fill_it_without_touching_the_limiter() -> None:
    with running_private_redis() as main, running_private_redis(extra=FULL) as cache_redis:
        settings = _settings(main.url, redis_url=cache_redis.url)
        app = create_app(settings, upstreams={"hf": FakeUpstream("hf", default=_big)})
        async with TestClient(TestServer(app)) as client:
            _, statuses = await _fill_then_limit(client)
            assert (await client.get("/readyz")).status == 200
        admin = redis.Redis(port=cache_redis.port)
        entries = len(admin.keys("gwfull:*cache*"))
        admin.close()
        limiter = redis.Redis(port=main.port)
        in_main = len(limiter.keys("gwfull:*cache*"))
        limiter.close()
    assert statuses == {200: LIMIT, 429: 30}, statuses
    assert entries > 0 and in_main == 0  # entries live on the cache's Redis only
