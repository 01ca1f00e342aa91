"""`endpoint_touch.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> bytes:
    """`endpoint_touch.lua` for the memory store."""
    new, ttl = as_bytes(args[0]), float(args[1]) / 1000.0
    cur = state.get(keys[0])
    if cur is not None:
        try:
            if float(as_bytes(cur)) >= float(new):
                state.set(keys[0], as_bytes(cur), ttl)
                return as_bytes(cur)
        except ValueError:
            pass
    state.set(keys[0], new, ttl)
    return new
