"""What a simulated answer looks like before it is written: a `Body` or a `StreamBody`, plus framing.

Renderers build these as plain data (so fast mode can cache them and faults can damage them);
`respond.py` and `sse.py` write them. SSE framing follows docs/protocol.md, 'SSE framing': one event per
`data:` line, never split; TGI-native streams use `data:` without a space and end at EOF;
OpenAI-style streams use `data: ` and end with `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

JSON = "application/json"
EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def dumps(obj: Any) -> bytes:
    """Compact, key-order-preserving JSON (the same object always gives the same bytes)."""
    return orjson.dumps(obj)


def tgi_event(obj: Any) -> bytes:
    """A TGI-native SSE event (`data:` with no space, as axum writes it)."""
    return b"data:" + orjson.dumps(obj) + b"\n\n"


def openai_event(obj: Any) -> bytes:
    """An OpenAI-style SSE event (`data: ` with one space)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass(frozen=True)
class Body:
    """A complete (non-stream) answer."""

    data: bytes
    content_type: str = JSON
    status: int = 200


@dataclass(frozen=True)
class StreamBody:
    """An SSE answer: its events, its terminator and what an in-band failure looks like."""

    events: tuple[bytes, ...]
    done: bytes
    error_event: bytes
    more: Callable[[int], bytes]
    """Event number `n` (1-based, after `events`) of an endless stream."""
    error_at: Callable[[int], bytes] | None = None
    """The in-band error event after `n` data events, for dialects whose events are numbered
    (Responses API `sequence_number`); None means `error_event` wherever the failure falls."""

    def failure_event(self, written: int) -> bytes:
        """The in-band error event that follows `written` data events."""
        return self.error_at(written) if self.error_at is not None else self.error_event


Rendered = Body | StreamBody


def json_body(obj: Any, status: int = 200) -> Body:
    """A JSON answer."""
    return Body(dumps(obj), JSON, status)
