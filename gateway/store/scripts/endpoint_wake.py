"""`endpoint_wake.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    """`endpoint_wake.lua` for the memory store."""
    if state.get(keys[0]) is not None:
        return 0
    state.set(keys[0], as_bytes(args[0]), float(args[1]) / 1000.0)
    current = state.get(keys[1])
    count = int(as_bytes(current)) + 1 if current is not None else 1
    state.set(keys[1], str(count).encode(), float(args[2]) / 1000.0)
    return count
