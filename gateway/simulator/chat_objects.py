"""Chat completion answers on the wire: `chat.completion` and its `chat.completion.chunk` stream.

One choice per `Answer`. A text choice's message is `{role, content}`; a tool-calling choice's is
`{role, content: null, tool_calls: [{id, type: "function", function: {name, arguments}}]}` with
`finish_reason` "tool_calls". With `logprobs`, a text choice carries `{content: [entries],
refusal: null}` and a tool call `null` (no content tokens).

The stream follows OpenAI's order, which the SDK's accumulator (`ChatCompletionStreamState`)
relies on: choices appear in index order and interleave token by token, one choice per chunk.
A single choice's first delta has `role` and the first token; with several choices each opens
with a role-only delta (`content: ""`). A tool call's first delta has the call's `index`, `id`,
`type`, `function.name` and empty `arguments`, later deltas only `index` and an `arguments`
piece. Each choice then gets an empty-delta chunk with its `finish_reason`. With
`stream_options.include_usage` every chunk has `usage: null` and a last chunk with `choices: []`
carries the usage; `data: [DONE]` ends the stream. Usage equals the non-stream usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.simulator.answers import Answer, Ask, material
from gateway.simulator.dialects import Style, stream_error_event
from gateway.simulator.logprobs import logprob_entries
from gateway.simulator.openai_objects import Envelope
from gateway.simulator.textgen import digest_stream, make_token
from gateway.simulator.wire import DONE, StreamBody, openai_event


@dataclass(frozen=True)
class ChatReply:
    """The answers to one chat request and how to present them."""

    ask: Ask
    answers: tuple[Answer, ...]
    top_logprobs: int | None
    """Alternatives per logprobs entry; None when logprobs were not asked for."""

    def usage(self) -> dict[str, int]:
        """OpenAI `usage` over all choices."""
        completion = sum(len(a.tokens) for a in self.answers)
        prompt = self.ask.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def logprobs(self, index: int, start: int = 0, end: int | None = None) -> dict[str, Any] | None:
        """The `logprobs` of choice `index` for its tokens `start:end` (None when not asked / a tool call)."""
        answer = self.answers[index]
        if self.top_logprobs is None or answer.tool_call is not None:
            return None
        tokens = list(answer.tokens[start:end])
        seed = material(self.ask, index, "logprobs")
        return {"content": logprob_entries(tokens, seed, self.top_logprobs, start), "refusal": None}


def _message(answer: Answer) -> dict[str, Any]:
    call = answer.tool_call
    if call is None:
        return {"role": "assistant", "content": answer.text}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call.call_id, "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}]}


def chat_object(reply: ChatReply, env: Envelope) -> dict[str, Any]:
    """A `chat.completion`."""
    choices = [{"index": i, "message": _message(a), "logprobs": reply.logprobs(i), "finish_reason": a.finish}
               for i, a in enumerate(reply.answers)]
    return {"id": env.id, "object": "chat.completion", "created": env.created, "model": env.model,
            "system_fingerprint": env.fingerprint, "choices": choices, "usage": reply.usage()}


def _deltas(reply: ChatReply, index: int) -> list[tuple[dict[str, Any], Any]]:
    """The (delta, logprobs) pairs of choice `index`, before its finish chunk."""
    answer = reply.answers[index]
    call = answer.tool_call
    if call is not None:
        head = {"index": 0, "id": call.call_id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        return [({"role": "assistant", "content": None, "tool_calls": [head]}, None),
                *[({"tool_calls": [{"index": 0, "function": {"arguments": t}}]}, None) for t in answer.tokens]]
    pieces = [({"content": t}, reply.logprobs(index, i, i + 1)) for i, t in enumerate(answer.tokens)]
    if len(reply.answers) == 1:
        return [({"role": "assistant", **pieces[0][0]}, pieces[0][1]), *pieces[1:]]
    # With several choices each opens with a role-only delta, as OpenAI streams them: the SDK
    # builds a later choice's snapshot from its first chunk and then appends that chunk's
    # logprobs again, so a first chunk must not carry a token.
    opener: dict[str, Any] | None = {"content": [], "refusal": None} if reply.top_logprobs is not None else None
    return [({"role": "assistant", "content": ""}, opener), *pieces]


class _Chunks:
    """Builds the chunk events of one stream."""

    def __init__(self, env: Envelope, include_usage: bool) -> None:
        self.env = env
        self.include_usage = include_usage

    def event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        env = self.env
        chunk: dict[str, Any] = {"id": env.id, "object": "chat.completion.chunk", "created": env.created,
                                 "model": env.model, "system_fingerprint": env.fingerprint, "choices": choices}
        if self.include_usage:
            chunk["usage"] = usage
        return openai_event(chunk)

    def delta(self, index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> bytes:
        return self.event([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])


def chat_stream(reply: ChatReply, env: Envelope, *, include_usage: bool, error_style: Style) -> StreamBody:
    """A `chat.completion.chunk` stream ending with `data: [DONE]`."""
    chunks = _Chunks(env, include_usage)
    per_choice = [_deltas(reply, i) for i in range(len(reply.answers))]
    events: list[bytes] = []
    for step in range(max(len(d) for d in per_choice)):
        for index, deltas in enumerate(per_choice):
            if step < len(deltas):
                events.append(chunks.delta(index, *deltas[step]))
    events += [chunks.delta(i, {}, None, a.finish) for i, a in enumerate(reply.answers)]
    if include_usage:
        events.append(chunks.event([], reply.usage()))
    endless = digest_stream(reply.ask.prompt, "endless")
    return StreamBody(tuple(events), DONE, stream_error_event(error_style),
                      lambda n: chunks.delta(0, {"content": make_token(endless, n).text}))
