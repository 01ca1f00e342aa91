"""Request bodies for upstreams, re-serialised only when something really changes.

The fast path forwards the client's bytes untouched; a body is re-encoded only to replace the
model name or drop the legacy `options` key that some backends reject.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.call import Call, Op
from gateway.core.errors import UnsupportedTask


def with_model(call: Call, model: str) -> bytes:
    """The OpenAI-style body with `model` set to the upstream's name for it."""
    body = call.body or {}
    if body.get("model") == model:
        return call.raw
    return orjson.dumps({**body, "model": model})


def hf_body(call: Call) -> bytes:
    """The HF-style body without the legacy `options` (the flags were parsed from it already)."""
    body = call.body
    if body is None:
        return call.raw
    if "options" in body:
        return orjson.dumps({k: v for k, v in body.items() if k != "options"})
    return call.raw


def dump(obj: Any) -> bytes:
    return orjson.dumps(obj)


# What each upstream kind can serve, named in the refusal so the reader knows the real fix.
_SERVES = {
    "openai": "chat, completions and embeddings (an HF `{\"inputs\": text}` body is sent as embeddings)",
    "tgi": "chat, completions and text-generation",
    "tei": "embeddings (feature-extraction), text-classification and reranking",
    "hf": "chat, completions, embeddings and the HF tasks",
}


def unsupported(call: Call, kind: str) -> UnsupportedTask:
    """The 422 for a request the upstream kind cannot serve, saying what it serves and how to fix the config."""
    if call.task:
        what = f"{call.task!r} requests"
    elif call.op is Op.HF_TASK:
        what = ("this HF request (its task could not be told from the URL or body: name it with "
                "`/pipeline/{task}` or `task:` on the model's route)")
    else:
        what = f"{call.op.value!r} requests"
    return UnsupportedTask(f"model {call.model[:80]!r} is routed to a {kind!r} upstream, which serves "
                           f"{_SERVES.get(kind, 'other requests')}; it cannot serve {what}. Route this model "
                           "to an upstream that serves it, or set the route's `task:`")
