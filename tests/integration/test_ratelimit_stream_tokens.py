"""A token limit counts and settles a stream's tokens: the real app, HttpUpstream, the simulator over a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.middleware.auth import hash_key
from gateway.simulator.app import create_simulator_app
from gateway.store.memory import MemoryStore
from tests.support.serving import gateway_client

KEY = "gwk_fake_test_key_stream"
CAP = 5000
PROMPT = "tell me a long story about buckets"  # 34 chars: ceil(34/4) + 4 = 13 prompt tokens estimated
EST = 13 + 64  # ... plus max_tokens


@dataclass
class Rig:
    client: TestClient

    async def chat(self, **extra: Any) -> Any:
        body = {"model": "sim/gpt2", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64, **extra}
        return await self.client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})

    async def remaining_after_probe(self) -> int:
        """Tokens left before a probe request (its own reservation added back)."""
        r = await self.chat()
        await r.read()
        return int(r.headers["x-ratelimit-remaining-tokens"]) + EST


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = TestServer(create_simulator_app(clock=FakeClock(autojump=True)))
    await sim.start_server()
    settings = load_settings(
        None, upstreams={"hf": {"kind": "hf", "base_url": str(sim.make_url("")).rstrip("/"), "token_env": None}},
        keys=[{"sha256": hash_key(KEY), "tenant": "team-a"}], cache={"enabled": False, "coalesce": False},
        tenants={"team-a": {"limits": {"tokens": f"{CAP}/hour"}}},
    )
    clock = FakeClock()  # the gateway's time stands still: no refill muddies the sums
    async with gateway_client(settings, clock=clock, store=MemoryStore(clock), cancel=False) as client:
        yield Rig(client)
    await sim.close()


async def _usage(rig: Rig) -> int:
    r = await rig.chat()
    data = await r.json()
    return int(data["usage"]["prompt_tokens"]) + int(data["usage"]["completion_tokens"])


async def _settled_by(rig: Rig, stream_body: dict[str, Any], used: int) -> tuple[int, bytes]:
    """Tokens the stream was charged in the end: probe, stream, probe, and the difference."""
    before = await rig.remaining_after_probe()  # the probe itself then settles at `used`
    r = await rig.chat(stream=True, **stream_body)
    assert r.status == 200
    assert r.headers["x-ratelimit-remaining-tokens"] == str(before - used - EST)  # reserved, not yet settled
    body = await r.read()
    return before - used - await rig.remaining_after_probe(), body


async def test_a_stream_with_usage_is_settled_with_the_upstream_count(rig: Rig) -> None:
    used = await _usage(rig)  # the non-stream twin: same text, same usage
    charged, body = await _settled_by(rig, {"stream_options": {"include_usage": True}}, used)
    assert body.rstrip().endswith(b"data: [DONE]")
    assert charged == used


async def test_a_stream_without_usage_is_settled_by_counting_its_events(rig: Rig) -> None:
    used = await _usage(rig)
    charged, body = await _settled_by(rig, {}, used)
    assert charged == 13 + body.count(b"data: {")  # prompt estimate + one token per chunk
    assert abs(charged - used) <= 13  # close to what the upstream says it used
    assert charged != EST  # not the reservation: it was settled
