"""The [cache] stage: answers repeats of deterministic requests from the store (entries: `response_cache.py`).

Per call (plans come from `key.CachePlanner`):
- not cacheable (sampled generation, a task that is off): passed through, no `X-Cache` header;
- client bypass (`x-use-cache: false`, `options.use_cache: false`, `Cache-Control: no-store`):
  neither read nor written, `X-Cache: BYPASS`; `Cache-Control: no-cache` skips the read only;
- a hit is answered at once (`X-Cache: HIT`, `Age`), a stream hit replays the stored events as SSE;
- a miss goes on (`X-Cache: MISS`); the answer is stored unless the coalesce stage below, whose
  leader must write the entry before it wakes its followers, has stored it already.

Invariants:
- Only complete 2xx answers are stored, at most `max_entry_bytes` (uncompressed); a stream only
  once its last event has passed, without an error event and with the client still there.
- A stream entry is never served to a non-stream request nor the reverse (the form is in the key,
  and `lookup` checks the entry's kind as well).
- A store failure never fails a request: the cache is bypassed for `store_cooldown` seconds, the
  failure is counted in `call.caching.store_errors` and logged once per cooldown.

Round trips: when the coalesce stage is on the road, the lookup of a coalesced plan is
also the flight's claim (`claims.py`: entry, or lock, or holder, in one script), handed
to the coalesce stage in `call.caching.claim`; a lead claim nobody used is released here. On
Redis, `prepare` queues the lookup before the first stage runs, so it travels with the rate
limiter's take; entries read from Redis may be held in process (`local.py`, off by default).

For metrics and logs: `call.cache` (hit|miss|bypass|coalesced|none), `call.caching.served_bytes`
(body bytes served from the cache), `call.caching.stored_bytes` and `.store` (store|store_skipped).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.core.call import Answer, Call
from gateway.core.pipeline import Handler
from gateway.policies.cache.claims import Claim
from gateway.policies.cache.response_cache import ResponseCache, Sent, mark
from gateway.store import StoreError
from gateway.store.ordered import forget, pipelined

log = logging.getLogger("gateway.cache")








class CacheStage:
    """Answers repeats of deterministic requests from the store."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    @property
    def active(self) -> bool:
        """False when the cache is off (the stage is then left off the road: http/app.py build_stages)."""
        return self.cache.config.enabled

    def prepare(self, call: Call) -> bool:
        """On Redis: queue the lookup now, so it shares a round trip with the limiter's take (core/pipeline.py).

        True when the entry is held in process: the call will be answered here, nothing else is sent.
        """
        if not pipelined(self.cache.store):
            return False
        plan = self.cache.planner.plan(call)
        if plan is None or not plan.read or plan.bypass or not self.cache.available():
            return False
        if self.cache.local is not None and self.cache.local.get(plan.key) is not None:
            return True
        call.caching.sent = self.cache.send_lookup(plan)
        call.pending += 1
        return False

    def abandon(self, call: Call) -> None:
        """A queued lookup the stage never used: a lock it may have taken is let go."""
        sent: Sent | None = call.caching.sent
        call.caching.sent = None
        if sent is None:
            return
        plan = self.cache.planner.plan(call)
        if sent.token is None or not isinstance(sent.work, asyncio.Future) or plan is None:
            forget(sent.work)
            return
        self.cache.release_when_answered(sent.work, sent.token, plan)

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        plan = self.cache.planner.plan(call)
        if plan is None:
            return await nxt(call)
        if plan.bypass or not self.cache.available():
            mark(call, "bypass")
            return await nxt(call)
        got: Claim | None = None
        sent: Sent | None = call.caching.sent
        call.caching.sent = None
        if plan.read:
            held = self.cache.local.get(plan.key) if self.cache.local is not None and sent is None else None
            if held is not None:
                return self.cache.serve(call, held, "hit")
            try:
                if self.cache.flies(plan):  # the lookup also takes the flight's lock: one round trip
                    got = await self.cache.claim(plan, sent=sent)
                    env = got.env
                else:
                    env = await self.cache.lookup(plan, sent.work if sent is not None else None)
            except StoreError as exc:
                self.cache.failed(call, exc)
                mark(call, "bypass")
                return await nxt(call)
            if env is not None:
                self.cache.keep_local(plan, env)
                return self.cache.serve(call, env, "hit")
        mark(call, "miss")
        if got is not None:
            call.caching.claim = got
        try:
            answer = await nxt(call)
            if call.cache == "coalesced" or call.caching.store is not None:
                return answer  # a follower's answer, or the coalescing leader stored it already
            return await self.cache.keep(call, plan, answer)
        finally:
            if got is not None and got.lead and not got.taken:
                await self.cache.release(got, plan)
