"""Responses API answers on the wire: the `response` object and its event stream.

The output is one item: a `message` (`{id, type, status, role: "assistant", content:
[{type: "output_text", text, annotations: [], logprobs: []}]}`) or a `function_call`
(`{id, type, status, call_id, name, arguments}`). The response is `completed`, or `incomplete`
with `incomplete_details.reason` "max_output_tokens" when the answer was cut at the limit.

The stream is SSE with an `event:` line naming each event's `type` and a `data:` line with the
event; every event has a `sequence_number` counting from 0, and the stream ends at EOF (no
`[DONE]`). The order, which the openai SDK's `ResponseStreamState` checks item by item:

    response.created, response.in_progress             (status "in_progress", output [])
    response.output_item.added                         (the item, "in_progress", empty)
    message:  response.content_part.added, response.output_text.delta x N,
              response.output_text.done, response.content_part.done
    function: response.function_call_arguments.delta x N, response.function_call_arguments.done
    response.output_item.done                          (the finished item)
    response.completed | response.incomplete           (the whole response, usage included)

A stream that fails mid-way ends with `event: error` carrying `{type: "error", code, message,
param, sequence_number}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.simulator.answers import Answer, Ask
from gateway.simulator.textgen import digest_stream, make_token
from gateway.simulator.wire import StreamBody, dumps

FAILURE_MESSAGE = "Request failed during generation (simulated)"


@dataclass(frozen=True)
class ResponsesReply:
    """One Responses API answer and the request fields the response object repeats."""

    id: str
    model: str
    created: int
    ask: Ask
    answer: Answer
    echo: dict[str, Any]
    """instructions, max_output_tokens, tools, tool_choice, text, temperature, ... as requested."""

    def _suffix(self, kind: str) -> str:
        return hashlib.sha256(f"{self.id}:{kind}".encode()).hexdigest()[:24]

    @property
    def incomplete(self) -> bool:
        """The answer was cut at `max_output_tokens`."""
        return self.answer.finish == "length"

    def item(self, *, done: bool) -> dict[str, Any]:
        """The output item, finished (`done`) or as first announced."""
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        call = self.answer.tool_call
        if call is not None:
            return {"id": "fc_" + self._suffix("fc"), "type": "function_call", "status": status,
                    "call_id": call.call_id, "name": call.name, "arguments": call.arguments if done else ""}
        content = [text_part(self.answer.text)] if done else []
        return {"id": "msg_" + self._suffix("msg"), "type": "message", "status": status,
                "role": "assistant", "content": content}

    def usage(self) -> dict[str, Any]:
        """Responses-style usage."""
        prompt, output = self.ask.prompt_tokens, len(self.answer.tokens)
        return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + output}

    def response(self, *, done: bool) -> dict[str, Any]:
        """The `response` object: final when `done`, else as in `response.created`."""
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        details = {"reason": "max_output_tokens"} if done and self.incomplete else None
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": False, "error": None, "incomplete_details": details,
            **self.echo,
            "model": self.model,
            "output": [self.item(done=True)] if done else [],
            "reasoning": {"effort": None, "summary": None},
            "truncation": "disabled",
            "usage": self.usage() if done else None,
            "completed_at": self.created if done and not self.incomplete else None,
        }


def text_part(text: str) -> dict[str, Any]:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def responses_object(reply: ResponsesReply) -> dict[str, Any]:
    """The non-stream answer."""
    return reply.response(done=True)


def _event(kind: str, payload: dict[str, Any], sequence: int) -> bytes:
    return (b"event: " + kind.encode() + b"\ndata: "
            + dumps({"type": kind, **payload, "sequence_number": sequence}) + b"\n\n")


def _item_events(reply: ResponsesReply) -> list[tuple[str, dict[str, Any]]]:
    """The events between `output_item.added` and `output_item.done` (exclusive)."""
    item_id = reply.item(done=False)["id"]
    where = {"item_id": item_id, "output_index": 0}
    tokens = reply.answer.tokens
    if reply.answer.tool_call is not None:
        return [("response.function_call_arguments.delta", {**where, "delta": t}) for t in tokens] + [
            ("response.function_call_arguments.done", {**where, "arguments": reply.answer.text})]
    part = {**where, "content_index": 0}
    return [
        ("response.content_part.added", {**part, "part": text_part("")}),
        *[("response.output_text.delta", {**part, "delta": t, "logprobs": []}) for t in tokens],
        ("response.output_text.done", {**part, "text": reply.answer.text, "logprobs": []}),
        ("response.content_part.done", {**part, "part": text_part(reply.answer.text)}),
    ]


def _error_event(sequence: int) -> bytes:
    return _event("error", {"code": "server_error", "message": FAILURE_MESSAGE, "param": None}, sequence)


def _endless(reply: ResponsesReply, first: int) -> Callable[[int], bytes]:
    material = digest_stream(reply.ask.prompt, "endless")
    where = {"item_id": reply.item(done=False)["id"], "output_index": 0, "content_index": 0}

    def more(n: int) -> bytes:
        delta = make_token(material, n).text
        return _event("response.output_text.delta", {**where, "delta": delta, "logprobs": []}, first + n - 1)

    return more


def responses_stream(reply: ResponsesReply) -> StreamBody:
    """The event stream of one response (see the module docstring)."""
    final = "response.incomplete" if reply.incomplete else "response.completed"
    steps: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": reply.response(done=False)}),
        ("response.in_progress", {"response": reply.response(done=False)}),
        ("response.output_item.added", {"output_index": 0, "item": reply.item(done=False)}),
        *_item_events(reply),
        ("response.output_item.done", {"output_index": 0, "item": reply.item(done=True)}),
        (final, {"response": reply.response(done=True)}),
    ]
    events = tuple(_event(kind, payload, i) for i, (kind, payload) in enumerate(steps))
    return StreamBody(events, b"", _error_event(len(events)), _endless(reply, len(events)), _error_event)
