"""A stream that was produced but never relayed must still be closed, or its upstream keeps going.

These pin down the window between "the upstream answered with a stream" and "the relay iterates
it": a client that leaves in that window must free the upstream connection at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.clock import SystemClock
from gateway.pipeline import Call, Dialect, Op, StreamReply
from gateway.policies.keepalive import Progress, commit_when_slow


def _call() -> Call:
    return Call(request_id="race", dialect=Dialect.OPENAI, op=Op.CHAT, route_label="chat", model="m",
                route=None, body={}, raw=b"", stream=True)  # type: ignore[arg-type]


def _stream(closed: list[str]) -> StreamReply:
    async def rest() -> AsyncIterator[bytes]:
        yield b"data: 2\n\n"

    return StreamReply(first=b"data: 1\n\n", rest=rest(), on_close=[lambda: closed.append("closed")])


async def test_keepalive_closes_a_stream_that_arrives_as_the_client_leaves() -> None:
    closed: list[str] = []
    reply = _stream(closed)

    async def work() -> StreamReply:
        return reply

    outer = asyncio.create_task(commit_when_slow(work(), Progress(SystemClock()), 10.0, _call()))
    await asyncio.sleep(0)  # outer starts the work task and waits on it
    await asyncio.sleep(0)  # the work task finishes; outer is due to wake up...
    outer.cancel()  # ...but the client leaves first
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert closed == ["closed"], "the finished stream was dropped without being closed"
