"""`endpoint_record.lua` in Python, for the memory store."""

from __future__ import annotations

from typing import Any

from gateway.store.memory_state import MemoryState, as_bytes


def run(state: MemoryState, keys: list[str], args: list[Any]) -> int:
    """`endpoint_record.lua` for the memory store."""
    new = as_bytes(args[0])
    cur = state.get(keys[0])
    if cur is not None:
        cur_at, new_at = _stamp(as_bytes(cur)), _stamp(new)
        if cur_at is not None and new_at is not None and cur_at > new_at:
            return 0
    state.set(keys[0], new, float(args[1]) / 1000.0)
    return 1


def _stamp(raw: bytes) -> float | None:
    """The leading "<checked_at> " of a record (None when absent, as the script's pattern match)."""
    head, sep, _ = raw.partition(b" ")
    if not sep:
        return None
    try:
        return float(head)
    except ValueError:
        return None
