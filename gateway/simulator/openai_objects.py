"""OpenAI-shaped answers shared by every `/v1` route (the envelope, ids), plus completions and
embeddings, plain and streamed. Chat lives in `chat_objects.py`, Responses in `responses_objects.py`.

Ids are derived from the request body (same request, same bytes) and `created` is the configured
constant. The completions stream puts `finish_reason` on each prompt's last token chunk, then
(with `stream_options.include_usage`) a usage chunk with `choices: []`, then `data: [DONE]`.
Usage equals the non-stream `usage` for the same request.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from gateway.simulator.calls import SimCall
from gateway.simulator.dialects import Style, stream_error_event
from gateway.simulator.textgen import Generation, digest_stream, make_token
from gateway.simulator.wire import DONE, StreamBody, openai_event


@dataclass(frozen=True)
class Envelope:
    """The fields every object of one answer shares."""

    id: str
    model: str
    created: int
    fingerprint: str


def request_id(prefix: str, raw_body: bytes) -> str:
    """A deterministic id for a request body."""
    return f"{prefix}-{hashlib.sha256(raw_body).hexdigest()[:24]}"


def envelope(call: SimCall, prefix: str) -> Envelope:
    """The envelope of an answer to `call`, its id prefixed with `prefix`."""
    config = call.state.config
    return Envelope(request_id(prefix, call.raw), call.model, config.created, config.fingerprint)


def _chunk(env: Envelope, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": env.id, "object": obj, "created": env.created, "model": env.model,
            "system_fingerprint": env.fingerprint, "choices": choices}


def completion_object(gens: list[Generation], env: Envelope, echo: bool) -> dict[str, Any]:
    """A `text_completion` with one choice per prompt."""
    choices = [{"index": i, "text": (g.prompt if echo else "") + g.text, "logprobs": None,
                "finish_reason": g.finish_reason} for i, g in enumerate(gens)]
    return {"id": env.id, "object": "text_completion", "created": env.created, "model": env.model,
            "system_fingerprint": env.fingerprint, "choices": choices, "usage": _sum_usage(gens)}


def _sum_usage(gens: list[Generation]) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for g in gens:
        for k, v in g.usage().items():
            total[k] += v
    return total


def _text_chunk(env: Envelope, index: int, text: str, finish: str | None) -> bytes:
    return openai_event(_chunk(env, "text_completion",
                               [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]))


def completion_stream(gens: list[Generation], env: Envelope, *, include_usage: bool,
                      error_style: Style) -> StreamBody:
    """A completions stream; `finish_reason` rides on each prompt's last token chunk."""
    events: list[bytes] = []
    for index, gen in enumerate(gens):
        last = len(gen.tokens) - 1
        events += [_text_chunk(env, index, t.text, gen.finish_reason if i == last else None)
                   for i, t in enumerate(gen.tokens)]
    if include_usage:
        events.append(openai_event({**_chunk(env, "text_completion", []), "usage": _sum_usage(gens)}))
    material = digest_stream(gens[0].prompt if gens else "", "endless")
    return StreamBody(tuple(events), DONE, stream_error_event(error_style),
                      lambda n: _text_chunk(env, 0, make_token(material, n).text, None))


def float32_base64(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64-encoded (what the openai SDK decodes)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings_object(vectors: list[list[float]], model: str, prompt_tokens: int,
                      encoding_format: str) -> dict[str, Any]:
    """An OpenAI embeddings `list`."""
    data = [{"object": "embedding", "index": i,
             "embedding": float32_base64(v) if encoding_format == "base64" else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
