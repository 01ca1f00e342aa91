"""Deterministic outputs, task detection and the PNG encoder."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from gateway.simulator import outputs
from gateway.simulator.openai_objects import float32_base64
from gateway.simulator.png import make_png
from gateway.simulator.tasks import detect_task, task_from_body, task_from_name
from gateway.simulator.textgen import generate, word_count


def test_generation_is_deterministic_and_counts_words_as_tokens() -> None:
    a = generate("m", "The capital of France is", 7, seed=None)
    b = generate("m", "The capital of France is", 7, seed=None)
    assert a == b
    assert len(a.tokens) == 7 and word_count(a.text) == 7
    assert a.prompt_tokens == 5
    assert a.usage() == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert generate("m", "another prompt", 7).text != a.text
    assert generate("m", "The capital of France is", 7, seed=3).text != a.text


@pytest.mark.parametrize("normalize", [True, False])
def test_embeddings_are_deterministic_and_unit_length_when_normalized(normalize: bool) -> None:
    v = outputs.embedding("bge", "hello world", 32, normalize=normalize)
    assert v == outputs.embedding("bge", "hello world", 32, normalize=normalize)
    assert len(v) == 32 and all(-1.0 <= x <= 1.0 for x in v)
    norm = math.sqrt(sum(x * x for x in v))
    assert (abs(norm - 1.0) < 1e-9) is normalize


def test_classification_scores_sum_to_one_sorted_and_cut_by_top_k() -> None:
    result = outputs.classification("sst", "I love this!", ["POSITIVE", "NEGATIVE"])
    assert [r["label"] for r in result] in (["POSITIVE", "NEGATIVE"], ["NEGATIVE", "POSITIVE"])
    assert result[0]["score"] >= result[1]["score"]
    assert abs(sum(r["score"] for r in result) - 1.0) < 1e-5
    assert len(outputs.classification("sst", "x", outputs.EMOTION_LABELS, top_k=2)) == 2


def test_zero_shot_single_and_multi_label_and_legacy_shape() -> None:
    ranked = outputs.zero_shot("mnli", "my phone broke", ["urgent", "not urgent", "spam"], multi_label=False)
    assert sorted(r["label"] for r in ranked) == ["not urgent", "spam", "urgent"]
    assert abs(sum(r["score"] for r in ranked) - 1.0) < 1e-5
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    multi = outputs.zero_shot("mnli", "my phone broke", ["a", "b"], multi_label=True)
    assert all(0.0 < r["score"] < 1.0 for r in multi)
    legacy = outputs.zero_shot_legacy("my phone broke", ranked)
    assert legacy["sequence"] == "my phone broke" and legacy["labels"][0] == ranked[0]["label"]


def test_entities_are_capitalised_runs_with_offsets() -> None:
    text = "My name is Sarah Connor and I live in New York. Paris is nice."
    found = outputs.entities("ner", text)
    assert [e["word"] for e in found] == ["Sarah Connor", "New York"]
    for e in found:
        assert text[e["start"]: e["end"]] == e["word"]
        assert e["entity_group"] in outputs.ENTITY_TYPES


def test_rerank_sorts_by_score_and_keeps_indexes() -> None:
    ranked = outputs.rerank("r", "query", ["a", "b", "c"], return_text=True)
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert {r["text"] for r in ranked} == {"a", "b", "c"}


def test_png_opens_with_pil_and_is_deterministic() -> None:
    data = make_png(16, 9, b"\x10\x20\x30")
    assert data == make_png(16, 9, b"\x10\x20\x30")
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (16, 9) and image.mode == "RGB"
    assert Image.open(io.BytesIO(make_png(4096, 0, b"abc"))).size == (64, 1)


def test_float32_base64_is_little_endian() -> None:
    assert float32_base64([1.0]) == "AACAPw=="


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("BAAI/bge-small-en-v1.5", "feature-extraction"),
        ("intfloat/multilingual-e5-large", "feature-extraction"),
        ("sentence-transformers/all-MiniLM-L6-v2", "feature-extraction"),
        ("nomic-ai/nomic-embed-text-v1", "feature-extraction"),
        ("distilbert/distilbert-base-uncased-finetuned-sst-2-english", "text-classification"),
        ("j-hartmann/emotion-english-distilroberta-base", "text-classification"),
        ("facebook/bart-large-mnli", "zero-shot-classification"),
        ("dslim/bert-base-NER", "token-classification"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "text-to-image"),
        ("black-forest-labs/FLUX.1-dev", "text-to-image"),
        ("meta-llama/Llama-3.1-8B-Instruct", "text-generation"),
        ("Qwen/Qwen2.5-Assistant", "text-generation"),  # "sst" inside a word is not a keyword
        ("openai-community/gpt2", "text-generation"),
    ],
)
def test_task_from_model_name(model: str, task: str) -> None:
    assert task_from_name(model) == task


@pytest.mark.parametrize(
    ("body", "accept", "task"),
    [
        ({"inputs": "x"}, "image/png", "text-to-image"),
        ({"inputs": "x", "parameters": {"candidate_labels": ["a"]}}, "*/*", "zero-shot-classification"),
        ({"inputs": "x", "parameters": {"aggregation_strategy": "simple"}}, "*/*", "token-classification"),
        ({"inputs": "x", "normalize": True}, "*/*", "feature-extraction"),
        ({"inputs": ["a"], "truncate": True}, "*/*", "feature-extraction"),
        ({"inputs": "x", "stream": False}, "*/*", "text-generation"),
        ({"inputs": {"source_sentence": "a", "sentences": ["b"]}}, "*/*", "sentence-similarity"),
        ({"inputs": "x", "parameters": {"truncate": 10}}, "*/*", None),
    ],
)
def test_task_from_body(body: dict[str, object], accept: str, task: str | None) -> None:
    assert task_from_body(body, accept) == task


def test_detection_order_path_then_config_then_body_then_name() -> None:
    body = {"inputs": "x", "normalize": True}
    assert detect_task("text-classification", "text-to-image", body, "*/*", "gpt2") == "text-classification"
    assert detect_task(None, "text-to-image", body, "*/*", "gpt2") == "text-to-image"
    assert detect_task(None, None, body, "*/*", "gpt2") == "feature-extraction"
    assert detect_task(None, None, {"inputs": "x"}, "*/*", "bge-small") == "feature-extraction"
    assert detect_task("speech-to-dance", None, body, "*/*", "gpt2") is None
    assert detect_task("zero-shot", None, body, "*/*", "gpt2") == "zero-shot-classification"
