"""Lua scripts, each beside its in-memory twin: `name.lua` for Redis, `name.py` (`run`) for the memory store.

A policy that needs an atomic multi-key operation adds `name.lua` here (its header block states KEYS,
ARGV and the return value), a `name.py` whose `run(state, keys, args)` does the same to the memory
store's state, and a line in `TWINS`. The contract tests run both against the same cases.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from gateway.store.memory_state import MemoryState
from gateway.store.scripts import (
    cache_finish,
    cache_lock_extend,
    cache_lock_release,
    cache_lookup_or_lock,
    coldstart_mark,
    coldstart_release,
    endpoint_lease,
    endpoint_record,
    endpoint_touch,
    endpoint_wake,
    token_bucket,
)

MemoryTwin = Callable[[MemoryState, list[str], list[Any]], Any]

TWINS: dict[str, MemoryTwin] = {
    "cache_finish": cache_finish.run,
    "cache_lock_extend": cache_lock_extend.run,
    "cache_lock_release": cache_lock_release.run,
    "cache_lookup_or_lock": cache_lookup_or_lock.run,
    "coldstart_mark": coldstart_mark.run,
    "coldstart_release": coldstart_release.run,
    "endpoint_lease": endpoint_lease.run,
    "endpoint_record": endpoint_record.run,
    "endpoint_touch": endpoint_touch.run,
    "endpoint_wake": endpoint_wake.run,
    "token_bucket": token_bucket.run,
}


def twin(name: str) -> MemoryTwin:
    """The memory store's implementation of script `name`."""
    try:
        return TWINS[name]
    except KeyError:
        raise KeyError(f"no memory implementation for script {name!r}") from None


def lua_source(name: str) -> str:
    """The text of `gateway/store/scripts/<name>.lua`."""
    return resources.files("gateway.store.scripts").joinpath(f"{name}.lua").read_text(encoding="utf-8")
