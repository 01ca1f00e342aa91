"""Held log lines (`configure_logging(hold=...)`): batched on a running loop, never lost, never reordered."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from gateway.observability.logs import access_log, configure_logging

LOG = logging.getLogger("gateway.test_hold")


@pytest.fixture
def held() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    handler = configure_logging("json", "INFO", stream=buffer, hold=30.0)
    yield handler, buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def messages(buffer: io.StringIO) -> list[str]:
    return [orjson.loads(line)["msg"] for line in buffer.getvalue().splitlines()]


async def test_info_lines_wait_for_the_timer_then_leave_together(held: tuple[logging.Handler, io.StringIO]) -> None:
    handler, buffer = held
    LOG.info("one")
    access_log({"method": "POST", "path": "/v1/chat/completions", "status": 200})
    assert buffer.getvalue() == ""
    timer = handler._timer  # type: ignore[attr-defined]
    assert timer is not None and isinstance(timer, asyncio.TimerHandle)
    handler._on_timer()  # type: ignore[attr-defined]  # what the loop runs `hold` seconds later
    assert messages(buffer) == ["one", "POST /v1/chat/completions 200"]
    assert handler._timer is None  # type: ignore[attr-defined]


async def test_a_warning_is_written_at_once_after_what_was_held(held: tuple[logging.Handler, io.StringIO]) -> None:
    _, buffer = held
    LOG.info("first")
    LOG.warning("second")
    assert messages(buffer) == ["first", "second"]


async def test_flush_writes_everything_and_cancels_the_timer(held: tuple[logging.Handler, io.StringIO]) -> None:
    handler, buffer = held
    LOG.info("a")
    LOG.info("b")
    handler.flush()
    assert messages(buffer) == ["a", "b"]
    assert handler._timer is None  # type: ignore[attr-defined]


def test_without_a_running_loop_lines_are_written_at_once(held: tuple[logging.Handler, io.StringIO]) -> None:
    _, buffer = held
    LOG.info("no loop here")
    assert messages(buffer) == ["no loop here"]


async def test_a_large_batch_is_written_before_the_timer(held: tuple[logging.Handler, io.StringIO]) -> None:
    _, buffer = held
    for i in range(2000):  # ~150 bytes each: past the 64 KiB bound
        LOG.info("line %d", i)
    written = messages(buffer)
    assert written and written == [f"line {i}" for i in range(len(written))]


async def test_a_second_configure_writes_what_the_first_held(held: tuple[logging.Handler, io.StringIO]) -> None:
    _, buffer = held
    LOG.info("held")
    configure_logging("json", "INFO", stream=io.StringIO())
    assert messages(buffer) == ["held"]
