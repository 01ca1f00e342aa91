"""SSE in both directions: split an upstream byte stream into events, relay them to the client.

Reading: events are split on blank lines (LF or CRLF); each event is yielded as its exact bytes
(ending in one blank line), so relaying is byte-faithful. Two repairs, both for the HF client
(PROTOCOL.md §1.4): `data:[DONE]` becomes `data: [DONE]`, and an event whose JSON was split over
several `data:` lines is joined into one line.

Writing: `relay` writes the peeked first event, then each event as it arrives, flushing per
event; a client that goes away stops the loop and the upstream response is closed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from gateway.core.errors import UpstreamProtocolError

DONE = b"data: [DONE]\n\n"
MAX_EVENT = 1024 * 1024  # one SSE event (or line) from an upstream; larger is a protocol error


async def read_events(lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Group raw lines into SSE events (each ends with `\\n\\n`)."""
    buf: list[bytes] = []
    size = 0
    async for line in lines:
        if line in (b"\n", b"\r\n"):
            if buf:
                yield _finish(buf)
                buf, size = [], 0
            continue
        size += len(line)
        if size > MAX_EVENT:
            raise UpstreamProtocolError("upstream sent an SSE event over 1 MiB")
        buf.append(line if line.endswith(b"\n") else line + b"\n")
    if buf:
        yield _finish(buf)


def _finish(lines: list[bytes]) -> bytes:
    if len(lines) == 1:
        line = lines[0]
        if line.startswith(b"data:[DONE]"):
            return DONE
        if line.endswith(b"\r\n"):
            line = line[:-2] + b"\n"
        return line + b"\n"
    data = [ln for ln in lines if ln.startswith(b"data:")]
    if len(data) > 1:
        joined = b"".join(_strip_data(ln) for ln in data)
        other = [ln.rstrip(b"\r\n") + b"\n" for ln in lines if not ln.startswith(b"data:")]
        return b"".join(other) + b"data: " + joined + b"\n\n"
    return b"".join(ln.rstrip(b"\r\n") + b"\n" for ln in lines) + b"\n"


def _strip_data(line: bytes) -> bytes:
    value = line[5:]
    if value.startswith(b" "):
        value = value[1:]
    return value.rstrip(b"\r\n")


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
