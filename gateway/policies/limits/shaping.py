"""The [shaping] stage: pace calls to an upstream that declares a `budget` (e.g. `300/hour`).

One bucket per upstream lives in the store (`{prefix}:v1:shape:{upstream}`), so every replica
draws from the same budget. A call takes a slot in one atomic script call; when the budget is
spent, the slot lies in the future and the call waits for it on the injected clock (the bucket
goes into debt by at most `rate * budget_max_wait`, which bounds the queue across all replicas
and keeps it first-come, first-served). A call that would wait longer than `budget_max_wait`
(or past its deadline) is answered 429 with Retry-After = when the queue has room again. A call
abandoned while queued gives its slot back.

The burst defaults to 1 (evenly spaced calls), so no window of the budget's period ever sees
more than the budget; `budget: {rate: 300/hour, burst: 20}` allows bursts when the upstream does.
The stage is the innermost one: every retry attempt is paced too. Outcomes go to
`call.limiting.outcomes` (scope "outbound") and the time queued to `call.limiting.shaping_wait`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from gateway.core.call import Answer, Call, Upstream
from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Settings
from gateway.core.errors import RateLimited, StoreUnavailable
from gateway.core.pipeline import Handler
from gateway.core.rates import Rate
from gateway.policies.limits.buckets import Bucket, decide
from gateway.store.guard import StoreGuard
from gateway.store.protocol import Store, StoreError, key


class ShapingStage:
    """Holds each call until its upstream's budget has a slot for it."""

    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 upstreams: Mapping[str, Upstream] | None = None) -> None:
        self.cfg = settings.ratelimit
        # Budgets are read off the upstreams the app really calls (tests inject their own).
        self.budgets = [u.config.budget for u in upstreams.values()] if upstreams is not None else [
            u.budget for u in settings.upstreams.values()]
        self.prefix = settings.redis_prefix
        self.store = store
        self.clock = clock
        self.guard = StoreGuard("outbound shaping", settings.request_timeout)  # late answers waited for
        self._server_time = isinstance(clock, SystemClock)
        self.waiting: dict[str, int] = {}  # upstream -> calls queued now; read at scrape time

    @property
    def active(self) -> bool:
        """Whether any upstream declares a budget (else the stage is left off the road: http/app.py build_stages)."""
        return any(budget is not None for budget in self.budgets)

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        dep = call.target or call.route.deployments[0]
        budget = dep.upstream.config.budget
        if budget is None:
            return await nxt(call)
        max_wait = max(0.0, min(dep.upstream.config.budget_max_wait, call.deadline - self.clock.monotonic()))
        slot = _bucket(key(self.prefix, "shape", dep.upstream.name), budget, max_wait)
        outcomes = call.limiting.outcomes
        try:
            decision = await self.guard.run(decide(self.store, [slot], now=self._now()),
                                            within=call.deadline - self.clock.monotonic())
        except StoreError:
            return await self._store_failed(call, nxt)
        if not decision.allowed:
            outcomes.append(("outbound", "limited"))
            ms = max(1, math.ceil(decision.wait * 1000 - 1e-6))
            raise RateLimited(
                f"the request budget of upstream {dep.upstream.name!r} ({budget}) is used up; "
                f"retry in {ms / 1000:.3g} s", retry_after=ms / 1000, headers={"retry-after-ms": str(ms)},
            )
        outcomes.append(("outbound", "allowed"))
        if decision.wait > 0:
            await self._queue(call, slot, decision.wait)
        return await nxt(call)

    async def _queue(self, call: Call, slot: Bucket, wait: float) -> None:
        upstream = (call.target or call.route.deployments[0]).upstream.name
        self.waiting[upstream] = self.waiting.get(upstream, 0) + 1
        start = self.clock.monotonic()
        try:
            await self.clock.sleep(wait)
        except asyncio.CancelledError:
            refund = Bucket(slot.key, slot.rate, slot.capacity, -slot.cost)
            try:
                await self.guard.run(decide(self.store, [refund], mode="force", now=self._now()))
            except StoreError:
                pass
            raise
        finally:
            self.waiting[upstream] -= 1
            waited = self.clock.monotonic() - start
            call.limiting.shaping_wait += waited

    async def _store_failed(self, call: Call, nxt: Handler) -> Answer:
        call.limiting.shaping_store_error = True
        if self.cfg.on_store_error == "fail_closed":
            call.limiting.outcomes.append(("outbound", "error_closed"))
            raise StoreUnavailable("the upstream's budget cannot be checked: the state store is unavailable",
                                   retry_after=self.cfg.store_retry_after)
        call.limiting.outcomes.append(("outbound", "error_open"))
        return await nxt(call)

    def _now(self) -> float | None:
        return None if self._server_time else self.clock.time()


def _bucket(bucket_key: str, budget: Rate, max_wait: float) -> Bucket:
    burst = budget.burst if budget.burst is not None else 1.0
    return Bucket(bucket_key, budget.per_second, burst, 1.0, max_wait)
