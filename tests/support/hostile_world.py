"""A gateway in front of a `Hostile` upstream, three tenants, and the checks every hostile case ends with.

The gateway runs in the test's loop on a real port (`TestServer`), its one upstream (`kind: openai`,
a pool of `pool_size` connections, no retries, breakers that never open, cache and coalescing off)
is a `Hostile` raw TCP server, and clients are `RawConnection`s, so nothing between the test and
the bytes hides a desynchronised connection. Tenant `c` sends the hostile cases; tenants `a` and
`b` send good traffic at the same time through the same small pool.

A request's case is its model name and its marker is its message; a good answer echoes the
marker. `check_good` fails on any answer carrying another request's marker.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp.test_utils import TestServer

from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.appkeys import UPSTREAMS
from gateway.http.middleware.auth import hash_key
from gateway.upstream.http import HttpUpstream
from gateway.upstream.transport.pool import Pool
from tests.support.raw_client import RawAnswer, RawConnection
from tests.support.scripted_upstream import STRAY, Action, Hostile, hostile

DEADLINE = 5.0  # the gateway's request_timeout
WITHIN = DEADLINE + 2.0  # no answer may take longer (the slack is for a loaded machine)
KEYS = {tenant: f"gw-fake-key-{tenant}-0123456789" for tenant in ("a", "b", "c")}
CHAT = "/v1/chat/completions"
_markers = itertools.count()


def marker(tenant: str) -> str:
    return f"{tenant}-marker-{next(_markers)}"


def chat(case: str, mark: str, stream: bool) -> dict[str, Any]:
    return {"model": case, "messages": [{"role": "user", "content": mark}], "stream": stream}


@dataclass
class World:
    upstream: Hostile
    port: int
    pool: Pool

    async def connect(self) -> RawConnection:
        return await RawConnection.open("127.0.0.1", self.port)

    async def ask(self, conn: RawConnection, tenant: str, case: str, stream: bool,
                  started: asyncio.Event | None = None) -> tuple[str, RawAnswer]:
        """One request of `tenant` for `case` on `conn`: (its marker, its answer)."""
        mark = marker(tenant)
        answer = await conn.post_json(CHAT, chat(case, mark, stream), {"Authorization": f"Bearer {KEYS[tenant]}"},
                                      within=WITHIN, started=started)
        return mark, answer

    async def good_traffic(self, tenant: str, rounds: int) -> int:
        """`rounds` good requests of `tenant` on one keep-alive connection, streams and not; all checked."""
        conn = await self.connect()
        try:
            for i in range(rounds):
                stream = i % 2 == 1
                mark, answer = await self.ask(conn, tenant, "good", stream)
                check_good(answer, mark, stream)
                assert not conn.stray, conn.stray[:200]
        finally:
            await conn.close()
        return rounds

    async def settled(self) -> None:
        """Every upstream connection given back (in use: 0), and none holding buffered bytes (memory bounded)."""
        for _ in range(500):
            if self.pool.active == 0:
                break
            await asyncio.sleep(0.01)
        assert self.pool.active == 0, f"upstream connections still in use: {self.pool.stats()}"
        assert all(not conn.buffer for conn in self.pool._open), [len(c.buffer) for c in self.pool._open]


@asynccontextmanager
async def world(cases: Mapping[str, Action], pool_size: int = 2, **upstream: Any) -> AsyncIterator[World]:
    async with hostile(cases) as (up, base):
        cfg = {"kind": "openai", "base_url": f"{base}/v1", "token_env": None, "pool_size": pool_size,
               "connect_timeout": 3.0, "read_timeout": 30.0, "max_response_bytes": 1024 * 1024,
               "retry": {"max_attempts": 1}, "breaker_failures": 1_000_000, **upstream}
        settings = load_settings(
            None, upstreams={"up": cfg}, models=[{"name": "*", "deployments": [{"upstream": "up"}]}],
            cache={"enabled": False, "coalesce": False}, request_timeout=DEADLINE, log_format="text",
            keys=[{"sha256": hash_key(key), "tenant": tenant} for tenant, key in KEYS.items()])
        app = create_app(settings)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            http = app[UPSTREAMS]["up"]
            assert isinstance(http, HttpUpstream) and http._pool is not None
            yield World(up, server.port or 0, http._pool)
        finally:
            await server.close()


def error_of(answer: RawAnswer) -> dict[str, Any]:
    """The OpenAI-shaped error of a non-2xx answer (never the gateway's own internal error)."""
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    error = answer.json()["error"]
    assert isinstance(error, dict) and error["message"], error
    assert error.get("code") != "internal_error", error
    assert "content-length" in answer.headers  # never chunked: the HF async client needs it
    return error


def check_good(answer: RawAnswer, mark: str, stream: bool) -> None:
    """A complete, well-formed answer carrying `mark` and nobody else's."""
    assert answer.status == 200, (answer.status, answer.body[:300])
    assert STRAY.encode() not in answer.body, answer.body[:300]
    assert answer.keep_alive
    if not stream:
        assert answer.json()["choices"][0]["message"]["content"] == mark, answer.body[:300]
        return
    data = answer.data
    assert data and data[-1] == b"[DONE]" and data.count(b"[DONE]") == 1, answer.body[-300:]
    for payload in data[:-1]:
        assert orjson.loads(payload)["choices"][0]["delta"]["content"].startswith(mark + "#"), payload


def check_inband(answer: RawAnswer, mark: str) -> None:
    """A stream that began (events of `mark` only) and ends with one in-band error event, never `[DONE]`."""
    assert answer.status == 200, (answer.status, answer.body[:300])
    assert answer.keep_alive
    data = answer.data
    assert b"[DONE]" not in data, answer.body[-300:]
    error = orjson.loads(data[-1])["error"]
    assert isinstance(error, dict) and error["message"], data[-1]
    for payload in data[:-1]:
        assert orjson.loads(payload)["choices"][0]["delta"]["content"].startswith(mark + "#"), payload


Check = Callable[[RawAnswer, str], None]


def refused(status: int = 502) -> Check:
    """An error answer with `status`, in the OpenAI shape, on a connection kept alive."""

    def check(answer: RawAnswer, mark: str) -> None:
        assert answer.status == status, (answer.status, answer.body[:300])
        assert answer.keep_alive
        error_of(answer)

    return check
