"""Single-flight across replicas: one leader per cache key calls the upstream, the others wait for its entry.

Keys (all under the entry's hash tag, so one Cluster slot): the entry `K`, the lock `K:lock` (the
leader's random token, `SET NX PX lock_ttl`), the outcome `K:outcome` (a leader's error or "not
stored", tagged with its token, kept `outcome_ttl`), the waiter count `K:waiters` and the channel
`K:done`.

Claim (`claims.send_claim`, usually made by the cache stage's lookup itself): in one atomic
step the entry, or the lock (lead), or the holder's token (follow, counted as a waiter).

Leader: calls the upstream, has its lock renewed while it works (`leases.py`), then in one script
(`cache_finish.lua`) writes the entry (or the outcome), releases the lock (only if still its own)
and publishes on the channel only when a follower registered. On Redis that script is queued
without waiting for it: the answer is not held back by the round trip.

Follower: subscribes, then re-checks the state in growing slices (so a publish sent before the
subscription took hold costs at most one slice): the entry -> served as COALESCED; an outcome of
the leader it follows -> its error re-raised once, or "go yourself" when the answer was not
stored; the lock gone with neither -> the leader died or gave up: take over (try to lead). A dead
leader's lock expires, so a follower takes over within `lock_ttl`.

Errors that belong to the leader's request rather than to the answer (the gateway's own 429/503,
a timeout past the leader's own deadline) are not handed on: the followers take over instead.
A store failure never fails the request: the caller goes to the upstream on its own.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from typing import Any

from gateway.core.call import Answer, Call, Reply
from gateway.core.errors import GatewayError, RateLimited, ServiceUnavailable, UpstreamTimeout
from gateway.core.pipeline import Handler, let_go
from gateway.policies.cache.claims import Claim, FlightKeys, finish
from gateway.policies.cache.entry import decode, encode_skip
from gateway.policies.cache.key import CachePlan
from gateway.policies.cache.leader_error import encode_error, rebuild_error
from gateway.policies.cache.leases import Leases
from gateway.policies.cache.response_cache import ResponseCache
from gateway.store import StoreError
from gateway.store.ordered import in_background, pipelined

__all__ = ["FlightKeys", "StoreFlight", "Verdict", "personal"]

log = logging.getLogger("gateway.coalesce")
_FIRST_POLL = 0.05  # seconds; covers the time a subscription takes to hold
_MAX_POLL = 0.5
_DEADLINE_SLACK = 0.05


class Verdict(enum.Enum):
    """What a follower does when there is no answer to take."""

    TAKE_OVER = "take_over"  # the leader is gone without an answer: try to lead
    DIRECT = "direct"  # the leader's answer was not stored: call the upstream yourself


def personal(err: BaseException, call: Call, now: float) -> bool:
    """Whether an error belongs to the leader's request (its quota, its deadline), not to the answer."""
    if isinstance(err, (RateLimited, ServiceUnavailable)):
        return True
    # Event-loop timers may fire a hair before the clock reads the deadline (uvloop: millisecond ticks).
    return isinstance(err, UpstreamTimeout) and now >= call.deadline - _DEADLINE_SLACK


