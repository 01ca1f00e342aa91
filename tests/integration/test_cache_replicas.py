"""Two real `hf-gateway serve` processes on one real Redis, in front of the simulator (`hf-gateway simulate`).

50 identical embedding requests, split between the two gateways and sent together while the
simulator holds its first byte: the simulator must see exactly one request, and every client the
same body. Real processes and a short real wait (the slow first byte), so it is marked slow.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.support.processes import Processes, start_fleet

MODEL = "sim/bge-cache-slow-ttfb-800ms"  # simulator fault token: 800 ms before the first byte


@pytest.mark.slow
@pytest.mark.redis
async def test_fifty_requests_through_two_gateways_make_one_upstream_call(
    redis_url: str, key_prefix: str, real_redis: object, processes: Processes,
) -> None:
    def config(sim_url: str) -> dict[str, Any]:
        return {
            "redis_prefix": key_prefix,
            "log_format": "text",
            "log_level": "WARNING",
            "upstreams": {"hf": {"kind": "hf", "base_url": sim_url, "token_env": "HF_TOKEN"}},
            "models": [{"name": "*"}],
        }

    fleet = start_fleet(processes, config, gateways=2, env={"GATEWAY_REDIS_URL": redis_url})
    sim_url = fleet.simulator

    body = {"model": MODEL, "input": ["the same sentence", "and another"]}
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> tuple[int, str, bytes]:
            url = f"{fleet.gateways[i % 2]}/v1/embeddings"
            async with session.post(url, json=body) as resp:
                return resp.status, f"{i % 2}:{resp.headers.get('X-Cache', '')}", await resp.read()

        results = await asyncio.gather(*(one(i) for i in range(50)))
        async with session.get(f"{sim_url}/_sim/stats") as resp:
            stats = await resp.json()

    assert [status for status, _, _ in results] == [200] * 50, results[:3]
    assert len({raw for _, _, raw in results}) == 1
    assert stats["total"] == 1, stats
    verdicts = [x.split(":")[1] for _, x, _ in results]
    assert verdicts.count("MISS") == 1 and set(verdicts) <= {"MISS", "COALESCED", "HIT"}
    # both gateways had followers waiting on the one leader (the others arrived inside the slow first byte)
    assert {"0:COALESCED", "1:COALESCED"} <= {x for _, x, _ in results}
