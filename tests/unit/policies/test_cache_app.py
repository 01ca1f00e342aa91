"""The cache through the whole app over HTTP: X-Cache and Age headers, bypass headers, SSE replay, coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.clock import FakeClock
from tests.support.cache_kit import CLASSIFY, EMBED, GatedUpstream, chat_body, settings, stream_reply
from tests.support.serving import gateway_client

EMBED_BODY = {"model": EMBED, "input": ["one", "two"]}


@pytest.fixture
async def gw() -> AsyncIterator[tuple[TestClient, GatedUpstream, FakeClock]]:
    up = GatedUpstream()
    clock = FakeClock(autojump=True)
    async with gateway_client(settings(), clock=clock, upstreams={"hf": up}) as client:
        yield client, up, clock


async def test_repeat_is_a_hit_with_age_and_use_cache_false_goes_upstream(
    gw: tuple[TestClient, GatedUpstream, FakeClock],
) -> None:
    client, up, clock = gw
    first = await client.post("/v1/embeddings", json=EMBED_BODY)
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    clock.advance(30)
    second = await client.post("/v1/embeddings", json=EMBED_BODY)
    assert second.headers["X-Cache"] == "HIT" and second.headers["Age"] == "30"
    assert await second.read() == await first.read() and len(up.calls) == 1
    assert second.headers["x-compute-time"] == "0.01" and "x-ratelimit-remaining" not in second.headers
    bypass = await client.post("/v1/embeddings", json=EMBED_BODY, headers={"x-use-cache": "false"})
    assert bypass.headers["X-Cache"] == "BYPASS" and len(up.calls) == 2


async def test_legacy_options_and_cache_control_headers(gw: tuple[TestClient, GatedUpstream, FakeClock]) -> None:
    client, up, _ = gw
    url = f"/models/{CLASSIFY}"
    body = {"inputs": "I love it"}
    assert (await client.post(url, json=body)).headers["X-Cache"] == "MISS"
    off = await client.post(url, json={**body, "options": {"use_cache": False}})
    assert off.headers["X-Cache"] == "BYPASS" and len(up.calls) == 2
    fresh = await client.post(url, json=body, headers={"Cache-Control": "no-cache"})
    assert fresh.headers["X-Cache"] == "MISS" and len(up.calls) == 3
    hit = await client.post(url, json=body)
    assert hit.headers["X-Cache"] == "HIT" and await hit.read() == await fresh.read()
    nostore = await client.post(url, json=body, headers={"Cache-Control": "no-store"})
    assert nostore.headers["X-Cache"] == "BYPASS" and len(up.calls) == 4
    sampled = await client.post("/v1/chat/completions", json=chat_body(0.7))
    assert sampled.status == 200 and "X-Cache" not in sampled.headers


async def test_a_stream_hit_replays_the_same_sse_bytes(gw: tuple[TestClient, GatedUpstream, FakeClock]) -> None:
    client, up, _ = gw
    events = [b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"]
    up.script(stream_reply(events))
    body = chat_body(0, stream=True)
    first = await client.post("/v1/chat/completions", json=body)
    original = await first.read()
    assert first.headers["X-Cache"] == "MISS" and original == b"".join(events)
    again = await client.post("/v1/chat/completions", json=body)
    assert again.headers["X-Cache"] == "HIT" and again.headers["Content-Type"].startswith("text/event-stream")
    assert await again.read() == original and len(up.calls) == 1
    complete = await client.post("/v1/chat/completions", json={**body, "stream": False})
    assert complete.headers["X-Cache"] == "MISS" and complete.headers["Content-Type"].startswith("application/json")


async def test_fifty_identical_concurrent_requests_make_one_upstream_call(
    gw: tuple[TestClient, GatedUpstream, FakeClock],
) -> None:
    client, up, _ = gw
    up.gate.clear()
    tasks = [asyncio.create_task(client.post("/v1/embeddings", json=EMBED_BODY)) for _ in range(50)]
    while up.arrived < 1:
        await asyncio.sleep(0.001)
    for _ in range(100):  # let every request reach the flight
        await asyncio.sleep(0)
    up.gate.set()
    responses = await asyncio.gather(*tasks)
    bodies = {await r.read() for r in responses}
    assert up.arrived == 1 and len(bodies) == 1
    assert sorted(r.headers["X-Cache"] for r in responses).count("MISS") == 1
    assert {r.headers["X-Cache"] for r in responses} <= {"MISS", "COALESCED", "HIT"}
    assert all(r.status == 200 for r in responses)
