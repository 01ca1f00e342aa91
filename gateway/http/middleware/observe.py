"""The outermost middleware: what the client saw, once per request: metrics, in-flight, the access line.

It runs outside the error middleware, so it sees the status actually sent, rendered errors
included, and outside the relay, so a stream is finished (or abandoned) when it records. It
assigns the request id and arrival time (the error middleware keeps them), binds the id to
every log line written while the request is handled (`logs.REQUEST_ID`), and puts it on
every answer that does not carry it yet.

Invariants:
- Exactly one access line per request (logger `gateway.access`, fields in `logs.ACCESS_FIELDS`),
  ops endpoints included; never a header, a body or a key, so no token can reach it.
- Ops endpoints (`/metrics`, `/healthz`, `/readyz`) are logged but not counted as traffic.
- A client that went away before the answer was sent is recorded with status 499.
- The gateway's overhead of a stream ends at its first byte: the rest runs at the upstream's pace.
- Recording never fails a request: an error while recording is logged and swallowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware  # a Protocol: web.Application checks the parameter names too

from gateway.core.call import Call
from gateway.core.clock import Clock
from gateway.http.appkeys import CALL, REQUEST_ID, STARTED, TENANT
from gateway.http.ops import OPS_PATHS
from gateway.http.parsing import request_id
from gateway.observability.catalogue import CACHE_OUTCOMES, CacheOutcome, in_vocabulary
from gateway.observability.logs import ACCESS_LOGGER, access_log
from gateway.observability.logs import REQUEST_ID as REQUEST_ID_VAR
from gateway.observability.metrics import Metrics
from gateway.observability.stage import model_label

HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection before the answer"
UNMATCHED = "unmatched"  # route label of a request no route matched
log = logging.getLogger("gateway.observe")
_access = logging.getLogger(ACCESS_LOGGER)


def observe_middleware(metrics: Metrics, clock: Clock) -> Middleware:
    """Request id, arrival time, in-flight gauge, request metrics and the access line."""

    @web.middleware
    async def observe(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        rid = request_id(request)
        request[REQUEST_ID] = rid
        started = request[STARTED] = clock.monotonic()
        traffic = request.path not in OPS_PATHS
        if traffic:
            metrics.add_in_flight(1)
        status = 500
        try:
            bound = REQUEST_ID_VAR.set(rid)
            try:
                response = await handler(request)
            finally:
                REQUEST_ID_VAR.reset(bound)
            status = response.status
            if not response.prepared:  # every answer carries the id (listings, /metrics, ... too)
                response.headers.setdefault("X-Request-Id", rid)
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except web.HTTPException as exc:  # a non-error HTTPException the error middleware let through
            status = exc.status
            raise
        finally:
            if traffic:
                metrics.add_in_flight(-1)
            try:
                _finish(metrics, request, status, clock.monotonic() - started, traffic)
            except Exception:  # recording never fails a request
                log.exception("recording a finished request failed", extra={"request_id": rid})

    return observe


def route_label(request: web.Request, call: Call | None) -> str:
    """The call's route label; before a call exists, the name of the matched handler (bounded by code)."""
    if call is not None:
        return call.route_label
    info = request.match_info
    if getattr(info, "http_exception", None) is not None:
        return UNMATCHED
    return getattr(info.handler, "__name__", UNMATCHED)


def _finish(metrics: Metrics, request: web.Request, status: int, total: float, traffic: bool) -> None:
    call: Call | None = request.get(CALL)
    if traffic:
        if call is None:
            metrics.request_done(route_label(request, None), None, request.get(TENANT), status, "none", total)
        else:
            cache: CacheOutcome = call.cache if in_vocabulary(call.cache, CACHE_OUTCOMES) else "none"
            upstream = call.upstream_seconds
            ttfb = call.streaming.ttfb
            if ttfb is not None:
                upstream += max(0.0, total - ttfb)  # after the first byte a stream runs at the upstream's pace
            metrics.request_done(call.route_label, model_label(metrics, call), call.tenant, status, cache,
                                 total, upstream, call.waited_seconds)
    if _access.isEnabledFor(logging.INFO):
        access_log(access_record(request, call, status, total))


def access_record(request: web.Request, call: Call | None, status: int, total: float) -> dict[str, object]:
    """The fields of one access line (see `logs.ACCESS_FIELDS`); seconds rounded to 0.1 ms."""
    record: dict[str, object] = {
        "request_id": request.get(REQUEST_ID), "method": request.method, "path": request.path,
        "route": route_label(request, call), "status": status, "total_s": round(total, 4),
    }  # fmt: skip
    if call is None:
        record["tenant"] = request.get(TENANT)
        return record
    record.update(
        tenant=call.tenant, model=call.model, deployment=call.deployment, cache=call.cache,
        retries=call.retries, waited_s=round(call.waited_seconds, 4),
        upstream_s=round(call.upstream_seconds, 4), stream=call.stream,
        tokens_in=call.tokens_in, tokens_out=call.tokens_out,
    )  # fmt: skip
    if call.streaming.ttfb is not None:
        record["ttfb_s"] = round(call.streaming.ttfb, 4)
    if call.streaming.error is not None:
        record["stream_error"] = call.streaming.error
    if call.streaming.client_gone:
        record["client_gone"] = True
    if call.resilience.fallbacks:
        record["fallbacks"] = call.resilience.fallbacks
    if call.resilience.endpoint_passed_over is not None:  # a managed endpoint was waking, paused or failed
        record["endpoint_passed_over"] = call.resilience.endpoint_passed_over
    return record
