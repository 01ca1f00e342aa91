"""The cache stage on the embedded store: hits, bypass flags, what is never stored, streams, store failures."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.call import Answer, Flags, Op, Reply, StreamReply
from gateway.core.clock import FakeClock
from gateway.core.errors import UpstreamError, UpstreamStatusError
from gateway.policies.cache.response_cache import ENTRY_OVERHEAD
from gateway.store import StoreError
from gateway.store.memory import MemoryStore
from tests.support.cache_kit import (
    CHAT,
    SHARED,
    GatedUpstream,
    Replica,
    chat_body,
    drain,
    settings,
    stream_reply,
)


def _replica(cache: dict[str, Any] | None = None, store: Any = None) -> Replica:
    clock = FakeClock()
    return Replica(settings(cache), store or MemoryStore(clock), clock, GatedUpstream())


def _body(answer: Answer) -> bytes:
    assert isinstance(answer, Reply)
    return answer.body


async def test_second_identical_embedding_is_a_hit_and_the_upstream_saw_one_call() -> None:
    r = _replica()
    first = r.call()
    a = await r.run(first)
    second = r.call()
    b = await r.run(second)
    assert len(r.upstream.calls) == 1
    assert _body(a) == _body(b)
    assert (first.cache, first.reply_headers["X-Cache"]) == ("miss", "MISS")
    assert (second.cache, second.reply_headers["X-Cache"]) == ("hit", "HIT")
    assert isinstance(b, Reply) and b.headers["x-compute-time"] == "0.01" and "x-ratelimit-remaining" not in b.headers
    assert second.caching.served_bytes == len(_body(b))
    assert first.caching.store == "store" and first.caching.stored_bytes > 0


async def test_use_cache_false_neither_reads_nor_writes() -> None:
    r = _replica()
    await r.run(r.call())
    off = r.call(flags=Flags(use_cache=False))
    fresh = await r.run(off)
    assert len(r.upstream.calls) == 2 and (off.cache, off.reply_headers["X-Cache"]) == ("bypass", "BYPASS")
    # not written either: on a new key, a bypassed answer leaves nothing behind
    await r.run(r.call(body={"model": "m", "input": "other"}, flags=Flags(use_cache=False)))
    later = r.call(body={"model": "m", "input": "other"})
    await r.run(later)
    assert later.cache == "miss" and len(r.upstream.calls) == 4
    assert _body(fresh) != _body(await r.run(r.call()))


async def test_no_cache_skips_the_read_but_still_writes() -> None:
    r = _replica()
    old = _body(await r.run(r.call()))
    revalidate = r.call(flags=Flags(no_cache=True))
    new = _body(await r.run(revalidate))
    assert new != old and revalidate.cache == "miss" and len(r.upstream.calls) == 2
    after = r.call()
    assert _body(await r.run(after)) == new and after.cache == "hit"


async def test_no_store_neither_reads_nor_writes() -> None:
    r = _replica()
    await r.run(r.call(flags=Flags(no_store=True)))
    plain = r.call()
    await r.run(plain)
    assert plain.cache == "miss" and len(r.upstream.calls) == 2
    nostore = r.call(flags=Flags(no_store=True))
    await r.run(nostore)
    assert nostore.cache == "bypass" and len(r.upstream.calls) == 3


async def test_a_sampled_chat_is_never_cached_and_carries_no_cache_header() -> None:
    r = _replica()
    calls = [r.call(model=CHAT, op=Op.CHAT, body=chat_body(0.7)) for _ in range(3)]
    for c in calls:
        await r.run(c)
    assert len(r.upstream.calls) == 3
    assert all(c.cache == "none" and "X-Cache" not in c.reply_headers for c in calls)
    pinned = [r.call(model=CHAT, op=Op.CHAT, body=chat_body(0)) for _ in range(2)]
    for c in pinned:
        await r.run(c)
    assert [c.cache for c in pinned] == ["miss", "hit"] and len(r.upstream.calls) == 4


async def test_a_failed_upstream_answer_is_never_cached() -> None:
    r = _replica()
    r.upstream.script(UpstreamStatusError("boom", status=500), Reply(500, b'{"error":"x"}'))
    with pytest.raises(UpstreamStatusError):
        await r.run(r.call())
    odd = r.call()
    assert (await r.run(odd)).status == 500 and odd.caching.store == "store_skipped"
    ok = r.call()
    await r.run(ok)
    assert ok.cache == "miss" and len(r.upstream.calls) == 3
    hit = r.call()
    await r.run(hit)
    assert hit.cache == "hit"


async def test_tenant_a_answer_is_not_served_to_tenant_b_unless_the_route_is_shared() -> None:
    r = _replica()
    a = _body(await r.run(r.call(tenant="a")))
    b_call = r.call(tenant="b")
    b = _body(await r.run(b_call))
    assert a != b and b_call.cache == "miss" and len(r.upstream.calls) == 2
    body = {"model": SHARED, "input": "hello"}
    await r.run(r.call(model=SHARED, body=body, tenant="a"))
    shared = r.call(model=SHARED, body=body, tenant="b")
    await r.run(shared)
    assert shared.cache == "hit" and len(r.upstream.calls) == 3


async def test_entries_expire_after_their_ttl() -> None:
    r = _replica({"ttl": 60})
    await r.run(r.call())
    r.clock.advance(59)  # type: ignore[attr-defined]
    fresh = r.call()
    await r.run(fresh)
    assert fresh.cache == "hit"
    r.clock.advance(2)  # type: ignore[attr-defined]
    late = r.call()
    await r.run(late)
    assert late.cache == "miss" and len(r.upstream.calls) == 2


async def test_oversized_answers_are_not_stored_and_large_ones_are_compressed() -> None:
    big = orjson.dumps({"embedding": [0.25] * 4000})
    r = _replica({"max_entry_bytes": len(big) - 1})
    r.upstream.script(Reply(200, big), Reply(200, big))
    first = r.call()
    await r.run(first)
    assert first.caching.store == "store_skipped"
    second = r.call()
    await r.run(second)
    assert second.cache == "miss" and len(r.upstream.calls) == 2
    roomy = _replica({"compress_over_bytes": 1024})
    roomy.upstream.script(Reply(200, big))
    stored = roomy.call()
    await roomy.run(stored)
    assert stored.caching.stored_bytes < len(big) / 4
    assert _body(await roomy.run(roomy.call())) == big


async def test_the_embedded_store_keeps_its_cache_under_the_memory_bound() -> None:
    # Room for two entries of ~300 bytes, each counted with its key and bookkeeping.
    r = _replica({"memory_max_bytes": 2 * (ENTRY_OVERHEAD + 400), "compress_over_bytes": 1 << 20})
    r.upstream.default = lambda call, model: Reply(200, b"x" * 200)
    for i in range(5):
        await r.run(r.call(body={"model": "m", "input": str(i)}))
    oldest, newest = r.call(body={"model": "m", "input": "0"}), r.call(body={"model": "m", "input": "4"})
    await r.run(oldest)
    await r.run(newest)
    assert (oldest.cache, newest.cache) == ("miss", "hit")


async def test_the_memory_bound_counts_what_an_entry_costs_beyond_its_bytes() -> None:
    # Tiny answers: counting only their bytes, 64 KiB would hold thousands (and RSS would grow with them).
    r = _replica({"memory_max_bytes": 64 * 1024, "compress_over_bytes": 1 << 20})
    r.upstream.default = lambda call, model: Reply(200, b"{}")
    for i in range(1000):
        await r.run(r.call(body={"model": "m", "input": str(i)}))
    store = r.cache.store
    assert isinstance(store, MemoryStore)
    prefix = f"{r.settings.redis_prefix}:v1:cache:"
    entries = [k for k in store.state.data if k.startswith(prefix) and k.count(":") == 3]
    assert 50 <= len(entries) <= 64 * 1024 // ENTRY_OVERHEAD


STREAM = [b'data: {"t":"a"}\n\n', b'data: {"t":"b"}\n\n', b'data: {"t":"c"}\n\n', b"data: [DONE]\n\n"]


def _stream_call(r: Replica, **kw: Any) -> Any:
    return r.call(model=CHAT, op=Op.CHAT, body=chat_body(0, stream=True), stream=True, **kw)


async def test_a_streamed_answer_is_stored_after_its_last_event_and_replayed_with_the_same_events() -> None:
    r = _replica()
    r.upstream.script(stream_reply(STREAM))
    first = _stream_call(r)
    answer = await r.run(first)
    assert isinstance(answer, StreamReply) and first.cache == "miss"
    assert await drain(answer) == STREAM
    assert first.caching.store == "store"
    again = _stream_call(r)
    replay = await r.run(again)
    assert isinstance(replay, StreamReply) and again.cache == "hit" and len(r.upstream.calls) == 1
    assert await drain(replay) == STREAM and replay.headers["x-compute-time"] == "0.1"
    # the non-stream form of the same request never gets the stream's entry
    complete = r.call(model=CHAT, op=Op.CHAT, body=chat_body(0, stream=True))
    assert isinstance(await r.run(complete), Reply) and complete.cache == "miss"


async def test_a_stream_request_answered_with_json_gets_the_same_json_again() -> None:
    r = _replica()
    r.upstream.script(Reply(200, b'{"choices":[]}'))
    first = _stream_call(r)
    assert isinstance(await r.run(first), Reply) and first.caching.store == "store"
    again = _stream_call(r)
    replay = await r.run(again)
    assert isinstance(replay, Reply) and replay.body == b'{"choices":[]}' and again.cache == "hit"


async def test_streams_that_fail_carry_an_error_event_or_lose_their_client_are_not_stored() -> None:
    r = _replica()
    error_event = b'data: {"error":{"message":"overloaded"}}\n\n'
    r.upstream.script(
        stream_reply(STREAM, fail_after=1), stream_reply([STREAM[0], error_event, STREAM[3]]), stream_reply(STREAM)
    )
    broken = await r.run(_stream_call(r))
    with pytest.raises(UpstreamError):  # the upstream dropped the stream
        await drain(broken)
    in_band = _stream_call(r)
    await drain(await r.run(in_band))
    assert in_band.caching.store == "store_skipped"
    left = await r.run(_stream_call(r))
    assert isinstance(left, StreamReply)
    events = left.events()
    await events.__anext__()  # the client reads one event and goes away
    await events.aclose()
    await left.rest.aclose()  # type: ignore[attr-defined]
    after = _stream_call(r)
    await drain(await r.run(after))
    assert after.cache == "miss" and len(r.upstream.calls) == 4


class FlakyStore(MemoryStore):
    """A memory store that fails every operation while `down`."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.down = False
        self.ops = 0

    async def get(self, key: str) -> bytes | None:
        self.ops += 1
        if self.down:
            raise StoreError("redis: ConnectionError")
        return await super().get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        self.ops += 1
        if self.down:
            raise StoreError("redis: ConnectionError")
        return await super().set(key, value, ttl=ttl, nx=nx)

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self.ops += 1
        if self.down:
            raise StoreError("redis: ConnectionError")
        return await super().run_script(name, keys, args)


