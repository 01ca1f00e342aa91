"""Redis dies under load and comes back: rate limits follow `on_store_error`, never a 500, and recover.

A private `redis-server` (no persistence, a free port; never the shared one) is killed while four
clients hammer one tenant limited to 20 requests an hour, then started again on the same port.
Real time and real sockets (the outage is real), kept to a few seconds and a bounded request count.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.config import load_settings
from gateway.http.middleware.auth import hash_key
from gateway.upstream.fake import FakeUpstream
from tests.support.redis_server import PrivateRedis
from tests.support.rig import Tally
from tests.support.serving import gateway_client

KEY = "gwk_fake_test_key_faults"
LIMIT = 20
MAX_REQUESTS = 4000  # per phase, whatever the speed of the machine


@dataclass(frozen=True)
class Seen:
    at: float
    status: int
    enforced: bool  # the answer came from a bucket decision (x-ratelimit-* headers)
    retry_after: str | None


async def _hammer(client: TestClient, seconds: float, tally: Tally) -> list[Seen]:
    """Four clients in a loop for `seconds` (bounded by MAX_REQUESTS), counted in the suite's tally."""
    out: list[Seen] = []
    stop = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < stop and len(out) < MAX_REQUESTS:
            body = {"model": "org/m", "messages": [{"role": "user", "content": f"q{len(out)}"}]}
            tally.sent += 1
            r = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
            await r.read()
            tally.answered += 1
            if r.status >= 500 and r.status != 503:
                tally.gateway_5xx += 1
                tally.unexpected.append(f"redis ratelimit: {r.status}")
            out.append(Seen(time.monotonic(), r.status, "x-ratelimit-remaining-requests" in r.headers,
                            r.headers.get("Retry-After")))

    await asyncio.gather(*(loop() for _ in range(4)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_killed_mid_load_then_back(private_redis: PrivateRedis, mode: str, tally: Tally) -> None:
    settings = load_settings(
        None, redis_url=private_redis.url, redis_prefix="gwfault", keys=[{"sha256": hash_key(KEY), "tenant": "t"}],
        tenants={"t": {"limits": {"requests": f"{LIMIT}/hour"}}}, cache={"enabled": False, "coalesce": False},
        ratelimit={"on_store_error": mode, "store_timeout": 1.0},
    )
    up = FakeUpstream("hf")
    async with gateway_client(settings, upstreams={"hf": up}, cancel=False) as client:
        before = await _hammer(client, 0.4, tally)
        private_redis.kill()
        during = await _hammer(client, 0.5, tally)
        private_redis.start()
        back_at = time.monotonic()
        after = await _hammer(client, 1.5, tally)

    assert not [s for s in before + during + after if s.status >= 500 and s.status != 503]
    # Redis up: exactly the limit, then 429s
    assert [s.status for s in before if s.status == 200] == [200] * LIMIT
    assert {s.status for s in before} == {200, 429} and all(s.enforced for s in before)
    # Redis down: what the configuration says, for every request
    if mode == "fail_open":
        assert {s.status for s in during} == {200} and not any(s.enforced for s in during)
    else:
        assert {(s.status, s.retry_after) for s in during} == {(503, "1")}
    # Redis back (empty): decisions come from it again, and it admits exactly the limit
    enforced = [s for s in after if s.enforced]
    assert enforced, "no decision came from Redis after it was back"
    print(f"redis back: first decision after {enforced[0].at - back_at:.3f}s")
    assert sum(1 for s in enforced if s.status == 200) == LIMIT
    assert enforced[-1].status == 429
