"""Reading the OpenAI request fields that shape an answer, shared by chat completions and Responses.

Chat nests a function tool as `{"type": "function", "function": {name, parameters, strict}}` and
names a forced one as `{"type": "function", "function": {"name"}}`; Responses flattens both
(`{"type": "function", name, parameters, strict}`, `{"type": "function", "name"}`). Chat's
`response_format` is `{"type": "json_schema", "json_schema": {name, schema, strict}}`, Responses'
`text.format` is `{"type": "json_schema", name, schema, strict}`; both accept `text` and
`json_object`, and a TGI-style `{"type": "json" | "json_object", "value": schema}` is read as a
schema too. Tools of other types (web search and the like) are accepted and never called.

Every bad value raises `SimReject` in the route's dialect (400 with `param` on OpenAI routes, 422
on TGI-style endpoint routes); nothing here can crash on a malformed body.
"""

from __future__ import annotations

from typing import Any

from gateway.simulator.answers import FunctionTool, OutputFormat, ToolChoice
from gateway.simulator.calls import SimCall, SimReject
from gateway.simulator.dialects import Style
from gateway.simulator.logprobs import MAX_TOP_LOGPROBS

MAX_CHOICES = 128


def invalid(call: SimCall, message: str, param: str | None = None) -> SimReject:
    """A validation rejection in the route's dialect."""
    return SimReject.of(call.style, 422 if call.style is Style.TGI else 400, message, param)


def shown(value: Any) -> str:
    """A client value quoted safely for an error message (and its header copy)."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_limit(call: SimCall, body: dict[str, Any], key: str) -> int | None:
    """A token limit (`max_tokens`, `max_output_tokens`...), capped by the config; None when absent."""
    asked = body.get(key)
    if asked is None:
        return None
    if not _int(asked) or asked < 1:
        raise invalid(call, f"`{key}` must be a positive integer, got {shown(asked)}", key)
    return int(min(asked, call.state.config.max_tokens_cap))


def choice_count(call: SimCall, body: dict[str, Any]) -> int:
    """`n`: 1 to 128 (1 when absent or null)."""
    n = body.get("n")
    if n is None:
        return 1
    if not _int(n) or not 1 <= n <= MAX_CHOICES:
        raise invalid(call, f"`n` must be an integer from 1 to {MAX_CHOICES}, got {shown(n)}", "n")
    return int(n)


def top_logprobs(call: SimCall, body: dict[str, Any]) -> int | None:
    """How many alternatives each logprobs entry lists; None when `logprobs` is not true."""
    wanted, top = body.get("logprobs"), body.get("top_logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise invalid(call, f"`logprobs` must be a boolean, got {shown(wanted)}", "logprobs")
    if top is not None and (not _int(top) or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise invalid(call, f"`top_logprobs` must be an integer from 0 to {MAX_TOP_LOGPROBS}", "top_logprobs")
    if top is not None and wanted is not True:
        raise invalid(call, "`logprobs` must be true when `top_logprobs` is set", "top_logprobs")
    return (top or 0) if wanted else None


def _schema(call: SimCall, value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {"type": "object", "properties": {}}
    if not isinstance(value, dict):
        raise invalid(call, f"`{param}` must be a JSON Schema object", param)
    return value


def _function(call: SimCall, spec: Any, param: str) -> FunctionTool:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise invalid(call, f"`{param}` must be an object with a non-empty string `name`", param)
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(call, f"`{param}.strict` must be a boolean", f"{param}.strict")
    return FunctionTool(spec["name"], _schema(call, spec.get("parameters"), f"{param}.parameters"), strict is True)


def function_tools(call: SimCall, body: dict[str, Any], *, nested: bool) -> tuple[FunctionTool, ...]:
    """The function tools of `tools` (chat's nested shape when `nested`, else Responses' flat one)."""
    tools = body.get("tools")
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise invalid(call, f"`tools` must be an array, got {type(tools).__name__}", "tools")
    out: list[FunctionTool] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise invalid(call, f"`tools[{i}]` must be an object with a string `type`", f"tools[{i}]")
        if tool["type"] != "function":
            continue
        out.append(_function(call, tool.get("function") if nested else tool,
                             f"tools[{i}].function" if nested else f"tools[{i}]"))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise invalid(call, "function names in `tools` must be unique", "tools")
    return tuple(out)


def tool_choice(call: SimCall, body: dict[str, Any], tools: tuple[FunctionTool, ...], *,
                nested: bool) -> ToolChoice:
    """`tool_choice`; `required` or a named function need tools, and the name must be one of them."""
    value = body.get("tool_choice")
    if value is None or value == "auto":
        return ToolChoice("auto")
    if value in ("none", "required"):
        if value == "required" and not tools:
            raise invalid(call, "`tool_choice` 'required' needs function `tools`", "tool_choice")
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function":
        holder = value.get("function") if nested else value
        name = holder.get("name") if isinstance(holder, dict) else None
        if not isinstance(name, str):
            raise invalid(call, "`tool_choice` must name the function to call", "tool_choice")
        if name not in {t.name for t in tools}:
            raise invalid(call, f"`tool_choice` names {shown(name)}, which is not a function in `tools`",
                          "tool_choice")
        return ToolChoice("named", name)
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return ToolChoice("auto")  # allowed_tools, hosted tools: the simulator calls none of them
    raise invalid(call, "`tool_choice` must be 'none', 'auto', 'required' or a function", "tool_choice")


def output_format(call: SimCall, value: Any, param: str, *, nested: bool) -> OutputFormat:
    """`response_format` (chat, `nested`) or `text.format` (Responses)."""
    if value is None:
        return OutputFormat()
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise invalid(call, f"`{param}` must be an object with a string `type`", param)
    kind = value["type"]
    if kind in ("json", "json_object") and "value" in value:  # TGI's grammar form
        return OutputFormat("json_schema", _schema(call, value["value"], f"{param}.value"))
    if kind in ("text", "json_object"):
        return OutputFormat(kind)
    if kind != "json_schema":
        raise invalid(call, f"`{param}.type` must be 'text', 'json_object' or 'json_schema', got {shown(kind)}",
                      f"{param}.type")
    spec = value.get("json_schema") if nested else value
    where = f"{param}.json_schema" if nested else param
    if not isinstance(spec, dict):
        raise invalid(call, f"`{where}` must be an object", where)
    name, strict = spec.get("name"), spec.get("strict")
    if name is not None and not isinstance(name, str):
        raise invalid(call, f"`{where}.name` must be a string", f"{where}.name")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(call, f"`{where}.strict` must be a boolean", f"{where}.strict")
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(call, f"`{where}.schema` must be a JSON Schema object", f"{where}.schema")
    return OutputFormat("json_schema", schema, name, strict is True)
