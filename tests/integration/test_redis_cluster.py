"""Redis Cluster for real: a private 3-master cluster started by the tests (never the shared Redis).

- limits exact for tenants whose buckets live on each of the three masters, across two replicas;
- the cold-start state written by one replica is read by the other (the cache and single-flight
  run on the cluster in tests/unit/policies/test_coalesce_flight.py and test_cache_stores.py);
- a plain redis:// URL on one node of a cluster: MOVED is named (log once, /readyz 503);
- a master killed under traffic: its replica is promoted and the gateway recovers without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import SystemClock
from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.appkeys import LOADING
from gateway.http.middleware.auth import hash_key
from gateway.policies.resilience.target import Target
from gateway.upstream.fake import FakeUpstream
from tests.support.redis_cluster import PrivateCluster, running_private_cluster

pytestmark = pytest.mark.redis

LIMIT = 20


def _tenants_on_every_master(cluster: PrivateCluster, prefix: str) -> dict[str, int]:
    """One tenant name per master: tenant -> the port of the master its request bucket lives on."""
    found: dict[int, str] = {}
    for i in range(200):
        tenant = f"team-{i}"
        found.setdefault(cluster.master_of(f"{prefix}:v1:rl:{{{tenant}}}:x"), tenant)
        if len(found) == 3:
            return {tenant: port for port, tenant in found.items()}
    raise AssertionError("no tenant found for some master")


@asynccontextmanager
async def _replica(url: str, prefix: str, tenants: list[str], **extra: Any) -> AsyncIterator[TestClient]:
    settings = load_settings(
        None, redis_url=url, redis_prefix=prefix, cache={"enabled": False, "coalesce": False},
        keys=[{"sha256": hash_key(f"gwk_fake_{t}"), "tenant": t} for t in tenants],
        tenants={t: {"limits": {"requests": f"{LIMIT}/hour"}} for t in tenants}, **extra,
    )
    app = create_app(settings, clock=SystemClock(), upstreams={"hf": FakeUpstream("hf")})
    async with TestClient(TestServer(app)) as client:
        yield client


async def _ask(client: TestClient, tenant: str, i: int = 0) -> Any:
    body = {"model": "org/m", "messages": [{"role": "user", "content": f"q{i}"}]}
    return await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer gwk_fake_{tenant}"})


async def test_limits_are_exact_for_tenants_on_every_master(private_cluster: PrivateCluster, key_prefix: str) -> None:
    tenants = _tenants_on_every_master(private_cluster, key_prefix)
    assert len(set(tenants.values())) == 3
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(_replica(private_cluster.url, key_prefix, list(tenants)))
                    for _ in range(2)]
        answers = await asyncio.gather(*(_ask(replicas[i % 2], tenant, i)
                                         for tenant in tenants for i in range(LIMIT + 10)))
        by_tenant: dict[str, Counter[int]] = {t: Counter() for t in tenants}
        for (tenant, _), answer in zip(((t, i) for t in tenants for i in range(LIMIT + 10)), answers, strict=True):
            by_tenant[tenant][answer.status] += 1
        assert all(c == {200: LIMIT, 429: 10} for c in by_tenant.values()), by_tenant
        ready = await replicas[0].get("/readyz")
        assert ready.status == 200, await ready.text()
        # The cold-start state one replica writes, the other reads (a hash-tagged key on some master).
        one, two = (r.app[LOADING] for r in replicas)
        target = Target("hf", "org/cold-model")
        await one.mark_loading(target, 30.0, sent_at=one.clock.time())
        seen = await two.read(target)
        assert seen is not None and seen.loading


async def test_a_plain_url_on_one_node_of_a_cluster_names_moved(
    private_cluster: PrivateCluster, key_prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    tenants = _tenants_on_every_master(private_cluster, key_prefix)
    node = private_cluster.nodes[0].port
    elsewhere = [t for t, port in tenants.items() if port != node]
    with caplog.at_level(logging.WARNING):
        async with _replica(f"redis://127.0.0.1:{node}/0", key_prefix, list(tenants)) as client:
            statuses = [(await _ask(client, tenant, i)).status for tenant in elsewhere for i in range(5)]
            ready = await client.get("/readyz")
            body = await ready.json()
    assert set(statuses) == {200}  # fail_open: admitted, counted; the cause is named below
    assert ready.status == 503 and body["limiter"]["cause"] == "moved", body
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.store" and "MOVED" in r.getMessage()]
    assert len(lines) == 1 and "redis+cluster://" in lines[0], lines


@pytest.mark.slow
async def test_a_master_killed_under_traffic_fails_over_without_a_restart(tmp_path: Path) -> None:
    with running_private_cluster(tmp_path, replicas=True) as cluster:
        tenants = _tenants_on_every_master(cluster, "gwfo")
        victim_tenant, victim_port = next(iter(tenants.items()))
        async with _replica(cluster.url, "gwfo", list(tenants), ratelimit={"store_timeout": 0.5}) as client:
            assert "x-ratelimit-remaining-requests" in (await _ask(client, victim_tenant)).headers
            others = [t for t in tenants if t != victim_tenant]
            next(n for n in cluster.nodes if n.port == victim_port).kill()
            loop = asyncio.get_running_loop()
            killed, decided_again = loop.time(), None
            while loop.time() - killed < 30:
                # Until the replica is promoted Redis itself refuses every slot (CLUSTERDOWN, with the
                # default cluster-require-full-coverage): fail_open admits, never a 5xx.
                answers = [await _ask(client, t) for t in (victim_tenant, *others)]
                assert {a.status for a in answers} <= {200, 429}
                if all("x-ratelimit-remaining-requests" in a.headers for a in answers):  # decided again
                    decided_again = loop.time() - killed
                    break
                await asyncio.sleep(0.1)
            assert decided_again is not None, "the gateway never recovered from the failover"
            print(f"failover: decisions back {decided_again:.2f}s after the master was killed")
            assert victim_port not in cluster.masters()
