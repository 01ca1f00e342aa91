"""Redis dies under a running gateway: the cache is bypassed, requests are still served, and it comes back.

A private `redis-server` on a free port (never the shared one), killed and restarted by the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import load_settings
from tests.unit.policies.cachekit import EMBED, GatedUpstream

BODY = {"model": EMBED, "input": "hello"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throw-away redis-server (no persistence) that the test may kill and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("private redis-server did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed")
    server = PrivateRedis(binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_redis_down_bypasses_the_cache_and_requests_are_still_served(private_redis: PrivateRedis) -> None:
    up = GatedUpstream()
    settings = load_settings(
        None, redis_url=private_redis.url, upstreams={"hf": {"kind": "hf", "base_url": "http://hf.test"}},
        models=[{"name": "*", "task": "feature-extraction"}], cache={"store_cooldown": 0},
    )
    app = create_app(settings, upstreams={"hf": up})
    async with TestClient(TestServer(app, handler_cancellation=True)) as client:
        first = await client.post("/v1/embeddings", json=BODY)
        second = await client.post("/v1/embeddings", json=BODY)
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")

        private_redis.kill()
        down = [await client.post("/v1/embeddings", json=BODY) for _ in range(3)]
        assert [r.status for r in down] == [200, 200, 200]
        assert [r.headers["X-Cache"] for r in down] == ["BYPASS"] * 3
        assert len(up.calls) == 4  # served by the upstream, every time

        private_redis.start()  # empty again: no persistence
        back = [await client.post("/v1/embeddings", json=BODY) for _ in range(2)]
        assert [r.headers["X-Cache"] for r in back] == ["MISS", "HIT"]
        assert len(up.calls) == 5
