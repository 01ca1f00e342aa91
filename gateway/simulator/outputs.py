"""Deterministic outputs of the non-generative tasks (docs/protocol.md, 'InferenceClient: answer shapes', 'TEI routes').

Every value is a pure function of the model id and the input text (a SHA-256 digest), so the same
request always gives the same bytes. Scores are rounded to 6 decimals; probability-like scores of
one input sum to ~1 and lists are sorted by score, highest first.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gateway.simulator.textgen import digest_stream

SENTIMENT_LABELS = ("POSITIVE", "NEGATIVE")
EMOTION_LABELS = ("joy", "sadness", "anger", "fear", "love", "surprise")
ENTITY_TYPES = ("PER", "ORG", "LOC", "MISC")


def text_of(value: Any) -> str:
    """A stable text form of one input (strings as-is, token ids or pairs joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text_of(v) for v in value)
    return str(value)


def embedding(model: str, text: str, dim: int, *, normalize: bool) -> list[float]:
    """One deterministic vector in [-1, 1]^dim, unit length when `normalize`."""
    material = digest_stream(model, text, "embed", size=2 * dim)
    values = [((material[2 * i] << 8 | material[2 * i + 1]) / 65535.0) * 2.0 - 1.0 for i in range(dim)]
    if normalize:
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        values = [v / norm for v in values]
    return values


def _softmax_scores(model: str, text: str, n: int) -> list[float]:
    material = digest_stream(model, text, "classify")
    logits = [material[i % len(material)] / 32.0 for i in range(n)]
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def classification(model: str, text: str, labels: list[str] | tuple[str, ...], top_k: int | None = None
                   ) -> list[dict[str, Any]]:
    """`[{label, score}]` over all labels, sorted, optionally cut to `top_k`."""
    scores = _softmax_scores(model, text, len(labels))
    ranked = sorted(zip(labels, scores, strict=True), key=lambda p: -p[1])
    if top_k is not None and top_k > 0:
        ranked = ranked[:top_k]
    return [{"label": label, "score": round(score, 6)} for label, score in ranked]


def labels_for(model: str) -> tuple[str, ...]:
    """Default text-classification labels from the model name."""
    return EMOTION_LABELS if "emotion" in model.lower() else SENTIMENT_LABELS


def zero_shot(model: str, text: str, candidates: list[str], *, multi_label: bool) -> list[dict[str, Any]]:
    """`[{label, score}]` sorted; scores sum to 1 unless `multi_label` (independent sigmoids)."""
    if multi_label:
        material = digest_stream(model, text, "zero-shot")
        scores = [1.0 / (1.0 + math.exp(-(material[i % len(material)] - 128) / 32.0)) for i in range(len(candidates))]
    else:
        scores = _softmax_scores(model, text + "\x00zero-shot", len(candidates))
    ranked = sorted(zip(candidates, scores, strict=True), key=lambda p: -p[1])
    return [{"label": label, "score": round(score, 6)} for label, score in ranked]


def zero_shot_legacy(text: str, ranked: list[dict[str, Any]]) -> dict[str, Any]:
    """The transformers-pipeline dict shape `{sequence, labels, scores}`."""
    return {"sequence": text, "labels": [r["label"] for r in ranked], "scores": [r["score"] for r in ranked]}


_WORD = re.compile(r"[A-Za-z][\w'-]*")


def entities(model: str, text: str) -> list[dict[str, Any]]:
    """Runs of capitalised words (two letters or more) not opening a sentence, as aggregated entities."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for match in _WORD.finditer(text):
        before = text[: match.start()].rstrip()
        sentence_start = not before or before[-1] in ".!?"
        if match.group()[0].isupper() and len(match.group()) > 1 and not sentence_start:
            if current is not None and text[current["end"]: match.start()].strip() == "":
                current["end"] = match.end()
                current["word"] = text[current["start"]: match.end()]
                continue
            current = {"start": match.start(), "end": match.end(), "word": match.group()}
            found.append(current)
        else:
            current = None
    result = []
    for ent in found:
        material = digest_stream(model, ent["word"], "ner")
        result.append({
            "entity_group": ENTITY_TYPES[material[0] % len(ENTITY_TYPES)],
            "score": round(0.9 + material[1] / 2560.0, 6),
            "word": ent["word"], "start": ent["start"], "end": ent["end"],
        })
    return result


def similarity(model: str, source: str, sentences: list[str]) -> list[float]:
    """Cosine similarities between the source and each sentence (unit vectors, dim 16)."""
    base = embedding(model, source, 16, normalize=True)
    return [round(sum(a * b for a, b in zip(base, embedding(model, s, 16, normalize=True), strict=True)), 6)
            for s in sentences]


def rerank(model: str, query: str, texts: list[str], *, return_text: bool) -> list[dict[str, Any]]:
    """TEI `/rerank`: `[{index, score, text?}]` sorted by score."""
    scored = []
    for index, text in enumerate(texts):
        material = digest_stream(model, query, text, "rerank")
        item: dict[str, Any] = {"index": index, "score": round(material[0] / 255.0, 6)}
        if return_text:
            item["text"] = text
        scored.append(item)
    return sorted(scored, key=lambda s: (-s["score"], s["index"]))
