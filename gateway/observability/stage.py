"""The [metrics] stage (outermost) and the upstream timer (around the terminal): what the pipeline did.

`MetricsStage` turns the annotations the policies leave on a `Call` into metric events, once per
call, when the call is over: as soon as a complete `Reply` or an error comes back, or, for a
stream, in its `on_close` hook (the relay runs the hooks after the last event, after an error
event, or when the client went away). Being outermost, its hook runs after every inner stage's
hook, so token counts settled at the end of a stream are already on the call.

Time to first byte of a stream is taken when the relay asks for the event after the peeked first
one: at that moment the 200 headers and the first event have been written to the client. Stream
tokens are counted on the way through (`StreamWatch`), unless an inner stage already set them.

`UpstreamTimer` wraps the terminal (the one upstream call) and sees every attempt: it times each
one (`gateway_upstream_duration_seconds`) and counts an attempt on the same deployment after a
failed one as a retry, labelled with the failure that caused it (a cold-start re-probe after
"loading" counts as a retry for "loading"; a move to another deployment is a fallback instead).

What the client saw (status, total time, the access line, in-flight) is `gateway/observe.py`'s job.

Invariants:
- Metrics never fail a request: a recording error is logged and swallowed.
- Hot path: no work per stream event beyond one delegating call; children are cached by `Metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import orjson

from gateway.core.call import Answer, Call, StreamReply
from gateway.core.clock import Clock
from gateway.core.errors import (
    GatewayError,
    ModelLoading,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.core.pipeline import Handler
from gateway.core.sse import DONE, event_data
from gateway.observability.catalogue import CACHE_EVENTS, RATELIMIT_OUTCOMES, RATELIMIT_SCOPES
from gateway.observability.metrics import Metrics, RetryReason
from gateway.policies.limits.tokens import prompt_tokens

log = logging.getLogger("gateway.metrics")
TTFB = "ttfb"  # call.extras key: seconds from arrival to the first streamed byte (read by the access line)
_LAST_FAILURE = "_metrics_last_failure"  # call.extras key: (deployment id, reason) of the last failed attempt


def model_label(metrics: Metrics, call: Call) -> str:
    """The bounded model label: the name asked for when configured, else its route's label."""
    label = metrics.model_label(call.model)
    if label == "other":
        label = metrics.model_label(call.route.label)
    return label


def retry_reason(exc: BaseException) -> RetryReason | None:
    """The retry-reason label of a failed upstream attempt; None for failures nobody retries."""
    if isinstance(exc, ModelLoading):
        return "loading"
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "429"
        return "5xx" if exc.status >= 500 else None
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamUnreachable):
        return "connect"
    if isinstance(exc, UpstreamProtocolError):
        return "5xx"
    return None


class MetricsStage:
    """Outermost stage: accounts for each call once, and times the first byte of streams."""

    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self._m = metrics
        self._clock = clock

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        try:
            answer = await nxt(call)
        except BaseException:
            self._account(call)
            raise
        passed = call.endpoint_passed_over
        if passed is not None and (call.target is None or call.target.upstream.name != passed):
            self._m.endpoint_fallback_served(passed)  # answered by another deployment than the endpoint
        if isinstance(answer, StreamReply):
            watch = StreamWatch(answer.rest, partial(self._first_byte, call), answer.first)
            answer.rest = watch
            answer.on_close.append(partial(self._stream_closed, call, watch))
        else:
            self._account(call)
        return answer

    def _first_byte(self, call: Call) -> None:
        seconds = self._clock.monotonic() - call.started
        call.extras[TTFB] = seconds
        try:
            self._m.stream_first_byte(call.route_label, model_label(self._m, call), seconds)
        except Exception:  # noqa: BLE001 - metrics never fail a request
            log.exception("recording a stream's first byte failed")

    def _stream_closed(self, call: Call, watch: StreamWatch) -> None:
        try:
            watch.settle(call)
        except Exception:  # noqa: BLE001 - metrics never fail a request
            log.exception("counting a stream's tokens failed")
        self._account(call)

    def _account(self, call: Call) -> None:
        try:
            record_call(self._m, call)
        except Exception:  # noqa: BLE001 - metrics never fail a request
            log.exception("recording a call's metrics failed")


def record_call(m: Metrics, call: Call) -> None:
    """Every policy event a finished call carries, as metric events."""
    model = model_label(m, call)
    if call.tokens_in or call.tokens_out:
        m.tokens(model, call.tenant, call.tokens_in, call.tokens_out)
    extras = call.extras
    if not extras and call.cache == "none":
        return  # the common uncached, unlimited call: nothing more to look at
    _record_cache(m, call)
    paced = False
    for scope, outcome in extras.get("ratelimit", ()):
        if scope in RATELIMIT_SCOPES and outcome in RATELIMIT_OUTCOMES:
            m.ratelimit_decision(scope, outcome)
            paced = paced or (scope == "outbound" and outcome == "allowed")
    for _ in range(int(extras.get("fallbacks", 0) or 0)):
        m.fallback(model)
    coldstart = extras.get("coldstart_wait")
    if coldstart:
        m.coldstart_wait(model, float(coldstart))
    if paced:  # went through an outbound queue, waiting or not (0 s counts: the quantiles need it)
        upstream = (call.target or call.route.deployments[0]).upstream.name
        m.outbound_queue_wait(upstream, float(extras.get("shaping_wait", 0.0)))


