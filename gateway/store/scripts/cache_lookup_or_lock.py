"""`cache_lookup_or_lock.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes

FOUND, LEAD, FOLLOW = 0, 1, 2  # the reply's first element


def run(state: MemoryState, keys: list[str], args: list[Any]) -> list[Any]:
    entry = state.get(keys[0])
    if isinstance(entry, bytes):
        return [FOUND, entry]
    ttl = float(args[1]) / 1000.0
    holder = state.get(keys[1])
    if holder is None:
        state.set(keys[1], as_bytes(args[0]), ttl)
        return [LEAD]
    state.set(keys[2], int(state.get(keys[2]) or 0) + 1, ttl)
    return [FOLLOW, holder]
