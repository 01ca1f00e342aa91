"""A burst on freshly started replicas admits exactly the bucket, with default settings, every run.

Real processes (`hf-gateway simulate` and `hf-gateway serve`), a private redis-server (plain or
TLS) started by the test, 1,200 requests sent at once from one tenant whose bucket holds 100 and
refills at 100 a day (nothing refills during the test). The gateways are fresh: the burst is their
first traffic, so their event loops are as far behind as they will ever be while the first
decisions are owed. A late answer from Redis is still the answer: any admission beyond 100 would
be a decision made without Redis (and, before, a take refunded after Redis had performed it).

Shapes: three replicas; one replica with `--workers 4`; three replicas talking TLS to Redis.
Then Redis killed in the middle of a burst: fail_open admits the rest and counts it,
fail_closed answers 503 with Retry-After; neither refunds what was paid before the kill.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.http.middleware.auth import hash_key
from tests.support.processes import Fleet, Processes, start_fleet
from tests.support.redis_server import PrivateRedis, make_tls_files, running_private_redis

pytestmark = [pytest.mark.slow, pytest.mark.redis]

KEY = "gwk_fake_test_key_burst"
LIMIT = 100
BURST = 1200


def _fleet(procs: Processes, redis_url: str, gateways: int, workers: int = 1,
           ratelimit: dict[str, Any] | None = None) -> Fleet:
    def config(sim_url: str) -> dict[str, Any]:
        return {
            "redis_prefix": "gwburst", "log_format": "text", "log_level": "WARNING", "workers": workers,
            "upstreams": {"hf": {"kind": "hf", "base_url": sim_url}},
            "models": [{"name": "*"}],
            "ratelimit": ratelimit or {},  # the defaults: store_timeout, fail_open
            "tenants": {"team-a": {"limits": {"requests": {"rate": f"{LIMIT}/day", "burst": LIMIT}}}},
            "keys": [{"sha256": hash_key(KEY), "tenant": "team-a"}],
        }

    return start_fleet(procs, config, gateways=gateways, env={"GATEWAY_REDIS_URL": redis_url})


async def _burst(bases: list[str], n: int) -> list[tuple[int, str | None]]:
    """`n` chat requests at once, spread evenly over `bases`: (status, Retry-After) each."""
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(i: int) -> tuple[int, str | None]:
            body = {"model": "sim/gpt2", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2}
            async with session.post(f"{bases[i % len(bases)]}/v1/chat/completions", json=body,
                                    headers=headers) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        return await asyncio.gather(*(one(i) for i in range(n)))


def _counted(bases: list[str], outcome: str) -> float:
    """gateway_ratelimit_decisions_total{outcome} summed over the gateways' /metrics."""
    total = 0.0
    pattern = re.compile(rf'^gateway_ratelimit_decisions_total{{[^}}]*outcome="{outcome}"[^}}]*}} (\S+)$', re.M)
    for base in bases:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            total += sum(float(v) for v in pattern.findall(resp.read().decode()))
    return total


@pytest.mark.parametrize(("gateways", "workers"), [(3, 1), (1, 4)], ids=["3-replicas", "workers-4"])
async def test_a_burst_on_fresh_replicas_admits_exactly_the_bucket(
    private_redis: PrivateRedis, processes: Processes, gateways: int, workers: int,
) -> None:
    fleet = _fleet(processes, private_redis.url, gateways, workers)
    statuses = Counter(status for status, _ in await _burst(fleet.gateways, BURST))
    assert statuses == {200: LIMIT, 429: BURST - LIMIT}, statuses
    assert _counted(fleet.gateways, "error_open") == 0


async def test_a_burst_over_tls_admits_exactly_the_bucket(tmp_path: Path, processes: Processes) -> None:
    with running_private_redis(tls=make_tls_files(tmp_path)) as redis:
        fleet = _fleet(processes, redis.url, 3)
        statuses = Counter(status for status, _ in await _burst(fleet.gateways, BURST))
        assert statuses == {200: LIMIT, 429: BURST - LIMIT}, statuses


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_killed_mid_burst_follows_on_store_error_and_refunds_nothing(
    private_redis: PrivateRedis, processes: Processes, mode: str,
) -> None:
    fleet = _fleet(processes, private_redis.url, 3, ratelimit={"on_store_error": mode})
    before = Counter(status for status, _ in await _burst(fleet.gateways, 60))
    assert before == {200: 60}  # 40 left in the bucket

    async def kill_soon() -> None:
        await asyncio.sleep(0.05)  # the burst is in flight
        private_redis.kill()

    results, _ = await asyncio.gather(_burst(fleet.gateways, 600), kill_soon())
    statuses = Counter(status for status, _ in results)
    assert 500 not in statuses and 502 not in statuses
    # Decided by Redis before the kill: at most the 40 left; whatever was decided after follows the policy.
    if mode == "fail_open":
        assert set(statuses) <= {200, 429}
        assert _counted(fleet.gateways, "error_open") >= statuses[200] - 40 > 0
    else:
        assert set(statuses) <= {200, 429, 503} and statuses[200] <= 40 and statuses[503] > 0
        assert {ra for status, ra in results if status == 503} == {"1"}
        assert _counted(fleet.gateways, "error_closed") == statuses[503]
    # Redis back (empty: no persistence): each replica's probe finds it, and limits hold again.
    private_redis.start()
    await _ready(fleet.gateways)
    again = Counter(status for status, _ in await _burst(fleet.gateways, 150))
    assert again == {200: LIMIT, 429: 50}, again


async def _ready(bases: list[str], limit: float = 10.0) -> None:
    """Wait until every gateway's /readyz says 200 (its store's probe found Redis back)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    async with aiohttp.ClientSession() as session:
        for base in bases:
            while True:
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        break
                assert loop.time() < end, f"{base} not ready {limit}s after Redis came back"
                await asyncio.sleep(0.05)
