"""The registry of Lua scripts and their in-memory twins.

A policy that needs an atomic multi-key operation adds `gateway/lua/<name>.lua` (header block:
KEYS, ARGV, return value) and registers a Python twin with `@memory_twin("<name>")` that takes the
memory store's dict-like state. Contract tests run both against the same cases.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

MemoryTwin = Callable[[Any, list[str], list[Any]], Any]
_TWINS: dict[str, MemoryTwin] = {}


def memory_twin(name: str) -> Callable[[MemoryTwin], MemoryTwin]:
    """Register the Python implementation of script `name` for the memory store."""

    def register(fn: MemoryTwin) -> MemoryTwin:
        _TWINS[name] = fn
        return fn

    return register


def twin(name: str) -> MemoryTwin:
    if name not in _TWINS:
        # Importing the policies registers their twins; done lazily to keep imports side-effect free.
        import gateway.policies  # noqa: F401
    try:
        return _TWINS[name]
    except KeyError:
        raise KeyError(f"no memory implementation registered for script {name!r}") from None


def lua_source(name: str) -> str:
    """The text of `gateway/lua/<name>.lua`."""
    return resources.files("gateway.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")
