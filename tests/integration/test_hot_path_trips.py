"""Redis round trips on the hot path: one before the upstream, none after it on the answer's path.

The full chain (API key, tenant and model rate limits with tokens, cache with coalescing) on a
Redis store, counting the store's pipelined batches (`RedisStore.queue.batches`: one batch is one
write and one read on the Redis connection, i.e. one round trip). Runs on fakeredis, a real Redis and a
private 3-master Redis Cluster (there one batch is one write per node it touches, all nodes at once:
still one round trip of latency).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.call import Answer, Call, Reply
from gateway.core.clock import FakeClock
from gateway.http.app import create_app
from gateway.store.redis import RedisStore
from gateway.upstream.fake import FakeUpstream
from tests.support.limits_kit import A, chat, settings

_n = itertools.count()


class CountingUpstream(FakeUpstream):
    """Answers with usage, and notes how many store batches had been sent when each call arrived."""

    def __init__(self, store: RedisStore) -> None:
        super().__init__("hf", default=self._answer)
        self.store = store
        self.batches_at_call: list[int] = []

    def _answer(self, call: Call, model: str) -> Answer:
        self.batches_at_call.append(self.store.queue.batches)
        call.tokens_in, call.tokens_out = 12, 30
        return Reply(200, orjson.dumps({"id": next(_n), "usage": {"prompt_tokens": 12, "completion_tokens": 30}}))


@pytest.fixture(params=["fakeredis", "redis", "cluster"])
def redis_at(request: pytest.FixtureRequest) -> str | None:
    """None for fakeredis; the real Redis (or private cluster) URL (skipped locally, failing in CI, if unreachable)."""
    if request.param == "fakeredis":
        return None
    if request.param == "cluster":
        return str(request.getfixturevalue("private_cluster").url)
    request.getfixturevalue("real_redis")  # deletes this test's keys afterwards
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
async def store(redis_at: str | None) -> AsyncIterator[RedisStore]:
    made = RedisStore(fakeredis.FakeAsyncRedis(), timeout=1.0) if redis_at is None else RedisStore.from_url(
        redis_at, stall=1.0)
    yield made
    await made.close()


def _full_chain(prefix: str, requests: str = "100000/minute") -> Any:
    tenants = {"team-a": {"limits": {"requests": requests, "tokens": "100000/hour"}}}
    models = [{"name": "*", "limits": {"requests": "100000/minute"}, "cache": {"enabled": True}}]
    return settings(tenants, models=models, redis_prefix=prefix, ratelimit={"store_timeout": 1.0},
                    cache={"enabled": True, "coalesce": True})


async def _client(store: RedisStore, prefix: str, **chain: Any) -> tuple[TestClient, CountingUpstream]:
    up = CountingUpstream(store)
    # A fake clock: the buckets refill only when a test says so (with the real one, a stalled machine
    # refills the token bucket between two requests and the settlement test reads the wrong difference).
    app = create_app(_full_chain(prefix, **chain), clock=FakeClock(), store=store, upstreams={"hf": up})
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, up


async def _settled(store: RedisStore) -> int:
    await store.queue.drain()
    return store.queue.batches


async def test_a_miss_costs_one_round_trip_before_the_upstream_and_none_on_the_answers_path(
    store: RedisStore, key_prefix: str,
) -> None:
    client, up = await _client(store, key_prefix)
    try:
        body: Callable[[str], dict[str, Any]] = lambda text: chat(text=text, temperature=0, max_tokens=50)
        await client.post("/v1/chat/completions", json=body("warm-up"), headers=A)  # loads the scripts
        for i in range(3):
            before = await _settled(store)
            r = await client.post("/v1/chat/completions", json=body(f"unique {i}"), headers=A)
            assert r.status == 200 and r.headers["X-Cache"] == "MISS"
            assert "x-ratelimit-remaining-tokens" in r.headers
            assert up.batches_at_call[-1] - before == 1  # cache lookup-or-lock + both limit groups: one trip
            after = await _settled(store)
            assert after - before == 2  # + one queued after the answer: cache write, lock release, settlement
        again = await client.post("/v1/chat/completions", json=body("unique 2"), headers=A)
        assert again.headers["X-Cache"] == "HIT" and len(up.batches_at_call) == 4  # this process reads its writes
    finally:
        await client.close()


async def test_the_settlement_sent_after_the_answer_is_seen_by_the_next_request(
    store: RedisStore, key_prefix: str,
) -> None:
    client, _ = await _client(store, key_prefix)
    try:
        first = await client.post("/v1/chat/completions", json=chat(text="one", max_tokens=500), headers=A)
        second = await client.post("/v1/chat/completions", json=chat(text="two", max_tokens=500), headers=A)
        left_1 = int(first.headers["x-ratelimit-remaining-tokens"])
        left_2 = int(second.headers["x-ratelimit-remaining-tokens"])
        # The first call reserved ~500 tokens and settled to the 42 it used, after its answer went out;
        # the second's take already sees that settlement (else the two would differ by ~500).
        assert 100_000 - left_1 > 500
        assert left_1 - left_2 == 42  # exactly what the first call used: nothing refilled in between
    finally:
        await client.close()


async def test_a_hot_entry_held_in_process_costs_no_round_trip_until_local_ttl_passes(
    store: RedisStore, key_prefix: str,
) -> None:
    clock = FakeClock()
    up = CountingUpstream(store)
    s = _full_chain(key_prefix).model_copy(deep=True)
    s.cache.local_ttl = 1.0
    client = TestClient(TestServer(create_app(s, clock=clock, store=store, upstreams={"hf": up})))
    await client.start_server()
    try:
        body = chat(text="hot", temperature=0)
        assert (await client.post("/v1/chat/completions", json=body, headers=A)).headers["X-Cache"] == "MISS"
        assert (await client.post("/v1/chat/completions", json=body, headers=A)).headers["X-Cache"] == "HIT"
        before = await _settled(store)
        for _ in range(5):  # held in process since the store hit: no Redis work at all, no limiter charge
            r = await client.post("/v1/chat/completions", json=body, headers=A)
            assert r.status == 200 and r.headers["X-Cache"] == "HIT"
        assert await _settled(store) == before and len(up.batches_at_call) == 1
        clock.advance(1.5)  # past local_ttl: the store is asked again (and still has it)
        again = await client.post("/v1/chat/completions", json=body, headers=A)
        assert again.headers["X-Cache"] == "HIT" and await _settled(store) > before
    finally:
        await client.close()


async def test_hits_and_followers_are_not_charged_although_their_take_travelled_with_the_lookup(
    store: RedisStore, key_prefix: str,
) -> None:
    client, _ = await _client(store, key_prefix, requests="1000/hour")  # refills ~0.3 a second
    try:
        same = chat(text="same", temperature=0)
        first = await client.post("/v1/chat/completions", json=same, headers=A)
        for _ in range(3):
            hit = await client.post("/v1/chat/completions", json=same, headers=A)
            assert hit.headers["X-Cache"] == "HIT"
        await _settled(store)  # the refunds of the hits' takes are queued after their answers
        other = await client.post("/v1/chat/completions", json=chat(text="other", temperature=0), headers=A)
        spent = int(first.headers["x-ratelimit-remaining-requests"]) - int(
            other.headers["x-ratelimit-remaining-requests"])
        assert spent == 1  # only `other` itself: the three hits gave their request back
    finally:
        await client.close()


async def test_a_coalesced_follower_gives_its_take_back_while_it_waits(store: RedisStore, key_prefix: str) -> None:
    # Two requests an hour: the leader holds one, the follower's take (sent with its lookup) must not
    # hold the other while it waits for the leader, or a different request would be refused meanwhile.
    gate = asyncio.Event()

    class Gated(CountingUpstream):
        async def send(self, call: Call, model: str) -> Answer:
            self.arrived.append(call)
            if "slow" in call.raw.decode():  # only the leader's call is held
                await gate.wait()
            return await super().send(call, model)

    up = Gated(store)
    up.arrived = []
    app = create_app(_full_chain(key_prefix, requests="2/hour"), store=store, upstreams={"hf": up})
    client = TestClient(TestServer(app))
    await client.start_server()
    bucket = f"{key_prefix}:v1:rl:{{team-a}}:req"
    try:
        same = chat(text="slow", temperature=0)
        leader = asyncio.create_task(client.post("/v1/chat/completions", json=same, headers=A))
        await _until(lambda: len(up.arrived) == 1)
        sent = store.queue.commands
        follower = asyncio.create_task(client.post("/v1/chat/completions", json=same, headers=A))
        # Its lookup and its two takes, then (as it starts following) the two refunds. Waited for
        # with a bound only: what decides the test is the answer to `other` below.
        await _until(lambda: store.queue.commands >= sent + 5, limit=2.0, must=False)
        assert await _tokens(store, bucket) >= 0.99  # the follower holds nothing, the leader still out
        other = await client.post("/v1/chat/completions", json=chat(text="different", temperature=0), headers=A)
        assert other.status == 200
        gate.set()
        assert [(await t).status for t in (leader, follower)] == [200, 200]
    finally:
        gate.set()
        await client.close()


async def _tokens(store: RedisStore, bucket: str) -> float:
    raw = await store.client.hget(bucket, "tk")
    return float(raw) if raw is not None else 2.0


async def _until(cond: Callable[[], bool], limit: float = 5.0, must: bool = True) -> None:
    end = asyncio.get_running_loop().time() + limit
    while not cond():
        if asyncio.get_running_loop().time() >= end:
            assert not must, "condition never held"
            return
        await asyncio.sleep(0.005)
