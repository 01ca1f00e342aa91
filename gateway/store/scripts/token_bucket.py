"""`token_bucket.lua` in Python, for the memory store: the same arithmetic and reply shape."""

from __future__ import annotations

import math
from typing import Any

from gateway.store.memory_state import MemoryState


def _fmt(x: float) -> bytes:
    return b"%.17g" % x


def run(state: MemoryState, keys: list[str], args: list[Any]) -> list[Any]:
    """`token_bucket.lua` for the memory store; same arithmetic, same reply shape."""
    now = state.now() if args[0] in ("", b"") else float(args[0])
    force = args[1] in ("force", b"force")
    tokens: list[float] = []
    stamps: list[float] = []
    allowed, wait, retry = True, 0.0, 0.0
    params = [tuple(float(a) for a in args[2 + 4 * i: 6 + 4 * i]) for i in range(len(keys))]
    for k, (rate, cap, cost, max_wait) in zip(keys, params, strict=True):
        held = state.get(k)
        tk, ts = (cap, now) if held is None else held
        if now > ts:
            tk = min(cap, tk + (now - ts) * rate)
            ts = now
        tokens.append(tk)
        stamps.append(ts)
        if not force:
            need = (cost - tk) / rate
            if tk + rate * max_wait < cost:
                allowed = False
            wait = max(wait, need)
            retry = max(retry, need - max_wait)
    if not allowed:
        return [0, _fmt(retry), *(_fmt(t) for t in tokens)]
    out: list[Any] = [1, _fmt(0.0 if force else wait)]
    for k, (rate, cap, cost, _), tk, ts in zip(keys, params, tokens, stamps, strict=True):
        left = min(cap, tk - cost)
        state.set(k, (left, ts), ttl=(math.ceil((cap - left) / rate * 1000) + 1000) / 1000)
        out.append(_fmt(left))
    return out
