"""Coalescing within one process: one upstream call per key in flight; answers, errors and takeovers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.core.call import Answer, Call, Flags, Op, Reply
from gateway.core.clock import FakeClock
from gateway.core.errors import RateLimited, UpstreamStatusError, UpstreamTimeout
from gateway.store.memory import MemoryStore
from tests.support.cache_kit import CHAT, GatedUpstream, Replica, chat_body, drain, settings, stream_reply


def _replica(cache: dict[str, Any] | None = None) -> Replica:
    clock = FakeClock(autojump=True)
    return Replica(settings(cache), MemoryStore(clock), clock, GatedUpstream())


async def _together(r: Replica, calls: list[Call]) -> list[Answer | BaseException]:
    """Start every call while the upstream is held, then let it answer."""
    r.upstream.gate.clear()
    tasks = [asyncio.create_task(r.run(c)) for c in calls]
    await _settle()
    r.upstream.gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_identical_concurrent_requests_share_one_upstream_call() -> None:
    r = _replica()
    calls = [r.call() for _ in range(50)]
    answers = await _together(r, calls)
    assert r.upstream.arrived == 1
    bodies = {a.body for a in answers if isinstance(a, Reply)}
    assert len(bodies) == 1 and len(answers) == 50
    outcomes = sorted(c.cache for c in calls)
    assert outcomes == ["coalesced"] * 49 + ["miss"]
    assert all(c.reply_headers["X-Cache"] == c.cache.upper() for c in calls)
    later = r.call()
    await r.run(later)
    assert later.cache == "hit" and r.upstream.arrived == 1


async def test_a_leaders_failure_reaches_each_follower_once_and_is_not_retried() -> None:
    r = _replica()
    r.upstream.script(UpstreamStatusError("upstream exploded", status=500, body=b'{"error":"x"}'))
    calls = [r.call() for _ in range(10)]
    results = await _together(r, calls)
    assert r.upstream.arrived == 1
    assert all(isinstance(e, UpstreamStatusError) and e.status == 500 for e in results)
    assert len({id(e) for e in results}) == 10  # each follower raises its own instance
    after = r.call()
    await r.run(after)
    assert after.cache == "miss" and r.upstream.arrived == 2  # the failure was not cached


async def test_a_follower_takes_over_when_the_leaders_client_leaves() -> None:
    r = _replica()
    r.upstream.gate.clear()
    leader = asyncio.create_task(r.run(r.call()))
    await _settle()
    followers = [asyncio.create_task(r.run(r.call())) for _ in range(5)]
    await _settle()
    leader.cancel()
    await _settle()
    r.upstream.gate.set()
    answers = await asyncio.gather(*followers)
    assert r.upstream.arrived == 2  # the abandoned call, then the one the new leader made
    assert len({a.body for a in answers if isinstance(a, Reply)}) == 1


async def test_an_error_of_the_leaders_own_request_is_not_handed_on() -> None:
    r = _replica()
    r.upstream.script(RateLimited("tenant over its limit", retry_after=3))
    results = await _together(r, [r.call() for _ in range(4)])
    assert sum(isinstance(x, RateLimited) for x in results) == 1
    assert sum(isinstance(x, Reply) for x in results) == 3
    assert r.upstream.arrived == 2


async def test_only_cacheable_non_stream_requests_that_read_and_write_are_coalesced() -> None:
    r = _replica()
    sampled = [r.call(model=CHAT, op=Op.CHAT, body=chat_body(0.7)) for _ in range(3)]
    await _together(r, sampled)
    assert r.upstream.arrived == 3
    fresh = [r.call(flags=Flags(no_cache=True)) for _ in range(3)]
    await _together(r, fresh)
    assert r.upstream.arrived == 6
    events = [b"data: {\"t\":1}\n\n", b"data: [DONE]\n\n"]
    r.upstream.script(*(stream_reply(events) for _ in range(2)))
    streams = [r.call(model=CHAT, op=Op.CHAT, body=chat_body(0, stream=True), stream=True) for _ in range(2)]
    answers = await _together(r, streams)
    assert r.upstream.arrived == 8
    for a in answers:
        assert not isinstance(a, BaseException)
        assert await drain(a) == events


async def test_coalescing_can_be_switched_off() -> None:
    r = _replica({"coalesce": False})
    await _together(r, [r.call() for _ in range(3)])
    assert r.upstream.arrived == 3


async def test_different_tenants_do_not_share_a_flight() -> None:
    r = _replica()
    results = await _together(r, [r.call(tenant=t) for t in ("a", "b")])
    assert r.upstream.arrived == 2
    assert len({x.body for x in results if isinstance(x, Reply)}) == 2


async def test_a_timeout_past_the_leaders_own_deadline_is_not_handed_on() -> None:
    clock = FakeClock()  # moved by hand: only the leader's deadline passes
    r = Replica(settings(), MemoryStore(clock), clock, GatedUpstream())
    r.upstream.gate.clear()
    r.upstream.script(UpstreamTimeout("no answer within the request's deadline"))
    lead = r.call()
    lead.deadline = clock.monotonic() + 10  # e.g. a client that sent X-Gateway-Timeout: 10
    tasks = [asyncio.create_task(r.run(c)) for c in (lead, r.call(), r.call())]
    await _settle()
    clock.advance(20)
    r.upstream.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], UpstreamTimeout)
    assert all(isinstance(x, Reply) for x in results[1:]) and r.upstream.arrived == 2


async def test_a_store_error_from_further_down_is_not_mistaken_for_ours() -> None:
    from gateway.store import StoreError

    r = _replica()
    r.upstream.script(StoreError("redis: a stage below failed"))
    with pytest.raises(StoreError):
        await r.run(r.call())
    assert r.upstream.arrived == 1  # not called a second time
