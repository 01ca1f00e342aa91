"""When the poller reads the control plane next: steady, waking, failing (backoff, capped), always jittered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.core.clock import FakeClock
from gateway.core.config import ResilienceConfig
from gateway.core.upstream_config import UpstreamConfig
from gateway.policies.endpoints.events import NoEvents
from gateway.policies.endpoints.poller import Poller
from gateway.policies.endpoints.record import EndpointRecord
from gateway.policies.endpoints.shared import EndpointBoard
from gateway.policies.endpoints.watch import EndpointWatch
from gateway.policies.resilience.loading import LoadingBoard
from gateway.store.memory import MemoryStore
from gateway.upstream.endpoints.control import ControlPlaneClient
from gateway.upstream.endpoints.upstream import EndpointUpstream


def poller(rand: float) -> Poller:
    clock = FakeClock()
    store = MemoryStore(clock)
    cfg = UpstreamConfig(kind="endpoint", name="ep", namespace="acme", poll_interval=30, wake_poll_interval=5)
    watch = EndpointWatch(EndpointUpstream("ep", cfg, clock), ControlPlaneClient("http://cp.test", None, timeout=1),
                          EndpointBoard(store, "t", "acme/ep"), LoadingBoard(store, clock, "t", ResilienceConfig()),
                          (), clock, NoEvents())
    return Poller(watch, clock, rand=lambda: rand)


RUNNING = EndpointRecord(checked_at=1.0, state="running", url="http://ep.test", ready=True, since=1.0)


@pytest.mark.parametrize("rand, factor", [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
async def test_steady_and_waking_cadence_with_jitter(rand: float, factor: float) -> None:
    p = poller(rand)
    p.watch.record = RUNNING
    assert await p.delay() == pytest.approx(30 * factor)
    p.watch.record = replace(RUNNING, state="initializing", ready=False)
    assert await p.delay() == pytest.approx(5 * factor)
    p.watch.record = replace(RUNNING, ready=False)  # running, health not answering yet
    assert await p.delay() == pytest.approx(5 * factor)


async def test_scaled_to_zero_is_watched_closely_only_while_a_wake_up_is_claimed() -> None:
    p = poller(0.5)
    p.watch.record = replace(RUNNING, state="scaledToZero", ready=False)
    assert await p.delay() == pytest.approx(30)
    await p.watch.board.claim_wake(1.0, 60)
    assert await p.delay() == pytest.approx(5)


async def test_failures_back_off_to_ten_intervals() -> None:
    p = poller(0.5)
    p.watch.record = replace(RUNNING, error="unreachable: down")
    p.leader = True
    delays = []
    for failures in range(1, 8):
        p.failures = failures
        delays.append(await p.delay())
    assert delays == pytest.approx([30, 60, 120, 240, 300, 300, 300])
