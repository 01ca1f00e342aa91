"""HF tasks: detecting the task of a `POST <model URL>` body, and reshaping answers for the HF client.

InferenceClient 2.x never names the task (docs/protocol.md, 'InferenceClient: task detection'); it comes from the URL
(`/pipeline/{task}`), then the route's configured `task`, then the body's tell-tale keys. An
unknown task is fine: the request is forwarded as is, only task-specific work is skipped.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

TEXT_GENERATION = "text-generation"
FEATURE_EXTRACTION = "feature-extraction"
TEXT_CLASSIFICATION = "text-classification"
ZERO_SHOT = "zero-shot-classification"
TOKEN_CLASSIFICATION = "token-classification"
TEXT_TO_IMAGE = "text-to-image"
SENTENCE_SIMILARITY = "sentence-similarity"

_EMBED_ROOT_KEYS = ("normalize", "truncate", "prompt_name", "truncation_direction", "dimensions")
_GENERATION_KEYS = frozenset({
    "max_new_tokens", "details", "do_sample", "return_full_text", "repetition_penalty", "top_n_tokens",
    "decoder_input_details", "best_of", "typical_p", "watermark", "grammar", "adapter_id", "temperature",
})


def detect_task(body: dict[str, Any] | None, accept: str | None) -> str | None:
    """The task a body implies, or None when it does not tell."""
    if accept and accept.startswith("image/"):
        return TEXT_TO_IMAGE
    if not isinstance(body, dict):
        return None
    params = body.get("parameters")
    if isinstance(params, dict):
        if "candidate_labels" in params:
            return ZERO_SHOT
        if "aggregation_strategy" in params or "ignore_labels" in params:
            return TOKEN_CLASSIFICATION
        if "function_to_apply" in params:
            return TEXT_CLASSIFICATION
        if _GENERATION_KEYS.intersection(params):
            return TEXT_GENERATION
    if "stream" in body:
        return TEXT_GENERATION
    if any(k in body for k in _EMBED_ROOT_KEYS):
        return FEATURE_EXTRACTION
    return None


def plain_text_inputs(body: dict[str, Any] | None) -> bool:
    """Whether an HF body is `{"inputs": text or [texts], <root options>}` with no `parameters`.

    That is how `InferenceClient.feature_extraction` (huggingface_hub 2.x) writes its request (its
    options at the root), while every other text task sends `parameters`, even empty; so where
    the upstream can only serve embeddings for such a body, it is a feature-extraction request.
    """
    if not isinstance(body, dict) or "parameters" in body:
        return False
    inputs = body.get("inputs")
    return isinstance(inputs, str) or (
        isinstance(inputs, list) and bool(inputs) and all(isinstance(x, str) for x in inputs))


def is_deterministic(task: str | None, body: dict[str, Any] | None) -> bool:
    """Whether the same request always gets the same answer (and so may be cached)."""
    if task in (FEATURE_EXTRACTION, TEXT_CLASSIFICATION, ZERO_SHOT, TOKEN_CLASSIFICATION, SENTENCE_SIMILARITY):
        return True
    if task in (TEXT_GENERATION, "chat", "completions") and isinstance(body, dict):
        nested = body.get("parameters")
        params: dict[str, Any] = nested if isinstance(nested, dict) else body
        if params.get("seed") is not None:
            return True
        if params.get("do_sample") is False:
            return True
        temp = params.get("temperature")
        return isinstance(temp, (int, float)) and temp == 0
    return task == "embeddings"


# --- answer adapters (all take and return parsed JSON) -------------------------------------------

def nest_classification(data: Any) -> Any:
    """text-classification must be `[[{label,score}...]]` for the HF client; TEI gives a flat list."""
    if isinstance(data, list) and data and all(isinstance(x, dict) and "label" in x for x in data):
        return [data]
    return data


def flat_classification(data: Any) -> Any:
    """TEI `/predict` clients expect a flat list for one input."""
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        return data[0]
    return data


def zero_shot_list(data: Any) -> Any:
    """The legacy `{sequence, labels, scores}` zero-shot shape -> `[{label, score}]`."""
    if isinstance(data, dict) and isinstance(data.get("labels"), list) and isinstance(data.get("scores"), list):
        return [{"label": lab, "score": sc} for lab, sc in zip(data["labels"], data["scores"], strict=False)]
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and "labels" in data[0]:
        return zero_shot_list(data[0])
    return data


def first_item(data: Any) -> Any:
    """TGI `/generate` answers a bare object where `POST /` answers a one-item list."""
    if isinstance(data, list) and data:
        return data[0]
    return data


def as_list(data: Any) -> Any:
    """`POST /` (compat) answers a list; a `/generate`-style bare object gets wrapped."""
    return [data] if isinstance(data, dict) else data


def top_k(k: Any) -> Any:
    """Trim a classification answer to the client's `top_k`."""
    def trim(data: Any) -> Any:
        if isinstance(k, int) and k > 0 and isinstance(data, list) and data and isinstance(data[0], list):
            return [row[:k] for row in data]
        return data
    return trim


def embeddings_to_openai(model: str, encoding: str | None, prompt_tokens: int = 0) -> Any:
    """A numeric array (1-D or 2-D) -> an OpenAI embeddings list; `usage` says `prompt_tokens` (the
    backend counts none: the caller passes the estimate of `core/tokens.py`)."""
    def convert(data: Any) -> Any:
        rows = data if data and isinstance(data[0], list) else [data]
        items = []
        for i, row in enumerate(rows):
            emb: Any = row
            if encoding == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(row)}f", *row)).decode()
            items.append({"object": "embedding", "index": i, "embedding": emb})
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return {"object": "list", "data": items, "model": model, "usage": usage}
    return convert


def openai_embeddings_to_rows(data: Any) -> Any:
    """An OpenAI embeddings list -> the 2-D array HF feature-extraction returns."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return [item.get("embedding") for item in sorted(data["data"], key=lambda d: d.get("index", 0))]
    return data
