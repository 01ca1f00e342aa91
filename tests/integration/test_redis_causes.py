"""Why the limiter cannot run, said once and shown everywhere: wrong password, missing ACL permission,
a full Redis, a TLS URL without the CA, a cluster redirect without cluster mode.

Each case runs the real app in process against a private redis-server configured to fail that
way, sends a handful of requests (fail_open: they are admitted, and counted), and checks:
- one log line naming the cause (not one per request), with the server's own reason;
- `/readyz` 503 with the cause, `/status` showing it;
- `gateway_store_failures_total{store="main", cause=...}` counting it;
- nothing secret (the password) in any of them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.middleware.auth import hash_key
from gateway.upstream.fake import FakeUpstream
from tests.support.redis_server import PrivateRedis, make_tls_files, running_private_redis

pytestmark = pytest.mark.redis

KEY = "gwk_fake_test_key_causes"
PASSWORD = "fake-password-7f3a"  # obviously fake; must never be shown anywhere
# The minimal ACL of docs/redis.md (the commands the gateway sends, and those its scripts call).
MINIMAL_ACL = ["+ping", "+get", "+set", "+del", "+pttl", "+publish", "+subscribe", "+unsubscribe", "+info",
               "+evalsha", "+script|load", "+time", "+hmget", "+hset", "+pexpire", "+incr"]


@asynccontextmanager
async def gateway(redis_url: str, **extra: Any) -> AsyncIterator[TestClient]:
    extra.setdefault("cache", {"enabled": False, "coalesce": False})
    settings = load_settings(
        None, redis_url=redis_url, redis_prefix="gwcause", keys=[{"sha256": hash_key(KEY), "tenant": "t"}],
        tenants={"t": {"limits": {"requests": "1000/hour"}}}, **extra,
    )
    async with TestClient(TestServer(create_app(settings, upstreams={"hf": FakeUpstream("hf")}))) as client:
        yield client


async def _observe(client: TestClient, requests: int = 12) -> dict[str, Any]:
    statuses = []
    for i in range(requests):
        body = {"model": "org/m", "messages": [{"role": "user", "content": f"q{i}"}]}
        r = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
        statuses.append(r.status)
    ready = await client.get("/readyz")
    status = await client.get("/status", headers={"Authorization": f"Bearer {KEY}"})
    metrics = await (await client.get("/metrics")).text()
    return {"statuses": statuses, "ready": ready.status, "readyz": await ready.json(),
            "status": await status.json(), "metrics": metrics,
            "texts": [await ready.text(), await status.text(), metrics]}


def _failures(metrics: str, cause: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("gateway_store_failures_total{") and f'cause="{cause}"' in line and 'store="main"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _check(seen: dict[str, Any], cause: str, words: str, caplog: pytest.LogCaptureFixture) -> None:
    assert set(seen["statuses"]) == {200}  # fail_open: admitted, each counted as error_open
    assert seen["ready"] == 503 and seen["readyz"]["limiter"]["cause"] == cause, seen["readyz"]
    assert words in seen["readyz"]["limiter"]["detail"]
    main = seen["status"]["redis"]["main"]
    assert seen["status"]["status"] == "degraded" and cause in [p["cause"] for p in main["problems"]]
    assert _failures(seen["metrics"], cause) >= len(seen["statuses"])
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.store" and cause.upper() in r.getMessage()]
    assert len(lines) == 1, lines  # once, not once per request
    assert words in lines[0]
    everything = [r.getMessage() for r in caplog.records] + seen["texts"]
    assert not [t for t in everything if PASSWORD in t]


@pytest.fixture
def acl_redis() -> Iterator[PrivateRedis]:
    """A private Redis with a `gw` ACL user (its rules set per test)."""
    with running_private_redis() as server:
        yield server


def _acl(server: PrivateRedis, *rules: str) -> None:
    admin = redis.Redis(port=server.port)
    admin.execute_command("ACL", "SETUSER", "gw", "on", f">{PASSWORD}", "~*", "&*", *rules)
    admin.close()


async def test_a_wrong_password_is_named(acl_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    _acl(acl_redis, "+@all")
    with caplog.at_level(logging.WARNING):
        async with gateway(f"redis://gw:not-{PASSWORD}@127.0.0.1:{acl_redis.port}/0") as client:
            seen = await _observe(client)
    _check(seen, "auth", "WRONGPASS", caplog)


async def test_an_acl_user_without_time_is_named(acl_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    _acl(acl_redis, *[rule for rule in MINIMAL_ACL if rule != "+time"])
    with caplog.at_level(logging.WARNING):
        async with gateway(f"redis://gw:{PASSWORD}@127.0.0.1:{acl_redis.port}/0") as client:
            seen = await _observe(client)
    _check(seen, "noperm", "can't run this command", caplog)


async def test_the_minimal_acl_is_enough(acl_redis: PrivateRedis) -> None:
    _acl(acl_redis, *MINIMAL_ACL)
    async with gateway(f"redis://gw:{PASSWORD}@127.0.0.1:{acl_redis.port}/0",
                       cache={"enabled": True}, ratelimit={"on_store_error": "fail_closed"}) as client:
        seen = await _observe(client, requests=3)
        body = {"model": "org/m", "input": "cached"}
        cached = [await client.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"})
                  for _ in range(2)]
    assert [r.headers.get("X-Cache") for r in cached] == ["MISS", "HIT"]
    assert seen["statuses"] == [200] * 3 and seen["ready"] == 200, seen["readyz"]
    assert seen["status"]["redis"]["main"] == {"state": "ok", "problems": []}


async def test_a_full_redis_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with running_private_redis(extra=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]) as server:
        admin = redis.Redis(port=server.port)
        try:
            for i in range(10_000):
                admin.set(f"filler:{i}", b"x" * 1024)
        except redis.exceptions.ResponseError:
            pass  # full
        admin.close()
        with caplog.at_level(logging.WARNING):
            async with gateway(server.url) as client:
                seen = await _observe(client)
    _check(seen, "oom", "maxmemory", caplog)


async def test_a_tls_url_without_the_ca_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running_private_redis(tls=make_tls_files(tmp_path)) as server:
        with caplog.at_level(logging.WARNING):
            async with gateway(f"rediss://127.0.0.1:{server.port}/0") as client:  # no ssl_ca_certs: not trusted
                seen = await _observe(client)
    _check(seen, "tls", "CERTIFICATE_VERIFY_FAILED", caplog)
