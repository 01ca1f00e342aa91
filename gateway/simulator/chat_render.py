"""`/v1/chat/completions`: from the request body to a `chat.completion` (or its stream).

The prompt is the messages' text contents joined by newlines (tool results included), so the
answer, like every simulator answer, is a function of the body. The conversation's state for the
tool rules of `answers.py` comes from the messages: the names in earlier assistant `tool_calls`
are "called", and a last message with role `tool` (or the legacy `function`) is a tool result.
"""

from __future__ import annotations

from typing import Any

from gateway.simulator.answers import Ask, answer, tool_to_call
from gateway.simulator.calls import SimCall
from gateway.simulator.chat_objects import ChatReply, chat_object, chat_stream
from gateway.simulator.openai_objects import envelope
from gateway.simulator.openai_params import (
    choice_count,
    function_tools,
    invalid,
    output_format,
    positive_limit,
    tool_choice,
    top_logprobs,
)
from gateway.simulator.schema_instance import SchemaError
from gateway.simulator.wire import Rendered, json_body


def content_text(content: Any) -> str:
    """The text of a message's content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def include_usage(body: dict[str, Any]) -> bool:
    """`stream_options.include_usage` is true."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def called_tools(messages: list[dict[str, Any]]) -> frozenset[str]:
    """Names of the functions the assistant already called in this conversation."""
    names: set[str] = set()
    for message in messages:
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.add(function["name"])
    return frozenset(names)


def chat_ask(call: SimCall, body: dict[str, Any]) -> Ask:
    """The API-neutral `Ask` of a chat body (validating everything that shapes the answer)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise invalid(call, "`messages` must be a non-empty list of objects", "messages")
    key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    tools = function_tools(call, body, nested=True)
    config = call.state.config
    seed = body.get("seed")
    return Ask(
        model=call.model,
        prompt="\n".join(content_text(m.get("content")) for m in messages),
        seed=seed if isinstance(seed, int) else None,
        limit=positive_limit(call, body, key),
        default_tokens=min(config.max_new_tokens, config.max_tokens_cap),
        tools=tools,
        tool_choice=tool_choice(call, body, tools, nested=True),
        output=output_format(call, body.get("response_format"), "response_format", nested=True),
        called=called_tools(messages),
        after_tool_result=messages[-1].get("role") in ("tool", "function"),
    )


def chat_reply(call: SimCall, body: dict[str, Any]) -> ChatReply:
    """All the choices of a chat request."""
    ask = chat_ask(call, body)
    count = choice_count(call, body)
    top = top_logprobs(call, body)
    try:
        answers = tuple(answer(ask, i) for i in range(count))
    except SchemaError as error:
        param = "tools" if tool_to_call(ask) is not None else "response_format"
        raise invalid(call, f"Invalid JSON schema in `{param}`: {ascii(str(error))[1:-1]}", param) from error
    return ChatReply(ask, answers, top)


def render_chat(call: SimCall) -> Rendered:
    """A chat completion or its stream."""
    body = call.require_json()
    reply = chat_reply(call, body)
    env = envelope(call, "chatcmpl")
    if call.stream:
        return chat_stream(reply, env, include_usage=include_usage(body), error_style=call.style)
    return json_body(chat_object(reply, env))
