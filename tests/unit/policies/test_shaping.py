"""Outbound shaping: an upstream's declared budget paces calls instead of letting them draw 429s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.core.call import Answer, Call, Reply
from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.core.errors import UpstreamStatusError
from gateway.core.upstream_config import RetryConfig, UpstreamConfig
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.upstream.fake import FakeUpstream
from tests.support.limits_kit import BrokenStore, chat
from tests.support.serving import gateway_client


def _upstream(clock: FakeClock, budget: Any, max_wait: float, **cfg: Any) -> tuple[FakeUpstream, list[float]]:
    seen: list[float] = []

    def answer(call: Call, model: str) -> Answer:
        seen.append(clock.monotonic())
        return Reply(200, orjson.dumps({"at": clock.monotonic()}))

    config = UpstreamConfig(budget=budget, budget_max_wait=max_wait, **cfg)
    return FakeUpstream("hf", config=config, default=answer), seen


async def _client(up: FakeUpstream, clock: FakeClock, store: Store | None = None,
                  **settings: Any) -> AsyncIterator[TestClient]:
    s = load_settings(None, cache={"enabled": False, "coalesce": False}, **settings)
    async with gateway_client(s, clock=clock, store=store or MemoryStore(clock), upstreams={"hf": up}) as client:
        yield client


def _post(client: TestClient, i: int = 0) -> Awaitable[Any]:
    return client.post("/v1/chat/completions", json=chat(text=f"q{i}"))


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def _most_in_any_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + width - 1e-9) for t in times)


async def test_fifty_queued_at_ten_per_second_never_exceed_the_budget() -> None:
    clock = FakeClock(autojump=True)
    up, seen = _upstream(clock, "10/s", max_wait=10)
    async for client in _client(up, clock):
        start = clock.monotonic()
        answers = await asyncio.gather(*(_post(client, i) for i in range(50)))
        assert [r.status for r in answers] == [200] * 50  # every request gets an answer
        assert len(seen) == 50
        assert _most_in_any_window(seen, 1.0) <= 10
        for second in range(5):  # per whole second since the start, as a dashboard would count
            assert sum(1 for t in seen if start + second <= t < start + second + 1) <= 10
        assert max(seen) - start == pytest.approx(4.9, abs=0.05)  # and no slower than the budget


async def test_past_the_max_wait_the_client_gets_429_with_retry_after() -> None:
    clock = FakeClock()
    up, seen = _upstream(clock, "1/s", max_wait=2)
    async for client in _client(up, clock):
        assert (await _post(client)).status == 200
        second = asyncio.ensure_future(_post(client, 2))
        await _until(lambda: clock.sleepers == 1)
        third = asyncio.ensure_future(_post(client, 3))
        await _until(lambda: clock.sleepers == 2)
        r = await _post(client, 4)  # would need 3 s in the queue: over the 2 s allowed
        assert r.status == 429
        assert r.headers["Retry-After"] == "1" and r.headers["retry-after-ms"] == "1000"
        assert "budget of upstream 'hf'" in (await r.json())["error"]["message"]
        clock.advance(1)
        assert (await second).status == 200
        clock.advance(1)
        assert (await third).status == 200
        assert [t - seen[0] for t in seen] == [0, 1, 2]
        assert up.calls[1][0].limiting.shaping_wait == 1.0
        assert up.calls[1][0].limiting.outcomes == [("outbound", "allowed")]


async def test_a_request_abandoned_in_the_queue_gives_its_slot_back() -> None:
    clock = FakeClock()
    up, seen = _upstream(clock, "1/s", max_wait=30)
    async for client in _client(up, clock):
        assert (await _post(client)).status == 200
        gone = asyncio.ensure_future(_post(client, 1))
        await _until(lambda: clock.sleepers == 1)
        gone.cancel()  # the client hangs up while queued
        await _until(lambda: clock.sleepers == 0)
        for _ in range(20):  # let the refund, a task of its own, run: loop turns, no wall time
            await asyncio.sleep(0)
        nxt = asyncio.ensure_future(_post(client, 2))
        await _until(lambda: clock.sleepers == 1)
        clock.advance(1)  # the freed slot: 1 s after the first call, not 2
        assert (await nxt).status == 200
        assert len(seen) == 2


async def test_replicas_sharing_a_store_share_the_budget() -> None:
    clock = FakeClock(autojump=True)
    store = MemoryStore(clock)  # stands for the Redis both replicas talk to
    up1, seen1 = _upstream(clock, "5/s", max_wait=10)
    up2, seen2 = _upstream(clock, "5/s", max_wait=10)
    async for c1 in _client(up1, clock, store):
        async for c2 in _client(up2, clock, store):
            answers = await asyncio.gather(*(_post(c, i) for i in range(10) for c in (c1, c2)))
            assert {r.status for r in answers} == {200}
    assert _most_in_any_window(seen1 + seen2, 1.0) <= 5


async def test_each_retry_attempt_is_paced_too() -> None:
    clock = FakeClock(autojump=True)
    up, seen = _upstream(clock, "1/s", max_wait=10, retry=RetryConfig(max_attempts=3, base=0.01, cap=0.01))

    def fail_once(call: Call, model: str) -> Answer:
        seen.append(clock.monotonic())
        raise UpstreamStatusError("busy", status=503)

    up.script(fail_once)
    async for client in _client(up, clock):
        assert (await _post(client)).status == 200
        assert len(seen) == 2 and seen[1] - seen[0] == pytest.approx(1.0)  # not the 0.01 s backoff


@pytest.mark.parametrize("mode, status", [("fail_open", 200), ("fail_closed", 503)])
async def test_store_trouble_follows_the_config(mode: str, status: int) -> None:
    clock = FakeClock()
    up, seen = _upstream(clock, "1/s", max_wait=10)
    async for client in _client(up, clock, BrokenStore(clock), ratelimit={"on_store_error": mode}):
        answers = [await _post(client, i) for i in range(3)]
        assert {r.status for r in answers} == {status}
        if status == 503:
            assert answers[0].headers["Retry-After"] == "1" and seen == []
        else:
            assert up.calls[0][0].limiting.shaping_store_error is True


async def test_upstreams_without_a_budget_are_not_paced() -> None:
    clock = FakeClock()
    up, seen = _upstream(clock, None, max_wait=10)
    async for client in _client(up, clock):
        answers = await asyncio.gather(*(_post(client, i) for i in range(20)))
        assert {r.status for r in answers} == {200} and len(set(seen)) == 1
