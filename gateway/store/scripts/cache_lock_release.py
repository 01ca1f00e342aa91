"""`cache_lock_release.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    if state.get(keys[0]) == as_bytes(args[0]):
        state.delete(keys[0])
        return 1
    return 0
