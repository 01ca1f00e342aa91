"""Circuit breakers: N consecutive failures open, the cooldown leads to ONE half-open trial, success closes."""

from __future__ import annotations

import pytest

from gateway.core.clock import FakeClock
from gateway.core.errors import (
    BadRequest,
    ModelLoading,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.core.upstream_config import UpstreamConfig
from gateway.policies.resilience.breaker import Breakers, Outcome, outcome_of
from gateway.policies.resilience.target import Target

T = Target("tgi", "org/model")
OTHER = Target("tgi", "org/other")


def _breakers(failures: int = 3, cooldown: float = 30.0) -> tuple[Breakers, FakeClock, list[tuple[Target, str]]]:
    clock = FakeClock()
    cfg = UpstreamConfig(kind="tgi", base_url="http://tgi.test", token_env=None, breaker_failures=failures,
                         breaker_cooldown=cooldown)
    breakers = Breakers(clock, {"tgi": cfg})
    moves: list[tuple[Target, str]] = []
    breakers.listeners.append(lambda t, s: moves.append((t, s)))
    return breakers, clock, moves


def test_n_consecutive_failures_open_the_circuit() -> None:
    b, _, moves = _breakers(failures=3)
    for _ in range(2):
        assert b.admit(T) is not None
        b.record(T, Outcome.FAILURE)
    assert b.state(T) == "closed"
    b.record(T, Outcome.FAILURE)
    assert b.state(T) == "open" and b.admit(T) is None and b.is_open(T)
    assert moves == [(T, "open")]
    assert b.admit(OTHER) is not None  # one model's trouble never blocks another


def test_a_success_resets_the_count() -> None:
    b, _, _ = _breakers(failures=3)
    for outcome in (Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS, Outcome.FAILURE, Outcome.FAILURE):
        b.record(T, outcome)
    assert b.state(T) == "closed"


def test_after_the_cooldown_exactly_one_trial_goes_and_its_success_closes() -> None:
    b, clock, moves = _breakers(failures=1, cooldown=30)
    b.record(T, Outcome.FAILURE)
    clock.advance(29.9)
    assert b.admit(T) is None and b.retry_in(T) == pytest.approx(0.1)
    clock.advance(0.1)
    assert b.state(T) == "half_open"
    trial = b.admit(T)
    assert trial is not None and trial.probe
    assert b.admit(T) is None  # everyone else keeps away while the trial is out
    b.record(T, Outcome.SUCCESS)
    assert b.state(T) == "closed" and b.admit(T) is not None
    assert moves == [(T, "open"), (T, "half_open"), (T, "closed")]
    assert b.states() == []


def test_a_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    b, clock, _ = _breakers(failures=2, cooldown=10)
    b.record(T, Outcome.FAILURE)
    b.record(T, Outcome.FAILURE)
    clock.advance(10)
    assert b.admit(T) is not None
    b.record(T, Outcome.FAILURE)
    assert b.state(T) == "open" and b.retry_in(T) == pytest.approx(10)


def test_a_trial_without_a_verdict_gives_its_place_back() -> None:
    b, clock, _ = _breakers(failures=1, cooldown=10)
    b.record(T, Outcome.FAILURE)
    clock.advance(10)
    trial = b.admit(T)
    b.record(T, Outcome.NEUTRAL)  # e.g. the model said it is loading
    b.release(T, trial)
    assert b.admit(T) is not None


def test_a_lost_trial_expires_after_the_cooldown() -> None:
    b, clock, _ = _breakers(failures=1, cooldown=10)
    b.record(T, Outcome.FAILURE)
    clock.advance(10)
    assert b.admit(T) is not None  # and then never settled
    clock.advance(5)
    assert b.admit(T) is None
    clock.advance(5)
    assert b.admit(T) is not None


def test_releasing_a_pass_from_before_the_trial_does_not_free_the_trial() -> None:
    b, clock, _ = _breakers(failures=1, cooldown=10)
    early = b.admit(T)  # admitted while closed, still in flight
    b.record(T, Outcome.FAILURE)
    clock.advance(10)
    assert b.admit(T) is not None
    b.release(T, early)
    assert b.admit(T) is None


def test_read_outs_list_failing_and_open_circuits() -> None:
    b, _, _ = _breakers(failures=2)
    b.record(T, Outcome.FAILURE)
    b.record(OTHER, Outcome.FAILURE)
    b.record(OTHER, Outcome.FAILURE)
    states = {s["deployment"]: s for s in b.states()}
    assert states["tgi:org/model"]["state"] == "closed" and states["tgi:org/model"]["failures"] == 1
    assert states["tgi:org/other"]["state"] == "open" and states["tgi:org/other"]["retry_in"] == 30.0


@pytest.mark.parametrize("exc, outcome", [
    (None, Outcome.SUCCESS),
    (UpstreamStatusError("x", status=500), Outcome.FAILURE),
    (UpstreamStatusError("x", status=503), Outcome.FAILURE),
    (UpstreamStatusError("x", status=429), Outcome.SUCCESS),
    (UpstreamStatusError("x", status=422), Outcome.SUCCESS),
    (ModelLoading("loading", estimated_time=20), Outcome.NEUTRAL),
    (UpstreamUnreachable("refused"), Outcome.FAILURE),
    (UpstreamTimeout("slow"), Outcome.FAILURE),
    (UpstreamProtocolError("garbage"), Outcome.FAILURE),
    (BadRequest("bad"), Outcome.NEUTRAL),
])
def test_what_counts_as_a_failure(exc: Exception | None, outcome: Outcome) -> None:
    assert outcome_of(exc) is outcome


def test_the_clients_own_deadline_is_not_the_deployments_fault() -> None:
    assert outcome_of(UpstreamTimeout("deadline"), deadline_passed=True) is Outcome.NEUTRAL
