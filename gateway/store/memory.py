"""The embedded store: a dict with expiry, for a single process when no Redis is configured.

Same semantics as the Redis store (TTLs, nx, scripts via registered twins, notifications); only
the scope differs (one process). Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from .scripts import twin


class MemoryState:
    """The dict the memory twins of Lua scripts operate on; expiry-aware.

    Expired keys go when read, and in sweeps: every `SWEEP_EVERY` writes, the keys whose expiry
    has passed are popped from a heap of (expiry, key), so a sweep costs what has expired, not
    what is stored. A key written again leaves its older heap item behind; such items are skipped
    when they surface, and the heap is rebuilt once they outnumber the live ones.
    """

    SWEEP_EVERY = 1000

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.data: dict[str, Any] = {}
        self.expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._writes = 0
        # Twins that notify (cache_finish) call this; the MemoryStore wakes its local waiters.
        self.notify: Callable[[str, bytes], None] = lambda channel, message: None

    def now(self) -> float:
        return self.clock.time()

    def get(self, key: str) -> Any:
        exp = self.expiry.get(key)
        if exp is not None and exp <= self.clock.monotonic():
            self.data.pop(key, None)
            self.expiry.pop(key, None)
            return None
        return self.data.get(key)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.data[key] = value
        if ttl is not None:
            exp = self.expiry[key] = self.clock.monotonic() + ttl
            heapq.heappush(self._heap, (exp, key))
        else:
            self.expiry.pop(key, None)
        self._writes += 1
        if self._writes >= self.SWEEP_EVERY:
            self._writes = 0
            self.sweep()

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.expiry.pop(key, None)

    def ttl(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        exp = self.expiry.get(key)
        return None if exp is None else max(0.0, exp - self.clock.monotonic())

    def sweep(self, limit: int = 10_000) -> None:
        """Drop up to `limit` expired keys (soonest first)."""
        now = self.clock.monotonic()
        heap, expiry = self._heap, self.expiry
        while heap and heap[0][0] <= now and limit > 0:
            exp, key = heapq.heappop(heap)
            limit -= 1
            if expiry.get(key) == exp:
                self.delete(key)
        if len(heap) > 2 * len(expiry) + 1024:  # mostly stale items (keys rewritten or deleted): rebuild
            self._heap = [(e, k) for k, e in expiry.items()]
            heapq.heapify(self._heap)


class MemoryStore:
    """Store protocol in process memory."""

    kind = "memory"

    def __init__(self, clock: Clock) -> None:
        self.state = MemoryState(clock)
        self.state.notify = self._notify
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)

    async def get(self, key: str) -> bytes | None:
        value = self.state.get(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        if nx and self.state.get(key) is not None:
            return False
        self.state.set(key, value, ttl)
        return True

    async def delete(self, *keys: str) -> None:
        for k in keys:
            self.state.delete(k)

    async def ttl(self, key: str) -> float | None:
        return self.state.ttl(key)

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return twin(name)(self.state, keys, args)

    async def publish(self, channel: str, message: bytes) -> None:
        self._notify(channel, message)

    def _notify(self, channel: str, message: bytes) -> None:
        for fut in self._waiters.pop(channel, []):
            if not fut.done():
                fut.set_result(message)

    async def wait_for(self, channel: str, timeout: float) -> bytes | None:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[channel].append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(channel)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[channel]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
