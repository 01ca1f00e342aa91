"""The retry stage: what is retried, how long it waits (Retry-After exactly, else full jitter), the deadline."""

from __future__ import annotations

import random

import pytest

from gateway.core.call import Reply
from gateway.core.errors import (
    BadRequest,
    ModelLoading,
    UpstreamConnectTimeout,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.core.upstream_config import RetryConfig
from gateway.policies.resilience.retry import backoff, retry_reason
from gateway.policies.resilience.target import Target
from gateway.upstream.status_errors import status_error
from gateway.upstream.terminal import UpstreamTerminal
from tests.support.stage_kit import MODEL, Rig, drain, fake, settings, stream_of


def _rig(**retry: object) -> Rig:
    return Rig(settings(), {"hf": fake(retry=retry or {"max_attempts": 3, "base": 0.5, "cap": 8.0})})


def _status(status: int, headers: dict[str, str] | None = None) -> UpstreamStatusError:
    return status_error(status, headers or {}, b'{"error":"nope"}', now=1_700_000_000.0, upstream="hf",
                        retry_after_cap=120.0)


def _connect_timeout() -> UpstreamTimeout:
    return UpstreamConnectTimeout("upstream hf could not be reached in time")


async def test_429_with_retry_after_waits_exactly_that_then_succeeds() -> None:
    rig = _rig()
    rig.upstreams["hf"].script(_status(429, {"retry-after": "3"}))
    call = rig.call()
    start = rig.clock.monotonic()
    answer = await rig.run(call)
    assert isinstance(answer, Reply) and answer.status == 200
    assert len(rig.upstreams["hf"].calls) == 2
    assert rig.clock.monotonic() - start == pytest.approx(3.0)
    assert call.retries == 1 and call.waited_seconds == pytest.approx(3.0)
    assert call.resilience.retry_reasons == ["429"]


async def test_retry_after_is_honoured_on_every_attempt_for_429_and_503_alike() -> None:
    rig = _rig(max_attempts=4)
    rig.upstreams["hf"].script(_status(503, {"retry-after": "2"}), _status(429, {"retry-after-ms": "300"}),
                               _status(429, {"retry-after": "1"}))
    call = rig.call()
    start = rig.clock.monotonic()
    await rig.run(call)
    assert rig.clock.monotonic() - start == pytest.approx(3.3)
    assert call.retries == 3 and call.resilience.retry_reasons == ["5xx", "429", "429"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 424])
async def test_other_4xx_are_never_retried(status: int) -> None:
    rig = _rig()
    rig.upstreams["hf"].script(_status(status))
    with pytest.raises(UpstreamStatusError) as info:
        await rig.run(rig.call())
    assert info.value.status == status
    assert len(rig.upstreams["hf"].calls) == 1


@pytest.mark.parametrize("exc", [BadRequest("bad"), UpstreamProtocolError("garbage"),
                                 UpstreamTimeout("read timed out"), _status(500)])
async def test_non_transient_failures_are_not_retried(exc: Exception) -> None:
    rig = _rig()
    rig.upstreams["hf"].script(exc)
    with pytest.raises(type(exc)):
        await rig.run(rig.call())
    assert len(rig.upstreams["hf"].calls) == 1


@pytest.mark.parametrize("exc, reason", [
    (_status(502), "5xx"), (_status(504), "5xx"), (UpstreamUnreachable("refused"), "connect"),
    (_connect_timeout(), "timeout"),
])
async def test_transient_failures_are_retried(exc: Exception, reason: str) -> None:
    rig = _rig()
    rig.upstreams["hf"].script(exc)
    call = rig.call()
    assert (await rig.run(call)).status == 200  # type: ignore[union-attr]
    assert call.resilience.retry_reasons == [reason]


def test_a_loading_model_is_not_the_retry_stages_business() -> None:
    assert retry_reason(ModelLoading("loading", estimated_time=20)) is None


async def test_attempts_are_capped_and_the_last_error_is_answered() -> None:
    rig = _rig(max_attempts=3)
    rig.upstreams["hf"].script(_status(502), _status(502), _status(503))
    with pytest.raises(UpstreamStatusError) as info:
        await rig.run(rig.call())
    assert info.value.status == 503
    assert len(rig.upstreams["hf"].calls) == 3


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryConfig(max_attempts=10, base=0.5, cap=8.0)
    ours, reference = random.Random(1234), random.Random(1234)
    waits = [backoff(n, policy, ours.random) for n in range(1, 8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert waits == [reference.random() * c for c in ceilings]
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))


async def test_backoff_waits_come_from_the_injected_random_source() -> None:
    waited = []
    for _ in range(2):
        rig = _rig(max_attempts=3, base=1.0, cap=10.0)
        rig.upstreams["hf"].script(_status(502), _status(502))
        call = rig.call()
        await rig.run(call)
        waited.append(call.waited_seconds)
    expected = random.Random(7)
    assert waited[0] == waited[1] == pytest.approx(expected.random() * 1.0 + expected.random() * 2.0)


async def test_a_wait_past_the_deadline_answers_now_with_the_upstreams_retry_after() -> None:
    rig = _rig()
    rig.upstreams["hf"].script(_status(429, {"retry-after": "10"}))
    call = rig.call(timeout=5.0)
    start = rig.clock.monotonic()
    with pytest.raises(UpstreamStatusError) as info:
        await rig.run(call)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "10"
    assert rig.clock.monotonic() - start < 5.0
    assert len(rig.upstreams["hf"].calls) == 1 and call.retries == 0


async def test_a_backoff_past_the_deadline_still_tells_the_client_when_to_come_back() -> None:
    rig = _rig(base=4.0, cap=4.0)
    rig.stages[2].rand = lambda: 0.9  # type: ignore[attr-defined]  # next wait 3.6 s
    rig.upstreams["hf"].script(_status(502))
    with pytest.raises(UpstreamStatusError) as info:
        await rig.run(rig.call(timeout=2.0))
    assert info.value.headers["Retry-After"] == "4"


async def test_a_returned_stream_is_never_retried_even_if_it_fails_later() -> None:
    async def broken():  # type: ignore[no-untyped-def]
        yield b'data:{"token":{"text":"a"}}\n\n'
        raise UpstreamProtocolError("upstream hf dropped the stream")

    rig = _rig()
    first = stream_of(b'data:{"token":{"text":"x"}}\n\n')
    first.rest = broken()
    rig.upstreams["hf"].script(first)
    answer = await rig.run(rig.call(stream=True))
    with pytest.raises(UpstreamProtocolError):
        await drain(answer)
    assert len(rig.upstreams["hf"].calls) == 1


async def test_with_another_deployment_left_a_long_wait_hands_over_at_once() -> None:
    rig = _rig()
    rig.upstreams["hf"].script(_status(429, {"retry-after": "30"}))
    call = rig.call()
    call.resilience.handoff = True
    with pytest.raises(UpstreamStatusError):
        await rig.stages[2](call, UpstreamTerminal(rig.clock))
    assert len(rig.upstreams["hf"].calls) == 1


async def test_an_open_circuit_stops_the_retries() -> None:
    rig = Rig(settings(), {"hf": fake(retry={"max_attempts": 5}, breaker_failures=2)})
    rig.upstreams["hf"].script(_status(502), _status(502), _status(502))
    with pytest.raises(UpstreamStatusError):
        await rig.run(rig.call())
    assert len(rig.upstreams["hf"].calls) == 2
    assert rig.breakers.state(Target("hf", MODEL)) == "open"
