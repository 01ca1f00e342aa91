"""The [metrics] stage, outermost: what the pipeline did to each call, as metric events.

`MetricsStage` turns the annotations the policies leave on a `Call` into metric events, once per
call, when the call is over: as soon as a complete `Reply` or an error comes back, or, for a
stream, in its `on_close` hook (the relay runs the hooks after the last event, after an error
event, or when the client went away). Being outermost, its hook runs after every inner stage's
hook, so token counts settled at the end of a stream are already on the call.

Time to first byte of a stream is taken when the relay asks for the event after the peeked first
one: at that moment the 200 headers and the first event have been written to the client. Stream
tokens are counted on the way through (`stream_watch.py`), unless an inner stage already set them.
Each upstream attempt is timed by `upstream_timer.py`, around the terminal.

What the client saw (status, total time, the access line, in-flight) is `http/middleware/observe.py`'s job.

Invariants:
- Metrics never fail a request: a recording error is logged and swallowed.
- Hot path: no work per stream event beyond one delegating call; children are cached by `Metrics`.
"""

from __future__ import annotations

import logging
from functools import partial

from gateway.core.call import Answer, Call, StreamReply
from gateway.core.clock import Clock
from gateway.core.pipeline import Handler
from gateway.observability.catalogue import CACHE_EVENTS, RATELIMIT_OUTCOMES, RATELIMIT_SCOPES, in_vocabulary
from gateway.observability.metrics import Metrics
from gateway.observability.stream_watch import StreamWatch

log = logging.getLogger("gateway.metrics")


def model_label(metrics: Metrics, call: Call) -> str:
    """The bounded model label: the name asked for when configured, else its route's label."""
    label = metrics.model_label(call.model)
    if label == "other":
        label = metrics.model_label(call.route.label)
    return label




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
        passed = call.resilience.endpoint_passed_over
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
        call.streaming.ttfb = seconds
        try:
            self._m.stream_first_byte(call.route_label, model_label(self._m, call), seconds)
        except Exception:  # metrics never fail a request
            log.exception("recording a stream's first byte failed")

    def _stream_closed(self, call: Call, watch: StreamWatch) -> None:
        try:
            watch.settle(call)
        except Exception:  # metrics never fail a request
            log.exception("counting a stream's tokens failed")
        self._account(call)

    def _account(self, call: Call) -> None:
        try:
            record_call(self._m, call)
        except Exception:  # metrics never fail a request
            log.exception("recording a call's metrics failed")


def record_call(m: Metrics, call: Call) -> None:
    """Every policy event a finished call carries, as metric events."""
    model = model_label(m, call)
    if call.tokens_in or call.tokens_out:
        m.tokens(model, call.tenant, call.tokens_in, call.tokens_out)
    _record_cache(m, call)
    paced = False
    for scope, outcome in call.limiting.outcomes:
        if in_vocabulary(scope, RATELIMIT_SCOPES) and in_vocabulary(outcome, RATELIMIT_OUTCOMES):
            m.ratelimit_decision(scope, outcome)
            paced = paced or (scope == "outbound" and outcome == "allowed")
    for _ in range(call.resilience.fallbacks):
        m.fallback(model)
    if call.resilience.coldstart_wait:
        m.coldstart_wait(model, call.resilience.coldstart_wait)
    if paced:  # went through an outbound queue, waiting or not (0 s counts: the quantiles need it)
        upstream = (call.target or call.route.deployments[0]).upstream.name
        m.outbound_queue_wait(upstream, call.limiting.shaping_wait)


def _record_cache(m: Metrics, call: Call) -> None:
    notes = call.caching
    if call.cache != "none" and in_vocabulary(call.cache, CACHE_EVENTS):
        m.cache_event(call.cache)
    if notes.served_bytes and call.cache in ("hit", "coalesced"):
        m.cache_bytes("served", notes.served_bytes)
    stored = notes.store
    if stored == "store" or stored == "store_skipped":
        m.cache_event(stored)
        if stored == "store" and notes.stored_bytes:
            m.cache_bytes("stored", notes.stored_bytes)




