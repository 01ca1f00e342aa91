"""`POST /v1/responses` (OpenAI Responses API): from the request body to a `response` or its events.

`input` is a string (one user message) or a list of items: messages (`{role, content}` with
`type` "message" or none; content a string or typed parts with `text`), `function_call` items
(earlier calls: their names count as "called") and `function_call_output` items (tool results;
when the last item is one, `tool_choice: auto` answers with text). The prompt is `instructions`
followed by the messages' texts and the tool outputs, one per line. `max_output_tokens` plays
the part chat's `max_tokens` plays; `text.format` the part of `response_format`. The request
fields the real API repeats in its response object are repeated here, with their defaults.
"""

from __future__ import annotations

from typing import Any

from gateway.simulator.answers import Ask, answer, tool_to_call
from gateway.simulator.calls import SimCall
from gateway.simulator.chat_render import content_text
from gateway.simulator.openai_objects import request_id
from gateway.simulator.openai_params import (
    function_tools,
    invalid,
    output_format,
    positive_limit,
    tool_choice,
)
from gateway.simulator.responses_objects import (
    ResponsesReply,
    responses_object,
    responses_stream,
)
from gateway.simulator.schema_instance import SchemaError
from gateway.simulator.wire import Rendered, json_body

_ECHO_DEFAULTS: dict[str, Any] = {
    "instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
    "previous_response_id": None, "store": True, "temperature": 1.0, "tool_choice": "auto", "tools": [],
    "top_p": 1.0, "user": None,
}


def _items(call: SimCall, body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return value
    raise invalid(call, "`input` must be a string or a non-empty list of input items", "input")


def _conversation(items: list[dict[str, Any]]) -> tuple[list[str], frozenset[str]]:
    """The texts of the input items and the names of the functions already called."""
    texts: list[str] = []
    called: set[str] = set()
    for item in items:
        kind = item.get("type")
        if kind == "function_call_output":
            output = item.get("output")
            texts.append(output if isinstance(output, str) else content_text(output))
        elif kind == "function_call" and isinstance(item.get("name"), str):
            called.add(item["name"])
        elif kind in (None, "message"):
            texts.append(content_text(item.get("content")))
    return texts, frozenset(called)


def responses_ask(call: SimCall, body: dict[str, Any]) -> Ask:
    """The API-neutral `Ask` of a Responses body."""
    items = _items(call, body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid(call, "`instructions` must be a string", "instructions")
    text = body.get("text") or {}
    if not isinstance(text, dict):
        raise invalid(call, "`text` must be an object", "text")
    texts, called = _conversation(items)
    tools = function_tools(call, body, nested=False)
    config = call.state.config
    seed = body.get("seed")
    return Ask(
        model=call.model,
        prompt="\n".join(([instructions] if instructions else []) + texts),
        seed=seed if isinstance(seed, int) else None,
        limit=positive_limit(call, body, "max_output_tokens"),
        default_tokens=min(config.max_new_tokens, config.max_tokens_cap),
        tools=tools,
        tool_choice=tool_choice(call, body, tools, nested=False),
        output=output_format(call, text.get("format"), "text.format", nested=False),
        called=called,
        after_tool_result=items[-1].get("type") == "function_call_output",
    )


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    echo = {key: default if body.get(key) is None else body[key] for key, default in _ECHO_DEFAULTS.items()}
    text = body.get("text")
    echo["text"] = {"format": (text.get("format") if isinstance(text, dict) else None) or {"type": "text"}}
    return echo


def render_responses(call: SimCall) -> Rendered:
    """A `response` object or its event stream."""
    body = call.require_json()
    ask = responses_ask(call, body)
    try:
        result = answer(ask)
    except SchemaError as error:
        param = "tools" if tool_to_call(ask) is not None else "text.format"
        raise invalid(call, f"Invalid JSON schema in `{param}`: {ascii(str(error))[1:-1]}", param) from error
    response_id = "resp_" + request_id("r", call.raw)[2:]
    reply = ResponsesReply(response_id, call.model, call.state.config.created, ask, result, _echo(body))
    if call.stream:
        return responses_stream(reply)
    return json_body(responses_object(reply))
