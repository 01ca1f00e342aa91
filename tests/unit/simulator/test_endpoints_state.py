"""The dedicated-endpoint state machine, driven by a FakeClock's monotonic time (no sleeps)."""

from __future__ import annotations

import pytest

from gateway.core.clock import FakeClock
from gateway.simulator.endpoints_config import EndpointSpec
from gateway.simulator.endpoints_state import Admit, EndpointMachine, Refused


def machine(clock: FakeClock, **spec: object) -> EndpointMachine:
    defaults: dict[str, object] = {"scale_up_delay": 30.0, "pending_delay": 5.0, "scale_to_zero_timeout": 600.0}
    return EndpointMachine("ep", EndpointSpec.model_validate({**defaults, **spec}), clock.monotonic())


def state(m: EndpointMachine) -> str:
    """The state, read through a call (mypy would otherwise keep an earlier assert's narrowing)."""
    return m.state


def test_running_scales_to_zero_after_exactly_the_idle_timeout() -> None:
    clock = FakeClock()
    m = machine(clock)
    start = clock.monotonic()
    clock.advance(599)
    m.settle(clock.monotonic())
    assert state(m) == "running"
    clock.advance(1)
    m.settle(clock.monotonic())
    assert state(m) == "scaledToZero" and m.since == start + 600
    assert m.has_url and m.replicas() == (0, 0)


def test_a_request_in_flight_keeps_the_endpoint_up_and_its_end_restarts_the_timer() -> None:
    clock = FakeClock()
    m = machine(clock)
    m.begin(clock.monotonic())
    clock.advance(5000)
    m.settle(clock.monotonic())
    assert state(m) == "running"  # a long stream is activity for its whole life
    m.end(clock.monotonic())
    clock.advance(599)
    m.settle(clock.monotonic())
    assert state(m) == "running"
    clock.advance(1)
    m.settle(clock.monotonic())
    assert state(m) == "scaledToZero"


@pytest.mark.parametrize("spec", [{"min_replica": 1}, {"scale_to_zero_timeout": None}])
def test_no_idle_scale_down_without_min_replica_zero_and_a_timeout(spec: dict[str, object]) -> None:
    clock = FakeClock()
    m = machine(clock, **spec)
    clock.advance(10**6)
    m.settle(clock.monotonic())
    assert state(m) == "running"


def test_traffic_wakes_a_scaled_to_zero_endpoint_once_and_it_runs_after_the_delay() -> None:
    clock = FakeClock()
    m = machine(clock, state="scaledToZero")
    assert m.admit(clock.monotonic()) is Admit.STARTING
    woke_at = clock.monotonic()
    assert state(m) == "initializing" and m.counters.wake_ups == 1
    clock.advance(29)
    assert m.admit(clock.monotonic()) is Admit.STARTING
    assert m.counters.wake_ups == 1  # a request during the scale-up starts nothing new
    assert m.ready_at() == woke_at + 30
    clock.advance(1)
    assert m.admit(clock.monotonic()) is Admit.SERVE
    assert state(m) == "running" and m.since == woke_at + 30


def test_a_health_probe_does_not_wake_a_scaled_to_zero_endpoint() -> None:
    clock = FakeClock()
    m = machine(clock, state="scaledToZero")
    assert m.admit(clock.monotonic(), wake=False) is Admit.STARTING
    assert state(m) == "scaledToZero" and m.counters.wake_ups == 0


def test_pause_hides_the_url_and_resume_goes_pending_initializing_running() -> None:
    clock = FakeClock()
    m = machine(clock)
    m.pause(clock.monotonic())
    assert state(m) == "paused" and not m.has_url and (m.min_replica, m.max_replica) == (0, 0)
    assert m.admit(clock.monotonic()) is Admit.PAUSED
    m.resume(clock.monotonic())
    assert state(m) == "pending" and not m.has_url
    clock.advance(5)
    m.settle(clock.monotonic())
    assert state(m) == "initializing" and m.has_url
    clock.advance(30)
    m.settle(clock.monotonic())
    assert state(m) == "running"
    # Resume sets both replica bounds to 1, as HF's pause/resume page says: no idle scale-down afterwards.
    assert (m.min_replica, m.max_replica) == (1, 1)
    clock.advance(10**6)
    m.settle(clock.monotonic())
    assert state(m) == "running"
    assert (m.counters.pause_calls, m.counters.resume_calls) == (1, 1)


def test_resume_of_a_running_endpoint_is_refused_as_already_running() -> None:
    clock = FakeClock()
    m = machine(clock)
    with pytest.raises(Refused) as refused:
        m.resume(clock.monotonic())
    assert refused.value.status == 400 and "already running" in refused.value.message
    assert m.counters.resume_calls == 1 and state(m) == "running"


def test_resume_while_starting_changes_nothing() -> None:
    clock = FakeClock()
    m = machine(clock, state="initializing")
    clock.advance(10)
    m.resume(clock.monotonic())
    assert state(m) == "initializing" and m.ready_at() == clock.monotonic() + 20


def test_scale_to_zero_keeps_the_url_and_is_refused_when_paused() -> None:
    clock = FakeClock()
    m = machine(clock)
    m.scale_to_zero(clock.monotonic())
    assert state(m) == "scaledToZero" and m.has_url
    m.scale_to_zero(clock.monotonic())  # idempotent
    assert state(m) == "scaledToZero" and m.counters.scale_to_zero_calls == 2
    m.pause(clock.monotonic())
    with pytest.raises(Refused):
        m.scale_to_zero(clock.monotonic())
    assert state(m) == "paused"


def test_failed_endpoints_stay_failed_until_forced() -> None:
    clock = FakeClock()
    m = machine(clock, state="failed")
    assert not m.has_url and m.admit(clock.monotonic()) is Admit.BROKEN
    with pytest.raises(Refused):
        m.resume(clock.monotonic())
    clock.advance(10**6)
    m.settle(clock.monotonic())
    assert state(m) == "failed" and m.ready_at() is None
    m.force("running", clock.monotonic(), "back")
    assert m.admit(clock.monotonic()) is Admit.SERVE and m.status_message == "back"


def test_update_failed_keeps_its_url_and_refuses_traffic() -> None:
    clock = FakeClock()
    m = machine(clock, state="updateFailed")
    assert m.has_url and m.admit(clock.monotonic()) is Admit.BROKEN


def test_updating_serves_and_returns_to_running() -> None:
    clock = FakeClock()
    m = machine(clock, state="updating")
    assert m.admit(clock.monotonic()) is Admit.SERVE and m.has_url
    clock.advance(30)
    m.settle(clock.monotonic())
    assert state(m) == "running"


def test_pending_counts_both_delays_before_running() -> None:
    clock = FakeClock()
    m = machine(clock, state="pending")
    assert m.ready_at() == clock.monotonic() + 35
    clock.advance(35)
    m.settle(clock.monotonic())
    assert state(m) == "running" and m.replicas() == (1, 1)
