"""Logs: JSON lines and text, request ids, the access line, and secrets never written."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.observability.logs import (
    _SECRET_PATTERNS,
    ACCESS_FIELDS,
    REQUEST_ID,
    LogFormat,
    access_log,
    configure_logging,
    redact,
)

SECRET = "hf_fake_secret_token"


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """What the observe middleware does around a request: its id bound for every line written meanwhile."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)
Configure = Callable[..., io.StringIO]  # (fmt, level="DEBUG") -> the buffer lines go to


@pytest.fixture
def configure() -> Iterator[Configure]:
    """configure_logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def run(fmt: LogFormat, level_name: str = "DEBUG") -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(fmt, level_name, stream=buffer)
        return buffer

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_line_has_the_fixed_fields_and_the_extras(configure: Configure) -> None:
    buffer = configure("json")
    logging.getLogger("gateway.retry").warning("retrying %s", "hf-router", extra={"attempt": 2})
    [line] = json_lines(buffer)
    assert set(line) == {"ts", "level", "logger", "msg", "request_id", "attempt"}
    assert (line["level"], line["logger"], line["msg"]) == ("warning", "gateway.retry", "retrying hf-router")
    assert line["attempt"] == 2
    assert isinstance(line["ts"], str) and line["ts"].endswith("Z")
    assert line["request_id"] is None


def test_request_id_comes_from_the_context_or_an_explicit_field(configure: Configure) -> None:
    buffer = configure("json")
    log = logging.getLogger("gateway.x")
    with request_context("req-123"):
        log.info("inside")
        with request_context("req-nested"):
            log.info("nested")
        log.info("explicit wins", extra={"request_id": "req-explicit"})
    log.info("outside")
    assert [line["request_id"] for line in json_lines(buffer)] == ["req-123", "req-nested", "req-explicit", None]


def test_level_filters_and_a_bad_level_is_refused(configure: Configure) -> None:
    buffer = configure("json", "warning")
    logging.getLogger("gateway").info("quiet")
    logging.getLogger("gateway").error("loud")
    assert [line["msg"] for line in json_lines(buffer)] == ["loud"]
    with pytest.raises(ValueError):
        configure_logging("json", "chatty")


def test_configuring_twice_does_not_duplicate_lines(configure: Configure) -> None:
    configure("json")
    buffer = configure("json")
    logging.getLogger("gateway").warning("once")
    assert len(json_lines(buffer)) == 1


def test_the_access_line_always_has_every_field(configure: Configure) -> None:
    buffer = configure("json")
    with request_context("req-9"):
        access_log({"method": "POST", "path": "/v1/chat/completions", "route": "chat_completions", "tenant": "acme",
                    "model": "llama", "deployment": "hf-router", "status": 200, "cache": "miss", "retries": 1,
                    "waited_s": 0.5, "upstream_s": 0.7, "total_s": 1.25})  # fmt: skip
        access_log({"method": "GET", "path": "/v1/models", "status": 200, "name": "clashes with LogRecord"})
    first, second = json_lines(buffer)
    assert first["logger"] == "gateway.access" and first["msg"] == "POST /v1/chat/completions 200"
    assert {k: first[k] for k in ACCESS_FIELDS} == {
        "request_id": "req-9", "method": "POST", "path": "/v1/chat/completions", "route": "chat_completions",
        "tenant": "acme", "model": "llama", "deployment": "hf-router", "status": 200, "cache": "miss",
        "retries": 1, "waited_s": 0.5, "upstream_s": 0.7, "total_s": 1.25,
    }  # fmt: skip
    assert set(ACCESS_FIELDS) <= set(second) and second["model"] is None and second["request_id"] == "req-9"
    assert second["name_"] == "clashes with LogRecord"


def test_text_format_is_one_readable_line(configure: Configure) -> None:
    buffer = configure("text")
    with request_context("req-7"):
        access_log({"method": "GET", "path": "/v1/models", "status": 200, "tenant": "acme corp", "total_s": 0.002})
    [line] = buffer.getvalue().splitlines()
    assert " INFO " in line and "gateway.access [req-7] GET /v1/models 200" in line
    assert 'tenant="acme corp"' in line and "total_s=0.002" in line and "model=-" in line


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_token_never_reaches_the_output(configure: Configure, fmt: LogFormat) -> None:
    buffer = configure(fmt)
    log = logging.getLogger("gateway.upstream")
    log.info(f"calling with Authorization: Bearer {SECRET}")
    log.info("header %s", f"bearer {SECRET}")
    log.info("as an argument %s", SECRET)
    log.info("fields", extra={"hf_token": SECRET, "headers": {"Authorization": f"Bearer {SECRET}"},
                              "upstream": [f"https://x/?token={SECRET}"], "note": f"key is {SECRET}"})  # fmt: skip
    access_log({"method": "POST", "path": f"/v1/chat/completions?api_key={SECRET}", "status": 401})
    try:
        raise RuntimeError(f"upstream rejected {SECRET}")
    except RuntimeError:
        log.exception("failed")
    out = buffer.getvalue()
    assert len(out.splitlines()) >= 6
    assert SECRET not in out and "fake_secret" not in out
    assert out.count("[REDACTED]") >= 8


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("Bearer hf_fake_test_token", "fake_test_token"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("sk-fake0123456789abcdef0123", "fake0123456789abcdef0123"),
        ("api_key=fake-key-1234", "fake-key-1234"),
        ("x-api-key: fake-key-1234", "fake-key-1234"),
        ("password='hunter22'", "hunter22"),
        ('"token": "opaque-value-xyz"', "opaque-value-xyz"),
    ],
)
def test_secret_shapes_are_masked(text: str, hidden: str) -> None:
    masked = redact(f"before {text} after")
    assert "[REDACTED]" in masked and masked.startswith("before ") and masked.endswith(" after")
    assert hidden not in masked


@pytest.mark.parametrize(
    "harmless", ["gateway.upstream.hf_serverless", "max_tokens=100", "tokens_in=12", "retry after 3s", "status=429"]
)
def test_ordinary_text_is_left_alone(harmless: str) -> None:
    assert redact(harmless) == harmless


def test_a_broken_format_string_does_not_make_the_handler_raise(configure: Configure) -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    handler = configure_logging("json", "INFO", stream=buffer)
    root.removeHandler(handler)  # fed directly: pytest's own capture handler would choke first
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "two %s %s", ("only-one",), None)
    handler.handle(record)
    [line] = json_lines(buffer)
    assert "two" in str(line["msg"]) and "only-one" in str(line["msg"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abBEhkfspinoy_-=: TtKR0123456789")) | st.characters(), max_size=60))
def test_the_quick_precheck_never_skips_a_secret(text: str) -> None:
    full = text
    for pattern, replacement in _SECRET_PATTERNS:
        full = pattern.sub(replacement, full)
    assert redact(text) == full
    for shaped in (f"Bearer {text}abcdef", f"hf_{text}abcdefghijkl", f"api_key={text}x"):
        expected = shaped
        for pattern, replacement in _SECRET_PATTERNS:
            expected = pattern.sub(replacement, expected)
        assert redact(shaped) == expected
