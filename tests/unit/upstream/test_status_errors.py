"""Reading upstream error bodies: the message, and every other field kept as it came."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.upstream.status_errors import read_error_body, status_error, stream_error


@pytest.mark.parametrize("body, message, fields", [
    ({"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}, "m",
     {"type": "t", "param": "p", "code": "c"}),
    ({"error": "m", "error_type": "validation"}, "m", {"error_type": "validation"}),
    ([{"error": "Model x is currently loading", "estimated_time": 3.5}], "Model x is currently loading",
     {"estimated_time": 3.5}),
    ({"object": "error", "message": "m", "type": "BadRequestError", "param": None, "code": 400}, "m",
     {"type": "BadRequestError", "param": None, "code": 400}),
    ({"error": ["a", "b"]}, "a; b", {}),
    ("not an object", None, {}),
])
def test_every_known_shape_gives_its_message_and_keeps_the_rest(body: Any, message: str | None,
                                                                fields: dict[str, Any]) -> None:
    parts = read_error_body(body)
    assert (parts.message, parts.fields) == (message, fields)


def test_a_status_error_carries_the_upstream_fields() -> None:
    body = orjson.dumps({"error": {"message": "too long", "type": "invalid_request_error", "param": "messages",
                                   "code": "context_length_exceeded"}})
    err = status_error(400, {}, body, now=0.0, upstream="u", retry_after_cap=120.0)
    assert err.upstream_fields == {"type": "invalid_request_error", "param": "messages",
                                   "code": "context_length_exceeded"}
    assert err.error_type is None  # an OpenAI `type` is not TGI's `error_type` (the HF client would misread it)


@pytest.mark.parametrize("event, status", [
    ({"error": "bad input", "error_type": "validation"}, 422),
    ({"error": "busy", "error_type": "overloaded"}, 429),
    ({"error": {"message": "m", "type": "invalid_request_error", "code": "context_length_exceeded"}}, 400),
    ({"error": {"message": "m", "type": "insufficient_quota", "code": "insufficient_quota"}}, 429),
    ({"error": {"message": "m", "type": "BadRequestError", "code": 400}}, 400),
    ({"error": {"message": "m", "type": "auth", "code": 401}}, 502),  # never "your key is wrong"
    ({"error": {"message": "m", "type": "server_error", "code": None}}, 502),
])
def test_a_first_event_error_gets_the_status_it_stands_for(event: dict[str, Any], status: int) -> None:
    err = stream_error(event)
    assert err.status == status
    assert err.retryable is (status in (429, 502, 503, 504))