def _record_cache(m: Metrics, call: Call) -> None:
    extras = call.extras
    if call.cache != "none" and call.cache in CACHE_EVENTS:
        m.cache_event(call.cache)  # type: ignore[arg-type]
    served = extras.get("cache_bytes")
    if served and call.cache in ("hit", "coalesced"):
        m.cache_bytes("served", int(served))
    stored = extras.get("cache_store")
    if stored in ("store", "store_skipped"):
        m.cache_event(stored)
        if stored == "store" and extras.get("cache_stored_bytes"):
            m.cache_bytes("stored", int(extras["cache_stored_bytes"]))


class StreamWatch:
    """Delegates to a stream's remaining events: times the first byte and counts the stream's tokens.

    `on_first` runs when the first of the remaining events is asked for, i.e. right after the
    peeked first event was written (with `skip`, a stream whose peeked event is empty, one event
    later). Tokens: the exact figures when the stream reports them (OpenAI's `usage` chunk,
    TGI's final `details`), else one completion token per data event, as TGI and OpenAI-style
    servers send one token per event; the prompt is then estimated from the request.
    """

    __slots__ = ("_inner", "_on_first", "_skip", "events", "tokens_in", "tokens_out")

    def __init__(self, inner: AsyncIterator[bytes], on_first: Callable[[], None], first: bytes) -> None:
        self._inner = inner
        self._on_first: Callable[[], None] | None = on_first
        self._skip = not first
        self.events = 0  # data events other than [DONE]
        self.tokens_in: int | None = None  # reported by the stream itself
        self.tokens_out: int | None = None
        if first:
            self._see(first)

    def __aiter__(self) -> StreamWatch:
        return self

    async def __anext__(self) -> bytes:
        if self._on_first is not None:
            if self._skip:
                self._skip = False
            else:
                on_first, self._on_first = self._on_first, None
                on_first()
        event = await self._inner.__anext__()
        self._see(event)
        return event

    def _see(self, event: bytes) -> None:
        if event == DONE or not event.startswith(b"data:"):
            return
        if b'"usage"' in event or b'"generated_tokens"' in event:
            if self._reported(event):
                return  # a usage-only chunk carries no token of its own
        self.events += 1

    def _reported(self, event: bytes) -> bool:
        try:
            obj = orjson.loads(event_data(event) or b"null")
        except orjson.JSONDecodeError:
            return False
        if not isinstance(obj, dict):
            return False
        usage, details = obj.get("usage"), obj.get("details")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.tokens_in, self.tokens_out = int(usage.get("prompt_tokens") or 0), usage["completion_tokens"]
            return not obj.get("choices")
        if isinstance(details, dict) and isinstance(details.get("generated_tokens"), int):
            self.tokens_out = details["generated_tokens"]
            if isinstance(details.get("input_length"), int):
                self.tokens_in = details["input_length"]
        return False

    def settle(self, call: Call) -> None:
        """Put the stream's token counts on the call, unless a stage already did."""
        if call.tokens_in or call.tokens_out:
            return
        call.tokens_out = self.tokens_out if self.tokens_out is not None else self.events
        call.tokens_in = self.tokens_in if self.tokens_in is not None else prompt_tokens(call)

    async def aclose(self) -> None:
        """Close the wrapped iterator too (an abandoned upstream stream must not linger)."""
        close: Any = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


class UpstreamTimer:
    """Wraps the terminal: times every upstream attempt and counts retries by their cause."""

    def __init__(self, terminal: Handler, metrics: Metrics, clock: Clock) -> None:
        self._terminal = terminal
        self._m = metrics
        self._clock = clock

    async def __call__(self, call: Call) -> Answer:
        dep = (call.target or call.route.deployments[0]).id
        last = call.extras.pop(_LAST_FAILURE, None) if call.extras else None
        if last is not None and last[0] == dep:
            self._m.retry(dep, last[1])
        if self._clock.monotonic() >= call.deadline:
            return await self._terminal(call)  # refused before any upstream call: nothing to time
        before = call.upstream_seconds
        try:
            return await self._terminal(call)
        except GatewayError as exc:
            reason = retry_reason(exc)
            if reason is not None:
                call.extras[_LAST_FAILURE] = (dep, reason)
            raise
        finally:
            self._m.upstream_done(dep, call.upstream_seconds - before)
