"""SSE splitting, the two repairs the HF client needs, and the bounds on what one stream can make the gateway do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.core.clock import FakeClock
from gateway.core.errors import UpstreamProtocolError
from gateway.core.sse import DONE, MAX_IDLE_BYTES, YIELD_EVERY, error_in, event_data, read_events, thin_comments


async def _lines(data: bytes) -> AsyncIterator[bytes]:
    for line in data.splitlines(keepends=True):
        yield line


async def _events(data: bytes) -> list[bytes]:
    return [e async for e in read_events(_lines(data))]


async def test_events_are_relayed_byte_for_byte() -> None:
    data = b'data:{"index":1}\n\ndata: {"a":1}\n\n: keep-alive\n\n'
    assert await _events(data) == [b'data:{"index":1}\n\n', b'data: {"a":1}\n\n', b": keep-alive\n\n"]


async def test_done_without_space_is_repaired() -> None:
    assert await _events(b"data:[DONE]\n\n") == [DONE]


async def test_crlf_and_split_json_are_normalised() -> None:
    assert await _events(b'data: {"a":\r\ndata: 1}\r\n\r\n') == [b'data: {"a":1}\n\n']
    assert await _events(b"data: x\r\n\r\n") == [b"data: x\n\n"]


async def test_trailing_event_without_blank_line_is_kept() -> None:
    assert await _events(b'data: {"a":1}\n') == [b'data: {"a":1}\n\n']


async def test_cr_only_and_mixed_line_ends_are_accepted() -> None:
    """The SSE specification allows CR, LF and CRLF; events come out with LF line ends."""
    lines = [b"data: {\"a\":\r", b"data: 1}\r", b"\r", b": ping\r", b"\n", b"data: x\r\n", b"\r"]

    async def given() -> AsyncIterator[bytes]:
        for line in lines:
            yield line

    assert [e async for e in read_events(given())] == [b'data: {"a":1}\n\n', b": ping\n\n", b"data: x\n\n"]


async def _instant(lines: list[bytes]) -> AsyncIterator[bytes]:
    """Lines that are all there at once: the reader never has to wait for the network."""
    for line in lines:
        yield line


async def test_a_fast_stream_gives_the_loop_turns_while_it_is_parsed() -> None:
    """An upstream sending faster than the gateway parses must not hold the event loop from other requests."""
    turns = 0
    stop = asyncio.Event()

    async def other_request() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_request())
    await asyncio.sleep(0)
    lines = [b'data: {"i":1}\n', b"\n"] * (50 * YIELD_EVERY)
    events = [e async for e in read_events(_instant(lines))]
    stop.set()
    await other
    assert len(events) == 50 * YIELD_EVERY
    assert turns >= 100  # a turn for others at least every YIELD_EVERY lines


@pytest.mark.parametrize("unit", [b": ping\n", b"\n", b"\r"], ids=["comments", "blank-lines", "cr"])
async def test_a_flood_without_events_is_a_protocol_error(unit: bytes) -> None:
    lines = [b'data: {"i":1}\n', b"\n"] + [unit] * (MAX_IDLE_BYTES // len(unit) + 1) + [b"data: {}\n", b"\n"]
    seen = []
    with pytest.raises(UpstreamProtocolError, match="without an event"):
        async for event in read_events(_instant(lines)):
            seen.append(event)
    assert seen[:1] == [b'data: {"i":1}\n\n']


async def test_comments_between_events_do_not_add_up() -> None:
    """The flood bound counts comments since the last event: a long stream with a ping per event is fine."""
    lines = [b": ping\n", b"\n", b'data: {"i":1}\n', b"\n"] * (MAX_IDLE_BYTES // 8)
    assert len([e async for e in read_events(_instant(lines))]) == MAX_IDLE_BYTES // 4


async def test_comments_are_thinned_to_one_a_second() -> None:
    clock = FakeClock()

    async def stream() -> AsyncIterator[bytes]:
        for i in range(3):
            yield b'data: {"i":%d}\n\n' % i
            for _ in range(100):
                yield b": ping\n\n"  # right after an event: dropped
        for step in (1.5, 0.5, 0.6):
            clock.advance(step)
            for _ in range(100):
                yield b": ping\n\n"  # the first of each batch passes if a second has gone by since the last

    out = [e async for e in thin_comments(stream(), clock)]
    assert [e for e in out if e.startswith(b"data:")] == [b'data: {"i":%d}\n\n' % i for i in range(3)]
    assert out.count(b": ping\n\n") == 2  # at +1.5 s and at +2.6 s; not at +2.0 s


def test_error_detection_and_data() -> None:
    assert error_in(b'data:{"error":"boom","error_type":"generation"}\n\n') == {
        "error": "boom",
        "error_type": "generation",
    }
    assert error_in(b'data: {"token":{"text":"error"}}\n\n') is None
    assert event_data(b"event: x\ndata: 1\n\n") == b"1"
    assert event_data(b": comment\n\n") is None
