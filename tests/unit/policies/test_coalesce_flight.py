"""Coalescing across replicas: two replicas on one store, run against MemoryStore, fakeredis and a real Redis.

Each replica has its own stages, store client (its own pub/sub connection on Redis) and in-process
flights, exactly as two gateway processes would; only the store is shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from gateway.core.call import Answer, Call, Reply
from gateway.core.clock import Clock, FakeClock
from gateway.core.errors import UpstreamStatusError
from gateway.policies.cache.flight import FlightKeys
from gateway.store import Store
from gateway.store.memory import MemoryStore
from tests.support.cache_kit import GatedUpstream, Replica, StorePair, prefixed, settings
from tests.support.held_replies import held_store


@dataclass
class Pair:
    """Two replicas sharing one upstream and one store."""

    a: Replica
    b: Replica
    stores: tuple[Store, Store]
    clock: Clock
    upstream: GatedUpstream

    def keys(self, call: Call) -> FlightKeys:
        plan = self.a.cache.planner.plan(call)
        assert plan is not None
        return FlightKeys(plan.key)


@pytest.fixture
def make_pair(store_pair: Callable[[], StorePair], key_prefix: str) -> Callable[..., Pair]:
    def make(**cache: Any) -> Pair:
        cfg = prefixed(settings({"lock_ttl": 3.0, **cache}), key_prefix)
        one, two, clock = store_pair()
        upstream = GatedUpstream()
        return Pair(Replica(cfg, one, clock, upstream), Replica(cfg, two, clock, upstream), (one, two), clock, upstream)

    return make


async def until(cond: Callable[[], bool | Awaitable[bool]], what: str, limit: float = 5.0) -> None:
    """Wait (briefly, in real time) until `cond` holds: for work happening on a real Redis connection."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        ok = cond()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


def following(store: Store, keys: FlightKeys) -> Callable[[], bool]:
    """Whether a follower on `store` waits on the flight's channel."""
    waiters = getattr(getattr(store, "notifications", store), "_waiters", {})  # Redis: its pub/sub's
    return lambda: bool(waiters.get(keys.channel))


