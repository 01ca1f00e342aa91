"""Writing answers onto the connection, with the damage a `Plan` asks for.

Waits go through the injected clock and race a watch on the connection, so a client that goes
away during a slow first byte, a cold-start wait or a drip is noticed (counted once in
`cancelled`) and nothing more is produced for it. Aborts set SO_LINGER 0 so the peer sees a reset,
not a clean close.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

from gateway.simulator.calls import SimCall
from gateway.simulator.faults import Plan
from gateway.simulator.wire import Body

GARBAGE = b"\x00\xffnot json at all <<<\xfe\x01 upstream garbage >>>\n"
_WATCH_INTERVAL = 0.01


def is_gone(request: web.Request) -> bool:
    """True once the client's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def watch_gone(request: web.Request) -> None:
    """Return once the client's connection is closed or closing."""
    # aiohttp offers no awaitable for "peer went away" unless handler cancellation is on,
    # so poll the transport on the real loop clock (this never advances a fake clock).
    while not is_gone(request):  # noqa: ASYNC110 - there is no event to wait on (above)
        await asyncio.sleep(_WATCH_INTERVAL)


async def pause(call: SimCall, seconds: float) -> bool:
    """Wait `seconds` on the simulator's clock; False (and counted) if the client left meanwhile."""
    if seconds > 0 and not is_gone(call.request):
        sleeper = asyncio.ensure_future(call.state.clock.sleep(seconds))
        watcher = asyncio.ensure_future(watch_gone(call.request))
        try:
            await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            watcher.cancel()
    if is_gone(call.request):
        call.state.stats.cancel(call.record)
        return False
    return True


def abort(request: web.Request) -> None:
    """Drop the connection now, with a TCP reset."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed under us: a plain abort does the job
    transport.abort()


def dropped() -> web.Response:
    """What a handler returns once the connection is gone (aiohttp discards it)."""
    return web.Response(status=499)


def plain(body: Body, headers: dict[str, str] | None = None) -> web.Response:
    """A complete answer with Content-Length."""
    return web.Response(body=body.data, status=body.status, content_type=body.content_type,
                        headers=headers or None)


def damage(body: Body, plan: Plan) -> tuple[bytes, str]:
    """The body bytes and content type after body faults."""
    data, content_type = body.data, body.content_type
    if plan.garbage:
        data = GARBAGE
    if plan.truncated_json:
        data = data[: max(1, len(data) // 2)]
    if plan.huge_body:
        data = data + b" " * max(0, plan.huge_body - len(data))
    if plan.wrong_content_type:
        content_type = "text/html; charset=utf-8"
    return data, content_type


async def write_body(call: SimCall, body: Body, plan: Plan) -> web.StreamResponse:
    """Write a non-stream answer, applying body faults."""
    data, content_type = damage(body, plan)
    if plan.reset_after_headers:
        resp = web.StreamResponse(status=body.status, headers={"Content-Type": content_type,
                                                               "Content-Length": str(len(data))})
        await resp.prepare(call.request)
        abort(call.request)
        return resp
    resp = web.Response(body=data, status=body.status)
    # Set the raw header so a charset-bearing wrong content type goes out verbatim.
    resp.headers["Content-Type"] = content_type
    return resp
