"""Streams that wait for a cold model: keep-alive comments, then the real events; the 200 trade-off; clean closing."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.call import Answer, Call, StreamReply
from gateway.core.clock import FakeClock
from gateway.core.errors import GatewayError, ModelLoading, UpstreamStatusError
from gateway.policies.resilience.keepalive import Progress, commit_when_slow
from gateway.store.protocol import key
from tests.support.stage_kit import ColdModel, Rig, drain, fake, settings


def _rig(seconds: float, **resilience: object) -> tuple[Rig, ColdModel]:
    clock = FakeClock(autojump=True)
    cold = ColdModel(clock, seconds)
    return Rig(settings(resilience=resilience), {"hf": fake(cold=cold)}, clock=clock), cold


async def test_a_parked_stream_sends_keepalive_comments_then_the_real_events() -> None:
    rig, _ = _rig(25, keepalive_interval=10)
    call = rig.call(stream=True)
    answer = await rig.run(call)
    assert isinstance(answer, StreamReply)
    events = await drain(answer)
    assert events[0] == b": loading model, about 15 s left\n\n"
    assert events[1] == b": loading model, about 5 s left\n\n"
    assert events[2:] == [b'data:{"token":{"text":"a"}}\n\n', b'data:{"token":{"text":"b"}}\n\n']
    assert call.resilience.keepalives == 2


async def test_a_short_wait_keeps_a_plain_stream_with_real_status_codes() -> None:
    rig, _ = _rig(4, keepalive_interval=10)
    answer = await rig.run(rig.call(stream=True))
    assert (await drain(answer))[0].startswith(b"data:")

    rig, _ = _rig(400, keepalive_interval=10)
    with pytest.raises(ModelLoading):
        await rig.run(rig.call(stream=True, timeout=60))  # known to be too long: an HTTP 503


async def test_a_committed_stream_reports_a_later_failure_in_band() -> None:
    rig, cold = _rig(20, keepalive_interval=5)
    original = cold.__call__

    def refuse_after_load(call: Call, model: str) -> Answer:
        if rig.clock.monotonic() >= cold.ready_at:
            raise UpstreamStatusError("Input validation error", status=422, error_type="validation")
        return original(call, model)

    rig.upstreams["hf"].default = refuse_after_load
    answer = await rig.run(rig.call(stream=True))
    assert isinstance(answer, StreamReply) and answer.first.startswith(b": loading model")
    with pytest.raises(GatewayError):
        await drain(answer)


async def test_closing_a_parked_stream_cancels_its_wait_without_calling_upstream() -> None:
    rig, cold = _rig(60, keepalive_interval=5)
    answer = await rig.run(rig.call(stream=True))
    assert isinstance(answer, StreamReply)
    for hook in answer.on_close:  # what the relay does when the client goes away
        await hook()  # type: ignore[misc]
    await rig.clock.sleep(100)
    assert len(cold.times) == 1
    assert await rig.store.get(key("gw", "cold", "hf|org/model", "probe")) is None


async def test_a_stream_ready_at_the_instant_the_client_leaves_is_closed_exactly_once() -> None:
    closed: list[str] = []

    async def ready() -> Answer:
        return StreamReply(first=b"data: 1\n\n", rest=_one_more(), on_close=[lambda: closed.append("closed")])

    call = Rig(settings(), {"hf": fake()}).call(stream=True)
    outer = asyncio.ensure_future(commit_when_slow(ready(), Progress(FakeClock()), 10.0, call))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the work finished; the stage has not resumed yet
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert closed == ["closed"]


async def test_a_relayed_stream_behind_keepalives_is_closed_once() -> None:
    rig, _ = _rig(25, keepalive_interval=10)
    closed: list[str] = []
    cold_until = rig.clock.monotonic() + 25

    def cold_then_stream(call: Call, model: str) -> Answer:
        if rig.clock.monotonic() < cold_until:
            left = cold_until - rig.clock.monotonic()
            raise ModelLoading("Model org/model is currently loading", estimated_time=left)
        return StreamReply(first=b"data: 1\n\n", rest=_one_more(), on_close=[lambda: closed.append("closed")])

    rig.upstreams["hf"].default = cold_then_stream
    answer = await rig.run(rig.call(stream=True))
    assert isinstance(answer, StreamReply) and answer.first.startswith(b":")
    events = await drain(answer)
    assert events[-2:] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert closed == ["closed"]


async def _one_more():  # type: ignore[no-untyped-def]
    yield b"data: 2\n\n"
