"""The retry stage: try one deployment again after transient failures, inside the request's deadline.

Retried: what the upstream's `retry.retry_on` lists, by default 429, 502, 503, 504 and "connect"
(a connection refused or reset before any response, a connect timeout); a team may add 500 or
other 5xx. Never: any other 4xx, a read timeout (the upstream may still be working and would bill
twice), a garbled answer, a model that is loading (the cold-start stage owns that), and never a
stream once the terminal has returned it (it returns only after the first event, so everything
this stage sees failed before a byte reached the client).

The wait before attempt n+1 is the upstream's `Retry-After` / `retry-after-ms`, exactly, whenever
it sent one (429 and 503 alike, every attempt); otherwise exponential backoff with full jitter:
uniform(0, min(cap, base * 2**(n-1))), per upstream (`UpstreamConfig.retry`). Waits go through
the injected clock; the jitter through an injected random source.

Invariants: no wait passes the deadline (when the budget left cannot cover the wait plus a useful
attempt, the upstream's error is answered now, with a Retry-After saying how long to wait); with
another deployment left (`call.resilience.handoff`), a wait longer than `handoff_wait` hands the request over
instead; an open circuit stops the retries. Every attempt is reported to the breaker. The Call
records `retries`, `waited_seconds` and `resilience.retry_reasons` (metric reason labels).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from gateway.core.call import Answer, Call
from gateway.core.clock import Clock
from gateway.core.config import ResilienceConfig
from gateway.core.errors import (
    GatewayError,
    ModelLoading,
    UpstreamConnectTimeout,
    UpstreamStatusError,
    UpstreamUnreachable,
)
from gateway.core.pipeline import Handler
from gateway.core.upstream_config import RetryConfig
from gateway.policies.resilience.breaker import Breakers, Outcome, outcome_of
from gateway.policies.resilience.target import Target, can_hand_off, deployment_of, target_of

_MIN_ATTEMPT = 0.25  # an attempt with less budget than this left could only end in a timeout


def retry_reason(exc: BaseException) -> str | None:
    """The metric reason label if `exc` may be retried, else None."""
    if isinstance(exc, ModelLoading):
        return None
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "429"
        return "5xx" if exc.status >= 500 else None
    if isinstance(exc, UpstreamUnreachable):
        return "connect"
    if isinstance(exc, UpstreamConnectTimeout):  # only a timeout while connecting: the request never got there
        return "timeout"
    return None


def may_retry(exc: BaseException, policy: RetryConfig) -> bool:
    """Whether the upstream's `retry_on` covers this failure (statuses, and "connect" for the rest)."""
    if retry_reason(exc) is None:
        return False
    if isinstance(exc, UpstreamStatusError):
        return exc.status in policy.retry_on
    return "connect" in policy.retry_on


def backoff(attempt: int, policy: RetryConfig, rand: Callable[[], float]) -> float:
    """Full-jitter backoff before attempt `attempt + 1` (`attempt` counts from 1)."""
    ceiling = min(policy.cap, policy.base * 2.0 ** (attempt - 1))
    return rand() * ceiling


class RetryStage:
    """Calls `nxt` until it answers, a non-retryable error comes, or attempts/budget run out."""

    def __init__(self, clock: Clock, breakers: Breakers, cfg: ResilienceConfig,
                 rand: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self.breakers = breakers
        self.cfg = cfg
        self.rand = rand or random.Random().random

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
                reason = retry_reason(exc)
                if reason is None:
                    raise  # never retried: see the module docstring
                wait = self._wait_before_next(call, exc, attempt, policy, target)
                if wait is None:
                    # A bare `raise`: the error leaves without a frame that names it, so no
                    # exception -> traceback -> frame cycle keeps it (and what it held) for the collector.
                    raise
                call.retries += 1
                call.resilience.retry_reasons.append(reason)
                started = self.clock.monotonic()
                await self.clock.sleep(wait)
                call.waited_seconds += self.clock.monotonic() - started
                continue
            self.breakers.record(target, Outcome.SUCCESS)
            return answer

    def _wait_before_next(self, call: Call, exc: GatewayError, attempt: int, policy: RetryConfig,
                          target: Target) -> float | None:
        """Seconds to wait before trying again; None when this request must not try again."""
        if not may_retry(exc, policy) or attempt >= policy.max_attempts:
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