async def test_one_upstream_call_across_two_replicas(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.upstream.gate.clear()
    lead = p.a.call()
    leader = asyncio.create_task(p.a.run(lead))
    await until(lambda: p.upstream.arrived == 1, "the leader reached the upstream")
    calls_b = [p.b.call() for _ in range(5)]
    calls_a = [p.a.call() for _ in range(5)]
    tasks = [asyncio.create_task(p.b.run(c)) for c in calls_b] + [asyncio.create_task(p.a.run(c)) for c in calls_a]
    await until(following(p.stores[1], p.keys(lead)), "replica b follows")
    p.upstream.gate.set()
    answers: list[Answer] = [await leader, *await asyncio.gather(*tasks)]
    assert p.upstream.arrived == 1
    assert len({a.body for a in answers if isinstance(a, Reply)}) == 1 and len(answers) == 11
    assert lead.cache == "miss" and all(c.cache == "coalesced" for c in calls_a + calls_b)
    assert all(c.reply_headers["X-Cache"] == "COALESCED" for c in calls_b)
    assert not await p.stores[0].get(p.keys(lead).lock)  # released


async def test_a_leaders_error_reaches_the_other_replicas_followers_once(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.upstream.gate.clear()
    p.upstream.script(UpstreamStatusError("bad gateway upstream", status=502, body=b'{"error":"bad"}'))
    lead = p.a.call()
    leader = asyncio.create_task(p.a.run(lead))
    await until(lambda: p.upstream.arrived == 1, "the leader reached the upstream")
    followers = [asyncio.create_task(p.b.run(p.b.call())) for _ in range(4)]
    await until(following(p.stores[1], p.keys(lead)), "replica b follows")
    p.upstream.gate.set()
    results = await asyncio.gather(leader, *followers, return_exceptions=True)
    assert p.upstream.arrived == 1
    assert all(isinstance(r, UpstreamStatusError) and r.status == 502 and r.body == b'{"error":"bad"}'
               for r in results)
    again = p.b.call()
    await p.b.run(again)
    assert again.cache == "miss" and p.upstream.arrived == 2  # errors are handed on, never cached


async def test_a_follower_takes_over_when_the_leader_vanishes(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    call = p.b.call()
    keys = p.keys(call)
    await p.stores[0].set(keys.lock, b"a-leader-that-died", ttl=3.0)
    task = asyncio.create_task(p.b.run(call))
    await until(following(p.stores[1], keys), "replica b follows the dead leader")
    assert p.upstream.arrived == 0
    await p.stores[0].delete(keys.lock)  # its lock lapses; nobody publishes anything
    answer = await task
    assert isinstance(answer, Reply) and p.upstream.arrived == 1 and call.cache == "miss"


async def test_an_answer_too_big_to_store_sends_the_other_replicas_followers_their_own_way(
    make_pair: Callable[..., Pair],
) -> None:
    p = make_pair(max_entry_bytes=64)
    p.upstream.default = lambda call, model: Reply(200, orjson.dumps({"v": "x" * 100, "n": p.upstream.arrived}))
    p.upstream.gate.clear()
    lead = p.a.call()
    leader = asyncio.create_task(p.a.run(lead))
    await until(lambda: p.upstream.arrived == 1, "the leader reached the upstream")
    follower = asyncio.create_task(p.b.run(p.b.call()))
    await until(following(p.stores[1], p.keys(lead)), "replica b follows")
    p.upstream.gate.set()
    await leader
    assert isinstance(await follower, Reply)
    assert p.upstream.arrived == 2


async def test_an_entry_that_cannot_be_built_still_lets_the_lock_go(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    # A header value the entry encoder refuses (orjson: bytes are not JSON).
    p.upstream.default = lambda call, model: Reply(200, b'{"ok":true}', headers={"x-odd": b"raw"})  # type: ignore[dict-item]
    p.upstream.gate.clear()
    lead = p.a.call()
    leader = asyncio.create_task(p.a.run(lead))
    await until(lambda: p.upstream.arrived == 1, "the leader reached the upstream")
    follower = asyncio.create_task(p.b.run(p.b.call()))
    await until(following(p.stores[1], p.keys(lead)), "replica b follows")
    p.upstream.gate.set()
    assert isinstance(await leader, Reply)  # the client still gets its answer
    assert not await p.stores[0].get(p.keys(lead).lock)  # released now, not at lock_ttl
    assert isinstance(await follower, Reply)
    assert p.upstream.arrived == 2  # nothing was stored: the follower went its own way


async def test_lock_scripts_touch_only_the_holders_lock(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    store = p.stores[0]
    keys = p.keys(p.a.call())
    assert await store.set(keys.lock, b"mine", ttl=3.0, nx=True)
    assert not await store.set(keys.lock, b"theirs", ttl=3.0, nx=True)
    assert await store.run_script("cache_lock_extend", [keys.lock], ["theirs", 60_000]) == 0
    assert await store.run_script("cache_lock_release", [keys.lock], ["theirs"]) == 0
    left = await store.ttl(keys.lock)
    assert left is not None and 0 < left <= 3.0
    assert await store.run_script("cache_lock_extend", [keys.lock], ["mine", 60_000]) == 1
    left = await store.ttl(keys.lock)
    assert left is not None and 3.0 < left <= 60.0
    assert await store.run_script("cache_lock_release", [keys.lock], ["mine"]) == 1
    assert await store.get(keys.lock) is None
    assert await store.run_script("cache_lock_release", [keys.lock], ["mine"]) == 0


# --- fake time only (the embedded store): lock expiry and renewal, without real waiting -------------
def _memory_pair(lock_ttl: float) -> tuple[Replica, Replica, FakeClock, GatedUpstream, MemoryStore]:
    clock = FakeClock(autojump=True)
    store = MemoryStore(clock)
    up = GatedUpstream()
    cfg = settings({"lock_ttl": lock_ttl})
    return Replica(cfg, store, clock, up), Replica(cfg, store, clock, up), clock, up, store


async def test_a_dead_leaders_lock_expires_within_lock_ttl() -> None:
    _a, b, clock, up, store = _memory_pair(lock_ttl=10.0)
    call = b.call()
    plan = b.cache.planner.plan(call)
    assert plan is not None
    await store.set(FlightKeys(plan.key).lock, b"dead", ttl=10.0)
    start = clock.monotonic()
    await b.run(call)
    assert up.arrived == 1 and 10.0 <= clock.monotonic() - start <= 11.0


async def test_a_slow_leader_renews_its_lock_so_nobody_takes_over() -> None:
    a, b, clock, up, _store = _memory_pair(lock_ttl=3.0)
    up.gate.clear()
    start = clock.monotonic()
    leader = asyncio.create_task(a.run(a.call()))
    await until(lambda: up.arrived == 1, "the leader reached the upstream")
    follower = asyncio.create_task(b.run(b.call()))
    await until(lambda: clock.monotonic() - start > 12.0, "four lock lifetimes pass")
    assert up.arrived == 1
    up.gate.set()
    first, second = await asyncio.gather(leader, follower)
    assert isinstance(first, Reply) and isinstance(second, Reply) and first.body == second.body
    assert up.arrived == 1


async def test_a_claim_whose_caller_left_lets_the_lock_go_once_its_reply_arrives() -> None:
    # The client leaves while the lookup (which also takes the flight's lock) is on its way back:
    # the lock was taken on the server. It is let go when the reply comes, not after lock_ttl.
    store, held = held_store()
    replica = Replica(settings({"lock_ttl": 30.0}), store, FakeClock(), GatedUpstream())
    try:
        held.hold()
        left = asyncio.create_task(replica.run(replica.call()))
        await held.ran.wait()  # the claim ran: the lock is held under the leaving call's token
        left.cancel()
        with pytest.raises(asyncio.CancelledError):
            await left
        held.release()
        await store.queue.drain()  # the claim's reply, then what it calls for
        plan = replica.cache.planner.plan(replica.call())
        assert plan is not None
        assert (await replica.cache.claim(plan)).lead  # the next caller leads at once
        assert replica.upstream.arrived == 0
    finally:
        await store.close()
