"""HF tasks: detecting the task of a `POST <model URL>` body, and reshaping answers for the HF client.

InferenceClient 2.x never names the task (docs/protocol.md, 'InferenceClient: task detection'); it comes from the URL
(`/pipeline/{task}`), then the route's configured `task`, then the body's tell-tale keys. An
unknown task is fine: the request is forwarded as is, only task-specific work is skipped.

Image and audio tasks send the file itself (raw bytes, or base64 in a JSON `inputs` when there
are parameters); `is_media` tells such inputs from text, so that no text-task rule (the
classification nesting above all) ever touches them.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Any

TEXT_GENERATION = "text-generation"
FEATURE_EXTRACTION = "feature-extraction"
TEXT_CLASSIFICATION = "text-classification"
ZERO_SHOT = "zero-shot-classification"
TOKEN_CLASSIFICATION = "token-classification"
TEXT_TO_IMAGE = "text-to-image"
IMAGE_TO_IMAGE = "image-to-image"
SENTENCE_SIMILARITY = "sentence-similarity"
ZERO_SHOT_IMAGE = "zero-shot-image-classification"
TEXT_TO_SPEECH = "text-to-speech"
TEXT_TO_AUDIO = "text-to-audio"
AUDIO_TO_AUDIO = "audio-to-audio"
# Tasks whose answer is the file itself (`audio/flac`, `image/png`, ...), not JSON.
BINARY_ANSWER_TASKS = frozenset({TEXT_TO_IMAGE, IMAGE_TO_IMAGE, TEXT_TO_SPEECH, TEXT_TO_AUDIO})
# Tasks whose answer is always JSON (the others, and an unknown task, may answer bytes).
JSON_ANSWER_TASKS = frozenset({
    TEXT_GENERATION, FEATURE_EXTRACTION, TEXT_CLASSIFICATION, ZERO_SHOT, TOKEN_CLASSIFICATION,
    SENTENCE_SIMILARITY, ZERO_SHOT_IMAGE, AUDIO_TO_AUDIO, "fill-mask", "summarization", "translation",
    "question-answering", "table-question-answering", "tabular-classification", "tabular-regression",
    "image-classification", "image-segmentation", "image-to-text", "object-detection",
    "visual-question-answering", "document-question-answering", "audio-classification",
    "automatic-speech-recognition",
})  # fmt: skip

_EMBED_ROOT_KEYS = ("normalize", "truncate", "prompt_name", "truncation_direction", "dimensions")
_GENERATION_KEYS = frozenset({
    "max_new_tokens", "details", "do_sample", "return_full_text", "repetition_penalty", "top_n_tokens",
    "decoder_input_details", "best_of", "typical_p", "watermark", "grammar", "adapter_id", "temperature",
})
# `text_to_speech` sends transformers' generate() options, some of which text generation shares
# (`temperature`, `max_new_tokens`, ...); these it alone sends.
_SPEECH_KEYS = frozenset({
    "early_stopping", "epsilon_cutoff", "eta_cutoff", "max_length", "min_length", "min_new_tokens",
    "num_beam_groups", "num_beams", "penalty_alpha", "use_cache",
})


# huggingface_hub 1.x and 2.x name themselves `hf_hub/<version>` in their User-Agent.
_HF_HUB_AGENT = re.compile(r"(?:^|[;\s])hf_hub/([0-9]+)\.")
# The first bytes of the image and audio files the HF tasks take (what the hf-inference server sniffs too).
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"fLaC", b"OggS", b"ID3",
          b"\x1aE\xdf\xa3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")


def detect_task(body: dict[str, Any] | None, accept: str | None, user_agent: str | None = None) -> str | None:
    """The task a body implies, or None when it does not tell.

    `body` is None for a raw file body. `user_agent` tells a huggingface_hub 1.x/2.x client, whose
    `feature_extraction` is the only text task that sends no `parameters` key (docs/protocol.md,
    'InferenceClient: task detection').
    """
    media = body is None or is_media(body.get("inputs"))
    if accept and accept.startswith("image/"):
        return IMAGE_TO_IMAGE if media else TEXT_TO_IMAGE
    if not isinstance(body, dict):
        return None
    params = body.get("parameters")
    if media:
        return ZERO_SHOT_IMAGE if isinstance(params, dict) and "candidate_labels" in params else None
    inputs = body.get("inputs")
    if isinstance(inputs, dict) and "source_sentence" in inputs and "sentences" in inputs:
        return SENTENCE_SIMILARITY
    if isinstance(params, dict):
        if "candidate_labels" in params:
            return ZERO_SHOT
        if "aggregation_strategy" in params or "ignore_labels" in params:
            return TOKEN_CLASSIFICATION
        if "function_to_apply" in params:
            return TEXT_CLASSIFICATION
        if _SPEECH_KEYS.intersection(params):
            return TEXT_TO_SPEECH
        if _GENERATION_KEYS.intersection(params):
            return TEXT_GENERATION
    if "stream" in body:
        return TEXT_GENERATION
    if any(k in body for k in _EMBED_ROOT_KEYS):
        return FEATURE_EXTRACTION
    if plain_text_inputs(body) and hf_hub_major(user_agent) >= 1:
        return FEATURE_EXTRACTION
    return None


def hf_hub_major(user_agent: str | None) -> int:
    """The major version of the huggingface_hub client that sent the request (0 when it is not one)."""
    found = _HF_HUB_AGENT.search(user_agent or "")
    return int(found.group(1)) if found else 0


def is_media(inputs: Any) -> bool:
    """Whether JSON `inputs` is a base64 image or audio file (as InferenceClient sends one with parameters)."""
    if not isinstance(inputs, str) or len(inputs) < 64:  # no real file is under 48 bytes
        return False
    head = inputs[:24]
    try:
        data = base64.b64decode(head + "=" * (-len(head) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    if data.startswith(_MAGIC):
        return True
    # RIFF (WAV, WebP) and ISO media (MP4, M4A: `....ftyp`) carry their mark a few bytes in.
    return (data.startswith(b"RIFF") and data[8:12] in (b"WAVE", b"WEBP")) or data[4:8] == b"ftyp"


def text_inputs(body: dict[str, Any] | None) -> bool:
    """Whether a JSON body's `inputs` is one text (not a file, not a structured input)."""
    return isinstance(body, dict) and isinstance(body.get("inputs"), str) and not is_media(body["inputs"])


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
    if task in BINARY_ANSWER_TASKS:  # generated media: the same only with the same seed
        nested = body.get("parameters") if isinstance(body, dict) else None
        return isinstance(nested, dict) and nested.get("seed") is not None
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
