"""Which task a `POST <model URL>` asks for, since the client never says (PROTOCOL §1.2, §4.2).

Order of evidence, first match wins:
1. the path: `/pipeline/{task}` (router or legacy);
2. the config: `models[<id>].task`;
3. the body: `Accept: image/*` -> text-to-image; `parameters.candidate_labels` ->
   zero-shot-classification; `parameters.aggregation_strategy` -> token-classification;
   `inputs.source_sentence` -> sentence-similarity; root `normalize`, `truncate`, `prompt_name`,
   `dimensions` or `truncation_direction` -> feature-extraction; root `stream` -> text-generation;
4. the model id (case-insensitive; a keyword matches at the start of a word, words being runs of
   letters and digits):
       diffusion, flux, sdxl, text-to-image            -> text-to-image
       mnli, xnli, zero-shot, zeroshot                  -> zero-shot-classification
       ner                                              -> token-classification
       sst, sentiment, emotion, classifier             -> text-classification
       bge, e5, gte, minilm, mpnet, embed, sentence-transformers -> feature-extraction
       anything else                                    -> text-generation
"""

from __future__ import annotations

import re
from typing import Any

from gateway.simulator.config import TASKS

_ALIASES = {
    "zero-shot": "zero-shot-classification",
    "ner": "token-classification",
    "sentiment-analysis": "text-classification",
    "embeddings": "feature-extraction",
    "sentence-embeddings": "feature-extraction",
}
_EMBEDDING_KEYS = ("normalize", "truncate", "prompt_name", "dimensions", "truncation_direction")


def _keywords(*words: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(w) for w in words) + ")")


_BY_NAME: list[tuple[re.Pattern[str], str]] = [
    (_keywords("diffusion", "flux", "sdxl", "text-to-image"), "text-to-image"),
    (_keywords("mnli", "xnli", "zero-shot", "zeroshot"), "zero-shot-classification"),
    (_keywords("ner"), "token-classification"),
    (_keywords("sst", "sentiment", "emotion", "classifier"), "text-classification"),
    (_keywords("bge", "e5", "gte", "minilm", "mpnet", "embed", "sentence-transformers"), "feature-extraction"),
]


def normalize_task(task: str) -> str | None:
    """The canonical task name, or None when the simulator does not serve it."""
    task = _ALIASES.get(task, task)
    return task if task in TASKS else None


def task_from_name(model: str) -> str:
    """The task a model id suggests by the naming convention above."""
    lowered = model.lower()
    for pattern, task in _BY_NAME:
        if pattern.search(lowered):
            return task
    return "text-generation"


def task_from_body(body: Any, accept: str) -> str | None:
    """The task the request body (or the Accept header) gives away, if any."""
    if accept.lower().startswith("image/"):
        return "text-to-image"
    if not isinstance(body, dict):
        return None
    params = body.get("parameters")
    if isinstance(params, dict):
        if "candidate_labels" in params:
            return "zero-shot-classification"
        if "aggregation_strategy" in params:
            return "token-classification"
    inputs = body.get("inputs")
    if isinstance(inputs, dict) and "source_sentence" in inputs:
        return "sentence-similarity"
    if any(key in body for key in _EMBEDDING_KEYS):
        return "feature-extraction"
    if "stream" in body:
        return "text-generation"
    return None


def detect_task(path_task: str | None, pinned: str | None, body: Any, accept: str, model: str) -> str | None:
    """Combine the evidence in order; None when the path names a task the simulator lacks."""
    if path_task is not None:
        return normalize_task(path_task)
    return pinned or task_from_body(body, accept) or task_from_name(model)
