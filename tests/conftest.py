"""Shared fixtures: a real Redis (fail in CI when unreachable), per-test key prefixes, a private
throw-away `redis-server`, a private Redis Cluster, and real gateway processes (their code lives in
`tests/support/`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.processes import Processes
from tests.support.redis_cluster import PrivateCluster, running_private_cluster
from tests.support.redis_server import PrivateRedis, running_private_redis, shared_redis_url, stop_stand_in


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (real time, several processes, fuzzing); "
                          "the README's test command and CI do")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --slow, the tests marked slow are deselected: the quick loop stays well under two minutes."""
    if config.getoption("--slow"):
        return
    kept = [item for item in items if item.get_closest_marker("slow") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slow") is not None])
        items[:] = kept


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The private redis-server started when nothing answered on 6379 ends with the session."""
    stop_stand_in()


PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's HTTPS_PROXY & co stay out of every test (and the processes it starts): the upstreams
    here are on loopback, and the tests of the proxy support set the variables themselves."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
async def redis_url() -> str:
    """The real Redis URL (a private stand-in when none runs on 6379); skips locally and FAILS in CI
    when neither can be had."""
    return await shared_redis_url()


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


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A started private redis-server on a free port (never the shared one), killed afterwards;
    FAILS in CI when redis-server is missing, skips locally."""
    with running_private_redis() as server:
        yield server


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Real processes started by this test (logs in tmp_path), stopped by their own pids afterwards."""
    with Processes(tmp_path) as procs:
        yield procs


@pytest.fixture(scope="session")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """A 3-master Redis Cluster started once for the session (tests isolate by key prefix; none kills a node:
    a test that does starts its own with `running_private_cluster(..., replicas=True)`)."""
    with running_private_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
