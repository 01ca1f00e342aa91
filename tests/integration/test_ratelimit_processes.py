"""Three `hf-gateway serve` processes share one real Redis: together they admit exactly the limit.

Real processes, real sockets, real time (kept short): the simulator as the upstream, 3 x 40
concurrent requests from one tenant whose bucket holds 50 and refills at 50 a day, so nothing
refills while the test runs. Any overshoot would mean two replicas spent the same token.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pytest

from gateway.http.middleware.auth import hash_key
from tests.support.processes import Processes, start_fleet

KEY = "gwk_fake_test_key_processes"
LIMIT = 50
PER_GATEWAY = 40


@pytest.fixture
def gateways(redis_url: str, key_prefix: str, real_redis: object, processes: Processes) -> list[str]:
    """The simulator and three gateways on free ports; the `processes` fixture stops them afterwards."""

    def config(sim_url: str) -> dict[str, Any]:
        return {
            "redis_prefix": key_prefix, "log_format": "text", "log_level": "WARNING",
            "upstreams": {"hf": {"kind": "hf", "base_url": sim_url}},
            "models": [{"name": "*"}],
            "cache": {"enabled": False, "coalesce": False},
            "ratelimit": {"store_timeout": 2.0, "on_store_error": "fail_closed"},  # a slow CI box must not admit extra
            "tenants": {"team-a": {"limits": {"requests": {"rate": f"{LIMIT}/day"}}}},
            "keys": [{"sha256": hash_key(KEY), "tenant": "team-a"}],
        }

    fleet = start_fleet(processes, config, gateways=3, env={"GATEWAY_REDIS_URL": redis_url})
    return fleet.gateways


@pytest.mark.slow
@pytest.mark.redis
async def test_three_processes_admit_exactly_the_limit(gateways: list[str]) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(base: str, i: int) -> tuple[int, str | None]:
            body = {"model": "sim/gpt2", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2}
            async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        results = await asyncio.gather(*(one(base, i) for base in gateways for i in range(PER_GATEWAY)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: LIMIT, 429: 3 * PER_GATEWAY - LIMIT}, statuses
    # one token at 50/day takes 1728 s: that is what every rejection says, whichever replica answered
    assert {ra for status, ra in results if status == 429} == {"1728"}
