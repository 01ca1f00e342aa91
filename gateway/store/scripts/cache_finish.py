"""`cache_finish.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> list[int]:
    token, what, payload, ttl_ms, channel = args
    ttl = float(ttl_ms) / 1000.0
    if what == "entry":
        state.set(keys[0], as_bytes(payload), ttl)
    elif what == "outcome":
        state.set(keys[2], as_bytes(payload), ttl)
    released = 0
    if state.get(keys[1]) == as_bytes(token):
        state.delete(keys[1])
        released = 1
    waiters = int(state.get(keys[3]) or 0)
    if released and waiters:
        state.delete(keys[3])
    if waiters > 0:
        state.notify(str(channel), b"done")
    return [released, waiters]
