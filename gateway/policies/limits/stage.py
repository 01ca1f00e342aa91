"""The [ratelimit] stage: token buckets per tenant, (tenant, model) and model; requests and tokens.

For each call: plan its buckets (`limits.py`), pay them all or none in one script call per hash
tag (`buckets.py`; on Redis both calls travel in one round trip, queued by `prepare` together
with the cache lookup; a call that never gets here has them refunded by `abandon`), answer 429
`RateLimited` with the exact wait when a bucket is empty, and put `x-ratelimit-*` headers on
every answer. Token buckets are charged an estimate up front and
settled with the real count afterwards (`token_accounting.py`): right after a complete answer, or when a
stream ends; a call that fails upstream gives its whole token reservation back. On Redis the
settlement is queued without waiting for its answer: it costs the response no round trip, and
the command queue still runs it before any later command of this process.

Time: with the real clock the script reads Redis `TIME` (one clock for every replica); an
injected clock (tests, simulations) is passed to the script instead, so fake time rules there.

Store trouble (`ratelimit.on_store_error`): fail_open admits and records it in
`call.limiting.store_error`; fail_closed answers 503 `StoreUnavailable` with
Retry-After. Never a silent per-process fallback. Decisions are recorded for metrics in
`call.limiting.outcomes` as `[(scope, outcome), ...]`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from gateway.core.call import Answer, Call, StreamReply
from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Settings
from gateway.core.errors import GatewayError, RateLimited, StoreUnavailable
from gateway.core.pipeline import Handler
from gateway.policies.limits.buckets import Bucket, Decision, decide, parse_reply, send_decision
from gateway.policies.limits.limit_plan import Limit, LimitPlan, LimitPlanner, denied_scopes, rate_headers
from gateway.policies.limits.token_accounting import StreamMeter, estimate, metered, prompt_tokens, reply_tokens
from gateway.store.guard import StoreGuard, Undo
from gateway.store.ordered import forget, in_background, pipelined
from gateway.store.protocol import Store, StoreError, key

_FREE = Decision(True, 0.0, ())  # an empty group pays nothing


@dataclass(slots=True)
class Taken:
    """A take queued ahead of the stage: the plan and each group's pending decision (None: empty group)."""

    plan: LimitPlan
    tenant: Awaitable[Any] | None
    model: Awaitable[Any] | None


