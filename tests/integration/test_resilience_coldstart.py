"""Cold starts through the whole gateway against the simulator's `cold-Ns` models."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.clock import FakeClock
from tests.support.loop_stack import stack

GEN = {"inputs": "Hello", "parameters": {"max_new_tokens": 3}}
PATIENT = {"resilience": {"probe_hold": 1000.0}}  # see tests/support/loop_stack.py: real sockets under a fake clock


def _loading_calls(s, model: str) -> int:  # type: ignore[no-untyped-def]
    """Upstream calls that arrived while the model loaded, plus the one that found it ready."""
    times = sorted(r.at for r in s.sim.requests if r.model == model)
    ready = times[0] + 20.0
    return sum(1 for t in times if t < ready) + (1 if any(t >= ready for t in times) else 0)


@pytest.mark.parametrize("model", ["sim/gpt2-cold-20s", "sim/gpt2-cold-20s-list"])
async def test_ten_concurrent_requests_to_a_cold_model_all_succeed_with_two_upstream_calls(model: str) -> None:
    async with stack(**PATIENT) as s:
        start = s.clock.monotonic()
        resps = await asyncio.gather(*(s.client.post(f"/models/{model}", json=GEN) for _ in range(10)))
        assert [r.status for r in resps] == [200] * 10
        for r in resps:
            assert "generated_text" in (await r.json())[0]
        assert _loading_calls(s, model) <= 2
        assert s.upstream_calls(model) <= 11  # and then one call each, once the model is up
        assert s.clock.monotonic() - start >= 20


async def test_no_wait_gets_an_immediate_503_with_estimated_time_and_retry_after() -> None:
    async with stack() as s:
        first = await s.client.post("/models/sim/gpt2-cold-300s", json=GEN, headers={"x-wait-for-model": "false"})
        second = await s.client.post("/models/sim/gpt2-cold-300s",
                                     json={**GEN, "options": {"wait_for_model": False}})
        for resp in (first, second):
            assert resp.status == 503
            body = await resp.json()
            assert "currently loading" in body["error"] and body["estimated_time"] > 250
            assert resp.headers["Retry-After"] == "120"
        assert s.upstream_calls("sim/gpt2-cold-300s") == 1


async def test_a_load_past_the_deadline_is_a_503_in_the_openai_dialect_within_the_deadline() -> None:
    async with stack() as s:
        start = s.clock.monotonic()
        resp = await s.client.post("/v1/chat/completions", headers={"X-Gateway-Timeout": "30"}, json={
            "model": "sim/chat-cold-60s", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status == 503
        err = (await resp.json())["error"]
        assert err["code"] == "model_loading" and 55 <= err["estimated_time"] <= 60
        assert resp.headers["Retry-After"] == "60"
        assert s.clock.monotonic() - start < 30


async def test_a_parked_stream_gets_keepalive_comments_then_its_tokens() -> None:
    async with stack(resilience={"keepalive_interval": 5.0, "probe_hold": 1000.0}) as s:
        resp = await s.client.post("/models/sim/gpt2-cold-12s", json={**GEN, "stream": True})
        assert resp.status == 200
        events = [e for e in (await resp.read()).split(b"\n\n") if e]
        comments = [e for e in events if e.startswith(b":")]
        assert comments and all(c.startswith(b": loading model, about ") for c in comments)
        assert events[: len(comments)] == comments  # comments first, then only data
        assert events[-1].startswith(b"data:") and b'"error"' not in b"".join(events)


async def test_a_client_that_disconnects_while_parked_causes_no_upstream_call() -> None:
    clock = FakeClock()  # manual: time only moves when the test says so
    async with stack(clock=clock) as s:
        model = "sim/gpt2-cold-20s"
        waiting = asyncio.ensure_future(s.client.post(f"/models/{model}", json=GEN))
        while clock.sleepers < 1:  # the first request learned the model is loading and parked
            await asyncio.sleep(0.005)
        quitter = asyncio.ensure_future(s.client.post(f"/models/{model}", json=GEN))
        while clock.sleepers < 2:
            await asyncio.sleep(0.005)
        quitter.cancel()  # closes the connection: aiohttp cancels the gateway's handler
        with pytest.raises(asyncio.CancelledError):
            await quitter
        for _ in range(25):
            clock.advance(1)
            await asyncio.sleep(0.01)
        assert (await waiting).status == 200
        assert s.upstream_calls(model) == 2  # the first 503 and the probe: nothing for the quitter


async def test_status_shows_the_loading_model_and_its_remaining_estimate() -> None:
    async with stack() as s:
        await s.client.post("/models/sim/gpt2-cold-300s", json=GEN, headers={"x-wait-for-model": "false"})
        status = await (await s.client.get("/status")).json()
        assert status["status"] == "degraded"
        [loading] = status["loading"]
        assert loading["model"] == "sim/gpt2-cold-300s" and loading["upstream"] == "hf"
        assert 250 < loading["estimated_time_left"] <= 300
        assert status["deployments"][0]["id"] == "hf"
