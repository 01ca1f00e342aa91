"""The retry stage: try one deployment again after transient failures, inside the request's deadline.

Retried: 429, 502, 503, 504, a connection refused or reset before any response, a connect
timeout. Never: any other 4xx, a read timeout (the upstream may still be working and would bill
twice), a garbled answer, a model that is loading (the cold-start stage owns that), and never a
stream once the terminal has returned it (it returns only after the first event, so everything
this stage sees failed before a byte reached the client).

The wait before attempt n+1 is the upstream's `Retry-After` / `retry-after-ms`, exactly, whenever
it sent one (429 and 503 alike, every attempt); otherwise exponential backoff with full jitter:
uniform(0, min(cap, base * 2**(n-1))), per upstream (`UpstreamConfig.retry`). Waits go through
the injected clock; the jitter through an injected random source.

Invariants: no wait passes the deadline (when the budget left cannot cover the wait plus a useful
attempt, the upstream's error is answered now, with a Retry-After saying how long to wait); with
another deployment left (`HANDOFF`), a wait longer than `handoff_wait` hands the request over
instead; an open circuit stops the retries. Every attempt is reported to the breaker. The Call
records `retries`, `waited_seconds` and `extras["retry_reasons"]` (metric reason labels).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from aiohttp import web

from gateway.core.call import Answer, Call
from gateway.core.clock import Clock
from gateway.core.config import ResilienceConfig, RetryConfig
from gateway.core.errors import GatewayError, ModelLoading, UpstreamStatusError, UpstreamTimeout, UpstreamUnreachable
from gateway.core.pipeline import Handler
from gateway.http.appkeys import CLOCK, SETTINGS
from gateway.policies.resilience.breaker import Breakers, Outcome, breakers_of, outcome_of
from gateway.policies.resilience.target import Target, can_hand_off, deployment_of, target_of
from gateway.upstream.transport.connection import ConnectTimeout

_MIN_ATTEMPT = 0.25  # an attempt with less budget than this left could only end in a timeout
RETRY_REASONS = "retry_reasons"


def retry_reason(exc: BaseException) -> str | None:
    """The metric reason label if `exc` may be retried, else None."""
    if isinstance(exc, ModelLoading):
        return None
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "429"
        return "5xx" if exc.status in (502, 503, 504) else None
    if isinstance(exc, UpstreamUnreachable):
        return "connect"
    if isinstance(exc, UpstreamTimeout) and _connect_timeout(exc):
        return "timeout"
    return None


def _connect_timeout(exc: UpstreamTimeout) -> bool:
    # Only a timeout while connecting is safe: the request never reached the upstream.
    return isinstance(exc.__cause__, ConnectTimeout) or getattr(exc, "reason", None) == "connect"


def backoff(attempt: int, policy: RetryConfig, rand: Callable[[], float]) -> float:
    """Full-jitter backoff before attempt `attempt + 1` (`attempt` counts from 1)."""
    ceiling = min(policy.cap, policy.base * 2 ** (attempt - 1))
    return rand() * ceiling


class RetryStage:
    """Calls `nxt` until it answers, a non-retryable error comes, or attempts/budget run out."""

    def __init__(self, clock: Clock, breakers: Breakers, cfg: ResilienceConfig,
                 rand: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self.breakers = breakers
        self.cfg = cfg
        self.rand = rand or random.Random().random

    @classmethod
    def from_app(cls, app: web.Application) -> RetryStage:
        return cls(app[CLOCK], breakers_of(app), app[SETTINGS].resilience)

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        dep = deployment_of(call)
        target = target_of(dep, call.model)
        policy = dep.upstream.config.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await nxt(call)
            except GatewayError as exc:
                passed = self.clock.monotonic() >= call.deadline
                self.breakers.record(target, outcome_of(exc, deadline_passed=passed))
                wait = self._wait_before_next(call, exc, attempt, policy, target)
                if wait is None:
                    # A bare `raise`: the error leaves without a frame that names it, so no
                    # exception -> traceback -> frame cycle keeps it (and what it held) for the collector.
                    raise
                call.retries += 1
                call.extras.setdefault(RETRY_REASONS, []).append(retry_reason(exc))
                started = self.clock.monotonic()
                await self.clock.sleep(wait)
                call.waited_seconds += self.clock.monotonic() - started
                continue
            self.breakers.record(target, Outcome.SUCCESS)
            return answer

    def _wait_before_next(self, call: Call, exc: GatewayError, attempt: int, policy: RetryConfig,
                          target: Target) -> float | None:
        """Seconds to wait before trying again; None when this request must not try again."""
        if retry_reason(exc) is None or attempt >= policy.max_attempts:
            return None
        wait = exc.retry_after if exc.retry_after is not None else backoff(attempt, policy, self.rand)
        if can_hand_off(call) and wait > self.cfg.handoff_wait:
            return None  # the next deployment is free now; this one asked for patience
        if self.breakers.is_open(target):
            return None
        if wait + _MIN_ATTEMPT > call.deadline - self.clock.monotonic():
            if exc.retry_after is None:
                # Tell the client what we would have waited: it can retry once its own budget allows.
                exc.retry_after = min(wait, self.cfg.retry_after_cap)
                exc.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return None
        return wait
