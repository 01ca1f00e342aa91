"""`UpstreamTimer`: wraps the terminal (the one upstream call) and sees every attempt.

It times each one (`gateway_upstream_duration_seconds`) and counts an attempt on the same
deployment after a failed one as a retry, labelled with the failure that caused it (a cold-start
re-probe after "loading" counts as a retry for "loading"; a move to another deployment is a
fallback instead, counted by the metrics stage).
"""

from __future__ import annotations

import logging
from typing import cast

from gateway.core.call import Answer, Call
from gateway.core.clock import Clock
from gateway.core.errors import (
    GatewayError,
    ModelLoading,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.core.pipeline import Handler
from gateway.observability.metrics import Metrics, RetryReason

log = logging.getLogger("gateway.metrics")

def retry_reason(exc: BaseException) -> RetryReason | None:
    """The retry-reason label of a failed upstream attempt; None for failures nobody retries."""
    if isinstance(exc, ModelLoading):
        return "loading"
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "429"
        return "5xx" if exc.status >= 500 else None
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamUnreachable):
        return "connect"
    if isinstance(exc, UpstreamProtocolError):
        return "5xx"
    return None


class UpstreamTimer:
    """Wraps the terminal: times every upstream attempt and counts retries by their cause."""

    def __init__(self, terminal: Handler, metrics: Metrics, clock: Clock) -> None:
        self._terminal = terminal
        self._m = metrics
        self._clock = clock

    async def __call__(self, call: Call) -> Answer:
        dep = (call.target or call.route.deployments[0]).id
        last = call.resilience.last_failure
        call.resilience.last_failure = None
        if last is not None and last[0] == dep:
            # Only this class sets last_failure, always to a retry_reason() label (core/ cannot name the type).
            self._m.retry(dep, cast(RetryReason, last[1]))
        if self._clock.monotonic() >= call.deadline:
            return await self._terminal(call)  # refused before any upstream call: nothing to time
        before = call.upstream_seconds
        try:
            return await self._terminal(call)
        except GatewayError as exc:
            reason = retry_reason(exc)
            if reason is not None:
                call.resilience.last_failure = (dep, reason)
            raise
        finally:
            self._m.upstream_done(dep, call.upstream_seconds - before)
