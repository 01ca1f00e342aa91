"""Writing a `StreamReply` to the client, event by event.

The first event was peeked upstream, so the 200 is only committed once something real exists.
After that nothing is retried: an upstream failure becomes one in-band error event in the route's
dialect and the stream ends. A client that goes away stops the loop, and closing the event
iterator closes the upstream response at once.

Headers: only those fit to relay (`clean_headers`: a token for a name, printable ASCII for a value)
go out, whatever produced the answer (upstream, cache, coalescing), so a bad header can never make
`prepare` fail half way through a response.

Time limits on a stream: the upstream's `read_timeout` bounds the silence between two reads
(enforced in `upstream/http.py`), and the request's deadline (`request_timeout`, or the client's
shorter `X-Gateway-Timeout`) bounds the whole request, stream included: a stream still running at
the deadline ends with an in-band timeout event, so a stream that never ends cannot hold a
connection, a task and an upstream slot for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from aiohttp import web

from gateway.core.call import Call, Dialect, Op, StreamReply
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError, UpstreamTimeout
from gateway.core.sse import next_sequence_number, openai_error_event, responses_error_event, tgi_error_event
from gateway.http.appkeys import CLOCK
from gateway.upstream.http import clean_headers

log = logging.getLogger("gateway.relay")


async def relay_stream(request: web.Request, call: Call, answer: StreamReply) -> web.StreamResponse:
    """Relay SSE events untouched; flush per event."""
    resp = web.StreamResponse(status=answer.status)
    resp.content_type = answer.content_type
    if answer.headers:
        resp.headers.update(clean_headers(answer.headers.items()))
    if call.reply_headers:
        resp.headers.update(clean_headers(call.reply_headers.items()))
    resp.headers["X-Request-Id"] = call.request_id
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    events = answer.events()
    timed = _until_deadline(events, call, request.app[CLOCK])
    try:
        await resp.prepare(request)
        last = b""  # the last event written: a Responses error event carries the next sequence number
        try:
            async for event in timed:
                await resp.write(event)
                if event[:1] != b":":  # (comments carry no sequence number)
                    last = event
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except GatewayError as exc:
            call.streaming.error = exc.code
            await resp.write(_error_event(call, exc.message, exc.code, last))
        except Exception as exc:  # an upstream bug must still end the stream cleanly
            log.exception("stream relay failed", extra={"request_id": call.request_id})
            call.streaming.error = type(exc).__name__
            await resp.write(_error_event(call, "the upstream stream failed", "server_error", last))
        await resp.write_eof()
    except ConnectionResetError:
        call.streaming.client_gone = True
    finally:
        await timed.aclose()
        await events.aclose()
        for hook in answer.on_close:
            result = hook()
            if asyncio.iscoroutine(result):
                await result
    return resp


async def _until_deadline(events: AsyncIterator[bytes], call: Call,
                          clock: Clock) -> AsyncGenerator[bytes, None]:
    """`events`, each awaited within what is left of the call's deadline; UpstreamTimeout past it."""
    while True:
        remaining = call.deadline - clock.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining) as scope:
                event = await anext(events)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            if remaining > 0 and not scope.expired():
                raise  # a TimeoutError of the upstream's own, not our deadline
            raise UpstreamTimeout("the request's deadline passed before the stream finished") from exc
        yield event


def _error_event(call: Call, message: str, code: str, last: bytes) -> bytes:
    """The in-band error event of the call's stream form (a Responses stream's is numbered after `last`)."""
    if call.op is Op.RESPONSES:
        return responses_error_event(message, next_sequence_number(last), code)
    if call.dialect is Dialect.OPENAI:
        return openai_error_event(message)
    return tgi_error_event(message)
