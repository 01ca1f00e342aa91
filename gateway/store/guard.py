"""`StoreGuard`: how a policy waits for its store calls, and its one log line per outage.

A late answer is still an answer. The guard does not time a call out on its own: the store
decides when the server is gone (refused, lost, or silent with answers owed: `resp.py`; its
breaker then fails calls at once: `health.py`), and the caller's own deadline (the request's)
bounds the wait. A short timer here used to measure the event loop's delay under a burst and,
with `fail_open`, admit every late decision for free.

Invariants:
- a queued command (a future) is awaited through a shield: giving up on it (the deadline, or the
  caller cancelled) never takes it back from Redis, where it may have run; `undo(op)` is then
  called once it is answered, to reverse what it did for a caller that went away unserved;
- a call that *failed* (StoreError) is never undone: a lost connection may or may not have run
  it, and refunding a take that never ran would mint tokens;
- the policy's outage is logged once when it starts (with its cause), once per change of cause,
  and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.store.protocol import StoreError

log = logging.getLogger("gateway.ratelimit")
T = TypeVar("T")
Undo = Callable[[asyncio.Future[Any]], None]  # reverses a command's effect, given its (answered) future


class StoreGuard:
    """Waits for a policy's store calls within the caller's deadline; logs its outages once (`what`: the policy)."""

    def __init__(self, what: str = "rate limiter", limit: float | None = None) -> None:
        self.what = what
        self.limit = limit  # the longest wait when the caller gives no deadline of its own (None: unbounded)
        self.cause: str | None = None  # the cause of the current outage, None while the store answers
        self.errors = 0

    @property
    def failing(self) -> bool:
        return self.cause is not None

    async def run(self, op: Awaitable[T], undo: Undo | None = None, within: float | None = None) -> T:
        """`await op`, for at most `within` seconds (default `limit`); any failure becomes StoreError."""
        within = self.limit if within is None else within
        if not isinstance(op, asyncio.Future):
            return await self._within(op, within)
        if op.done() and not op.cancelled():
            # Already answered (the other half of a pipelined batch): no timeout scope to set up.
            exc = op.exception()
            if exc is not None:
                raise self.failed(exc) from exc
            self.answered()
            return op.result()  # type: ignore[no-any-return]
        try:
            return await self._within(asyncio.shield(op), within)
        except StoreError as exc:
            if undo is not None and exc.cause == "deadline":  # given up on, not failed: it may still run
                op.add_done_callback(undo)
            raise
        except asyncio.CancelledError:
            if undo is not None:  # the caller left: `undo` sees its answer when it comes
                op.add_done_callback(undo)
            raise

    async def _within(self, op: Awaitable[T], within: float | None) -> T:
        try:
            if within is None:
                result = await op
            else:
                async with asyncio.timeout(max(0.0, within)):
                    result = await op
        except TimeoutError as exc:
            self.errors += 1
            raise StoreError(f"{self.what}: the request's deadline passed while Redis owed the answer",
                             "deadline") from exc
        except (StoreError, OSError) as exc:
            raise self.failed(exc) from exc
        self.answered()
        return result

    def failed(self, exc: BaseException) -> StoreError:
        """Count a failure (logged when an outage starts or its cause changes); the StoreError to raise."""
        err = exc if isinstance(exc, StoreError) else StoreError(str(exc) or type(exc).__name__, "lost")
        self.errors += 1
        if err.cause != self.cause:
            log.warning("%s: the store is failing (%s: %s); following on_store_error from now on",
                        self.what, err.cause.upper(), err, extra={"store_cause": err.cause})
            self.cause = err.cause
        return err

    def answered(self) -> None:
        """The store answered: log the end of an outage once."""
        if self.cause is not None:
            self.cause = None
            log.warning("%s: the store answers again; limits are enforced", self.what)
