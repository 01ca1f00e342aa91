"""The store every contract test runs against: the memory store (on a fake clock), fakeredis and the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from gateway.core.clock import FakeClock
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.store.redis import RedisStore
from tests.support.redis_server import shared_redis_url

T0 = 1_700_000_000.0  # the memory store's fake wall clock starts here (Redis runs on its own)


@pytest.fixture(params=["memory", "fakeredis", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(FakeClock(start=T0))
        return
    if request.param == "fakeredis":
        s = RedisStore(fakeredis.FakeAsyncRedis(), timeout=1.0)
    else:
        s = RedisStore.from_url(await shared_redis_url(), stall=1.0)
    yield s
    if request.param == "redis":
        async for k in s.client.scan_iter(match=f"{key_prefix}*", count=500):
            await s.client.delete(k)
    await s.close()
