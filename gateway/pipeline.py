"""The request's straight road: a typed `Call` goes through an ordered list of `Stage`s to one terminal.

A stage is `async (call, next) -> Reply`: it may answer itself (cache hit, rate limit), call `next`
once or several times (retry, fallback), or decorate what comes back (headers, metrics).
`build_pipeline` folds the list so the first stage is the outermost; the order is written once,
in `app.py`.

Invariants:
- A `Reply` is complete bytes; a `StreamReply` has already peeked its first event, so an upstream
  that fails before its first byte raises instead of returning a 200 stream.
- Nothing downstream of the handler touches `aiohttp.web.Request`: a `Call` is all a stage sees.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .routing import Deployment, Route

log = logging.getLogger("gateway.pipeline")


class Dialect(enum.Enum):
    """How errors and streams are shaped for the client."""

    OPENAI = "openai"  # /v1/*: {"error": {"message","type","code"}}
    HF = "hf"  # /models, /pipeline, /hf-inference, TGI/TEI native: {"error": "...", "error_type"?}


class Op(enum.Enum):
    """What the client asked for, independent of the backend that will serve it."""

    CHAT = "chat"  # OpenAI chat completions
    COMPLETIONS = "completions"  # OpenAI completions
    EMBEDDINGS = "embeddings"  # OpenAI embeddings
    HF_TASK = "hf_task"  # an HF inference task ({"inputs", "parameters"}), see Call.task
    TGI_GENERATE = "tgi_generate"  # TGI POST /generate (bare object answer)
    TEI_EMBED = "tei_embed"  # TEI POST /embed
    TEI_PREDICT = "tei_predict"  # TEI POST /predict
    TEI_RERANK = "tei_rerank"  # TEI POST /rerank


@dataclass(slots=True)
class Flags:
    """Per-request policy switches parsed from legacy `options` and headers."""

    wait_for_model: bool | None = None  # None: the configured default
    use_cache: bool | None = None  # x-use-cache / options.use_cache; False = neither read nor write
    no_cache: bool = False  # Cache-Control: no-cache: skip the read, still write
    no_store: bool = False  # Cache-Control: no-store: neither read nor write
    timeout: float | None = None  # X-Gateway-Timeout: the client's shorter deadline (seconds)


@dataclass(slots=True)
class Call:
    """One client request, parsed and routed; what every stage reads and annotates."""

    request_id: str
    dialect: Dialect
    op: Op
    route_label: str  # bounded label for metrics: "chat", "hf_task", ...
    model: str  # the model name the client asked for (URL-bound model wins over the body)
    route: Route
    body: dict[str, Any] | None  # parsed JSON (None for raw-bytes bodies)
    raw: bytes  # the body as received
    stream: bool = False
    task: str | None = None  # HF task when known ("text-generation", "feature-extraction", ...)
    content_type: str | None = None
    accept: str | None = None
    forward_headers: dict[str, str] = field(default_factory=dict)  # x-hf-bill-to, ...
    flags: Flags = field(default_factory=Flags)
    tenant: str | None = None  # set by auth
    api_key_id: str | None = None
    started: float = 0.0  # clock.monotonic() at arrival
    deadline: float = 0.0  # clock.monotonic() past which nothing more is attempted
    # Filled in on the way through, read by metrics and the access log.
    target: Deployment | None = None  # the deployment the terminal calls (fallback sets it per try)
    deployment: str | None = None
    upstream_seconds: float = 0.0
    waited_seconds: float = 0.0
    retries: int = 0
    cache: str = "none"
    reply_headers: dict[str, str] = field(default_factory=dict)  # added to whatever is answered
    tokens_in: int = 0
    tokens_out: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Reply:
    """A complete answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamReply:
    """An SSE answer whose first event has been read already (`first`), the rest still to come."""

    first: bytes
    rest: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    content_type: str = "text/event-stream"
    on_close: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)

    async def events(self) -> AsyncIterator[bytes]:
        """Every event, the peeked one first."""
        try:
            if self.first:
                yield self.first
            async for ev in self.rest:
                yield ev
        finally:
            # Closing now (not at garbage collection) drops the upstream response the moment we stop.
            aclose = getattr(self.rest, "aclose", None)
            if aclose is not None:
                await aclose()


Answer = Reply | StreamReply
Handler = Callable[[Call], Awaitable[Answer]]


class Stage(Protocol):
    """One policy on the road: answer, delegate to `nxt`, or both."""

    async def __call__(self, call: Call, nxt: Handler) -> Answer: ...


def build_pipeline(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Fold `stages` around `terminal`; stages[0] is the outermost.

    A stage may also have `prepare(call) -> bool` and `abandon(call) -> None`: before the first
    stage runs, every `prepare` may start store work for its stage (noted in `call.extras`) (on Redis, queued so that all
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
    release = call.extras.pop(_LET_GO, None)
    if release is not None:
        release()


_LET_GO = "_prepared_let_go"  # call.extras: runs every `abandon` of the call's pipeline


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
        before = len(call.extras)
        try:
            for prepare in prepares:
                if prepare(call):
                    break
        except BaseException:
            release(call)  # what the earlier prepares started (a queued claim holding a lock) is undone
            raise
        if len(call.extras) == before:  # nothing started (prepares note what they start in extras)
            return await head(call)
        call.extras[_LET_GO] = lambda: release(call)
        try:
            return await head(call)
        finally:
            call.extras.pop(_LET_GO, None)
            release(call)

    return run
