"""The stream writer: sends a `StreamBody` event by event, applying stream faults.

Position faults count data events: `midstream-k3` writes 3 events then the dialect's in-band
error event and ends; `cut-k3` writes 3 events then resets the connection. When the stream has
fewer events than k, the failure takes the terminator's place (`[DONE]` or EOF). An endless
stream keeps producing `StreamBody.more(n)` until the client leaves. The writer stops the
moment the peer is gone and counts the request once in `cancelled`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web

from gateway.simulator.calls import SimCall
from gateway.simulator.faults import Plan
from gateway.simulator.respond import GARBAGE, abort, is_gone, pause
from gateway.simulator.wire import EVENT_STREAM, StreamBody, dumps


def _events(stream: StreamBody, plan: Plan) -> Iterator[bytes]:
    for index, event in enumerate(stream.events):
        if index == 0 and plan.garbage:
            yield b"data:" + GARBAGE + b"\n"
        elif index == 0 and plan.truncated_json:
            yield event[: max(6, len(event) // 2)] + b"\n\n"
        else:
            yield event
    if plan.endless:
        n = 1
        while True:
            yield stream.more(n)
            n += 1


def _failure(stream: StreamBody, plan: Plan) -> tuple[int, str] | None:
    """Where the stream fails and how ("cut" or "midstream"); the earlier fault wins."""
    options = []
    if plan.cut_after is not None:
        options.append((plan.cut_after, "cut"))
    if plan.midstream_after is not None:
        options.append((plan.midstream_after, "midstream"))
    if not options:
        return None
    position, kind = min(options)
    return (position if plan.endless else min(position, len(stream.events))), kind


async def write_stream(call: SimCall, stream: StreamBody, plan: Plan) -> web.StreamResponse:
    """Send the stream; returns the prepared response (aiohttp finishes or discards it)."""
    content_type = "application/json" if plan.wrong_content_type else EVENT_STREAM
    resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    await resp.prepare(call.request)
    if plan.reset_after_headers:
        abort(call.request)
        return resp
    try:
        if call.state.config.fast and plan.clean:
            # Benchmark mode: one write, no per-event work.
            await resp.write(b"".join(stream.events) + stream.done)
        elif not await _write_events(call, resp, stream, plan):
            return resp
        await resp.write_eof()
    except ConnectionError:
        # ConnectionResetError and aiohttp's ClientConnectionResetError: the peer is gone.
        call.state.stats.cancel(call.record)
    return resp


async def _write_events(call: SimCall, resp: web.StreamResponse, stream: StreamBody, plan: Plan) -> bool:
    """Write events and the ending; False when the connection is gone (or was cut on purpose)."""
    failure = _failure(stream, plan)
    if plan.huge_body:
        await resp.write(b":" + b" " * plan.huge_body + b"\n\n")
    written = 0
    for event in _events(stream, plan):
        if failure is not None and written == failure[0]:
            break
        if written and plan.drip and not await pause(call, plan.drip):
            return False
        if is_gone(call.request):
            call.state.stats.cancel(call.record)
            return False
        await resp.write(event)
        written += 1
        if plan.endless and not plan.drip:
            await asyncio.sleep(0)  # let the loop notice a departed client between events
    if failure is not None and failure[1] == "cut":
        abort(call.request)
        return False
    if failure is not None and plan.midstream_body is not None:
        await resp.write(b"data: " + dumps(plan.midstream_body) + b"\n\n")
    else:
        await resp.write(stream.failure_event(written) if failure is not None else stream.done)
    return True
