"""Token accounting for token limits: an estimate before the call, the real count after it.

Before the call the rate limiter reserves `estimate(call)`: the prompt's characters / 4 (the pure
estimate lives in `core/tokens.py`, which the dialects use too; for the Responses API, `instructions`
and `input`) plus the answer's ceiling (`max_tokens`, `max_completion_tokens`, `max_output_tokens`,
`parameters.max_new_tokens`, times `n`; the configured `completion_estimate` when the client sets
none). Afterwards it settles the difference with what was really used:
- a complete JSON answer: `usage` (set on the Call by the upstream), else TGI's
  `details.generated_tokens`; when neither is there the estimate stands;
- a stream: `StreamMeter` counts token events and prefers an exact figure when the stream
  carries one (OpenAI's final `usage` chunk, TGI's last-event `details`, the Responses API's
  `response.completed` with `response.usage`).
Nothing here touches the store; `metered` only calls the settle function it is given, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from gateway.core.call import Call, Op, Reply, StreamReply
from gateway.core.sse import DONE, event_data
from gateway.core.tokens import prompt_chars, prompt_tokens, responses_usage

__all__ = ["StreamMeter", "completion_ceiling", "estimate", "generates_text", "metered", "prompt_chars",
           "prompt_tokens", "reply_tokens"]

_GENERATIVE_TASKS = frozenset({None, "text-generation", "text2text-generation", "summarization", "translation",
                               "conversational", "chat", "completions"})


def generates_text(call: Call) -> bool:
    """Whether the answer is generated text (so it costs completion tokens)."""
    if call.op in (Op.CHAT, Op.COMPLETIONS, Op.TGI_GENERATE, Op.RESPONSES):
        return True
    return call.op is Op.HF_TASK and call.task in _GENERATIVE_TASKS and call.body is not None


def completion_ceiling(call: Call, default: int) -> int:
    """The most tokens the answer may take, as the client capped it (else `default`)."""
    if not generates_text(call):
        return 0
    if call.op is Op.RESPONSES:
        cap = (call.body or {}).get("max_output_tokens")  # (no `n`: one response per request)
        return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0 else default
    body = call.body or {}
    nested = body.get("parameters")
    params: dict[str, Any] = nested if isinstance(nested, dict) else {}
    for value in (body.get("max_completion_tokens"), body.get("max_tokens"), params.get("max_new_tokens")):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            n = body.get("n")
            return value * (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1)
    return default


def estimate(call: Call, completion_default: int) -> int:
    """Tokens to reserve before the call: prompt estimate + answer ceiling (at least 1)."""
    return max(1, prompt_tokens(call) + completion_ceiling(call, completion_default))


def reply_tokens(call: Call, reply: Reply) -> int | None:
    """Tokens a complete answer really used, when it says so (else None: the estimate stands)."""
    if call.tokens_in or call.tokens_out:
        return call.tokens_in + call.tokens_out
    if not generates_text(call) or not reply.content_type.startswith("application/json") or reply.status >= 300:
        return None
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    first = data[0] if isinstance(data, list) and data else data
    details = first.get("details") if isinstance(first, dict) else None
    if isinstance(details, dict) and isinstance(details.get("generated_tokens"), int):
        return prompt_tokens(call) + int(details["generated_tokens"])
    return None


class StreamMeter:
    """Counts the tokens of an SSE stream as its events go by."""

    def __init__(self, prompt: int) -> None:
        self.prompt = prompt
        self.events = 0  # data events that carried tokens (one token each, roughly)
        self.exact: int | None = None  # a total the stream itself reported

    def feed(self, chunk: bytes) -> None:
        """One or more complete SSE events."""
        for event in chunk.split(b"\n\n"):
            if not event.strip() or event + b"\n\n" == DONE:
                continue
            data = event_data(event + b"\n\n")
            if data is None:
                continue
            if b'"usage"' in data or b'"generated_tokens"' in data:
                self._exact_from(data)
            self.events += 1

    def _exact_from(self, data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        usage, details, final = obj.get("usage"), obj.get("details"), responses_usage(obj)
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.exact = int(usage.get("prompt_tokens") or 0) + int(usage["completion_tokens"])
            self.events -= 1  # the usage chunk carries no token of its own
        elif final is not None:  # a Responses stream's `response.completed` (or .incomplete / .failed)
            self.exact = final[0] + final[1]
            self.events -= 1
        elif isinstance(details, dict) and isinstance(details.get("generated_tokens"), int):
            self.exact = self.prompt + int(details["generated_tokens"])

    def total(self) -> int:
        return self.exact if self.exact is not None else self.prompt + max(0, self.events)


def metered(answer: StreamReply, meter: StreamMeter, settle: Callable[[int], Awaitable[None]]) -> StreamReply:
    """Wrap `answer.rest` so every event is counted; `settle(total)` runs once, when the stream ends.

    It runs from the wrapper's `finally` (stream exhausted, failed or closed) and from an
    `on_close` hook (the relay calls those even when it abandons the iterator), whichever
    comes first.
    """
    done = False

    async def once() -> None:
        nonlocal done
        if not done:
            done = True
            await settle(meter.total())

    inner = answer.rest
    meter.feed(answer.first)

    async def rest() -> AsyncIterator[bytes]:
        try:
            async for event in inner:
                meter.feed(event)
                yield event
        finally:
            closer = getattr(inner, "aclose", None)
            if closer is not None:  # close the upstream response now, not when the GC gets to it
                await closer()
            await once()

    answer.rest = rest()
    answer.on_close.append(once)
    return answer
