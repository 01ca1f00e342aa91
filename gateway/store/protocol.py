"""Shared state behind one small protocol: the embedded in-memory store or Redis.

Keys are built with `key(prefix, kind, tag, *rest)` -> `gw:v1:{kind}:{tag}:rest...`: versioned, so a
rolling deploy never reads a key of another format, and hash-tagged (`{tag}`), so every key one
script touches lands in one Redis Cluster slot.

Atomic multi-key logic lives in Lua scripts (`gateway/store/scripts/*.lua`), run with `run_script`; the
memory store runs a Python implementation registered under the same name, and one contract test
suite holds both to the same behaviour.

Failures of the backing server surface as `StoreError`; policies decide (per config) whether to
fail open or closed, count it, and never switch silently to per-process state.
"""

from __future__ import annotations

from typing import Any, Protocol

KEY_VERSION = "v1"


class StoreError(Exception):
    """The store could not answer (connection refused, stalled, an error reply).

    `cause` is one of `store/causes.py`'s names ("refused", "noperm", "oom", ...): what logs,
    /readyz, /status and metrics say. The message may carry the server's own words, never a
    password or a URL.
    """

    def __init__(self, message: str, cause: str = "error") -> None:
        super().__init__(message)
        self.cause = cause


def key(prefix: str, kind: str, tag: str, *rest: str) -> str:
    """A versioned, hash-tagged key."""
    tail = ":".join(rest)
    base = f"{prefix}:{KEY_VERSION}:{kind}:{{{tag}}}"
    return f"{base}:{tail}" if tail else base


class Store(Protocol):
    """Key-value state with TTLs, atomic scripts and notifications."""

    kind: str  # "memory" or "redis"

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        """Store `value`; with `nx`, only if absent (returns whether it was stored)."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left before `key` expires; None if absent or without expiry."""
        ...

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run `gateway/store/scripts/{name}.lua` atomically (memory: its Python twin, `{name}.py`)."""
        ...

    async def publish(self, channel: str, message: bytes) -> None: ...

    async def wait_for(self, channel: str, timeout: float) -> bytes | None:
        """The next message published on `channel` within `timeout` seconds, else None."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
