"""`StoreGuard`: the time limit and failure policy around a policy's store calls."""

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
