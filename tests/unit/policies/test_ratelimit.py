"""The [ratelimit] stage through the real app: admission, 429s with exact waits, headers, scopes, store trouble."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.clock import FakeClock
from gateway.core.config import Settings
from gateway.policies.limits.buckets import Bucket, decide
from gateway.store.guard import StoreGuard
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store, StoreError
from gateway.upstream.fake import FakeUpstream
from tests.support.held_replies import held_store
from tests.support.limits_kit import A, B, BrokenStore, chat, settings
from tests.support.serving import gateway_client

FIVE_PER_TEN = {"team-a": {"limits": {"requests": "5/10s"}}}


class Gw:
    """An app on a fake clock with a scripted upstream."""

    def __init__(self, client: TestClient, clock: FakeClock, up: FakeUpstream) -> None:
        self.client, self.clock, self.up = client, clock, up

    async def chat(self, headers: dict[str, str] = A, **body: Any) -> Any:
        return await self.client.post("/v1/chat/completions", json=chat(**body), headers=headers)


async def _gw(s: Settings, store: Store | None = None, clock: FakeClock | None = None) -> AsyncIterator[Gw]:
    clock = clock or FakeClock()
    up = FakeUpstream("hf")
    async with gateway_client(
        s, clock=clock, store=store or MemoryStore(clock), upstreams={"hf": up}, cancel=False
    ) as client:
        yield Gw(client, clock, up)


@pytest.fixture
async def gw() -> AsyncIterator[Gw]:
    async for g in _gw(settings(FIVE_PER_TEN)):
        yield g


async def test_five_per_ten_seconds_eight_at_once(gw: Gw) -> None:
    answers = await asyncio.gather(*(gw.chat() for _ in range(8)))
    assert sorted(r.status for r in answers) == [200] * 5 + [429] * 3
    assert len(gw.up.calls) == 5
    for r in answers:
        if r.status == 429:
            # one token refills at 0.5/s: the true wait is 2.000 s, and the headers say exactly that
            assert abs(float(r.headers["retry-after-ms"]) / 1000 - 2.0) <= 0.1
            assert r.headers["Retry-After"] == "2"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
            assert r.headers["x-ratelimit-limit-requests"] == "5"
            body = await r.json()
            assert body["error"]["type"] == "rate_limit_error" and "team-a" in body["error"]["message"]
    gw.clock.advance(1.99)
    assert (await gw.chat()).status == 429
    gw.clock.advance(0.01)
    assert (await gw.chat()).status == 200
    assert (await gw.chat()).status == 429


async def test_successful_answers_carry_the_headers(gw: Gw) -> None:
    first = await gw.chat()
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-reset-requests"] == "2s"  # one token back to full at 0.5/s
    second = await gw.chat()
    assert second.headers["x-ratelimit-remaining-requests"] == "3"
    assert second.headers["x-ratelimit-reset-requests"] == "4s"
    assert "x-ratelimit-limit-tokens" not in second.headers


async def test_hf_routes_get_429_in_their_dialect(gw: Gw) -> None:
    for _ in range(5):
        await gw.client.post("/models/org/m", json={"inputs": "x"}, headers=A)
    r = await gw.client.post("/models/org/m", json={"inputs": "x"}, headers=A)
    assert r.status == 429 and r.headers["Retry-After"] == "2"
    assert isinstance((await r.json())["error"], str)


async def test_tenants_do_not_share_buckets() -> None:
    async for gw in _gw(
        settings({"team-a": {"limits": {"requests": "1/minute"}}, "team-b": {"limits": {"requests": "1/minute"}}})
    ):
        assert (await gw.chat(A)).status == 200
        assert (await gw.chat(A)).status == 429
        assert (await gw.chat(B)).status == 200


async def test_per_tenant_and_model() -> None:
    tenants = {"team-a": {"model_limits": {"org/a": {"requests": "2/minute"}}}}
    async for gw in _gw(settings(tenants, models=[{"name": "org/a"}, {"name": "*"}])):
        assert [(await gw.chat(model="org/a")).status for _ in range(3)] == [200, 200, 429]
        assert (await gw.chat(model="org/b")).status == 200
        assert (await gw.chat(B, model="org/a")).status == 200
        r = await gw.chat(model="org/a")
        assert "(requests: 2/60s)" in (await r.json())["error"]["message"]
        assert r.headers["Retry-After"] == "30"


async def test_per_model_across_tenants_refunds_the_tenant_when_the_model_says_no() -> None:
    tenants = {"team-a": {"limits": {"requests": "2/minute"}}}
    models = [{"name": "org/hot", "limits": {"requests": "1/minute"}}, {"name": "*"}]
    async for gw in _gw(settings(tenants, models=models)):
        assert (await gw.chat(B, model="org/hot")).status == 200
        r = await gw.chat(A, model="org/hot")
        assert r.status == 429 and "model 'org/hot'" in (await r.json())["error"]["message"]
        assert r.headers["Retry-After"] == "60"
        # team-a's own bucket was paid back: two requests to another model still pass
        ok = await gw.chat(A, model="org/cold")
        assert ok.status == 200 and ok.headers["x-ratelimit-remaining-requests"] == "1"
        assert (await gw.chat(A, model="org/cold")).status == 200


async def test_default_limits_cover_tenants_without_their_own_and_an_open_gateway() -> None:
    s = settings(ratelimit={"default": {"requests": "2/minute"}})
    s.keys.clear()  # no keys: everyone is "anonymous"
    async for gw in _gw(s):
        assert [(await gw.chat({})).status for _ in range(3)] == [200, 200, 429]
        r = await gw.chat({})
        assert "tenant 'anonymous'" in (await r.json())["error"]["message"]


async def test_decisions_are_recorded_for_metrics(gw: Gw) -> None:
    await gw.chat()
    call = gw.up.calls[0][0]
    assert call.limiting.outcomes == [("tenant", "allowed")]
    assert call.tenant == "team-a"


async def test_disabled_means_no_buckets_and_no_headers() -> None:
    async for gw in _gw(settings(FIVE_PER_TEN, ratelimit={"enabled": False})):
        answers = [await gw.chat() for _ in range(8)]
        assert {r.status for r in answers} == {200}
        assert "x-ratelimit-limit-requests" not in answers[0].headers


@pytest.mark.parametrize("hang", [False, True])
async def test_store_down_fail_open_admits_and_says_so(hang: bool) -> None:
    # A store that never answers (and has no stall detection of its own) holds the decision until the
    # request's deadline; then fail_open admits, counted. One that fails says so at once.
    clock = FakeClock()
    s = settings(FIVE_PER_TEN, request_timeout=0.05 if hang else 300.0)
    async for gw in _gw(s, BrokenStore(clock, hang=hang), clock):
        answers = [await gw.chat() for _ in range(7)]
        assert {r.status for r in answers} == {200}
        call = gw.up.calls[-1][0]
        assert call.limiting.store_error is True
        assert call.limiting.outcomes == [("tenant", "error_open")]


async def test_store_down_fail_closed_answers_503_with_retry_after() -> None:
    clock = FakeClock()
    store = BrokenStore(clock)
    s = settings(FIVE_PER_TEN, ratelimit={"on_store_error": "fail_closed", "store_retry_after": 3})
    async for gw in _gw(s, store, clock):
        r = await gw.chat()
        assert r.status == 503 and r.headers["Retry-After"] == "3"
        assert (await r.json())["error"]["code"] == "store_unavailable"
        assert gw.up.calls == []
        store.broken = False  # the store is back: limits apply again at once
        assert [(await gw.chat()).status for _ in range(6)] == [200] * 5 + [429]


async def test_fractional_refill_over_many_small_steps(gw: Gw) -> None:
    for _ in range(5):
        await gw.chat()
    for _ in range(4):  # 4 x 0.5 s = 2 s: one whole token made of four quarters
        gw.clock.advance(0.5)
    assert (await gw.chat()).status == 200


async def test_an_outage_is_logged_once_per_cause_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    store = BrokenStore(clock)
    guard = StoreGuard("rate limiter", now=clock.monotonic)
    bucket = [Bucket("gw:v1:rl:{t}:req", 1.0, 5.0)]
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        for _ in range(3):
            with pytest.raises(StoreError):
                await guard.run(decide(store, bucket))
        store.error = StoreError("redis: NOPERM this user has no permissions to run the 'time' command", "noperm")
        for _ in range(2):
            with pytest.raises(StoreError):
                await guard.run(decide(store, bucket))
        store.broken = False
        assert (await guard.run(decide(store, bucket))).allowed  # one answer right after failures: not over yet
        clock.advance(guard.quiet)
        for _ in range(3):
            assert (await guard.run(decide(store, bucket))).allowed
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "failing (LOST" in messages[0] and "failing (NOPERM" in messages[1] and "'time'" in messages[1]
    assert "answers again" in messages[2]
    assert guard.errors == 5


@pytest.mark.parametrize("on_store_error", ["fail_open", "fail_closed"])
async def test_a_late_take_is_waited_for_and_decides_exactly(on_store_error: str) -> None:
    # The take's reply is on its way back for a long while (a loaded event loop, a busy Redis): a late
    # answer is still the answer. The call waits for it and is admitted because it paid; the next one,
    # the bucket empty, is refused. Nothing is admitted for free, nothing refunded that was paid.
    tenants = {"team-a": {"limits": {"requests": "1/minute"}}}
    models = [{"name": "org/hot", "limits": {"requests": "2/minute"}}, {"name": "*"}]
    s = settings(tenants, models=models, ratelimit={"on_store_error": on_store_error})
    store, held = held_store()
    async for gw in _gw(s, store):
        assert (await gw.chat(B, model="org/hot")).status == 200  # the model is known up: no cold-start read
        held.hold()
        first = asyncio.ensure_future(gw.chat(model="org/hot"))
        await held.ran.wait()  # the take ran in Redis; its reply is held
        for _ in range(20):
            await asyncio.sleep(0)
        assert not first.done()
        held.release()
        answered = await first
        assert answered.status == 200 and answered.headers["x-ratelimit-remaining-requests"] == "0"
        second = await gw.chat(model="org/hot")
        assert second.status == 429
        assert gw.up.calls[-1][0].limiting.store_error is False
