"""`CacheRoom`: whether the cache may still write to a Redis it shares with the rate limiter.

With one Redis for both, cache entries must never take the memory the buckets need: under
`maxmemory-policy noeviction` a full Redis refuses the bucket writes (a take that cannot pay
admits nobody, or everybody under fail_open), and under an LRU policy it evicts buckets (they
come back full). So the cache stops writing once Redis holds `max_fill` of its `maxmemory`.

Sampled, never per request: one `INFO memory` every `interval` seconds (a background task started
with the app, or by the first write attempt), plus this process's own writes since the sample,
counted at `ENTRY_COST` bytes of bookkeeping each, so a burst between two samples is seen before
it lands. Until the first sample has answered, nothing is written.
An OOM answer to a write marks Redis full until the next sample says otherwise. Without
`maxmemory` (0) there is no bound to keep: every write is allowed (the docs say to set one).

If `INFO` is refused (an ACL without `+info`, a server without it), the room says so once in the
log and falls back to reacting to OOM answers only. While Redis cannot be reached at all, nothing
is written (it would fail anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.core.clock import Clock
from gateway.store.causes import CONNECTION
from gateway.store.protocol import StoreError

log = logging.getLogger("gateway.cache")
ENTRY_COST = 256  # bytes Redis spends on an entry beyond its value (key, dict entry, expiry)
Info = Callable[[], Awaitable[bytes | dict[str, Any]]]  # `INFO memory`: raw text, or redis-py's parsed dict


class CacheRoom:
    """Whether the cache may write another entry; no I/O on the request path."""

    def __init__(self, info: Info, clock: Clock, *, max_fill: float = 0.8, interval: float = 5.0) -> None:
        self._info = info
        self.clock = clock
        self.max_fill = max_fill
        self.interval = interval
        self.used = 0  # bytes Redis said it used at the last sample, plus what this process wrote since
        self.limit = 0  # maxmemory at the last sample (0: no bound)
        self.full = False  # Redis answered OOM since the last sample
        self.sampled = False  # a first sample answered (or INFO is refused: then OOM answers are all we have)
        self._task: asyncio.Task[None] | None = None
        self._refused = False  # INFO is not allowed: OOM answers are all we go by
        self._was_open = True

    def start(self) -> None:
        """Start sampling (idempotent; needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample_forever())

    async def open(self, within: float) -> None:
        """At startup: the first sample (at most `within` seconds), then sampling in the background."""
        try:
            async with asyncio.timeout(within):
                await self.sample_once()
        except TimeoutError:
            pass
        self.start()

    def allows(self, nbytes: int) -> bool:
        """Whether an entry of `nbytes` may be written now (starts the sampler on first use)."""
        self.start()
        if not self.sampled:
            return False
        open_ = not self.full and (self.limit <= 0 or self.used + nbytes + ENTRY_COST <= self.max_fill * self.limit)
        if open_ != self._was_open:
            self._was_open = open_
            if open_:
                log.warning("cache: Redis has room again; cache writes resume")
            else:
                log.warning("cache: Redis is at %.0f%% of maxmemory (%d of %d bytes): the cache stops writing so "
                            "that rate limits keep their memory (docs/redis.md#memory)",
                            100 * self.used / max(self.limit, 1), self.used, self.limit)
        return open_

    def wrote(self, nbytes: int) -> None:
        """An entry of `nbytes` was written (or queued)."""
        self.used += nbytes + ENTRY_COST

    def refused(self) -> None:
        """Redis answered a write with OOM: full until the next sample."""
        self.full = True

    async def sample(self) -> None:
        """Read `INFO memory` once (StoreError when it cannot)."""
        fields = _parse(await self._info())
        self.used = fields.get("used_memory", 0)
        self.limit = fields.get("maxmemory", 0)
        self.full = False
        self.sampled = True

    async def _sample_forever(self) -> None:
        while True:
            await self.sample_once()
            await self.clock.sleep(self.interval)

    async def sample_once(self) -> None:
        """`sample`, its failure handled: a refused INFO falls back to OOM answers (logged once)."""
        try:
            await self.sample()
        except StoreError as exc:
            if exc.cause not in CONNECTION and not self._refused:
                self._refused = self.sampled = True
                log.warning("cache: cannot read Redis memory (%s: %s): the cache cannot stop writing before Redis "
                            "is full; allow +info or give the cache its own Redis with cache.redis_url "
                            "(docs/redis.md#memory)", exc.cause.upper(), exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _parse(raw: bytes | dict[str, Any]) -> dict[str, int]:
    """`used_memory` and `maxmemory` from INFO's text (our connection) or its parsed form (redis-py)."""
    pairs: list[tuple[str, object]]
    if isinstance(raw, dict):
        pairs = [(str(k), v) for k, v in raw.items()]
    else:
        pairs = [(name, value) for name, _, value in
                 (line.partition(":") for line in raw.decode("ascii", "replace").splitlines())]
    out: dict[str, int] = {}
    for name, value in pairs:
        if name in ("used_memory", "maxmemory"):
            with contextlib.suppress(ValueError, TypeError):
                out[name] = int(str(value).strip())
    return out
