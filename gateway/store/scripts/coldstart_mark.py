"""`coldstart_mark.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    """`coldstart_mark.lua` for the memory store."""
    new, ttl_ms, sent_at = str(args[0]), float(args[1]), float(args[2])
    if new.startswith("loading "):
        if _up_since(state.get(keys[0])) > sent_at:
            return 0
    state.set(keys[0], new.encode(), ttl_ms / 1000.0)
    return 1


def _up_since(raw: object) -> float:
    """When an "up <at>" record was written; -inf for anything else (as the script's pattern match)."""
    if not isinstance(raw, bytes):
        return float("-inf")
    kind, _, at = raw.decode(errors="replace").partition(" ")
    try:
        return float(at.split()[0]) if kind == "up" else float("-inf")
    except (ValueError, IndexError):
        return float("-inf")
