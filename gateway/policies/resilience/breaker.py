"""Circuit breakers: one per target (upstream, model), kept in this process.

    closed --N consecutive failures--> open --cooldown--> half_open --probe succeeds--> closed
                                         ^                    |
                                         +---probe fails------+

- A failure is what says the deployment is broken: a 5xx answer, a connection refused or reset,
  a timeout that was not the client's own deadline, a garbled answer. A model that is loading is
  neither a failure nor a success. Any other answer (2xx, 4xx, 429) proves the deployment is up and
  resets the count (as Envoy's consecutive-5xx outlier detection does).
- Counting is per upstream attempt (the retry stage records every one), so one request that tried
  three times and failed three times counts three.
- Half-open lets exactly ONE request through; a probe permit that is never settled (the client went
  away) expires after the cooldown so the circuit cannot stay stuck.
- State is per process on purpose: each replica learns on its own within N requests, which costs
  N failed attempts per replica and needs no Redis round trip on the hot path. Loading state, which
  is expensive to learn (a long wait), is shared instead (see `loading.py`).
- Memory is bounded: a closed circuit with no recent failure has no entry at all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.clock import Clock
from gateway.core.errors import (
    ModelLoading,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.core.upstream_config import UpstreamConfig
from gateway.policies.resilience.target import Target

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
_MAX_CIRCUITS = 10_000
Listener = Callable[[Target, str], None]


class Outcome(enum.Enum):
    """What one upstream attempt says about the deployment's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


def outcome_of(exc: BaseException | None, *, deadline_passed: bool = False) -> Outcome:
    """Classify an attempt's result (None: it answered) for the breaker."""
    if exc is None:
        return Outcome.SUCCESS
    if isinstance(exc, ModelLoading):
        return Outcome.NEUTRAL
    if isinstance(exc, UpstreamStatusError):
        return Outcome.FAILURE if exc.status >= 500 else Outcome.SUCCESS
    if isinstance(exc, UpstreamTimeout):
        # The client's own short deadline says nothing about the deployment.
        return Outcome.NEUTRAL if deadline_passed else Outcome.FAILURE
    if isinstance(exc, (UpstreamUnreachable, UpstreamProtocolError)):
        return Outcome.FAILURE
    return Outcome.NEUTRAL  # our own refusals (client errors, overload) say nothing about the deployment


@dataclass(slots=True)
class Admission:
    """A pass through the breaker; `probe` marks the one half-open trial."""

    probe: bool = False
    since: float = 0.0


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    state: str = CLOSED
    opened_at: float = 0.0
    probe_since: float | None = None


class Breakers:
    """Every circuit of one process; cheap enough to consult on every request."""

    def __init__(self, clock: Clock, upstreams: Mapping[str, UpstreamConfig]) -> None:
        self._clock = clock
        self._configs = upstreams
        self._circuits: dict[Target, _Circuit] = {}
        self.listeners: list[Listener] = []  # called with (target, new state) on every transition

    # -- the request path ---------------------------------------------------------------------

    def admit(self, target: Target) -> Admission | None:
        """A pass for one request to `target`, or None while its circuit is open."""
        c = self._circuits.get(target)
        if c is None or c.state == CLOSED:
            return Admission()
        now = self._clock.monotonic()
        if c.state == OPEN:
            if now < c.opened_at + self._cooldown(target):
                return None
            self._move(target, c, HALF_OPEN)
        if c.probe_since is not None and now - c.probe_since < self._cooldown(target):
            return None  # the one trial is out; everyone else keeps away
        c.probe_since = now
        return Admission(probe=True, since=now)

    def is_open(self, target: Target) -> bool:
        """Whether the circuit is open and still cooling down (checked between retries)."""
        c = self._circuits.get(target)
        return c is not None and c.state == OPEN and self._clock.monotonic() < c.opened_at + self._cooldown(target)

    def record(self, target: Target, outcome: Outcome) -> None:
        """Settle one upstream attempt."""
        if outcome is Outcome.NEUTRAL:
            return
        c = self._circuits.get(target)
        if outcome is Outcome.SUCCESS:
            if c is not None:
                if c.state != CLOSED:
                    self._move(target, c, CLOSED)
                del self._circuits[target]
            return
        if c is None:
            c = self._circuits[target] = _Circuit()
            self._bound()
        c.failures += 1
        if c.state == HALF_OPEN or (c.state == CLOSED and c.failures >= self._threshold(target)):
            c.opened_at = self._clock.monotonic()
            c.probe_since = None
            self._move(target, c, OPEN)

    def release(self, target: Target, admission: Admission | None) -> None:
        """Give back a half-open trial that ended without a verdict (loading, cancelled, deadline)."""
        if admission is None or not admission.probe:
            return
        c = self._circuits.get(target)
        if c is not None and c.state == HALF_OPEN and c.probe_since == admission.since:
            c.probe_since = None

    # -- read-outs ----------------------------------------------------------------------------

    def state(self, target: Target) -> str:
        """closed, open, or half_open (an open circuit whose cooldown is over reads half_open)."""
        c = self._circuits.get(target)
        if c is None:
            return CLOSED
        if c.state == OPEN and self._clock.monotonic() >= c.opened_at + self._cooldown(target):
            return HALF_OPEN
        return c.state

    def retry_in(self, target: Target) -> float:
        """Seconds until an open circuit lets a trial through (0 when it would now)."""
        c = self._circuits.get(target)
        if c is None or c.state != OPEN:
            return 0.0
        return max(0.0, c.opened_at + self._cooldown(target) - self._clock.monotonic())

    def states(self) -> list[dict[str, Any]]:
        """Every circuit that is not plainly closed: for /status and the metrics gauge."""
        return [
            {"upstream": t.upstream, "model": t.model, "deployment": t.label, "state": self.state(t),
             "failures": c.failures, "retry_in": round(self.retry_in(t), 3)}
            for t, c in list(self._circuits.items())
        ]

    # -- internals ----------------------------------------------------------------------------

    def _threshold(self, target: Target) -> int:
        cfg = self._configs.get(target.upstream)
        return cfg.breaker_failures if cfg is not None else 5

    def _cooldown(self, target: Target) -> float:
        cfg = self._configs.get(target.upstream)
        return cfg.breaker_cooldown if cfg is not None else 30.0

    def _move(self, target: Target, c: _Circuit, state: str) -> None:
        c.state = state
        for listener in self.listeners:
            listener(target, state)

    def _bound(self) -> None:
        # Forget the oldest closed circuits first: they only carry a partial failure count.
        if len(self._circuits) <= _MAX_CIRCUITS:
            return
        for t in [t for t, c in self._circuits.items() if c.state == CLOSED][: len(self._circuits) - _MAX_CIRCUITS]:
            del self._circuits[t]
