"""SSE framing: split an upstream byte stream into events, and the events the gateway writes itself.

Reading: lines may end in CR, LF or CRLF (the SSE specification allows all three); events are
split on blank lines and yielded with every line ending in LF and the event in one blank line.
Two repairs, both for the HF client (docs/protocol.md, 'SSE framing'): `data:[DONE]` becomes `data: [DONE]`, and
an event whose JSON was split over several `data:` lines is joined into one line.

Bounds on what one upstream stream can make the gateway do (`read_events`, `thin_comments`): the
reader yields to the event loop every `YIELD_EVERY` lines, so a stream that arrives faster than it
is parsed cannot hold the loop from other requests; more than `MAX_IDLE_BYTES` of comments and
blank lines without an event is a protocol error; comment-only events closer than
`COMMENT_EVERY` seconds to the previous event are dropped (both clients ignore comments: they only
keep idle connections open, and one a second does that).

Writing: the in-band error events, `[DONE]` and keep-alive comments. Sending the events to the
client is `gateway/http/relay.py`'s job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import orjson

from gateway.core.clock import Clock
from gateway.core.errors import UpstreamProtocolError

DONE = b"data: [DONE]\n\n"
MAX_EVENT = 1024 * 1024  # one SSE event (or line) from an upstream; larger is a protocol error
MAX_IDLE_BYTES = 1024 * 1024  # comments and blank lines between two events; more is a flood
YIELD_EVERY = 64  # lines parsed between two turns given to the event loop
COMMENT_EVERY = 1.0  # seconds: at most one comment-only event relayed per second without events


async def read_events(lines: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Group raw lines (ending in CR, LF or CRLF) into SSE events, each ending with `\\n\\n`."""
    buf: list[bytes] = []
    size = 0
    idle = 0  # comment and blank-line bytes since the last event that was not only comments
    fields = False  # `buf` holds a line that is not a comment (what `is_comment(buf)` would tell)
    count = 0
    async for line in lines:
        count += 1
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a fast upstream must not keep every other request waiting
        text = line.rstrip(b"\r\n")
        if not text or text[:1] == b":":
            idle += len(line)
            if idle > MAX_IDLE_BYTES:
                raise UpstreamProtocolError("upstream sent over 1 MiB of SSE comments and blank lines without an event")
            if not text:
                if buf:
                    if fields:
                        idle = 0
                    yield _finish(buf)
                    buf, size, fields = [], 0, False
                continue
        else:
            fields = True
        size += len(line)
        if size > MAX_EVENT:
            raise UpstreamProtocolError("upstream sent an SSE event over 1 MiB")
        buf.append(text + b"\n")
    if buf:
        yield _finish(buf)


def is_comment(event: bytes | list[bytes]) -> bool:
    """Whether an event (or its lines) holds only comment lines, which clients ignore."""
    lines = event if isinstance(event, list) else event.rstrip(b"\n").split(b"\n")
    return all(line[:1] == b":" for line in lines)


class CommentThinner:
    """`thin_comments`' decision, one event at a time: a relay loop asks `keep` instead of adding a
    generator stage (one more async generator step for every event of every stream)."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = float("-inf")  # when the last event was let through

    def keep(self, event: bytes) -> bool:
        """False for a comment-only event less than `COMMENT_EVERY` s after the last one let through."""
        now = self._clock.monotonic()
        if event[:1] == b":" and now - self._last < COMMENT_EVERY and is_comment(event):
            return False
        self._last = now
        return True


async def thin_comments(events: AsyncIterator[bytes], clock: Clock) -> AsyncGenerator[bytes, None]:
    """`events` without the comment-only events that come less than `COMMENT_EVERY` s after the last one relayed."""
    keep = CommentThinner(clock).keep
    async for event in events:
        if keep(event):
            yield event


def _finish(lines: list[bytes]) -> bytes:
    """One event from its lines (each ending in a single LF)."""
    if len(lines) == 1:
        line = lines[0]
        if line.startswith(b"data:[DONE]"):
            return DONE
        return line + b"\n"
    data = [ln for ln in lines if ln.startswith(b"data:")]
    if len(data) > 1:
        joined = b"".join(_strip_data(ln) for ln in data)
        other = [ln for ln in lines if not ln.startswith(b"data:")]
        return b"".join(other) + b"data: " + joined + b"\n\n"
    return b"".join(lines) + b"\n"


def _strip_data(line: bytes) -> bytes:
    value = line[5:]
    if value.startswith(b" "):
        value = value[1:]
    return value.rstrip(b"\n")


def event_data(event: bytes) -> bytes | None:
    """The data payload of a single-data-line event, or None for comments."""
    if not event.startswith(b"data:"):
        idx = event.find(b"\ndata:")
        if idx < 0:
            return None
        event = event[idx + 1 :]
    end = event.find(b"\n")
    value = event[5:end]
    return value[1:] if value.startswith(b" ") else value


def error_in(event: bytes) -> dict[str, object] | None:
    """The parsed error object if this event is an in-band error event: `{"error": ...}`, or a Responses
    stream's `{"type": "error", "message", "code"}` / `{"type": "response.failed", "response": {"error"}}`
    (the latter given back as `{"error": <the response's error>}`)."""
    data = event_data(event)
    if not data or b'"error"' not in data:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("error") or obj.get("type") == "error":
        return obj
    if obj.get("type") == "response.failed":
        response = obj.get("response")
        failure = response.get("error") if isinstance(response, dict) else None
        return {"error": failure if isinstance(failure, dict) else {"message": "the response failed"}}
    return None


def openai_error_event(message: str, code: str = "upstream_error") -> bytes:
    """An in-band error event for /v1 streams (openai raises APIError(message))."""
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "server_error", "code": code}}) + b"\n\n"


def responses_error_event(message: str, sequence_number: int, code: str = "server_error") -> bytes:
    """An in-band error event for Responses API streams (openai's `ResponseErrorEvent`)."""
    payload = {"type": "error", "code": code, "message": message, "param": None, "sequence_number": sequence_number}
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


def next_sequence_number(event: bytes) -> int:
    """The `sequence_number` that follows a Responses stream event's own (0 when it has none)."""
    data = event_data(event)
    try:
        obj = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return 0
    seq = obj.get("sequence_number") if isinstance(obj, dict) else None
    return seq + 1 if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0


def tgi_error_event(message: str, error_type: str = "generation") -> bytes:
    """An in-band error event for TGI-style streams (the HF client raises by error_type)."""
    return b"data:" + orjson.dumps({"error": message, "error_type": error_type}) + b"\n\n"


def keepalive_comment(text: str) -> bytes:
    """An SSE comment line; both clients ignore it."""
    return b": " + text.replace("\n", " ").encode() + b"\n\n"
