"""One contract for `token_bucket`: the Lua script (fakeredis and a real Redis) and the memory twin.

Every case passes `now` explicitly (the fake time tests use), except the one that checks the
server clock. The last test drives random operation sequences through all stores at once and
requires identical replies, float for float.
"""

from __future__ import annotations

import asyncio
import random

import fakeredis
import pytest

from gateway.core.clock import FakeClock
from gateway.policies.limits.buckets import Bucket, decide
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.store.redis import RedisStore
from tests.contract.conftest import T0


def b(prefix: str, name: str, rate: float, cap: float, cost: float = 1.0, max_wait: float = 0.0) -> Bucket:
    return Bucket(f"{prefix}:v1:rl:{{t}}:{name}", rate, cap, cost, max_wait)


async def test_fresh_bucket_is_full(store: Store, key_prefix: str) -> None:
    d = await decide(store, [b(key_prefix, "a", 1.0, 5)], now=T0)
    assert d.allowed and d.wait == 0 and d.remaining == (4.0,)


async def test_five_per_ten_seconds_eight_at_once(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "a", 0.5, 5)
    out = [await decide(store, [bucket], now=T0) for _ in range(8)]
    assert [d.allowed for d in out] == [True] * 5 + [False] * 3
    for d in out[5:]:
        assert d.wait == pytest.approx(2.0, abs=1e-9)  # one token at 0.5/s: exactly 2 s
        assert d.remaining == (0.0,)
    assert (await decide(store, [bucket], now=T0 + 1.999)).allowed is False
    assert (await decide(store, [bucket], now=T0 + 2.0)).allowed is True


async def test_denied_call_never_drains(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "a", 0.5, 2)
    assert (await decide(store, [b(key_prefix, "a", 0.5, 2, cost=2)], now=T0)).allowed
    for dt in (0.5, 1.0, 1.5):  # 0.25, 0.5, 0.75 tokens: each denial leaves the refill alone
        d = await decide(store, [bucket], now=T0 + dt)
        assert not d.allowed
        assert d.wait == pytest.approx(2.0 - dt)
    d = await decide(store, [bucket], now=T0 + 2.0)
    assert d.allowed and d.remaining == (0.0,)


async def test_fractional_refill_is_kept(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "a", 0.3, 10)
    await decide(store, [b(key_prefix, "a", 0.3, 10, cost=10)], now=T0)
    for i in range(1, 4):  # 0.3, 0.6, 0.9: never enough, never rounded away
        assert not (await decide(store, [bucket], now=T0 + i)).allowed
    d = await decide(store, [bucket], now=T0 + 4)
    assert d.allowed and d.remaining[0] == pytest.approx(0.2)


async def test_time_going_backwards_is_clamped(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "a", 1.0, 3)
    await decide(store, [b(key_prefix, "a", 1.0, 3, cost=3)], now=T0 + 100)
    d = await decide(store, [bucket], now=T0 + 90)  # a replica whose clock is 10 s behind
    assert not d.allowed and d.remaining == (0.0,) and d.wait == pytest.approx(1.0)
    d = await decide(store, [b(key_prefix, "a", 1.0, 3, cost=0)], now=T0 + 101)
    assert d.remaining == (pytest.approx(1.0),)  # refilled from t=100, not from t=90


async def test_all_or_nothing(store: Store, key_prefix: str) -> None:
    wide, narrow = b(key_prefix, "wide", 1.0, 5), b(key_prefix, "narrow", 0.25, 1)
    d = await decide(store, [wide, narrow], now=T0)
    assert d.allowed and d.remaining == (4.0, 0.0)
    d = await decide(store, [wide, narrow], now=T0 + 1)
    assert not d.allowed and d.wait == pytest.approx(3.0)  # narrow needs 0.75 more at 0.25/s
    assert d.remaining == (5.0, 0.25)  # wide refilled, but did not pay
    peek = await decide(store, [b(key_prefix, "wide", 1.0, 5, cost=0)], now=T0 + 1)
    assert peek.remaining == (5.0,)


async def test_retry_after_is_the_slowest_denied_bucket(store: Store, key_prefix: str) -> None:
    x, y = b(key_prefix, "x", 1.0, 1), b(key_prefix, "y", 0.1, 1)
    await decide(store, [x, y], now=T0)
    d = await decide(store, [x, y], now=T0 + 0.5)
    assert not d.allowed and d.wait == pytest.approx(9.5)


