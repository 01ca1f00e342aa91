"""What the simulated model answers, whatever the API asked it (chat completions or Responses).

An `Ask` is the API-neutral request: the prompt, the limit, the function tools, the tool choice,
the output format and where the conversation stands. `answer(ask, index)` returns choice `index`:

- a **tool call** when tools are offered and `tool_choice` is not `none`, except that under `auto`
  a conversation whose last message is a tool result gets text (so an agent loop ends). The tool
  is the named one, else the first tool not yet called in the conversation, else the first tool;
  its arguments are a schema instance of the tool's parameters (`finish` "tool_calls");
- else **JSON** for a `json_object` / `json_schema` output format (`finish` "stop"): an instance
  of the schema; for `json_object`, of the first JSON Schema written in the prompt, else
  `{"answer": "..."}`;
- else **prose** from the deterministic text generator (`finish` "length" when a limit was asked,
  "stop" otherwise, as the simulator has always done).

A tool call or JSON longer than an asked limit is cut to it, with `finish` "length", as a real
server does. Choice 0 of prose is exactly the text of `textgen.generate` for the same prompt, so
chat and TGI agree; other choices and all structured values hash the choice index in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.simulator.logprobs import split_tokens
from gateway.simulator.schema_instance import (
    SchemaError,
    object_schema_for_json_mode,
    schema_instance,
)
from gateway.simulator.textgen import digest_stream, make_token, word_count
from gateway.simulator.wire import dumps

_PROMPT_SCAN = 256 * 1024  # a schema is looked for in the first 256 KiB of the prompt ...
_SCHEMA_ATTEMPTS = 64  # ... at no more than this many opening braces

ToolMode = Literal["auto", "none", "required", "named"]
FormatKind = Literal["text", "json_object", "json_schema"]


@dataclass(frozen=True)
class FunctionTool:
    """A function the model may call: its name and its JSON Schema parameters."""

    name: str
    parameters: dict[str, Any]
    strict: bool = False


@dataclass(frozen=True)
class ToolChoice:
    """`tool_choice`: a mode, and the function's name in `named` mode."""

    mode: ToolMode = "auto"
    name: str | None = None


@dataclass(frozen=True)
class OutputFormat:
    """`response_format` / `text.format`: prose, any JSON object, or JSON valid against `schema`."""

    kind: FormatKind = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class Ask:
    """One API-neutral request to the simulated model."""

    model: str
    prompt: str
    seed: int | None
    limit: int | None
    default_tokens: int
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    output: OutputFormat = field(default_factory=OutputFormat)
    called: frozenset[str] = frozenset()
    after_tool_result: bool = False

    @property
    def prompt_tokens(self) -> int:
        """The prompt's token count (whitespace words, as everywhere in the simulator)."""
        return word_count(self.prompt)


@dataclass(frozen=True)
class ToolCall:
    """A function call the model makes."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    """One choice: its tokens (of the content, or of the arguments of `tool_call`) and why it ended."""

    tokens: tuple[str, ...]
    finish: str
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        """The content (or the arguments) as one string."""
        return "".join(self.tokens)


def material(ask: Ask, index: int, *parts: str) -> bytes:
    """The hash material of choice `index` (and of `parts`, e.g. a tool name)."""
    return digest_stream(ask.model, ask.prompt, str(ask.seed), f"choice-{index}", *parts, size=32)


def schema_in_prompt(prompt: str) -> dict[str, Any] | None:
    """The first JSON Schema object written in the prompt, if any.

    `json_object` mode carries no schema, so prompts spell one out (instructor's JSON mode puts
    the model's schema in the system message); a real model follows it, and so does the simulator.
    """
    decoder = json.JSONDecoder()
    start = prompt.find("{", 0, _PROMPT_SCAN)
    for _ in range(_SCHEMA_ATTEMPTS):
        if start < 0:
            return None
        try:
            found, _end = decoder.raw_decode(prompt, start)
        except ValueError:
            found = None
        if isinstance(found, dict) and ("properties" in found or found.get("type") == "object"):
            return found
        start = prompt.find("{", start + 1, _PROMPT_SCAN)
    return None


def tool_to_call(ask: Ask) -> FunctionTool | None:
    """The tool this request makes the model call, if any."""
    choice = ask.tool_choice
    if not ask.tools or choice.mode == "none":
        return None
    if choice.mode == "named":
        return next((t for t in ask.tools if t.name == choice.name), None)
    if choice.mode == "auto" and ask.after_tool_result:
        return None
    fresh = [t for t in ask.tools if t.name not in ask.called]
    return (fresh or list(ask.tools))[0]


def _prose(ask: Ask, index: int) -> Answer:
    count = ask.limit if ask.limit is not None else ask.default_tokens
    parts = (ask.model, ask.prompt, str(ask.seed)) + ((f"choice-{index}",) if index else ())
    stream = digest_stream(*parts)
    tokens = tuple(make_token(stream, i).text for i in range(count))
    return Answer(tokens, "length" if ask.limit is not None else "stop")


def _limited(tokens: list[str], ask: Ask, finish: str) -> tuple[tuple[str, ...], str]:
    if ask.limit is not None and len(tokens) > ask.limit:
        return tuple(tokens[: ask.limit]), "length"
    return tuple(tokens), finish


def _json_content(ask: Ask, index: int) -> str:
    seed = material(ask, index, "json")
    if ask.output.schema is not None:
        return dumps(schema_instance(ask.output.schema, seed)).decode()
    found = schema_in_prompt(ask.prompt)
    if found is not None:
        try:
            return dumps(schema_instance(found, seed)).decode()
        except SchemaError:
            pass  # prose that only looks like a schema: the request itself is fine
    return dumps(schema_instance(object_schema_for_json_mode(), seed)).decode()


def answer(ask: Ask, index: int = 0) -> Answer:
    """Choice `index` of the answer to `ask` (see the module docstring for the rules)."""
    tool = tool_to_call(ask)
    if tool is not None:
        arguments = dumps(schema_instance(tool.parameters, material(ask, index, tool.name))).decode()
        tokens, finish = _limited(split_tokens(arguments), ask, "tool_calls")
        call_id = "call_" + hashlib.sha256(material(ask, index, "call", tool.name)).hexdigest()[:24]
        return Answer(tokens, finish, ToolCall(call_id, tool.name, "".join(tokens)))
    if ask.output.kind != "text":
        tokens, finish = _limited(split_tokens(_json_content(ask, index)), ask, "stop")
        return Answer(tokens, finish)
    return _prose(ask, index)
