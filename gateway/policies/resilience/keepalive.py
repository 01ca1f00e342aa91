"""Keeping a parked stream alive: commit the 200 early and send SSE comments until the real stream comes.

A streaming client that waits for a loading model would otherwise see nothing for minutes, and
clients or proxies time out. So when a streaming request is still waiting after
`keepalive_interval`, the cold-start stage answers a `StreamReply` at once: its first event is
`: loading model, about N s left`, repeated every interval (both clients ignore comment lines),
then the real stream's events follow untouched once the upstream answers.

The trade-off, by design: the 200 is committed when the first comment goes out. Anything that
fails after that (the deadline passes, the upstream refuses) can no longer be an HTTP status; it
becomes ONE in-band error event in the route's dialect (the relay writes it) and the stream ends.
Waits shorter than one interval keep the normal behaviour: no comment, real status codes.

Invariants: the waiting work runs in its own task, cancelled when the client goes away or the
stream is closed, so a disconnect while parked never reaches the upstream; the inner stream, once
there, is closed and its `on_close` hooks run exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from gateway.core.call import Answer, Call, Dialect, Op, Reply, StreamReply
from gateway.core.clock import Clock
from gateway.core.sse import DONE, keepalive_comment


class Progress:
    """What a waiting request knows about its model, for the comments it sends."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ready_at = 0.0  # wall clock; 0: no estimate yet

    def comment(self) -> bytes:
        if self.ready_at <= 0:
            return keepalive_comment("waiting for the model")
        left = max(1, math.ceil(self.ready_at - self.clock.time()))
        return keepalive_comment(f"loading model, about {left} s left")


class _Pending:
    """The waiting work, and whether its answer has been handed on (then it is no longer ours to close)."""

    def __init__(self, work: Coroutine[Any, Any, Answer]) -> None:
        self.task: asyncio.Task[Answer] = asyncio.ensure_future(work)
        self.taken = False

    def take(self) -> Answer:
        self.taken = True
        return self.task.result()

    async def discard(self) -> None:
        """Stop the work; close a stream it produced that nobody will relay (or its upstream keeps going)."""
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.taken or self.task.cancelled() or self.task.exception() is not None:
            return  # an exception here was (or will be) reported in-band; reading it marks it retrieved
        answer = self.take()
        if isinstance(answer, StreamReply):
            await _close(answer)


async def commit_when_slow(work: Coroutine[Any, Any, Answer], progress: Progress, interval: float,
                           call: Call) -> Answer:
    """`work`'s answer if it comes within `interval`; else a stream that keeps the client company."""
    pending = _Pending(work)
    try:
        finished = await _within(pending.task, interval, progress.clock)
    except BaseException:
        await pending.discard()  # the client left: a stream that was ready at that instant is closed too
        raise
    if finished:
        return pending.take()
    events = _events(pending, progress, interval, call)

    async def close() -> None:
        await events.aclose()
        await pending.discard()  # `aclose` does nothing to a generator that never started

    call.resilience.keepalives = 1
    return StreamReply(first=progress.comment(), rest=events, on_close=[close])


async def _events(pending: _Pending, progress: Progress, interval: float,
                  call: Call) -> AsyncGenerator[bytes, None]:
    inner: StreamReply | None = None
    try:
        while not await _within(pending.task, interval, progress.clock):
            call.resilience.keepalives += 1
            yield progress.comment()
        answer = pending.take()  # a GatewayError here becomes the relay's in-band error event
        if isinstance(answer, Reply):
            # A JSON answer to a stream request (rare): one data event, so the client still parses it.
            yield b"data: " + answer.body.strip() + b"\n\n"
            if call.dialect is Dialect.OPENAI and call.op is not Op.RESPONSES:  # (Responses streams have no [DONE])
                yield DONE
            return
        inner = answer
        async for event in inner.events():
            yield event
    finally:
        if inner is not None:
            await _close(inner)
        else:
            await pending.discard()


async def _within(task: asyncio.Task[Answer], seconds: float, clock: Clock) -> bool:
    """Whether `task` finished within `seconds` of the injected clock."""
    if task.done():
        return True
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
    return task.done()


async def _close(stream: StreamReply) -> None:
    rest = stream.rest
    aclose = getattr(rest, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
    for hook in stream.on_close:
        result = hook()
        if asyncio.iscoroutine(result):
            await result
