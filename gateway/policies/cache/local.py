"""`LocalEntries`: a small in-process copy of hot cache entries, in front of a shared (Redis) store.

A repeated request is then answered without any store round trip. Bounded three ways: entries
(`cache.local_max_entries`), bytes (`cache.local_max_bytes`, least recently used dropped first)
and time: an entry is kept at most `cache.local_ttl` seconds (and never past its own expiry).

The trade-off, with replicas: entries are immutable answers under a content-derived key, so a
local copy can only be staler than Redis in one way: an entry that expired (or was deleted) in
Redis may still be served here for up to `local_ttl` seconds. With 1 s (a good value) that is a
small fraction of any sensible cache TTL. Also, while Redis is down, a held entry is still
answered as a HIT instead of the cache being bypassed. Off by default (`local_ttl: 0`).
Only entries read from the store are kept (a hit fills it), so a one-off request costs nothing here.
"""

from __future__ import annotations

from collections import OrderedDict

from gateway.core.clock import Clock
from gateway.policies.cache.entry import Envelope


class LocalEntries:
    """LRU of decoded entries with a per-entry deadline (monotonic clock)."""

    def __init__(self, clock: Clock, ttl: float, max_entries: int, max_bytes: int) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, Envelope]] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_entries > 0

    def get(self, key: str) -> Envelope | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= self.clock.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return found[1]

    def put(self, key: str, env: Envelope, ttl: float) -> None:
        """Keep `env` for min(local_ttl, ttl) seconds; ttl = what is left of the entry's own life."""
        keep = min(self.ttl, ttl)
        if keep <= 0 or len(env.body) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self.clock.monotonic() + keep, env)
        self._bytes += len(env.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, env = self._entries.pop(key)
        self._bytes -= len(env.body)

    def __len__(self) -> int:
        return len(self._entries)
