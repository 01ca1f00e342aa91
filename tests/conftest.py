"""Shared fixtures: a real Redis (fail in CI when unreachable), fakeredis, per-test key prefixes."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


async def _reachable(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url() -> str:
    """The real Redis URL; skips locally and FAILS in CI when Redis cannot be reached."""
    if not await _reachable(REDIS_URL):
        if IN_CI:
            pytest.fail(f"Redis is required in CI and is not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses; tests clean up only keys under it."""
    return f"gwtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def real_redis(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the real Redis; deletes this test's keys afterwards (never FLUSHDB)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    async for k in client.scan_iter(match=f"{key_prefix}*", count=500):
        await client.delete(k)
    await client.aclose()
