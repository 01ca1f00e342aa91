"""Time, behind a seam.

Every wait in the gateway (backoff, cold-start parking, token-bucket refill, outbound pacing)
goes through a `Clock`, so tests inject `FakeClock` and run in milliseconds without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time, monotonic time and an awaitable sleep."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to (or, with `autojump`, when every task is asleep on it).

    `sleep` parks the caller until `advance` moves time past its wake-up point. With
    `autojump=True` the clock jumps straight to the next wake-up whenever sleepers are waiting
    and the event loop has nothing else to do, so multi-step scenarios (retry after 3 s, cold
    start of 20 s) finish instantly in fake time.
    """

    def __init__(self, start: float = 1_000_000.0, *, autojump: bool = False) -> None:
        self._now = start
        self._wall_offset = 1_700_000_000.0 - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._autojump = autojump
        self._jumper: asyncio.Task[None] | None = None

    def time(self) -> float:
        return self._now + self._wall_offset

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        if self._autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = asyncio.get_running_loop().create_task(self._jump_when_idle())
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose time has come."""
        self._now += seconds
        self._wake()

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def _wake(self) -> None:
        while self._sleepers and (self._sleepers[0][0] <= self._now or self._sleepers[0][2].done()):
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def _jump_when_idle(self) -> None:
        # Yield repeatedly so that runnable tasks (and real I/O that completes fast) go first;
        # only then jump to the earliest sleeper.
        while True:
            for _ in range(50):
                await asyncio.sleep(0)
            await asyncio.sleep(0.002)
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers:
                return
            target = self._sleepers[0][0]
            if target > self._now:
                self._now = target
            self._wake()
