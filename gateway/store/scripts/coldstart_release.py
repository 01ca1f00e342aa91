"""`coldstart_release.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    """`coldstart_release.lua` for the memory store."""
    held = state.get(keys[0])
    mine = args[0].encode() if isinstance(args[0], str) else args[0]
    if held == mine:
        state.delete(keys[0])
        return 1
    return 0
