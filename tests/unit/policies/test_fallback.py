"""Fallback across deployments: loading, failing and open-circuited deployments hand the request on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.call import Answer, Call, Reply
from gateway.core.clock import FakeClock
from gateway.core.errors import ServiceUnavailable, UpstreamStatusError
from gateway.policies.resilience.target import Target
from gateway.upstream.fake import FakeUpstream
from tests.support.stage_kit import MODEL, ColdModel, Rig, fake, settings

PRIMARY = Target("tgi", "org/model-dedicated")
ROUTE = [{"name": MODEL, "deployments": [{"upstream": "tgi", "model": "org/model-dedicated"}, {"upstream": "hf"}]}]


def _served_by(answer: Answer) -> str:
    assert isinstance(answer, Reply)
    return str(orjson.loads(answer.body)["model"])


def _rig(primary: FakeUpstream, secondary: FakeUpstream | None = None, clock: FakeClock | None = None,
         **resilience: Any) -> Rig:
    cfg = settings(upstreams={"tgi": {"kind": "tgi", "base_url": "http://tgi.test", "token_env": None},
                              "hf": {"kind": "hf", "base_url": "http://hf.test", "token_env": None}},
                   models=ROUTE, resilience=resilience)
    return Rig(cfg, {"tgi": primary, "hf": secondary or fake("hf")}, clock=clock or primary_clock(primary))


def primary_clock(up: FakeUpstream) -> FakeClock:
    cold = up.default
    return cold.clock if isinstance(cold, ColdModel) else FakeClock(autojump=True)  # type: ignore[return-value]


def _status(status: int, **kw: Any) -> UpstreamStatusError:
    return UpstreamStatusError("upstream says no", status=status, **kw)


async def test_a_cold_primary_hands_over_to_the_secondary_while_it_warms_up() -> None:
    clock = FakeClock(autojump=True)
    cold = ColdModel(clock, 300)
    rig = _rig(fake("tgi", "tgi", cold=cold), clock=clock, probe_interval=30)
    first = rig.call()
    assert _served_by(await rig.run(first)) == MODEL  # the serverless secondary
    assert first.resilience.fallbacks == 1 and len(cold.times) == 1
    second = rig.call()
    assert _served_by(await rig.run(second)) == MODEL
    assert len(cold.times) == 1  # the loading primary was skipped without a call
    await clock.sleep(30)
    assert _served_by(await rig.run(rig.call())) == MODEL
    assert len(cold.times) == 2  # one probe once due, still loading: secondary again
    await clock.sleep(300)
    back = rig.call()
    assert _served_by(await rig.run(back)) == "org/model-dedicated"  # warm again: back to the primary
    assert back.resilience.fallbacks == 0


async def test_the_primarys_circuit_opens_after_n_failures_and_closes_after_it_recovers() -> None:
    clock = FakeClock(autojump=True)
    primary = fake("tgi", "tgi", retry={"max_attempts": 1}, breaker_failures=3, breaker_cooldown=30)
    rig = _rig(primary, clock=clock)
    primary.script(*[_status(502) for _ in range(3)])
    for _ in range(3):
        assert _served_by(await rig.run(rig.call())) == MODEL
    assert rig.breakers.state(PRIMARY) == "open" and len(primary.calls) == 3
    for _ in range(5):
        assert _served_by(await rig.run(rig.call())) == MODEL
    assert len(primary.calls) == 3  # open: not called at all
    await clock.sleep(30)
    assert rig.breakers.state(PRIMARY) == "half_open"
    assert _served_by(await rig.run(rig.call())) == "org/model-dedicated"  # the one trial, and it works
    assert rig.breakers.state(PRIMARY) == "closed"
    assert _served_by(await rig.run(rig.call())) == "org/model-dedicated"


async def test_a_failed_trial_keeps_the_circuit_open_and_the_request_still_gets_served() -> None:
    clock = FakeClock(autojump=True)
    primary = fake("tgi", "tgi", retry={"max_attempts": 1}, breaker_failures=1, breaker_cooldown=10)
    rig = _rig(primary, clock=clock)
    primary.script(_status(503), _status(503))
    await rig.run(rig.call())
    await clock.sleep(10)
    assert _served_by(await rig.run(rig.call())) == MODEL
    assert rig.breakers.state(PRIMARY) == "open" and len(primary.calls) == 2


async def test_a_client_error_is_answered_as_it_is() -> None:
    primary = fake("tgi", "tgi")
    secondary = fake("hf")
    rig = _rig(primary, secondary)
    primary.script(_status(422, error_type="validation"))
    with pytest.raises(UpstreamStatusError) as info:
        await rig.run(rig.call())
    assert info.value.status == 422 and not secondary.calls


async def test_a_primary_asking_for_a_long_wait_hands_over_at_once() -> None:
    clock = FakeClock(autojump=True)
    primary = fake("tgi", "tgi")
    rig = _rig(primary, clock=clock)
    primary.script(_status(429, retry_after=30))
    start = clock.monotonic()
    assert _served_by(await rig.run(rig.call())) == MODEL
    assert clock.monotonic() - start < 1


async def test_a_short_retry_on_the_primary_comes_before_the_fallback() -> None:
    clock = FakeClock(autojump=True)
    primary = fake("tgi", "tgi")
    rig = _rig(primary, clock=clock)
    primary.script(_status(503, retry_after=1))
    call = rig.call()
    assert _served_by(await rig.run(call)) == "org/model-dedicated"
    assert call.retries == 1 and call.resilience.fallbacks == 0


async def test_when_everything_is_loading_the_request_waits_for_the_first_ready() -> None:
    clock = FakeClock(autojump=True)
    slow, quick = ColdModel(clock, 100), ColdModel(clock, 10)
    rig = _rig(fake("tgi", "tgi", cold=slow), fake("hf", cold=quick), clock=clock)
    start = clock.monotonic()
    assert _served_by(await rig.run(rig.call())) == MODEL
    assert clock.monotonic() - start == pytest.approx(10)
    assert len(slow.times) == 1


async def test_every_circuit_open_is_a_503_with_retry_after() -> None:
    clock = FakeClock(autojump=True)
    primary = fake("tgi", "tgi", retry={"max_attempts": 1}, breaker_failures=1, breaker_cooldown=20)
    secondary = fake("hf", retry={"max_attempts": 1}, breaker_failures=1, breaker_cooldown=40)
    rig = _rig(primary, secondary, clock=clock)
    primary.script(_status(502))
    secondary.script(_status(502))
    with pytest.raises(UpstreamStatusError):
        await rig.run(rig.call())
    with pytest.raises(ServiceUnavailable) as info:
        await rig.run(rig.call())
    assert info.value.headers["Retry-After"] == "20"
    assert len(primary.calls) == len(secondary.calls) == 1


async def test_a_single_deployment_with_an_open_circuit_fails_fast() -> None:
    clock = FakeClock(autojump=True)
    only = fake("hf", retry={"max_attempts": 1}, breaker_failures=2, breaker_cooldown=15)
    rig = Rig(settings(), {"hf": only}, clock=clock)
    only.script(_status(500), _status(500))
    for _ in range(2):
        with pytest.raises(UpstreamStatusError):
            await rig.run(rig.call())
    with pytest.raises(ServiceUnavailable) as info:
        await rig.run(rig.call())
    assert info.value.headers["Retry-After"] == "15" and len(only.calls) == 2


async def test_targets_follow_the_model_asked_for_on_a_pass_through_deployment() -> None:
    only = fake("hf", retry={"max_attempts": 1}, breaker_failures=1)
    rig = Rig(settings(), {"hf": only})

    def broken_for_one(call: Call, model: str) -> Answer:
        if model == "org/broken":
            raise _status(500)
        return Reply(200, orjson.dumps({"model": model}))

    only.default = broken_for_one
    with pytest.raises(UpstreamStatusError):
        await rig.run(rig.call("org/broken"))
    assert rig.breakers.state(Target("hf", "org/broken")) == "open"
    assert _served_by(await rig.run(rig.call("org/fine"))) == "org/fine"
