"""The cache's contract on every store: MemoryStore, fakeredis and a real Redis hold entries the same way."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from gateway.core.call import Op, Reply, StreamReply
from tests.support.cache_kit import (
    CHAT,
    GatedUpstream,
    Replica,
    StorePair,
    chat_body,
    drain,
    prefixed,
    settings,
    stream_reply,
)


def _replicas(store_pair: Callable[[], StorePair], prefix: str, **cache: object) -> tuple[Replica, Replica]:
    one, two, clock = store_pair()
    cfg = prefixed(settings({"ttl": 120, **cache}), prefix)
    up = GatedUpstream()
    return Replica(cfg, one, clock, up), Replica(cfg, two, clock, up)


async def test_an_entry_written_by_one_replica_is_a_hit_on_the_other_with_its_ttl(
    store_pair: Callable[[], StorePair], key_prefix: str,
) -> None:
    a, b = _replicas(store_pair, key_prefix)
    body = orjson.dumps({"embedding": [[0.5] * 2000]})  # compressed on the way in
    a.upstream.script(Reply(200, body))
    first = a.call()
    await a.run(first)
    plan = a.cache.planner.plan(first)
    assert plan is not None and plan.key.startswith(f"{key_prefix}:v1:cache:")
    left = await a.cache.store.ttl(plan.key)
    assert left is not None and 100 < left <= 120
    stored = await a.cache.store.get(plan.key)
    assert stored is not None and len(stored) < len(body) / 4
    second = b.call()
    answer = await b.run(second)
    assert isinstance(answer, Reply) and answer.body == body and second.cache == "hit"
    assert len(a.upstream.calls) == 1


async def test_a_stream_stored_by_one_replica_replays_identically_on_the_other(
    store_pair: Callable[[], StorePair], key_prefix: str,
) -> None:
    a, b = _replicas(store_pair, key_prefix)
    events = [b": keepalive\n\ndata:{\"token\":{\"text\":\" a\"}}\n\n", b"data:{\"token\":{\"text\":\" b\"}}\n\n",
              b"data:{\"token\":{\"text\":\"\"},\"generated_text\":\"a b\"}\n\n"]
    a.upstream.script(stream_reply(events))
    body = {"inputs": "x", "parameters": {"do_sample": False}, "stream": True}
    first = a.call(model=CHAT, op=Op.TGI_GENERATE, body=body, stream=True)
    assert await drain(await a.run(first)) == events
    second = b.call(model=CHAT, op=Op.TGI_GENERATE, body=body, stream=True)
    replay = await b.run(second)
    assert isinstance(replay, StreamReply) and second.cache == "hit"
    assert await drain(replay) == events
    complete = b.call(model=CHAT, op=Op.CHAT, body=chat_body(0))
    await b.run(complete)
    assert complete.cache == "miss"
