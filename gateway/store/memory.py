"""The embedded store: a dict with expiry, for a single process when no Redis is configured.

Same semantics as the Redis store (TTLs, nx, scripts via registered twins, notifications); only
the scope differs (one process). Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from gateway.core.clock import Clock
from gateway.store.memory_state import MemoryState
from gateway.store.scripts import twin


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
