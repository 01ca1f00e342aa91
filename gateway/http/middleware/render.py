"""The ONE error renderer, and the middleware that sends every error through it.

Every error leaves the gateway through `render_error`: OpenAI shape plus `X-Error-Message` on
`/v1` paths, HF shape (`{"error": ...}`, with `error_type` / `estimated_time` where HF and TGI
clients read them) elsewhere. An upstream's own error fields (`UpstreamStatusError.upstream_fields`:
OpenAI's `type` / `code` / `param`, TGI's `error_type`, ...) are added as they came, over the
gateway's defaults: inside `error` on `/v1`, beside `error` on HF routes. Bodies carry
Content-Length (never chunked) and `X-Request-Id`.
An unexpected exception is logged with its traceback and answered with a generic 500 that says
nothing about internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.core.call import Call, Dialect, Op
from gateway.core.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge, UpstreamStatusError
from gateway.http.appkeys import CALL, REQUEST_ID
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
    # The upstream's own fields (type, code, param, error_type, ...) go last: added to, never replaced.
    relayed = err.upstream_fields if isinstance(err, UpstreamStatusError) else {}
    if dialect_of(request) is Dialect.OPENAI:
        inner: dict[str, object] = {"message": err.message, "type": err.type, "code": err.code,
                                    **err.extra_body(), **relayed}
        body: dict[str, object] = {"error": inner}
        headers["X-Error-Message"] = _safe_header(err.message)
    else:
        body = {"error": err.message, **err.extra_body()}
        tgi_style = call is None or call.op is Op.TGI_GENERATE or (call.op is Op.HF_TASK and call.task in _TGI_TASKS)
        if err.error_type and tgi_style:
            body["error_type"] = err.error_type
        body.update(relayed)
    response = web.Response(status=err.status, body=orjson.dumps(body), content_type="application/json",
                            headers=headers)
    if headers.get("Connection") == "close":
        response.force_close()  # (the error says the connection cannot serve another request)
    return response


def error_middleware() -> Middleware:
    """Renders every error (the request id and arrival time come from the observe middleware, outside it)."""

    @web.middleware
    async def middleware(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
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
                return render_error(request, GatewayError(exc.reason or "request failed", status=exc.status))
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": request.get(REQUEST_ID)})
            return render_error(request, GatewayError("internal gateway error"))

    return middleware
