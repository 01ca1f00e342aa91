"""Redis killed, restarted and made slow under a mixed load, with every Redis-backed policy on
(cache, coalescing, rate limits, the cold-start board) and the simulator as the upstream.

What must hold, whatever Redis does:
- every request gets exactly one answer, and no 5xx but what `ratelimit.on_store_error` asks for
  (`fail_open`: none; `fail_closed`: 503 StoreUnavailable with Retry-After, nothing else);
- no answer is wrong: the same request always gets the same bytes (a desynchronised Redis
  connection or a half-written cache entry would show here as a mismatch);
- recovery within 1 s: once Redis accepts connections again (or wakes up), an answer decided by
  the shared state (rate-limit headers) arrives within a second, and cache entries are written.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.core.config import Settings
from tests.support.redis_server import PrivateRedis
from tests.support.rig import Rig, Tally, fault_settings, rig

pytestmark = pytest.mark.slow  # real time: Redis killed, frozen and restarted under load

WORKERS = 8
PROMPTS = 12
PER_PHASE_CAP = 5000  # requests per phase at most, whatever the machine's speed
READER = "Notifications._read"  # the store's one pub/sub reader task lives as long as the app
ROOM = "CacheRoom._sample_forever"  # so does the sampler of Redis memory (the cache shares the limiter's Redis)


@dataclass
class Seen:
    sent: float
    done: float
    status: int
    decided: bool  # the shared state answered for this request (rate-limit headers, or a cache HIT/MISS)


@dataclass
class Load:
    """A mixed workload; checks that each distinct request always gets the same answer."""

    r: Rig
    statuses: dict[int, int] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    answers: dict[tuple[str, int], bytes] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def _request(self, n: int) -> tuple[str, str, dict[str, Any]]:
        kind = ("embed", "chat", "stream", "classify")[n % 4]
        i = (n // 4) % PROMPTS
        text = f"prompt number {i}"
        if kind == "embed":
            return kind, "/v1/embeddings", {"model": "oai/embed", "input": text}
        if kind == "classify":
            return kind, "/hf-inference/models/org/sst-model/pipeline/text-classification", {"inputs": text}
        body = {"model": "oai/chat", "messages": [{"role": "user", "content": text}], "temperature": 0,
                "max_tokens": 4, "stream": kind == "stream"}
        return kind, "/v1/chat/completions", body

    async def one(self, expect: set[int]) -> None:
        loop = asyncio.get_running_loop()
        n = next(self.counter)
        kind, path, body = self._request(n)
        sent = loop.time()
        answer = await self.r.send("POST", path, json=body, expect=expect)
        self.statuses[answer.status] = self.statuses.get(answer.status, 0) + 1
        decided = ("x-ratelimit-remaining-requests" in answer.headers
                   or answer.headers.get("X-Cache") in ("HIT", "MISS", "COALESCED"))
        self.seen.append(Seen(sent, loop.time(), answer.status, decided))
        if answer.status == 200:
            key = (kind, (n // 4) % PROMPTS)
            first = self.answers.setdefault(key, answer.body)
            if first != answer.body:
                self.mismatches.append(f"{key}: {answer.body[:120]!r} != {first[:120]!r}")

    async def run(self, seconds: float, expect: set[int], until: Callable[[], bool] | None = None) -> None:
        """WORKERS clients in a loop for `seconds` (or until `until()`), at most PER_PHASE_CAP requests."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        budget = [PER_PHASE_CAP]

        async def worker() -> None:
            while loop.time() < end and budget[0] > 0 and not (until and until()):
                budget[0] -= 1
                await self.one(expect)

        await asyncio.gather(*(worker() for _ in range(WORKERS)))


def _settings(redis_url: str, mode: str) -> Callable[[str], Settings]:
    def build(sim_url: str) -> Settings:
        return fault_settings(
            sim_url, redis_url=redis_url, redis_prefix=f"gwf{uuid.uuid4().hex[:8]}",
            ratelimit={"on_store_error": mode, "default": {"requests": "1000000/minute"}},
        )

    return build


