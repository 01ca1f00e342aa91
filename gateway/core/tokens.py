"""The prompt's size in tokens, estimated from its characters (about 4 per token), before any tokenizer.

Pure functions of a `Call`, shared by the rate limiter (which reserves tokens before the call,
`policies/limits/token_accounting.py`) and the dialects that must report a `usage` their upstream does not
give (OpenAI embeddings served by an HF feature-extraction backend, `upstream/dialects/hf.py`).
"""

from __future__ import annotations

import math
from typing import Any

from gateway.core.call import Call, Op

_PER_MESSAGE = 4  # role and separators the chat template adds around each message


def prompt_chars(value: Any) -> int:
    """Characters of text in a request field (strings anywhere in lists / objects; token ids count 4)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return 4  # a token id: one token
    if isinstance(value, list):
        return sum(prompt_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(prompt_chars(v) for v in value.values())
    return 0


def _content_chars(content: Any) -> int:
    """A chat message's text: a string, or the `text` of its content parts (images are not counted)."""
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return prompt_chars(content)


def prompt_tokens(call: Call) -> int:
    """The prompt's size in tokens, roughly (characters / 4)."""
    body = call.body
    if body is None:
        return 0
    if call.op is Op.CHAT:
        msgs = body.get("messages") or []
        chars = sum(_content_chars(m.get("content")) for m in msgs if isinstance(m, dict))
        return math.ceil(chars / 4) + _PER_MESSAGE * len(msgs)
    if call.op is Op.RESPONSES:
        return _responses_tokens(body)
    field = {Op.COMPLETIONS: "prompt", Op.EMBEDDINGS: "input"}.get(call.op, "inputs")
    if call.op is Op.TEI_RERANK:
        return math.ceil((prompt_chars(body.get("query")) + prompt_chars(body.get("texts"))) / 4)
    return math.ceil(prompt_chars(body.get(field)) / 4)


def _responses_tokens(body: dict[str, Any]) -> int:
    """A Responses API prompt: `instructions` plus the `input` string or items (a message's text parts,
    a tool call's `arguments`, a tool result's `output`), each item framed like a chat message."""
    chars = prompt_chars(body.get("instructions"))
    items = body.get("input")
    if not isinstance(items, list):
        return math.ceil((chars + prompt_chars(items)) / 4) + (_PER_MESSAGE if items else 0)
    for item in items:
        if isinstance(item, dict):
            chars += _content_chars(item.get("content")) + prompt_chars(item.get("arguments"))
            chars += _content_chars(item.get("output"))
    return math.ceil(chars / 4) + _PER_MESSAGE * len(items)


_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_usage(event: Any) -> tuple[int, int] | None:
    """(input, output) tokens reported by a Responses stream's last event (`response.completed`,
    `.incomplete` or `.failed`, whose `response.usage` counts them), else None."""
    if not isinstance(event, dict) or event.get("type") not in _RESPONSE_ENDS:
        return None
    response = event.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict) or not isinstance(usage.get("output_tokens"), int):
        return None
    given = usage.get("input_tokens")
    return (given if isinstance(given, int) else 0), usage["output_tokens"]
