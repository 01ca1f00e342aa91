"""Cold start: one probe, the rest parked and released together; refusals, deadlines, keep-alives, clean-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.core.call import Answer, Call, Reply
from gateway.core.clock import FakeClock
from gateway.core.errors import ModelLoading
from gateway.policies.resilience.loading import LoadState
from gateway.policies.resilience.target import Target
from gateway.store.memory import MemoryStore
from gateway.store.protocol import StoreError, key
from gateway.upstream.fake import FakeUpstream
from tests.support.stage_kit import MODEL, ColdModel, Rig, fake, settings

T = Target("hf", MODEL)


def _rig(seconds: float, *, clock: FakeClock | None = None, store: Any = None,
         **resilience: Any) -> tuple[Rig, ColdModel]:
    clock = clock or FakeClock(autojump=True)
    cold = ColdModel(clock, seconds)
    rig = Rig(settings(resilience=resilience), {"hf": fake(cold=cold)}, clock=clock, store=store)
    return rig, cold


async def _settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_ten_concurrent_requests_to_a_cold_model_all_succeed_behind_one_probe() -> None:
    rig, cold = _rig(20)
    start = rig.clock.monotonic()
    calls = [rig.call() for _ in range(10)]
    answers = await asyncio.gather(*(rig.run(c) for c in calls))
    assert all(isinstance(a, Reply) and a.status == 200 for a in answers)
    assert cold.loading_answers == 1 and cold.calls_until_ready() <= 2
    assert len(cold.times) == 11  # the first 503, then one call per request once ready
    assert rig.clock.monotonic() - start == pytest.approx(20.0)
    assert sum(1 for c in calls if c.resilience.coldstart == "probe") >= 1
    assert all(c.waited_seconds <= 20.0 + 1e-6 for c in calls)
    assert await rig.store.get(key("gw", "cold", "hf|org/model", "probe")) is None


async def test_the_list_form_and_a_late_stream_of_arrivals_still_make_one_probe() -> None:
    rig, cold = _rig(20)
    first = asyncio.ensure_future(rig.run(rig.call()))
    later = []
    for _ in range(5):
        await rig.clock.sleep(3)
        later.append(asyncio.ensure_future(rig.run(rig.call())))
    await asyncio.gather(first, *later)
    assert cold.loading_answers == 1


async def test_a_probe_that_finds_the_model_still_loading_parks_everyone_again() -> None:
    rig, cold = _rig(20)
    cold.ready_at += 10  # the upstream's first estimate (20 s) is 10 s too optimistic
    original = cold.__call__

    def estimate_20_then_truth(call: Call, model: str) -> Answer:
        if not cold.times:
            cold.times.append(rig.clock.monotonic())
            cold.loading_answers += 1
            raise ModelLoading("Model org/model is currently loading", estimated_time=20)
        return original(call, model)

    rig.upstreams["hf"].default = estimate_20_then_truth
    answers = await asyncio.gather(*(rig.run(rig.call()) for _ in range(5)))
    assert all(a.status == 200 for a in answers)  # type: ignore[union-attr]
    assert cold.loading_answers == 2  # the first call, and one probe at t=20


async def test_no_wait_answers_503_with_estimate_and_retry_after_and_no_second_call() -> None:
    rig, cold = _rig(45)
    with pytest.raises(ModelLoading) as first:
        await rig.run(rig.call(wait=False))
    with pytest.raises(ModelLoading) as second:
        await rig.run(rig.call(wait=False))
    assert len(cold.times) == 1
    assert second.value.estimated_time == pytest.approx(45, abs=0.2)
    assert second.value.headers["Retry-After"] == "45"
    assert first.value.status == 503


async def test_configured_no_wait_and_a_request_that_asks_to_wait_anyway() -> None:
    rig, _ = _rig(20, wait_for_model=False)
    with pytest.raises(ModelLoading):
        await rig.run(rig.call())
    answer = await rig.run(rig.call(wait=True))
    assert answer.status == 200  # type: ignore[union-attr]


async def test_a_load_longer_than_the_deadline_is_refused_now_with_a_capped_retry_after() -> None:
    rig, cold = _rig(300)
    call = rig.call(timeout=60)
    start = rig.clock.monotonic()
    with pytest.raises(ModelLoading) as info:
        await rig.run(call)
    assert rig.clock.monotonic() - start < 60
    assert info.value.estimated_time == pytest.approx(300, abs=0.2)
    assert info.value.headers["Retry-After"] == "120"
    assert len(cold.times) == 1


async def test_a_load_that_overruns_while_parked_ends_inside_the_deadline() -> None:
    rig, cold = _rig(20)
    cold.ready_at += 500  # the model says 20 s, then much more
    first_estimate = [True]
    original = cold.__call__

    def optimistic(call: Call, model: str) -> Answer:
        if first_estimate.pop() if first_estimate else False:
            cold.times.append(rig.clock.monotonic())
            raise ModelLoading("Model org/model is currently loading", estimated_time=20)
        return original(call, model)

    rig.upstreams["hf"].default = optimistic
    call = rig.call(timeout=60)
    start = rig.clock.monotonic()
    with pytest.raises(ModelLoading) as info:
        await rig.run(call)
    assert 20 <= rig.clock.monotonic() - start < 60
    assert info.value.headers["Retry-After"] == "120"
    assert len(cold.times) == 2


async def test_max_model_wait_bounds_the_wait() -> None:
    rig, _ = _rig(100, max_model_wait=30)
    with pytest.raises(ModelLoading):
        await rig.run(rig.call())


async def test_a_client_that_leaves_while_parked_causes_no_upstream_call() -> None:
    clock = FakeClock()
    rig, cold = _rig(20, clock=clock)
    leader = asyncio.ensure_future(rig.run(rig.call()))
    await _settle()
    assert len(cold.times) == 1  # the leader learned the model is loading and parked
    quitter = asyncio.ensure_future(rig.run(rig.call()))
    await _settle()
    clock.advance(5)
    await _settle()
    quitter.cancel()
    await _settle()
    assert quitter.cancelled()
    for _ in range(20):
        clock.advance(1)
        await _settle()
    assert (await leader).status == 200  # type: ignore[union-attr]
    assert len(cold.times) == 2  # the first 503 and the leader's probe: nothing for the quitter


async def test_a_probe_cancelled_mid_call_releases_the_lock_and_another_request_takes_over() -> None:
    clock = FakeClock()  # manual: nothing moves unless the test says so
    hung = asyncio.Event()

    class Hanging(FakeUpstream):
        async def send(self, call: Call, model: str) -> Answer:
            if not hung.is_set():
                hung.set()
                await asyncio.Event().wait()  # the first call never answers
            return await super().send(call, model)

    up = Hanging("hf", "hf", fake().config)
    rig = Rig(settings(), {"hf": up}, clock=clock)
    probe = asyncio.ensure_future(rig.run(rig.call()))
    await hung.wait()
    lock_key = key("gw", "cold", "hf|org/model", "probe")
    assert await rig.store.get(lock_key) is not None
    follower = asyncio.ensure_future(rig.run(rig.call()))
    await _settle()
    assert not follower.done() and not up.calls  # held behind the probe (which never reached `calls`)
    probe.cancel()
    await _settle()
    assert probe.cancelled()
    answer = await asyncio.wait_for(follower, 1.0)  # woken by the release, without the clock moving
    assert answer.status == 200  # type: ignore[union-attr]
    assert len(up.calls) == 1
    assert await rig.store.get(lock_key) is None


async def test_a_slow_probe_lets_the_parked_go_after_probe_hold() -> None:
    clock = FakeClock(autojump=True)

    class Slow(FakeUpstream):
        async def send(self, call: Call, model: str) -> Answer:
            await clock.sleep(10)  # a long generation on a model that is up
            return await super().send(call, model)

    up = Slow("hf", "hf", fake().config)
    rig = Rig(settings(resilience={"probe_hold": 1.0}), {"hf": up}, clock=clock)
    start = clock.monotonic()
    await asyncio.gather(*(rig.run(rig.call()) for _ in range(3)))
    assert clock.monotonic() - start == pytest.approx(11.0)  # followers went at t=1, not t=10
    assert len(up.calls) == 3


async def test_a_warm_model_is_served_without_the_store_once_known() -> None:
    rig, _cold = _rig(0)
    await rig.run(rig.call())

    class Down(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            raise StoreError("redis: ConnectionError")

    rig.board.store = Down(rig.clock)
    assert (await rig.run(rig.call())).status == 200  # type: ignore[union-attr]


async def test_with_the_store_down_each_request_waits_for_the_model_on_its_own() -> None:
    class Down(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            raise StoreError("redis: ConnectionError")

        async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
            raise StoreError("redis: ConnectionError")

    clock = FakeClock(autojump=True)
    rig, cold = _rig(20, clock=clock, store=Down(clock))
    call = rig.call()
    assert (await rig.run(call)).status == 200  # type: ignore[union-attr]
    assert call.resilience.coldstart_store_error is True
    assert cold.loading_answers == 1 and call.waited_seconds == pytest.approx(20)


async def test_a_stale_loading_answer_does_not_park_everyone_after_the_probe_saw_it_up() -> None:
    rig, _ = _rig(0)
    sent = rig.clock.time()
    rig.clock.advance(1)
    await rig.board.mark_up(T)
    assert await rig.board.mark_loading(T, 20, sent_at=sent) is None
    state = await rig.board.read(T)
    assert state is not None and state.kind == "up"
    assert await rig.board.mark_loading(T, 20, sent_at=rig.clock.time()) is not None


async def test_two_replicas_on_one_store_share_the_loading_state_and_the_probe() -> None:
    clock = FakeClock(autojump=True)
    store = MemoryStore(clock)
    cold = ColdModel(clock, 20)
    a = Rig(settings(), {"hf": fake(cold=cold)}, clock=clock, store=store)
    b = Rig(settings(), {"hf": fake(cold=cold)}, clock=clock, store=store)
    answers = await asyncio.gather(*(r.run(r.call()) for r in (a, b, a, b, a, b)))
    assert all(x.status == 200 for x in answers)  # type: ignore[union-attr]
    assert cold.calls_until_ready() <= 2


async def test_a_model_unloaded_behind_an_up_record_parks_instead_of_failing() -> None:
    clock = FakeClock(autojump=True)
    store = MemoryStore(clock)
    other_replica = Rig(settings(), {"hf": fake()}, clock=clock, store=store)
    await other_replica.board.mark_up(T)  # another replica saw it answer a moment ago
    rig, cold = _rig(20, clock=clock, store=store)
    call = rig.call()
    assert (await rig.run(call)).status == 200  # type: ignore[union-attr]
    assert cold.loading_answers == 1 and call.waited_seconds == pytest.approx(20)


async def test_a_store_error_from_further_down_is_not_taken_for_a_store_outage() -> None:
    rig, _ = _rig(0)
    rig.upstreams["hf"].script(StoreError("redis: shaping bucket unavailable"))
    with pytest.raises(StoreError):
        await rig.run(rig.call())
    assert len(rig.upstreams["hf"].calls) == 1


def test_a_loading_model_nobody_asks_for_again_leaves_the_gauge_after_its_record_expires() -> None:
    clock = FakeClock()
    rig = Rig(settings(), {"hf": fake()}, clock=clock)
    rig.board.note_loading(T, rig.board.loading_record(20))
    assert rig.board.seen_loading() == 1
    clock.advance(79)
    assert rig.board.seen_loading() == 1
    clock.advance(2)
    assert rig.board.seen_loading() == 0


async def test_a_request_that_takes_the_lock_just_after_a_probe_looks_again_before_calling() -> None:
    class Racy(MemoryStore):
        """Lets another replica finish a whole probe between our read of the state and our lock."""

        hook: Any = None

        async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
            if nx and self.hook is not None:
                hook, self.hook = self.hook, None
                await hook()
            return await super().set(key, value, ttl=ttl, nx=nx)

    clock = FakeClock(autojump=True)
    store = Racy(clock)
    cold = ColdModel(clock, 20)
    a = Rig(settings(), {"hf": fake(cold=cold)}, clock=clock, store=store)
    b = Rig(settings(), {"hf": fake(cold=cold)}, clock=clock, store=store)

    async def a_probes() -> None:
        with pytest.raises(ModelLoading):
            await a.run(a.call(wait=False))

    store.hook = a_probes
    assert (await b.run(b.call())).status == 200  # type: ignore[union-attr]
    assert cold.loading_answers == 1  # b saw a's news under the lock and parked instead of calling


class _WakeAfterLockRead(MemoryStore):
    """The probe finishes (and wakes everyone) right after a request read the lock, before it parks."""

    hook: Any = None

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        if key.endswith(":probe") and value is not None and self.hook is not None:
            hook, self.hook = self.hook, None
            await hook()
        return value


@pytest.mark.parametrize("loading", [False, True], ids=["unknown", "loading"])
async def test_a_wake_up_between_a_failed_lock_and_parking_is_not_missed(loading: bool) -> None:
    clock = FakeClock()  # time moves only when the test moves it: a missed wake-up would park for good
    store = _WakeAfterLockRead(clock)
    rig = Rig(settings(), {"hf": fake()}, clock=clock, store=store)
    if loading:  # loading, and a probe is due now
        now = clock.time()
        due = LoadState("loading", now - 5, now, now, 5.0)
        await store.set(key("gw", "cold", "hf|org/model", "state"), due.encode(), ttl=60)
    lock = await rig.board.lock(T, 30.0)  # another request is probing
    assert lock is not None

    async def the_probe_answers() -> None:
        await rig.board.mark_up(T)
        await rig.board.unlock(T, lock)

    store.hook = the_probe_answers
    start = clock.monotonic()
    answer = asyncio.ensure_future(rig.run(rig.call()))
    await _settle(200)
    assert store.hook is None  # the race happened: the probe answered between the lock read and parking
    assert answer.done(), "the request missed the wake-up and stayed parked"
    assert answer.result().status == 200  # type: ignore[union-attr]
    assert clock.monotonic() == start  # released by the wake-up, not by probe_hold or a re-check


# -- the store scripts: memory twin, fakeredis and a real Redis behave alike -----------------


async def _script_contract(store: Any, prefix: str, clock: FakeClock) -> None:
    state_key = key(prefix, "cold", "hf|m", "state")
    lock_key = key(prefix, "cold", "hf|m", "probe")
    up = LoadState("up", clock.time()).encode().decode()
    loading = LoadState("loading", clock.time(), clock.time() + 20, clock.time() + 20, 20).encode().decode()
    assert await store.run_script("coldstart_mark", [state_key], [up, 60_000, clock.time()]) == 1
    assert await store.run_script("coldstart_mark", [state_key], [loading, 60_000, clock.time() - 5]) == 0
    assert LoadState.decode(await store.get(state_key)).kind == "up"  # type: ignore[union-attr]
    assert await store.run_script("coldstart_mark", [state_key], [loading, 60_000, clock.time() + 5]) == 1
    assert LoadState.decode(await store.get(state_key)).kind == "loading"  # type: ignore[union-attr]
    assert await store.set(lock_key, b"tok1 1.0", ttl=30, nx=True)
    assert not await store.set(lock_key, b"tok2 2.0", ttl=30, nx=True)
    assert await store.run_script("coldstart_release", [lock_key], ["tok2 2.0"]) == 0
    assert await store.get(lock_key) == b"tok1 1.0"
    assert await store.run_script("coldstart_release", [lock_key], ["tok1 1.0"]) == 1
    assert await store.get(lock_key) is None
    await store.delete(state_key, lock_key)


async def test_scripts_on_the_memory_store() -> None:
    clock = FakeClock()
    await _script_contract(MemoryStore(clock), "gw", clock)


async def test_scripts_on_fakeredis() -> None:
    import fakeredis

    from gateway.store.redis import RedisStore

    store = RedisStore(fakeredis.FakeAsyncRedis())
    await _script_contract(store, "gw", FakeClock())
    await store.close()


@pytest.mark.redis
async def test_scripts_on_a_real_redis(redis_url: str, key_prefix: str) -> None:
    from gateway.store.redis import RedisStore

    store = RedisStore.from_url(redis_url)
    try:
        await _script_contract(store, key_prefix, FakeClock())
    finally:
        await store.close()
