"""`endpoint_lease.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    """`endpoint_lease.lua` for the memory store."""
    token, ttl = as_bytes(args[0]), float(args[1]) / 1000.0
    cur = state.get(keys[0])
    if cur is not None and as_bytes(cur) != token:
        return 0
    state.set(keys[0], token, ttl)
    return 1
