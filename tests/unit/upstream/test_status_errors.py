"""Reading upstream error bodies: the message, and every other field kept as it came."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.upstream.status_errors import parse_retry_after, read_error_body, status_error, stream_error


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


def test_retry_after_in_every_http_date_form() -> None:
    """IMF-fixdate, RFC 850 and asctime (RFC 9110 §5.6.7), all GMT: 06 Nov 1994 08:49:37 is 784111777."""
    for date in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert parse_retry_after({"retry-after": date}, 784111777.0 - 7) == 7.0, date


@pytest.mark.parametrize("value", ["inf", "nan", "1e3", "-5", "3.5", "0x10", "soon", "12abc", " "])
def test_retry_after_that_is_neither_seconds_nor_a_date_is_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value}, 0) is None
    assert parse_retry_after({"retry-after-ms": value}, 0) is None or value == "3.5"


def test_retry_after_is_bounded() -> None:
    assert parse_retry_after({"retry-after": "9" * 305}, 0) == 86400.0
    assert parse_retry_after({"retry-after": "9" * 305}, 0, cap=120) == 120
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2099 00:00:00 GMT"}, 0, cap=120) == 120
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, 50) == 0.0
    assert parse_retry_after({"retry-after-ms": "999999999999"}, 0, cap=120) == 120
    err = status_error(500, {"retry-after": "9" * 305}, b"{}", now=0, upstream="hf", retry_after_cap=120)
    assert err.retry_after == 120 and err.headers["Retry-After"] == "120"
