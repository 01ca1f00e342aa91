"""`CacheRoom` (store/room.py): the cache's writes stop short of a shared Redis's maxmemory, on samples."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.core.clock import FakeClock
from gateway.store.protocol import StoreError
from gateway.store.room import ENTRY_COST, CacheRoom


class Info:
    """A scripted `INFO memory`: used and maxmemory, or a failure."""

    def __init__(self, used: int, limit: int) -> None:
        self.used, self.limit, self.calls = used, limit, 0
        self.error: StoreError | None = None

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return f"# Memory\r\nused_memory:{self.used}\r\nmaxmemory:{self.limit}\r\n".encode()


async def test_nothing_is_written_before_the_first_sample_nor_past_max_fill() -> None:
    info = Info(used=700_000, limit=1_000_000)
    room = CacheRoom(info, FakeClock(), max_fill=0.8, interval=5.0)
    assert not room.allows(10)  # not sampled yet: unknown is not room
    await room.open(within=1.0)
    assert room.allows(10_000)
    room.wrote(90_000)  # this process's own writes count until the next sample
    assert not room.allows(10_000)  # 700k + 90k + 10k + overheads > 800k
    info.used = 100_000
    await room.sample()
    assert room.allows(10_000)
    await room.close()


async def test_oom_closes_the_room_until_the_next_sample_and_sampling_follows_the_clock() -> None:
    clock = FakeClock()
    info = Info(used=0, limit=1_000_000)
    room = CacheRoom(info, clock, interval=5.0)
    await room.open(within=1.0)
    room.refused()
    assert not room.allows(1)
    calls = info.calls
    clock.advance(5.0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert info.calls == calls + 1 and room.allows(1)  # one INFO per interval, never per write
    await room.close()


async def test_a_refused_info_falls_back_to_oom_answers_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    info = Info(used=0, limit=0)
    info.error = StoreError("redis: NOPERM this user has no permissions to run the 'info' command", "noperm")
    room = CacheRoom(info, FakeClock())
    with caplog.at_level(logging.WARNING, logger="gateway.cache"):
        await room.open(within=1.0)
        await room.sample_once()
    assert room.allows(ENTRY_COST)  # no bound known: write, and react to OOM answers
    assert len([r for r in caplog.records if "cannot read Redis memory" in r.getMessage()]) == 1
    await room.close()


async def test_redis_down_at_start_writes_nothing() -> None:
    info = Info(used=0, limit=0)
    info.error = StoreError("redis: cannot connect", "refused")
    room = CacheRoom(info, FakeClock())
    await room.open(within=1.0)
    assert not room.allows(1)
    await room.close()