async def test_force_goes_into_debt_and_refunds_cap_at_capacity(store: Store, key_prefix: str) -> None:
    tok = b(key_prefix, "tok", 10.0, 100, cost=100)
    assert (await decide(store, [tok], now=T0)).allowed
    d = await decide(store, [b(key_prefix, "tok", 10.0, 100, cost=50)], mode="force", now=T0)
    assert d.allowed and d.remaining == (-50.0,)
    d = await decide(store, [b(key_prefix, "tok", 10.0, 100)], now=T0 + 1)
    assert not d.allowed and d.wait == pytest.approx(4.1)  # from -40 to 1 at 10/s
    d = await decide(store, [b(key_prefix, "tok", 10.0, 100, cost=-500)], mode="force", now=T0 + 1)
    assert d.remaining == (100.0,)


async def test_max_wait_reserves_evenly_spaced_slots(store: Store, key_prefix: str) -> None:
    pace = b(key_prefix, "up", 10.0, 1, max_wait=1.0)
    waits = []
    for _ in range(12):
        d = await decide(store, [pace], now=T0)
        waits.append(round(d.wait, 9) if d.allowed else None)
    assert waits[:11] == [round(0.1 * i, 9) for i in range(11)]
    assert waits[11] is None
    d = await decide(store, [pace], now=T0)
    assert d.wait == pytest.approx(0.1)  # the queue has room again in 0.1 s


async def test_key_expires_when_it_would_be_full(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "a", 0.5, 5, cost=5)
    await decide(store, [bucket], now=T0)
    ttl = await store.ttl(bucket.key)
    assert ttl is not None and 9.0 < ttl <= 11.0  # 10 s to refill + 1 s of slack


async def test_server_clock_when_now_is_omitted(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "srv", 0.001, 1)
    assert (await decide(store, [bucket])).allowed
    d = await decide(store, [bucket])
    assert not d.allowed and 990 < d.wait <= 1000


async def test_concurrent_takes_admit_exactly_capacity(store: Store, key_prefix: str) -> None:
    bucket = b(key_prefix, "c", 0.0001, 10)
    out = await asyncio.gather(*(decide(store, [bucket], now=T0) for _ in range(40)))
    assert sum(d.allowed for d in out) == 10


_SHAPES = [(0.5, 5.0, 0.0), (3.0, 2.0, 1.5), (0.1, 10.0, 0.0)]  # rate, capacity, max_wait per bucket id


def _random_ops(rng: random.Random) -> list[tuple[float, str, list[tuple[int, float]]]]:
    ops = []
    for _ in range(rng.randint(1, 12)):
        step = rng.choice([0.0, 0.0, rng.uniform(-5, 30), rng.uniform(0, 1)])  # negative: a clock going back
        mode = "force" if rng.random() < 0.25 else "take"
        picks = [(i, rng.uniform(-3, 6) if mode == "force" else rng.choice([1.0, rng.uniform(0, 6)]))
                 for i in sorted(rng.sample(range(3), rng.randint(1, 3)))]
        ops.append((step, mode, picks))
    return ops


async def test_every_store_answers_the_same(key_prefix: str, redis_url: str, real_redis: object) -> None:
    """Random sequences of takes, settlements and clock jumps: memory == fakeredis == Redis, exactly."""
    stores: list[Store] = [MemoryStore(FakeClock(start=T0)), RedisStore(fakeredis.FakeAsyncRedis(), timeout=1.0),
                           RedisStore.from_url(redis_url, stall=1.0)]
    rng = random.Random(20240604)
    try:
        for round_no in range(60):
            ops = _random_ops(rng)
            replies = [await _replay(s, f"{key_prefix}:r{round_no}", ops) for s in stores]
            assert replies[0] == replies[1] == replies[2], ops
    finally:
        for s in stores:
            await s.close()


async def _replay(store: Store, prefix: str, ops: list[tuple[float, str, list[tuple[int, float]]]]) -> list[object]:
    now, out = T0, []
    for step, mode, picks in ops:
        now += step
        buckets = [Bucket(f"{prefix}:v1:rl:{{t}}:{i}", _SHAPES[i][0], _SHAPES[i][1], cost, _SHAPES[i][2])
                   for i, cost in picks]
        out.append(await decide(store, buckets, mode=mode, now=now))  # type: ignore[arg-type]
    return out