class RateLimitStage:
    """Admits, rejects and settles calls against their tenant's and model's buckets."""

    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self.cfg = settings.ratelimit
        self.planner = LimitPlanner(settings)
        self.store = store
        self.clock = clock
        # Waits for late answers (store/guard.py); the injected clock decides when an outage is over.
        self.guard = StoreGuard("rate limiter", settings.request_timeout, now=clock.monotonic)
        self._server_time = isinstance(clock, SystemClock)

    @property
    def active(self) -> bool:
        """Whether any limit is configured at all (else the stage is left off the road: http/app.py build_stages)."""
        s = self.planner.settings
        tenants = any(t.limits or t.model_limits for t in s.tenants.values())
        return self.cfg.enabled and bool(s.ratelimit.default or tenants or any(m.limits for m in s.models))

    async def check(self) -> StoreError | None:
        """Whether the limiter can run right now: one zero-cost decision on a probe bucket, exactly as a
        request's (the script, TIME, the writes), bounded by `store_timeout`. The failure, else None."""
        if not self.cfg.enabled or self.store.kind == "memory":
            return None
        probe = Bucket(key(self.planner.settings.redis_prefix, "rl", "readyz", "probe"), 1.0, 1.0, 0.0)
        try:
            async with asyncio.timeout(self.cfg.store_timeout * 2):
                await decide(self.store, [probe], now=self._now())
        except StoreError as exc:
            return exc
        except TimeoutError:
            return StoreError("redis: no answer to the readiness probe", "stalled")
        return None

    def prepare(self, call: Call) -> None:
        """On Redis: queue the take now, in the same round trip as the cache lookup (core/pipeline.py).

        A call that never reaches this stage (a cache hit, a coalesced follower) gets it back in `abandon`.
        """
        if not self.cfg.enabled or not pipelined(self.store):
            return
        plan = self.planner.plan(call, lambda c: estimate(c, self.cfg.completion_estimate))
        if plan is not None:
            call.limiting.taken = Taken(plan, self._send(plan.tenant_group), self._send(plan.model_group))
            call.pending += 1

    def abandon(self, call: Call) -> None:
        """Refund what `prepare` took for a call that never got here (queued, nobody waits for it)."""
        taken: Taken | None = call.limiting.taken
        call.limiting.taken = None
        if taken is None:
            return
        self._refund_when_answered(taken.tenant, taken.plan.tenant_group)
        self._refund_when_answered(taken.model, taken.plan.model_group)

    def _refund_when_answered(self, sent: Awaitable[Any] | None, group: list[Limit]) -> None:
        """A take whose answer nobody will read: what it paid goes back once it is answered."""
        if isinstance(sent, asyncio.Future):
            sent.add_done_callback(self._undo(group))
        elif sent is not None:
            forget(sent)

    def _undo(self, group: list[Limit]) -> Undo:
        """For a take given up on (guard timeout, cancelled): its refund, once its answer arrives."""
        return lambda fut: self._refund_if_paid(fut, group)

    def _refund_if_paid(self, fut: asyncio.Future[Any], group: list[Limit]) -> None:
        if fut.cancelled() or fut.exception() is not None or not parse_reply(fut.result()).allowed:
            return
        back = [Bucket(lim.bucket.key, lim.bucket.rate, lim.bucket.capacity, -lim.bucket.cost) for lim in group]
        forget(send_decision(self.store, back, mode="force", now=self._now()))

    def _send(self, group: list[Limit]) -> Awaitable[Any] | None:
        return send_decision(self.store, [lim.bucket for lim in group], now=self._now()) if group else None

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        if not self.cfg.enabled:
            return await nxt(call)
        taken: Taken | None = call.limiting.taken
        call.limiting.taken = None
        if taken is not None:
            reserved = await self._admit_together(call, taken.plan, taken.tenant, taken.model)
            return await self._go(call, taken.plan, reserved, nxt)
        plan = self.planner.plan(call, lambda c: estimate(c, self.cfg.completion_estimate))
        if plan is None:
            return await nxt(call)
        if plan.model_group and pipelined(self.store):
            reserved = await self._admit_together(call, plan, self._send(plan.tenant_group),
                                                  self._send(plan.model_group))
        else:
            reserved = await self._admit(call, plan)
        return await self._go(call, plan, reserved, nxt)

    async def _go(self, call: Call, plan: LimitPlan, reserved: bool, nxt: Handler) -> Answer:
        if not reserved or not plan.estimate:
            return await nxt(call)
        return await self._settling(call, plan, nxt)

    # --- admission -------------------------------------------------------------------------------
    async def _admit(self, call: Call, plan: LimitPlan) -> bool:
        """Pay every bucket or raise; False when the store failed open before anything was reserved."""
        try:
            first = await self._take(plan.tenant_group, call)
        except StoreError:
            self._store_failed(call, plan.limits)
            return False
        if not first.allowed:
            self._deny(call, plan, plan.tenant_group, first)
        second = Decision(True, 0.0, ())
        if plan.model_group:
            try:
                second = await self._take(plan.model_group, call)
            except StoreError:
                if self.cfg.on_store_error == "fail_closed":
                    await self._refund(plan.tenant_group)
                self._store_failed(call, plan.model_group)
            if not second.allowed:
                await self._refund(plan.tenant_group)  # all-or-nothing across the two hash tags
                self._deny(call, plan, plan.model_group, second)
        self._admitted(call, plan, first, second)
        return True

    async def _admit_together(self, call: Call, plan: LimitPlan, first_sent: Awaitable[Any] | None,
                              second_sent: Awaitable[Any] | None) -> bool:
        """Both groups sent at once (one round trip); all-or-nothing by refunding the group that paid."""
        try:
            first = await self._decided(first_sent, plan.tenant_group, call)
        except StoreError:
            paid = await self._answer_of(second_sent, plan.model_group, call)
            if paid is not None and paid.allowed and self.cfg.on_store_error == "fail_closed":
                await self._refund(plan.model_group)  # refused: what it paid goes back; admitted, it stays paid
            self._store_failed(call, plan.limits)
            return False
        except asyncio.CancelledError:
            self._refund_when_answered(second_sent, plan.model_group)  # never to be read now
            raise
        try:
            second = await self._decided(second_sent, plan.model_group, call)
        except StoreError:
            if not first.allowed:
                self._deny(call, plan, plan.tenant_group, first)
            if self.cfg.on_store_error == "fail_closed":
                await self._refund(plan.tenant_group)
            self._store_failed(call, plan.model_group)
            second = Decision(True, 0.0, ())
        if not first.allowed:
            if second.allowed and second.remaining:
                await self._refund(plan.model_group)
            self._deny(call, plan, plan.tenant_group, first)
        if not second.allowed:
            await self._refund(plan.tenant_group)
            self._deny(call, plan, plan.model_group, second)
        self._admitted(call, plan, first, second)
        return True

    async def _decided(self, sent: Awaitable[Any] | None, group: list[Limit], call: Call) -> Decision:
        """A sent take's decision, however late, within the call's deadline (StoreError on failure);
        given up on (the deadline, the client left), what it paid goes back once answered."""
        if sent is None:
            return _FREE
        within = call.deadline - self.clock.monotonic()
        return parse_reply(await self.guard.run(sent, self._undo(group), within))

    async def _answer_of(self, sent: Awaitable[Any] | None, group: list[Limit], call: Call) -> Decision | None:
        if sent is None:
            return None
        try:
            return await self._decided(sent, group, call)
        except StoreError:
            return None

    def _admitted(self, call: Call, plan: LimitPlan, first: Decision, second: Decision) -> None:
        outcomes = call.limiting.outcomes
        outcomes.extend((lim.scope, "allowed") for lim in plan.tenant_group)
        if second.remaining:
            outcomes.extend((lim.scope, "allowed") for lim in plan.model_group)
        # A model group that failed open has no figures (remaining is empty): it adds no headers.
        pairs = [*zip(plan.tenant_group, first.remaining, strict=True),
                 *zip(plan.model_group, second.remaining, strict=False)]
        call.reply_headers.update(rate_headers(pairs))

    async def _take(self, limits: list[Limit], call: Call) -> Decision:
        return await self._decided(self._send(limits), limits, call)

    def _now(self) -> float | None:
        return None if self._server_time else self.clock.time()

    def _deny(self, call: Call, plan: LimitPlan, group: list[Limit], decision: Decision) -> None:
        scopes = denied_scopes(group, decision.remaining)
        call.limiting.outcomes.extend((scope, "limited") for scope in scopes)
        ms = max(1, math.ceil(decision.wait * 1000 - 1e-6))  # the exact wait, never rounded down
        headers = rate_headers(list(zip(group, decision.remaining, strict=True)))
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
        if pipelined(self.store):  # queued, nobody waits: neither a timeout nor the client leaving can drop it
            forget(send_decision(self.store, back, mode="force", now=self._now()))
            return
        try:
            await self.guard.run(decide(self.store, back, mode="force", now=self._now()))
        except StoreError:
            pass

    def _store_failed(self, call: Call, limits: list[Limit]) -> None:
        closed = self.cfg.on_store_error == "fail_closed"
        call.limiting.store_error = True
        call.limiting.outcomes.extend(
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
        call.limiting.tokens_settled = used
        delta = [Bucket(lim.bucket.key, lim.bucket.rate, lim.bucket.capacity, used - lim.bucket.cost)
                 for lim in limits if used != lim.bucket.cost]
        if not delta:
            return
        if pipelined(self.store):  # after the answer, off its path; still ahead of this process's next take
            def failed(exc: StoreError) -> None:
                call.limiting.settle_error = True
                self.guard.failed(exc)

            sent = send_decision(self.store, delta, mode="force", now=self._now())
            await in_background(sent, failed, lambda _: self.guard.answered())
            return
        try:
            await self.guard.run(decide(self.store, delta, mode="force", now=self._now()))
        except StoreError:
            call.limiting.settle_error = True
