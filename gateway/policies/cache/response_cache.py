"""`ResponseCache`: reads, writes and claims cache entries in the store, shared by the cache and coalesce stages.

It owns the store traffic of the cache (lookups queued on Redis, claims of a coalescing flight, the
bounded writes of complete answers and of streams once their last event has passed), the in-process
copy of entries (`local.py`), and the bypass window after a store failure. What a request may read
or write comes from its `CachePlan` (`key.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from gateway.core.call import Answer, Call, Reply, StreamReply
from gateway.core.clock import Clock
from gateway.core.config import CacheConfig
from gateway.core.sse import error_in
from gateway.policies.cache.claims import Claim, FlightKeys, finish, read_claim, send_claim
from gateway.policies.cache.entry import Envelope, decode, encode_reply, encode_stream
from gateway.policies.cache.key import CachePlan, CachePlanner
from gateway.policies.cache.local import LocalEntries
from gateway.store import Store, StoreError
from gateway.store.ordered import forget, in_background, send_get
from gateway.store.room import CacheRoom

log = logging.getLogger("gateway.cache")

ENTRY_OVERHEAD = 512  # bytes an embedded-store entry costs beyond key and value (dict slots, expiry, LRU node)


@dataclass(frozen=True, slots=True)
class Sent:
    """A lookup queued ahead of the stage: a claim (with its token) or a plain GET (token None)."""

    token: str | None
    work: Awaitable[Any]


def mark(call: Call, outcome: str) -> None:
    """Record the cache outcome for the client (`X-Cache`) and for metrics and logs (`call.cache`)."""
    call.cache = outcome
    call.reply_headers["X-Cache"] = outcome.upper()


class ResponseCache:
    """Entries in the store: lookups, writes (replies now, streams when they end), failure accounting."""

    def __init__(self, store: Store, clock: Clock, config: CacheConfig, planner: CachePlanner,
                 room: CacheRoom | None = None) -> None:
        self.store = store
        self.room = room  # a Redis shared with the limiter: no writes once it is nearly full (store/room.py)
        self.clock = clock
        self.config = config
        self.planner = planner
        self._down_until = -math.inf
        # The embedded store has no eviction of its own: entries are tracked in write order
        # and the oldest dropped once their total passes `memory_max_bytes`.
        self._sizes: OrderedDict[str, int] | None = OrderedDict() if store.kind == "memory" else None
        self._total = 0
        # Lock tokens: unique across replicas by a random prefix, within the process by a counter
        # (a token per cacheable miss; os.urandom for each was a measurable cost).
        self._token_prefix = secrets.token_hex(8)
        self._tokens = itertools.count()
        self.coalescing = False  # set by the coalesce stage: lookups of coalesced plans take the lock too
        # Hot entries held in process, in front of a shared store (the embedded store is in process already).
        local = LocalEntries(clock, config.local_ttl, config.local_max_entries, config.local_max_bytes)
        self.local: LocalEntries | None = local if store.kind != "memory" and local.enabled else None

    def available(self) -> bool:
        """False while cooling down after a store failure."""
        return self.clock.monotonic() >= self._down_until

    def failed(self, call: Call, exc: StoreError) -> None:
        """Count a store failure and bypass the cache for `store_cooldown` seconds."""
        call.caching.store_errors += 1
        if self.room is not None and exc.cause == "oom":
            self.room.refused()
        if self.available():
            log.warning("cache store failed (%s); bypassing the cache for %.1fs", exc, self.config.store_cooldown,
                        extra={"request_id": call.request_id})
        self._down_until = self.clock.monotonic() + self.config.store_cooldown

    async def lookup(self, plan: CachePlan, sent: Awaitable[Any] | None = None) -> Envelope | None:
        """The entry of `plan`, if present and fit for the plan's form. Raises StoreError."""
        return self.usable(plan, await (sent if sent is not None else self.store.get(plan.key)))

    def send_lookup(self, plan: CachePlan) -> Sent:
        """The lookup of `plan` (a claim when it flies), queued now on a pipelined store."""
        if self.flies(plan):
            token = self.new_token()
            return Sent(token, send_claim(self.store, FlightKeys(plan.key), token, self.config.lock_ttl))
        return Sent(None, send_get(self.store, plan.key))

    def usable(self, plan: CachePlan, raw: bytes | None) -> Envelope | None:
        """`raw` decoded, when it is an entry fit for the plan's form.

        The form is in the key already; this is the second lock. A stream request may get a
        complete answer back (an upstream that answered it with JSON): the same answer it got first.
        """
        env = decode(raw)
        if env is None or env.kind not in (("stream", "reply") if plan.stream else ("reply",)):
            return None
        return env

    def keep_local(self, plan: CachePlan, env: Envelope) -> None:
        """Hold an entry read from the store in process, for what is left of its life (at most local_ttl)."""
        if self.local is not None:
            left = plan.ttl - (self.clock.time() - float(env.meta.get("at", 0.0)))
            self.local.put(plan.key, env, left)

    def new_token(self) -> str:
        """A lock token no other leader anywhere holds."""
        return f"{self._token_prefix}{next(self._tokens):x}"

    def flies(self, plan: CachePlan) -> bool:
        """Whether calls of `plan` are coalesced (a coalesce stage is on the road and the plan fits)."""
        return self.coalescing and not plan.stream and plan.read and plan.write

    async def claim(self, plan: CachePlan, token: str | None = None, sent: Sent | None = None) -> Claim:
        """The entry, or the flight's lock, or its holder, in one round trip (claims.py). Raises StoreError."""
        keys = FlightKeys(plan.key)
        if sent is None or sent.token is None:
            token = token or self.new_token()
            sent = Sent(token, send_claim(self.store, keys, token, self.config.lock_ttl))
        else:
            token = sent.token
        got = read_claim(await self._claimed(sent.work, token, plan), token)
        if got.entry is not None:
            got.env = self.usable(plan, got.entry)
            if got.env is None:  # present but unreadable here (another format): lock the old way
                if await self.store.set(keys.lock, token.encode(), ttl=self.config.lock_ttl, nx=True):
                    return Claim(token, lead=True)
                return Claim(token, holder=await self.store.get(keys.lock))
        return got

    async def _claimed(self, work: Awaitable[Any], token: str, plan: CachePlan) -> Any:
        """The claim's reply. A queued claim outlives a caller that leaves (it may have taken the lock
        already): shielded, and let go once answered, so nobody waits lock_ttl for a leader that left."""
        if not isinstance(work, asyncio.Future):
            return await work
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            self.release_when_answered(work, token, plan)
            raise

    def release_when_answered(self, work: asyncio.Future[Any], token: str, plan: CachePlan) -> None:
        """A queued claim whose reply nobody will read: a lock it took is let go once the reply arrives."""
        work.add_done_callback(lambda fut: self._let_go(fut, token, plan))

    def _let_go(self, fut: asyncio.Future[Any], token: str, plan: CachePlan) -> None:
        if fut.cancelled() or fut.exception() is not None or not read_claim(fut.result(), token).lead:
            return
        forget(finish(self.store, FlightKeys(plan.key), token, "none", b"", self.config.outcome_ttl))

    async def release(self, got: Claim, plan: CachePlan) -> None:
        """Let go of a lead claim nobody used (the call went its own way): the lock, and wake any follower."""
        work = finish(self.store, FlightKeys(plan.key), got.token, "none", b"", self.config.outcome_ttl)
        await in_background(work)

    def serve(self, call: Call, env: Envelope, outcome: str) -> Answer:
        """A stored answer for `call`, marked with `outcome` (hit or coalesced)."""
        mark(call, outcome)
        call.caching.served_bytes = len(env.body)
        return env.answer(self.clock.time())

    async def keep(self, call: Call, plan: CachePlan, answer: Answer) -> Answer:
        """Store a Reply now; wrap a StreamReply so that it is stored when it ends."""
        if not plan.write:
            return answer
        if isinstance(answer, Reply):
            await self.store_reply(call, plan, answer)
            return answer
        return self.capture(call, plan, answer)

    async def store_reply(self, call: Call, plan: CachePlan, reply: Reply) -> bool:
        """Store a complete answer if it qualifies; whether it was stored."""
        raw = self.entry_for(call, plan, reply)
        return raw is not None and await self._put(call, plan, raw)

    def entry_for(self, call: Call, plan: CachePlan, reply: Reply) -> bytes | None:
        """The entry to store for a complete answer; None (and `store_skipped`) when it does not qualify."""
        if (not 200 <= reply.status < 300 or len(reply.body) > self.config.max_entry_bytes or not self.available()
                or not self.has_room(len(reply.body))):
            call.caching.store = "store_skipped"
            return None
        try:
            return encode_reply(reply, self.clock.time(), self.config.compress_over_bytes)
        except (TypeError, ValueError):  # an answer that cannot be encoded is still answered, just not stored
            log.exception("a cache entry could not be encoded; the answer is not stored",
                          extra={"request_id": call.request_id})
            call.caching.store = "store_skipped"
            return None

    def capture(self, call: Call, plan: CachePlan, answer: StreamReply) -> StreamReply:
        """Record the stream's events as they pass; store them in the end if the stream completed cleanly."""
        answer.rest = self._recording(call, plan, answer, answer.rest)
        return answer

    async def _recording(self, call: Call, plan: CachePlan, answer: StreamReply,
                         inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        events = [answer.first]
        size = len(answer.first)
        usable = 200 <= answer.status < 300 and size <= self.config.max_entry_bytes
        completed = False
        try:
            async for ev in inner:
                if usable:
                    size += len(ev)
                    usable = size <= self.config.max_entry_bytes and error_in(ev) is None
                    if usable:
                        events.append(ev)
                    else:
                        events.clear()  # no longer storable: stop holding the events
                yield ev
            completed = True
        finally:
            closer = getattr(inner, "aclose", None)
            if closer is not None:
                await closer()
            # A client that left early, or an upstream failure, leaves `completed` False: nothing stored.
            if completed:
                await self._store_events(call, plan, answer, events if usable else None)

    async def _store_events(self, call: Call, plan: CachePlan, answer: StreamReply, events: list[bytes] | None) -> None:
        if events is None or call.streaming.error:
            call.caching.store = "store_skipped"
            return
        raw = encode_stream(events, answer, self.clock.time(), self.config.compress_over_bytes)
        await self._put(call, plan, raw)

    def has_room(self, nbytes: int) -> bool:
        """Whether the store has room for an entry of about `nbytes` (yes, unless a shared Redis is nearly full)."""
        return self.room is None or self.room.allows(nbytes)

    async def _put(self, call: Call, plan: CachePlan, raw: bytes) -> bool:
        if not self.available() or not self.has_room(len(raw)):
            call.caching.store = "store_skipped"
            return False
        try:
            await self.store.set(plan.key, raw, ttl=plan.ttl)
        except StoreError as exc:
            self.failed(call, exc)
            call.caching.store = "store_skipped"
            return False
        await self.storing(call, plan, len(raw))
        return True

    async def storing(self, call: Call, plan: CachePlan, size: int) -> None:
        """Account for an entry of `size` bytes written (or, on Redis, queued) under `plan.key`."""
        call.caching.store = "store"
        call.caching.stored_bytes = size
        if self.room is not None:
            self.room.wrote(len(plan.key) + size)
        if self._sizes is not None:
            await self._bound_memory(plan.key, size)

    async def _bound_memory(self, key: str, size: int) -> None:
        assert self._sizes is not None
        size += len(key) + ENTRY_OVERHEAD  # what the entry really costs the process, not just its bytes
        self._total += size - self._sizes.pop(key, 0)
        self._sizes[key] = size
        while self._total > self.config.memory_max_bytes and len(self._sizes) > 1:
            old, old_size = self._sizes.popitem(last=False)
            self._total -= old_size
            await self.store.delete(old)
