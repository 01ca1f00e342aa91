"""The embedded store: a dict with expiry, for a single process when no Redis is configured.

Same semantics as the Redis store (TTLs, nx, scripts via registered twins, notifications); only
the scope differs (one process). Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from ..clock import Clock
from .scripts import twin


class MemoryState:
    """The dict the memory twins of Lua scripts operate on; expiry-aware."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.data: dict[str, Any] = {}
        self.expiry: dict[str, float] = {}

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
            self.expiry[key] = self.clock.monotonic() + ttl
        else:
            self.expiry.pop(key, None)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.expiry.pop(key, None)

    def ttl(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        exp = self.expiry.get(key)
        return None if exp is None else max(0.0, exp - self.clock.monotonic())

    def sweep(self, limit: int = 1000) -> None:
        now = self.clock.monotonic()
        for k in [k for k, e in list(self.expiry.items())[:limit] if e <= now]:
            self.delete(k)


class MemoryStore:
    """Store protocol in process memory."""

    kind = "memory"

    def __init__(self, clock: Clock) -> None:
        self.state = MemoryState(clock)
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)
        self._ops = 0

    async def get(self, key: str) -> bytes | None:
        value = self.state.get(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        if nx and self.state.get(key) is not None:
            return False
        self.state.set(key, value, ttl)
        self._ops += 1
        if self._ops % 1000 == 0:
            self.state.sweep()
        return True

    async def delete(self, *keys: str) -> None:
        for k in keys:
            self.state.delete(k)

    async def ttl(self, key: str) -> float | None:
        return self.state.ttl(key)

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return twin(name)(self.state, keys, args)

    async def publish(self, channel: str, message: bytes) -> None:
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
