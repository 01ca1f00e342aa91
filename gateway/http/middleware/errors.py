"""Request ids and the ONE error renderer.

Every error leaves the gateway through `render_error`: OpenAI shape plus `X-Error-Message` on
`/v1` paths, HF shape (`{"error": ...}`, with `error_type` / `estimated_time` where HF and TGI
clients read them) elsewhere. Bodies carry Content-Length (never chunked) and `X-Request-Id`.
An unexpected exception is logged with its traceback and answered with a generic 500 that says
nothing about internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.core.call import Call, Dialect, Op
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge
from gateway.http.appkeys import CALL, REQUEST_ID, STARTED
from gateway.http.parsing import request_id

log = logging.getLogger("gateway.errors")
HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TGI_TASKS = {"text-generation", None}


def dialect_of(request: web.Request) -> Dialect:
    call: Call | None = request.get(CALL)
    if call is not None:
        return call.dialect
    return Dialect.OPENAI if "/v1/" in request.path or request.path == "/v1" else Dialect.HF


def _safe_header(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text)[:500]


def render_error(request: web.Request, err: GatewayError) -> web.Response:
    """The HTTP answer for a gateway error, in the request's dialect."""
    rid = request.get(REQUEST_ID) or request_id(request)
    call: Call | None = request.get(CALL)
    # Headers earned on the way (x-ratelimit-*, X-Cache) go out on errors too.
    headers = {**(call.reply_headers if call is not None else {}), "X-Request-Id": rid, **err.headers}
    if err.status >= 500 or err.status == 429:
        headers["x-should-retry"] = "true" if err.retryable else "false"
    upstream_headers = getattr(err, "upstream_headers", None)
    if upstream_headers:
        headers.update(upstream_headers)
    if dialect_of(request) is Dialect.OPENAI:
        body: dict[str, object] = {"error": {"message": err.message, "type": err.type, "code": err.code}}
        extra = err.extra_body()
        if extra:
            body["error"].update(extra)  # type: ignore[union-attr]
        headers["X-Error-Message"] = _safe_header(err.message)
    else:
        body = {"error": err.message, **err.extra_body()}
        tgi_style = call is None or call.op is Op.TGI_GENERATE or (call.op is Op.HF_TASK and call.task in _TGI_TASKS)
        if err.error_type and tgi_style:
            body["error_type"] = err.error_type
    response = web.Response(status=err.status, body=orjson.dumps(body), content_type="application/json",
                            headers=headers)
    if headers.get("Connection") == "close":
        response.force_close()  # (the error says the connection cannot serve another request)
    return response


def error_middleware(clock: Clock) -> Callable[[web.Request, HandlerFn], Awaitable[web.StreamResponse]]:
    """Assigns the request id, stamps arrival time, and renders every error."""

    @web.middleware
    async def middleware(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        # The observe middleware (outside this one) may have assigned both already: keep them.
        if REQUEST_ID not in request:
            request[REQUEST_ID] = request_id(request)
        if STARTED not in request:
            request[STARTED] = clock.monotonic()
        try:
            return await handler(request)
        except GatewayError as err:
            return render_error(request, err)
        except web.HTTPRequestEntityTooLarge:
            return render_error(request, PayloadTooLarge("request body is over the configured limit"))
        except web.HTTPMethodNotAllowed as exc:
            return render_error(request, MethodNotAllowed(f"{request.method} is not allowed on {request.path}",
                                                          headers={"Allow": ",".join(sorted(exc.allowed_methods))}))
        except web.HTTPNotFound:
            return render_error(request, NotFound(f"no route for {request.method} {request.path[:200]}"))
        except web.HTTPException as exc:
            if exc.status >= 400:
                err = GatewayError(exc.reason or "request failed", status=exc.status)
                return render_error(request, err)
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": request[REQUEST_ID]})
            return render_error(request, GatewayError("internal gateway error"))

    return middleware
