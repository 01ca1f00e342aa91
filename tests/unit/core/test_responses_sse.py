"""Responses API streams: their events read as events, their failures found, the gateway's own error event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from openai.types.responses import ResponseErrorEvent

from gateway.core.sse import error_in, event_data, next_sequence_number, read_events, responses_error_event

CREATED = (b'event: response.created\n'
           b'data: {"type":"response.created","response":{"error":null},"sequence_number":0}\n\n')
DELTA = (b'event: response.output_text.delta\n'
         b'data: {"type":"response.output_text.delta","delta":"hi","sequence_number":7}\n\n')


async def _lines(data: bytes) -> AsyncIterator[bytes]:
    for line in data.splitlines(keepends=True):
        yield line


async def test_event_lines_are_kept_byte_for_byte() -> None:
    assert [e async for e in read_events(_lines(CREATED + DELTA))] == [CREATED, DELTA]
    assert event_data(DELTA) == b'{"type":"response.output_text.delta","delta":"hi","sequence_number":7}'


def test_only_failure_events_are_errors() -> None:
    assert error_in(CREATED) is None  # `"error":null` inside the response is no failure
    assert error_in(DELTA) is None
    failed = error_in(b'event: error\ndata: {"type":"error","code":"server_error","message":"boom",'
                      b'"param":null,"sequence_number":3}\n\n')
    assert failed is not None and failed["message"] == "boom"
    whole = error_in(b'event: response.failed\ndata: {"type":"response.failed","response":{"status":"failed",'
                     b'"error":{"code":"server_error","message":"it broke"}},"sequence_number":9}\n\n')
    assert whole == {"error": {"code": "server_error", "message": "it broke"}}


def test_the_gateways_error_event_is_what_the_sdk_parses() -> None:
    event = responses_error_event("upstream oai dropped the stream", 8, "upstream_bad_response")
    assert event.startswith(b"event: error\ndata: {") and event.endswith(b"}\n\n") and b"[DONE]" not in event
    parsed = ResponseErrorEvent.model_validate(orjson.loads(event_data(event) or b""))
    assert (parsed.type, parsed.sequence_number, parsed.code) == ("error", 8, "upstream_bad_response")
    assert parsed.message == "upstream oai dropped the stream"


def test_the_next_sequence_number() -> None:
    assert next_sequence_number(DELTA) == 8
    assert next_sequence_number(b"") == 0
    assert next_sequence_number(b'data: {"choices":[]}\n\n') == 0
    assert next_sequence_number(b"data: not json\n\n") == 0
