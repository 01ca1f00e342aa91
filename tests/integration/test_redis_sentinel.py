"""`redis+sentinel://` URLs: the master a Sentinel names, followed across a failover without a restart.

A private master, its replica and one Sentinel (never the shared Redis). Limits are exact through
the Sentinel's master; the master is killed, the Sentinel promotes the replica, and decisions come
from the new master (which has the buckets: replication) without restarting the gateway.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.middleware.auth import hash_key
from gateway.upstream.fake import FakeUpstream
from tests.support.redis_cluster import running_private_sentinel

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "gwk_fake_test_key_sentinel"
HEADERS = {"Authorization": f"Bearer {KEY}"}


async def test_limits_follow_the_master_the_sentinel_names_across_a_failover(tmp_path: Path) -> None:
    with running_private_sentinel(tmp_path) as sentinel:
        settings = load_settings(
            None, redis_url=sentinel.url, redis_prefix="gwsent", cache={"enabled": False, "coalesce": False},
            keys=[{"sha256": hash_key(KEY), "tenant": "t"}], tenants={"t": {"limits": {"requests": "30/hour"}}},
            ratelimit={"store_timeout": 0.5},
        )
        async with TestClient(TestServer(create_app(settings, upstreams={"hf": FakeUpstream("hf")}))) as client:

            async def ask(i: int) -> tuple[int, str | None]:
                body = {"model": "org/m", "messages": [{"role": "user", "content": f"q{i}"}]}
                r = await client.post("/v1/chat/completions", json=body, headers=HEADERS)
                return r.status, r.headers.get("x-ratelimit-remaining-requests")

            first = [await ask(i) for i in range(20)]
            assert [s for s, _ in first] == [200] * 20 and first[-1][1] == "10"
            assert (await client.get("/readyz")).status == 200
            # Replication is asynchronous: let the replica have the buckets before the master dies (else the
            # promoted replica may lack the last writes, which is Redis's choice, not the gateway's).
            admin = redis.Redis(host="127.0.0.1", port=sentinel.master.port)
            assert admin.execute_command("WAIT", 1, 5000) == 1
            admin.close()
            await asyncio.to_thread(sentinel.master.kill)
            loop = asyncio.get_running_loop()
            killed = loop.time()
            while True:
                status, remaining = await ask(0)
                assert status in (200, 429)
                if remaining is not None:  # decided by Redis again: the promoted replica
                    break
                assert loop.time() - killed < 30, "no decision from a new master 30 s after the kill"
                await asyncio.sleep(0.2)
            print(f"sentinel failover: decisions back {loop.time() - killed:.2f}s after the master was killed")
            assert sentinel.current_master() == sentinel.replica.port
            rest = Counter([(await ask(i))[0] for i in range(15)])
            # The new master had the bucket (replicated): what was left, and no more.
            assert rest[200] <= 10 and rest[429] >= 5, rest
