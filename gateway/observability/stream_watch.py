"""`StreamWatch`: sees a stream's events go by, for its first byte and its token count, without touching them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.core.call import Call
from gateway.core.sse import DONE, event_data
from gateway.core.tokens import responses_usage
from gateway.policies.limits.token_accounting import prompt_tokens


class StreamWatch:
    """Delegates to a stream's remaining events: times the first byte and counts the stream's tokens.

    `on_first` runs when the first of the remaining events is asked for, i.e. right after the
    peeked first event was written (with `skip`, a stream whose peeked event is empty, one event
    later). Tokens: the exact figures when the stream reports them (OpenAI's `usage` chunk,
    TGI's final `details`, the Responses API's `response.completed`), else one completion token
    per data event, as TGI and OpenAI-style servers send one token per event; the prompt is then
    estimated from the request.
    """

    __slots__ = ("_inner", "_on_first", "_skip", "events", "tokens_in", "tokens_out")

    def __init__(self, inner: AsyncIterator[bytes], on_first: Callable[[], None], first: bytes) -> None:
        self._inner = inner
        self._on_first: Callable[[], None] | None = on_first
        self._skip = not first
        self.events = 0  # data events other than [DONE]
        self.tokens_in: int | None = None  # reported by the stream itself
        self.tokens_out: int | None = None
        if first:
            self._see(first)

    def __aiter__(self) -> StreamWatch:
        return self

    async def __anext__(self) -> bytes:
        if self._on_first is not None:
            if self._skip:
                self._skip = False
            else:
                on_first, self._on_first = self._on_first, None
                on_first()
        event = await self._inner.__anext__()
        self._see(event)
        return event

    def _see(self, event: bytes) -> None:
        if event == DONE or (not event.startswith(b"data:") and b"\ndata:" not in event):
            return  # a comment (a Responses event opens with its `event:` line, then data)
        if b'"usage"' in event or b'"generated_tokens"' in event:
            if self._reported(event):
                return  # a usage-only chunk carries no token of its own
        self.events += 1

    def _reported(self, event: bytes) -> bool:
        try:
            obj = orjson.loads(event_data(event) or b"null")
        except orjson.JSONDecodeError:
            return False
        if not isinstance(obj, dict):
            return False
        usage, details, final = obj.get("usage"), obj.get("details"), responses_usage(obj)
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.tokens_in, self.tokens_out = int(usage.get("prompt_tokens") or 0), usage["completion_tokens"]
            return not obj.get("choices")
        if final is not None:  # a Responses stream's `response.completed` (or .incomplete / .failed)
            self.tokens_in, self.tokens_out = final
            return True
        if isinstance(details, dict) and isinstance(details.get("generated_tokens"), int):
            self.tokens_out = details["generated_tokens"]
            if isinstance(details.get("input_length"), int):
                self.tokens_in = details["input_length"]
        return False

    def settle(self, call: Call) -> None:
        """Put the stream's token counts on the call, unless a stage already did."""
        if call.tokens_in or call.tokens_out:
            return
        call.tokens_out = self.tokens_out if self.tokens_out is not None else self.events
        call.tokens_in = self.tokens_in if self.tokens_in is not None else prompt_tokens(call)

    async def aclose(self) -> None:
        """Close the wrapped iterator too (an abandoned upstream stream must not linger)."""
        close: Any = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()
