"""The request's straight road: a typed `Call` goes through an ordered list of `Stage`s to one terminal.

A stage is `async (call, next) -> Reply`: it may answer itself (cache hit, rate limit), call `next`
once or several times (retry, fallback), or decorate what comes back (headers, metrics).
`build_pipeline` folds the list so the first stage is the outermost; the order is written once,
in `gateway/http/app.py`.

The types it carries (`Call`, `Reply`, `StreamReply`) are in `core/call.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.core.call import Answer, Call

log = logging.getLogger("gateway.pipeline")


Handler = Callable[[Call], Awaitable[Answer]]


class Stage(Protocol):
    """One policy on the road: answer, delegate to `nxt`, or both."""

    async def __call__(self, call: Call, nxt: Handler) -> Answer: ...


def build_pipeline(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Fold `stages` around `terminal`; stages[0] is the outermost.

    A stage may also have `prepare(call) -> bool` and `abandon(call) -> None`: before the first
    stage runs, every `prepare` may start store work for its stage (noted on the call, and counted in
    `call.pending`) (on Redis, queued so that all
    of it travels in one round trip; a store without pipelining gets nothing started, so its
    behaviour stays strictly sequential); a `prepare` that answers True will answer the call by
    itself (a cache hit held in process), so the stages after it prepare nothing. Once the call
    is over (or a `prepare` raised), every `abandon` undoes what was started for a stage the call
    never reached, each one even if another raised (logged); a stage
    that knows early that the call will not go further for a while (a coalesced follower) may
    run them at once with `let_go(call)` (a stage reached later then starts its own work afresh).
    """
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    prepares = [p for p in (getattr(s, "prepare", None) for s in stages) if p is not None]
    if not prepares:
        return handler
    abandons = [a for a in (getattr(s, "abandon", None) for s in stages) if a is not None]
    return _prepared(handler, prepares, abandons)


def _bind(stage: Stage, nxt: Handler) -> Handler:
    # A plain function handing back the stage's own coroutine: no wrapper coroutine frame per stage.
    def run(call: Call) -> Awaitable[Answer]:
        return stage(call, nxt)

    run.__qualname__ = f"{type(stage).__name__}.bound"
    return run


def let_go(call: Call) -> None:
    """Undo now what the stages' `prepare` started for this call (see build_pipeline); idempotent."""
    release, call.let_go = call.let_go, None
    if release is not None:
        release()


def _prepared(head: Handler, prepares: list[Callable[[Call], bool]],
              abandons: list[Callable[[Call], None]]) -> Handler:
    def release(call: Call) -> None:
        # Every abandon runs, whatever one of them raises: each undoes its own stage's work (a
        # lock, a take), and the call's own answer or error is never replaced by a failed clean-up.
        for abandon in abandons:
            try:
                abandon(call)
            except Exception:
                log.exception("a stage's abandon failed; the others still ran",
                              extra={"request_id": call.request_id})

    async def run(call: Call) -> Answer:
        try:
            for prepare in prepares:
                if prepare(call):
                    break
        except BaseException:
            release(call)  # what the earlier prepares started (a queued claim holding a lock) is undone
            raise
        if not call.pending:  # nothing started (a prepare that starts work counts it in `pending`)
            return await head(call)
        call.let_go = lambda: release(call)
        try:
            return await head(call)
        finally:
            call.let_go = None
            release(call)

    return run
