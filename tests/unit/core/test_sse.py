"""SSE splitting and the two repairs the HF client needs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.core.sse import DONE, error_in, event_data, read_events


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


def test_error_detection_and_data() -> None:
    assert error_in(b'data:{"error":"boom","error_type":"generation"}\n\n') == {
        "error": "boom",
        "error_type": "generation",
    }
    assert error_in(b'data: {"token":{"text":"error"}}\n\n') is None
    assert event_data(b"event: x\ndata: 1\n\n") == b"1"
    assert event_data(b": comment\n\n") is None
