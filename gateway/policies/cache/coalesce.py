"""Request coalescing: identical cacheable requests in flight together share one upstream call.

Two layers, both keyed by the cache entry key (so "identical" means exactly what the cache
means, tenant scope included):
- in process, a dict of futures: the first request of a key leads, the others await its outcome;
- across replicas, the leader of this process runs `StoreFlight` (a lock, a notification, the
  entry) so that one leader in the whole fleet calls the upstream.

Followers get the leader's answer with `X-Cache: COALESCED`, or its error, re-raised to each of
them once (never retried by each). When the leader gives up for reasons of its own (its client
left, its tenant's quota, its own deadline), one follower takes over.

Only non-stream answers are coalesced: a stream is relayed while it is produced, and handing a
live stream to several clients (or making them wait for its end) is not worth its complexity.
Identical streams still share the cache once the first one has ended. Requests that bypass the
cache (no-cache, no-store, use_cache false) are never coalesced: they asked for their own call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from gateway.core.call import Answer, Call, Reply
from gateway.core.errors import GatewayError
from gateway.core.pipeline import Handler, let_go
from gateway.policies.cache.claims import Claim
from gateway.policies.cache.entry import decode
from gateway.policies.cache.flight import StoreFlight, personal
from gateway.policies.cache.key import CachePlan
from gateway.policies.cache.leader_error import encode_error, rebuild_error
from gateway.policies.cache.response_cache import ResponseCache, mark


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a local leader hands its followers."""

    kind: Literal["answer", "error", "abandon", "direct"]
    reply: Reply | None = None
    error: bytes = b""  # an encoded error envelope (each follower rebuilds its own instance)

    def give(self, call: Call) -> Reply:
        """The follower's copy of the answer, or the leader's error raised for it."""
        mark(call, "coalesced")
        if self.kind == "error":
            env = decode(self.error)
            raise rebuild_error(env) if env is not None else GatewayError("internal gateway error")
        assert self.reply is not None
        call.caching.served_bytes = len(self.reply.body)
        r = self.reply
        return Reply(r.status, r.body, r.content_type, dict(r.headers))


ABANDON = Outcome("abandon")
DIRECT = Outcome("direct")


class CoalesceStage:
    """Single-flight for cacheable, non-stream requests."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.flight = StoreFlight(cache)
        self._flights: dict[str, asyncio.Future[Outcome]] = {}
        cache.coalescing = cache.config.coalesce  # the cache stage's lookup now also claims the flight

    @property
    def active(self) -> bool:
        """False when the cache or coalescing is off (the stage is then left off the road: http/app.py build_stages)."""
        return self.cache.config.enabled and self.cache.config.coalesce

    def applies(self, plan: CachePlan | None) -> bool:
        return plan is not None and self.cache.config.coalesce and not plan.stream and plan.read and plan.write

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        plan = self.cache.planner.plan(call)
        if plan is None or not self.applies(plan):
            return await nxt(call)
        got: Claim | None = call.caching.claim  # the cache stage's lookup claimed the flight
        call.caching.claim = None
        while True:
            fut = self._flights.get(plan.key)
            if fut is None:
                return await self._lead(call, plan, nxt, got)
            got = None  # followed locally; a lead claim left untaken is released by the cache stage
            let_go(call)  # a follower waits, not charged: the limiter's prepared take goes back now
            outcome = await asyncio.shield(fut)
            if outcome is DIRECT:
                return await nxt(call)
            if outcome is not ABANDON:
                return outcome.give(call)

    async def _lead(self, call: Call, plan: CachePlan, nxt: Handler, got: Claim | None) -> Answer:
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._flights[plan.key] = fut
        outcome = ABANDON
        try:
            answer = await self._call(call, plan, nxt, got)
            if isinstance(answer, Reply):  # a copy: stages outside may still decorate the leader's own
                outcome = Outcome("answer", reply=Reply(answer.status, answer.body, answer.content_type,
                                                        dict(answer.headers)))
            else:
                outcome = DIRECT
            return answer
        except GatewayError as err:
            if not personal(err, call, self.cache.clock.monotonic()):
                outcome = Outcome("error", error=encode_error(err, "", 1 << 62))
            raise
        except Exception:
            outcome = Outcome("error", error=encode_error(GatewayError("internal gateway error"), "", 1 << 62))
            raise
        finally:
            del self._flights[plan.key]
            fut.set_result(outcome)

    async def _call(self, call: Call, plan: CachePlan, nxt: Handler, got: Claim | None) -> Answer:
        # With the store down (the cache stage marked the call bypassed) only this process coalesces.
        if call.cache == "bypass" or not self.cache.available():
            return await nxt(call)
        if got is not None:
            got.taken = True
        return await self.flight.run(call, plan, nxt, got)
