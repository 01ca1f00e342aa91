"""`cache_lock_extend.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    value = state.get(keys[0])
    if value == as_bytes(args[0]):
        state.set(keys[0], value, float(args[1]) / 1000.0)
        return 1
    return 0
