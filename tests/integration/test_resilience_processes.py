"""Two gateway processes sharing a real Redis park behind ONE probe of a cold model (real time, real sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.support.processes import Processes, start_fleet

COLD = 2.5
MODEL = f"sim/gpt2-cold-{COLD}s"


@pytest.fixture
def cluster(processes: Processes, redis_url: str, key_prefix: str) -> tuple[str, list[str]]:
    """The simulator and two gateways (base URLs); the `processes` fixture stops them afterwards."""

    def config(sim_url: str) -> dict[str, Any]:
        return {"redis_url": redis_url, "redis_prefix": key_prefix, "log_format": "text", "log_level": "WARNING",
                "upstreams": {"hf": {"kind": "hf", "base_url": sim_url}}, "models": [{"name": "*"}]}

    fleet = start_fleet(processes, config, gateways=2)
    return fleet.simulator, fleet.gateways


@pytest.mark.slow
@pytest.mark.redis
async def test_two_gateway_processes_share_the_loading_state_and_the_single_probe(
    cluster: tuple[str, list[str]], redis_url: str, key_prefix: str
) -> None:
    sim, gateways = cluster
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        body = {"inputs": "Hello", "parameters": {"max_new_tokens": 3}}

        async def one(i: int) -> int:
            async with session.post(f"{gateways[i % 2]}/models/{MODEL}", json=body) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(i) for i in range(10)))
        assert statuses == [200] * 10
        async with session.get(f"{sim}/_sim/requests") as resp:
            received = [r for r in await resp.json() if r["model"] == MODEL]
    times = sorted(r["at"] for r in received)
    ready = times[0] + COLD
    during_load = sum(1 for t in times if t < ready) + 1  # + the probe that found it ready
    assert during_load <= 2, times
    assert len(times) <= 11
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*cold*")]
        assert keys, "the loading state lives in the shared Redis"
        assert not [k for k in keys if k.endswith(b":probe")], "no probe lock is left behind"
        for k in keys:
            await client.delete(k)
    finally:
        await client.aclose()

