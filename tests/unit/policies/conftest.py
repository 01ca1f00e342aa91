"""Fixtures of the cache and coalescing tests: one store, or two clients of one store, of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import fakeredis
import pytest

from gateway.core.clock import FakeClock, SystemClock
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from tests.support.cache_kit import StorePair


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The store kind, and for a real Redis (or a private 3-master cluster) its URL (skipped locally,
    failing in CI, when unreachable)."""
    if request.param == "cluster":
        return request.param, str(request.getfixturevalue("private_cluster").url)
    if request.param != "redis":
        return request.param, None
    request.getfixturevalue("real_redis")  # also deletes this test's keys afterwards
    return request.param, str(request.getfixturevalue("redis_url"))


@pytest.fixture
async def store_pair(backend: tuple[str, str | None]) -> AsyncIterator[Callable[[], StorePair]]:
    """Makes two clients of one shared store: one MemoryStore (fake time), fakeredis, a real Redis or cluster."""
    kind, url = backend
    made: list[Store] = []

    def make() -> StorePair:
        pair: StorePair
        if kind == "memory":
            clock = FakeClock(autojump=True)
            one = MemoryStore(clock)
            pair = (one, one, clock)
        elif kind == "fakeredis":
            server = fakeredis.FakeServer()
            pair = (RedisStore(fakeredis.aioredis.FakeRedis(server=server)),
                    RedisStore(fakeredis.aioredis.FakeRedis(server=server)), SystemClock())
        else:
            assert url is not None
            pair = (RedisStore.from_url(url, stall=0.5), RedisStore.from_url(url, stall=0.5), SystemClock())
        made.extend(pair[:2])  # type: ignore[arg-type]
        return pair

    yield make
    for store in made:
        await store.close()
