"""The [ratelimit] stage: token buckets per tenant, (tenant, model) and model; requests and tokens.

For each call: plan its buckets (`limits.py`), pay them all or none in one script call per hash
tag (`buckets.py`), answer 429 `RateLimited` with the exact wait when a bucket is empty, and put
`x-ratelimit-*` headers on every answer. Token buckets are charged an estimate up front and
settled with the real count afterwards (`tokens.py`): right after a complete answer, or when a
stream ends; a call that fails upstream gives its whole token reservation back.

Time: with the real clock the script reads Redis `TIME` (one clock for every replica); an
injected clock (tests, simulations) is passed to the script instead, so fake time rules there.

Store trouble (`ratelimit.on_store_error`): fail_open admits and records it in
`call.extras["ratelimit_store_error"]`; fail_closed answers 503 `StoreUnavailable` with
Retry-After. Never a silent per-process fallback. Decisions are recorded for metrics in
`call.extras["ratelimit"]` as `[(scope, outcome), ...]`.
"""

from __future__ import annotations

import math

from ..clock import Clock, SystemClock
from ..config import Settings
from ..errors import GatewayError, RateLimited, StoreUnavailable
from ..pipeline import Answer, Call, Handler, StreamReply
from ..store.base import Store, StoreError
from .buckets import Bucket, Decision, StoreGuard, decide
from .limits import Limit, LimitPlan, LimitPlanner, denied_scopes, rate_headers
from .tokens import StreamMeter, estimate, metered, prompt_tokens, reply_tokens


class RateLimitStage:
    """Admits, rejects and settles calls against their tenant's and model's buckets."""

    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self.cfg = settings.ratelimit
        self.planner = LimitPlanner(settings)
        self.store = store
        self.clock = clock
        self.guard = StoreGuard(self.cfg.store_timeout, "rate limiter")
        self._server_time = isinstance(clock, SystemClock)

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        if not self.cfg.enabled:
            return await nxt(call)
        plan = self.planner.plan(call, lambda c: estimate(c, self.cfg.completion_estimate))
        if plan is None:
            return await nxt(call)
        reserved = await self._admit(call, plan)
        if not reserved or not plan.estimate:
            return await nxt(call)
        return await self._settling(call, plan, nxt)

    # --- admission -------------------------------------------------------------------------------
    async def _admit(self, call: Call, plan: LimitPlan) -> bool:
        """Pay every bucket or raise; False when the store failed open before anything was reserved."""
        try:
            first = await self._take(plan.tenant_group)
        except StoreError:
            self._store_failed(call, plan.limits)
            return False
        if not first.allowed:
            self._deny(call, plan, plan.tenant_group, first)
        second = Decision(True, 0.0, ())
        if plan.model_group:
            try:
                second = await self._take(plan.model_group)
            except StoreError:
                if self.cfg.on_store_error == "fail_closed":
                    await self._refund(plan.tenant_group)
                self._store_failed(call, plan.model_group)
            if not second.allowed:
                await self._refund(plan.tenant_group)  # all-or-nothing across the two hash tags
                self._deny(call, plan, plan.model_group, second)
        outcomes = call.extras.setdefault("ratelimit", [])
        outcomes.extend((lim.scope, "allowed") for lim in plan.tenant_group)
        if second.remaining:
            outcomes.extend((lim.scope, "allowed") for lim in plan.model_group)
        pairs = list(zip(plan.tenant_group, first.remaining)) + list(zip(plan.model_group, second.remaining))
        call.reply_headers.update(rate_headers(pairs))
        return True

    async def _take(self, limits: list[Limit]) -> Decision:
        return await self.guard.run(decide(self.store, [lim.bucket for lim in limits], now=self._now()))

    def _now(self) -> float | None:
        return None if self._server_time else self.clock.time()

    def _deny(self, call: Call, plan: LimitPlan, group: list[Limit], decision: Decision) -> None:
        scopes = denied_scopes(group, decision.remaining)
        call.extras.setdefault("ratelimit", []).extend((scope, "limited") for scope in scopes)
        ms = max(1, math.ceil(decision.wait * 1000 - 1e-6))  # the exact wait, never rounded down
        headers = rate_headers(list(zip(group, decision.remaining)))
        headers["retry-after-ms"] = str(ms)
        first = next(lim for lim in group if lim.scope == scopes[0]) if scopes else group[0]
        who = f"model {call.route.name!r}" if first.scope == "model" else f"tenant {plan.tenant!r}"
        raise RateLimited(
            f"rate limit reached for {who} ({first.kind}: {first.rate}); retry in {ms / 1000:.3g} s",
            retry_after=ms / 1000, headers=headers,
        )

    async def _refund(self, limits: list[Limit]) -> None:
        """Give back what a group paid (a later group denied the call); best effort."""
        back = [Bucket(lim.bucket.key, lim.bucket.rate, lim.bucket.capacity, -lim.bucket.cost) for lim in limits]
        try:
            await self.guard.run(decide(self.store, back, mode="force", now=self._now()))
        except StoreError:
            pass

    def _store_failed(self, call: Call, limits: list[Limit]) -> None:
        closed = self.cfg.on_store_error == "fail_closed"
        call.extras["ratelimit_store_error"] = True
        call.extras.setdefault("ratelimit", []).extend(
            (lim.scope, "error_closed" if closed else "error_open") for lim in limits)
        if closed:
            raise StoreUnavailable("rate limits cannot be checked right now: the state store is unavailable",
                                   retry_after=self.cfg.store_retry_after)

    # --- settlement ------------------------------------------------------------------------------
    async def _settling(self, call: Call, plan: LimitPlan, nxt: Handler) -> Answer:
        tokens = [lim for lim in plan.tenant_group if lim.kind == "tokens"]
        try:
            answer = await nxt(call)
        except GatewayError:
            await self._settle(call, tokens, 0)  # nothing was generated: the reservation goes back
            raise
        if isinstance(answer, StreamReply):
            return metered(answer, StreamMeter(prompt_tokens(call)), lambda used: self._settle(call, tokens, used))
        used = reply_tokens(call, answer)
        if used is not None:
            await self._settle(call, tokens, used)
        return answer

    async def _settle(self, call: Call, limits: list[Limit], used: int) -> None:
        """Charge (or refund) the difference between the tokens used and those reserved."""
        call.extras["tokens_settled"] = used
        delta = [Bucket(lim.bucket.key, lim.bucket.rate, lim.bucket.capacity, used - lim.bucket.cost)
                 for lim in limits if used != lim.bucket.cost]
        if not delta:
            return
        try:
            await self.guard.run(decide(self.store, delta, mode="force", now=self._now()))
        except StoreError:
            call.extras["ratelimit_settle_error"] = True