async def test_store_down_bypasses_the_cache_serves_requests_and_recovers_after_the_cooldown() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    r = Replica(settings({"store_cooldown": 5}), store, clock, GatedUpstream())
    await r.run(r.call())
    store.down = True
    failing = r.call()
    assert (await r.run(failing)).status == 200
    assert (failing.cache, failing.reply_headers["X-Cache"]) == ("bypass", "BYPASS")
    assert failing.caching.store_errors == 1
    ops = store.ops
    cooling = r.call()
    await r.run(cooling)
    assert cooling.cache == "bypass" and store.ops == ops  # not even tried during the cooldown
    store.down = False
    clock.advance(6)
    back = r.call()
    await r.run(back)
    assert back.cache == "hit" and len(r.upstream.calls) == 3


async def test_a_write_failure_after_the_answer_is_counted_and_the_answer_still_served() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    r = Replica(settings({"coalesce": False}), store, clock, GatedUpstream())
    call = r.call()
    real_set = store.set

    async def failing_set(*a: Any, **kw: Any) -> bool:
        store.down = True
        try:
            return await real_set(*a, **kw)
        finally:
            store.down = False

    store.set = failing_set  # type: ignore[method-assign]
    answer = await r.run(call)
    assert answer.status == 200 and call.cache == "miss"
    assert call.caching.store == "store_skipped" and call.caching.store_errors == 1
