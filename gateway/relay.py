"""Writing a `StreamReply` to the client, event by event.

The first event was peeked upstream, so the 200 is only committed once something real exists.
After that nothing is retried: an upstream failure becomes one in-band error event in the route's
dialect and the stream ends. A client that goes away stops the loop, and closing the event
iterator closes the upstream response at once.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .errors import GatewayError
from .pipeline import Call, Dialect, StreamReply
from .streaming import openai_error_event, tgi_error_event

log = logging.getLogger("gateway.relay")


async def relay_stream(request: web.Request, call: Call, answer: StreamReply) -> web.StreamResponse:
    """Relay SSE events untouched; flush per event."""
    resp = web.StreamResponse(status=answer.status)
    resp.content_type = answer.content_type
    resp.headers.update(answer.headers)
    resp.headers.update(call.reply_headers)
    resp.headers["X-Request-Id"] = call.request_id
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    events = answer.events()
    try:
        await resp.prepare(request)
        try:
            async for event in events:
                await resp.write(event)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except GatewayError as exc:
            call.extras["stream_error"] = exc.code
            await resp.write(_error_event(call, exc.message))
        except Exception as exc:  # an upstream bug must still end the stream cleanly
            log.exception("stream relay failed", extra={"request_id": call.request_id})
            call.extras["stream_error"] = type(exc).__name__
            await resp.write(_error_event(call, "the upstream stream failed"))
        await resp.write_eof()
    except ConnectionResetError:
        call.extras["client_gone"] = True
    finally:
        await events.aclose()
        for hook in answer.on_close:
            result = hook()
            if asyncio.iscoroutine(result):
                await result
    return resp


def _error_event(call: Call, message: str) -> bytes:
    if call.dialect is Dialect.OPENAI:
        return openai_error_event(message)
    return tgi_error_event(message)
