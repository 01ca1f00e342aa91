"""Request bodies for upstreams, re-serialised only when something really changes.

The fast path forwards the client's bytes untouched; a body is re-encoded only to replace the
model name or drop the legacy `options` key that some backends reject.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.call import Call, Op
from gateway.core.errors import UnsupportedRoute, UnsupportedTask


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
    if call.op is Op.RESPONSES:
        return unsupported_responses(call, f"a {kind!r} upstream, which serves {_SERVES.get(kind, 'other requests')}")
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


def unsupported_responses(call: Call, where: str) -> UnsupportedRoute:
    """The 422 `unsupported_route` for `/v1/responses` on an upstream that does not speak the Responses API."""
    return UnsupportedRoute(
        f"model {call.model[:80]!r} is routed to {where}; it does not speak the Responses API "
        "(POST /v1/responses). To use the Responses API with this model, route it to an upstream that speaks "
        "it: `kind: openai` with the server's `base_url` ending in /v1 (OpenAI, vLLM, the HF router at "
        "https://router.huggingface.co/v1), or `kind: hf` for an HF router chat model")
