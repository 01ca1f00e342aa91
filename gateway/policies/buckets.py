"""Token buckets in the store: the Python face of `lua/token_bucket.lua` and its in-memory twin.

`decide(store, buckets)` runs the script once for a group of buckets that share one hash tag:
all of them pay or none does. `StoreGuard` wraps every store call of the limiters with the
configured small timeout, turns any failure into `StoreError`, and logs an outage once (and
the recovery once), never per request; a queued take it gives up on may still run in Redis, so
it is left to finish and its caller's `undo` refunds it once answered.

Invariants (held for both stores by tests/contract/test_bucket_contract.py):
- a denied call changes no bucket; refill is fractional; time going backwards refills nothing;
- `Decision.wait` is the exact time the buckets need (denied) or the queueing delay (admitted
  into debt, used by outbound pacing);
- the memory twin does the same float operations in the same order as the Lua script.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..store.base import Store, StoreError
from ..store.memory import MemoryState
from ..store.ordered import send_script
from ..store.scripts import memory_twin

log = logging.getLogger("gateway.ratelimit")
SCRIPT = "token_bucket"
Mode = Literal["take", "force"]
T = TypeVar("T")
Undo = Callable[[asyncio.Future[Any]], None]  # reverses a command's effect, given its (answered) future


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of one decision: where it lives, how it refills, what this call costs."""

    key: str
    rate: float  # tokens per second
    capacity: float
    cost: float = 1.0
    max_wait: float = 0.0  # > 0: may go into debt, the caller waits (outbound pacing)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the script answered for a group of buckets."""

    allowed: bool
    wait: float  # allowed: delay before proceeding; denied: seconds until it would be admitted
    remaining: tuple[float, ...]  # per bucket, in the order given


def script_args(buckets: Sequence[Bucket], mode: Mode, now: float | None) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for one call of the script."""
    args = ["" if now is None else repr(now), mode]
    for b in buckets:
        args += [repr(b.rate), repr(b.capacity), repr(b.cost), repr(b.max_wait)]
    return [b.key for b in buckets], args


def parse_reply(raw: Any) -> Decision:
    """The script's reply (bytes or str numbers) as a Decision."""
    allowed, wait, *remaining = raw
    return Decision(bool(int(allowed)), max(0.0, float(wait)), tuple(float(r) for r in remaining))


async def decide(store: Store, buckets: Sequence[Bucket], *, mode: Mode = "take",
                 now: float | None = None) -> Decision:
    """Take (or force) every bucket's cost in one atomic store round trip."""
    if not buckets:
        return Decision(True, 0.0, ())
    keys, args = script_args(buckets, mode, now)
    return parse_reply(await store.run_script(SCRIPT, keys, args))


def send_decision(store: Store, buckets: Sequence[Bucket], *, mode: Mode = "take",
                  now: float | None = None) -> Awaitable[Any]:
    """The script for `buckets`, queued now on a pipelined store (see store/ordered.py); its raw reply."""
    keys, args = script_args(buckets, mode, now)
    return send_script(store, SCRIPT, keys, args)


def _fmt(x: float) -> bytes:
    return b"%.17g" % x


@memory_twin(SCRIPT)
def token_bucket_twin(state: MemoryState, keys: list[str], args: list[Any]) -> list[Any]:
    """`token_bucket.lua` for the memory store; same arithmetic, same reply shape."""
    now = state.now() if args[0] in ("", b"") else float(args[0])
    force = args[1] in ("force", b"force")
    tokens: list[float] = []
    stamps: list[float] = []
    allowed, wait, retry = True, 0.0, 0.0
    params = [tuple(float(a) for a in args[2 + 4 * i: 6 + 4 * i]) for i in range(len(keys))]
    for k, (rate, cap, cost, max_wait) in zip(keys, params):
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
    for k, (rate, cap, cost, _), tk, ts in zip(keys, params, tokens, stamps):
        left = min(cap, tk - cost)
        state.set(k, (left, ts), ttl=(math.ceil((cap - left) / rate * 1000) + 1000) / 1000)
        out.append(_fmt(left))
    return out


class StoreGuard:
    """Bounds every limiter store call by `timeout`; logs an outage once and its end once."""

    def __init__(self, timeout: float, what: str = "rate limiter") -> None:
        self.timeout = timeout
        self.what = what
        self.failing = False
        self.errors = 0

    async def run(self, op: Awaitable[T], undo: Undo | None = None) -> T:
        """`await op` within the timeout; any failure becomes StoreError.

        A queued command (a future) is awaited through a shield: giving up on it (the timeout, or
        the caller cancelled) does not take it back from Redis, where it may have run already. So
        `undo(op)` is called once it is answered (whatever the answer: `undo` checks what it did)
        to reverse its effect; without `undo` its answer is dropped.
        """
        if not isinstance(op, asyncio.Future):
            return await self._within(op)
        if op.done() and not op.cancelled():
            # Already answered (the other half of a pipelined batch): no timeout scope to set up.
            exc = op.exception()
            if exc is not None:
                raise self.failed(exc) from exc
            self.answered()
            return op.result()  # type: ignore[no-any-return]
        try:
            return await self._within(asyncio.shield(op))
        except (StoreError, asyncio.CancelledError):
            if undo is not None:  # it may have run, or may still run: `undo` sees its answer when it comes
                op.add_done_callback(undo)
            raise

    async def _within(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                result = await op
        except (StoreError, TimeoutError, OSError) as exc:
            raise self.failed(exc) from exc
        self.answered()
        return result

    def failed(self, exc: BaseException) -> StoreError:
        """Count a failure (logged when an outage starts); the StoreError to raise."""
        self.errors += 1
        if not self.failing:
            self.failing = True
            log.warning("%s: the store is failing (%s); following on_store_error from now on",
                        self.what, _why(exc))
        return exc if isinstance(exc, StoreError) and str(exc) == _why(exc) else StoreError(_why(exc))

    def answered(self) -> None:
        """The store answered: log the end of an outage once."""
        if self.failing:
            self.failing = False
            log.warning("%s: the store answers again; limits are enforced", self.what)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return str(exc) or type(exc).__name__