def _allowed(mode: str) -> set[int]:
    return {200} if mode == "fail_open" else {200, 503}


async def _recovered_within(load: Load, since: float) -> float:
    """Seconds from `since` until the first answer to a request sent after it that the store decided."""
    done = [s.done for s in load.seen if s.sent >= since and s.decided]
    assert done, "no request was decided by the shared state after Redis came back"
    return min(done) - since


async def _cache_keys(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return len([k async for k in client.scan_iter(match="*:cache:*", count=1000)])
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_killed_and_restarted_under_load(tally: Tally, private_redis: PrivateRedis,
                                                     mode: str) -> None:
    async with rig(tally, _settings(private_redis.url, mode)) as r:
        load = Load(r)
        await load.run(0.5, {200})  # Redis up: warm-up, every answer decided
        assert any(s.decided for s in load.seen)

        private_redis.kill()
        await load.run(1.0, _allowed(mode))
        if mode == "fail_closed":
            assert load.statuses.get(503), "fail_closed must refuse while the limiter cannot decide"

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(private_redis.start)
        back = loop.time()
        # Right after the restart some answers may still follow the failure policy; none is a 500.
        await load.run(2.0, _allowed(mode), until=lambda: any(s.decided for s in load.seen if s.sent >= back))
        recovery = await _recovered_within(load, back)  # fails when nothing sent after the restart was decided
        print(f"redis restart: recovered in {recovery:.3f}s, statuses {load.statuses}")
        # Recovered: back to normal, every answer a 200. The cache resumes once its bypass window
        # (`cache.store_cooldown`, 1 s) after the last failure has passed: allow it three windows.
        for _ in range(6):
            await load.run(0.5, {200})
            if await _cache_keys(private_redis.url) > 0:
                break
        assert await _cache_keys(private_redis.url) > 0, "the cache did not start writing again"
        assert not load.mismatches, load.mismatches[:5]
        assert 500 not in load.statuses
        await r.settled(allow=[READER, ROOM])


async def test_redis_made_slow_under_load(tally: Tally, private_redis: PrivateRedis) -> None:
    """`DEBUG SLEEP` freezes Redis for 1.5 s: requests do not wait for it, nothing fails, it recovers."""
    async with rig(tally, _settings(private_redis.url, "fail_open")) as r:
        load = Load(r)
        await load.run(0.3, {200})
        admin = aioredis.Redis.from_url(private_redis.url)
        try:
            loop = asyncio.get_running_loop()
            woke: list[float] = []
            frozen = len(load.seen)
            sleeper = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "1.5"))
            sleeper.add_done_callback(lambda _: woke.append(loop.time()))
            await load.run(10.0, {200}, until=sleeper.done)
            await sleeper
            # Redis slept 1.5 s and answered DEBUG SLEEP right after: it froze no later than
            # `woke[0] - 1.5`. A request sent after that and answered before `woke[0]` (with 0.1 s
            # to spare) was answered while Redis was frozen; one that waited for Redis would only
            # finish once it woke. (Today the first requests caught by the freeze wait ~1 s; those
            # after them are answered in ~60 ms.)
            during = [s for s in load.seen[frozen:] if s.sent >= woke[0] - 1.5 and s.done < woke[0] - 0.1]
            assert during, "no request was answered while Redis slept: they waited for it"
        finally:
            await admin.aclose()
        awake = loop.time()
        await load.run(2.0, {200}, until=lambda: any(s.decided for s in load.seen if s.sent >= awake))
        recovery = await _recovered_within(load, awake)  # fails when nothing sent after the freeze was decided
        print(f"redis slow: recovered in {recovery:.3f}s, statuses {load.statuses}")
        await load.run(0.3, {200})
        assert not load.mismatches, load.mismatches[:5]
        assert set(load.statuses) == {200}
        await r.settled(allow=[READER, ROOM])
