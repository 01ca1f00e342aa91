"""Request bodies for upstreams, re-serialised only when something really changes.

The fast path forwards the client's bytes untouched; a body is re-encoded only to replace the
model name or drop the legacy `options` key that some backends reject.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.call import Call
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


def unsupported(call: Call, kind: str) -> UnsupportedTask:
    what = call.task or call.op.value
    return UnsupportedTask(f"a {kind!r} upstream cannot serve {what!r} requests; route this model to another upstream")
