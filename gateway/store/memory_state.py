"""The embedded store's state: a dict with expiry, which the scripts' memory twins operate on."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from gateway.core.clock import Clock


def as_bytes(value: Any) -> bytes:
    """A stored value as Redis would return it: bytes as they are, anything else as its text."""
    return value if isinstance(value, bytes) else str(value).encode()


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