class StoreFlight:
    """One replica's side of the cross-replica single-flight."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.store = cache.store
        self.clock = cache.clock
        self.config = cache.config
        self.leases = Leases(cache.store, cache.clock, cache.config.lock_ttl)  # renews the locks our leaders hold

    async def run(self, call: Call, plan: CachePlan, nxt: Handler, first: Claim | None = None) -> Answer:
        """Lead or follow the flight of `plan`; the answer (or the leader's error) for this call.

        `first`: the claim the cache stage already made for this call (its lookup was the claim).
        """
        keys = FlightKeys(plan.key)
        token = first.token if first is not None else self.cache.new_token()
        pending = first
        while True:
            # Only our own store calls are guarded: a StoreError out of `nxt` must never cause a second call.
            try:
                got = pending if pending is not None else await self.cache.claim(plan, token)
            except StoreError as exc:
                self.cache.failed(call, exc)
                return await nxt(call)
            pending = None
            if got.env is not None:  # found while taking over: the previous leader's answer
                return self.cache.serve(call, got.env, "coalesced")
            if got.lead:
                return await self._lead(call, plan, nxt, keys, token)
            if got.holder is None:
                continue  # released between our two reads: try again
            let_go(call)  # a follower waits, not charged: the limiter's prepared take goes back now
            try:
                result = await self._follow(call, plan, keys, got.holder)
            except StoreError as exc:
                self.cache.failed(call, exc)
                return await nxt(call)
            if result is Verdict.DIRECT:
                return await nxt(call)
            if result is not Verdict.TAKE_OVER:
                return result

    # --- leading -----------------------------------------------------------------------------------
    async def _lead(self, call: Call, plan: CachePlan, nxt: Handler, keys: FlightKeys, token: str) -> Answer:
        # No re-check of the entry: the claim that made us leader found none, atomically with the lock.
        self.leases.hold(keys, token)
        try:
            answer = await nxt(call)
        except GatewayError as err:
            self.leases.release(token)
            outcome = None if personal(err, call, self.clock.monotonic()) else self._error(err, token)
            await self._finish(call, keys, token, outcome)
            raise
        except Exception:
            self.leases.release(token)
            await self._finish(call, keys, token, self._error(GatewayError("internal gateway error"), token))
            raise
        except BaseException:  # cancelled (the client left): let a follower take over at once
            self.leases.release(token)
            await _shielded(self._finish(call, keys, token, None))
            raise
        self.leases.release(token)
        entry = self.cache.entry_for(call, plan, answer) if isinstance(answer, Reply) else None
        if entry is None:
            await self._finish(call, keys, token, encode_skip(token))
        else:
            await self._finish(call, keys, token, None, entry=(plan, entry))
        return answer

    def _error(self, err: GatewayError, token: str) -> bytes:
        return encode_error(err, token, self.config.compress_over_bytes)

    async def _finish(self, call: Call, keys: FlightKeys, token: str, outcome: bytes | None,
                      entry: tuple[CachePlan, bytes] | None = None) -> None:
        """Entry or outcome first, then the lock, then the notification (followers rely on that order).

        One script; on Redis it is queued and the answer goes out without waiting for it.
        """
        if entry is not None:
            work = finish(self.store, keys, token, "entry", entry[1], entry[0].ttl)
        elif outcome is not None:
            work = finish(self.store, keys, token, "outcome", outcome, self.config.outcome_ttl)
        else:
            work = finish(self.store, keys, token, "none", b"", self.config.outcome_ttl)
        if pipelined(self.store):
            if entry is not None:
                await self.cache.storing(call, entry[0], len(entry[1]))

            def failed(exc: StoreError) -> None:
                if entry is not None:
                    call.caching.store = "store_skipped"
                    call.caching.stored_bytes = 0
                self.cache.failed(call, exc)

            await in_background(work, failed)
            return
        try:
            await work
        except StoreError as exc:
            if entry is not None:
                call.caching.store = "store_skipped"
            self.cache.failed(call, exc)
            return
        if entry is not None:
            await self.cache.storing(call, entry[0], len(entry[1]))

    # --- following ---------------------------------------------------------------------------------
    async def _follow(self, call: Call, plan: CachePlan, keys: FlightKeys, holder: bytes) -> Answer | Verdict:
        waiter = self._wait(call, keys)
        delay = _FIRST_POLL
        try:
            await asyncio.sleep(0)  # let the waiter start subscribing before the first check
            while True:
                result, holder = await self._check(call, plan, keys, holder)
                if result is not None:
                    return result
                if self.clock.monotonic() >= call.deadline:
                    raise UpstreamTimeout("the deadline passed while waiting for an identical request in flight")
                if waiter.done():  # a message came (or the subscription broke: polling goes on regardless)
                    _consume(waiter)
                    waiter = self._wait(call, keys)
                await _first_of(waiter, self.clock.sleep(delay))
                delay = min(delay * 2, _MAX_POLL)
        finally:
            if waiter.done():
                _consume(waiter)
            waiter.cancel()

    def _wait(self, call: Call, keys: FlightKeys) -> asyncio.Task[Any]:
        remaining = max(0.001, call.deadline - self.clock.monotonic())
        return asyncio.get_running_loop().create_task(self.store.wait_for(keys.channel, remaining))

    async def _check(self, call: Call, plan: CachePlan, keys: FlightKeys,
                     holder: bytes) -> tuple[Answer | Verdict | None, bytes]:
        found = await self._settled(call, plan, keys, holder)
        if found is not None:
            return found, holder
        current = await self.store.get(keys.lock)
        if current is not None:
            return None, current  # still in flight (perhaps under a new leader: follow that one)
        # The leader writes its entry or outcome before it lets go of the lock: look once more.
        found = await self._settled(call, plan, keys, holder)
        return (Verdict.TAKE_OVER if found is None else found), holder

    async def _settled(self, call: Call, plan: CachePlan, keys: FlightKeys, holder: bytes) -> Answer | Verdict | None:
        env = await self.cache.lookup(plan)
        if env is not None:
            return self.cache.serve(call, env, "coalesced")
        out = decode(await self.store.get(keys.outcome))
        if out is None or out.token != holder.decode(errors="replace"):
            return None
        if out.kind == "error":
            call.cache = "coalesced"
            raise rebuild_error(out)
        return Verdict.DIRECT


async def _first_of(waiter: asyncio.Task[Any], sleep: Awaitable[None]) -> None:
    sleeper = asyncio.ensure_future(sleep)
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's exception so that asyncio does not report it as lost."""
    if not task.cancelled():
        task.exception()


async def _shielded(coro: Awaitable[None]) -> None:
    """Run cleanup to its end even though the caller is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


# --- memory twins of the lock scripts (the embedded store) ---------------------------------------
def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()




