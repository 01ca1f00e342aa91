"""Task detection from bodies and the answer adapters.

See docs/protocol.md, 'InferenceClient: task detection' and 'InferenceClient: answer shapes'.
"""

from __future__ import annotations

import base64
import struct

import pytest

from gateway.core import tasks
from gateway.core.errors import ModelLoading
from gateway.upstream.status_errors import parse_retry_after, status_error


@pytest.mark.parametrize(
    "body, accept, task",
    [
        ({"inputs": "x", "parameters": {"candidate_labels": ["a"]}}, None, tasks.ZERO_SHOT),
        ({"inputs": "x", "normalize": True}, None, tasks.FEATURE_EXTRACTION),
        ({"inputs": "x", "parameters": {}, "stream": True}, None, tasks.TEXT_GENERATION),
        ({"inputs": "x", "parameters": {"max_new_tokens": 5}}, None, tasks.TEXT_GENERATION),
        ({"inputs": "x", "parameters": {"aggregation_strategy": "simple"}}, None, tasks.TOKEN_CLASSIFICATION),
        ({"inputs": "x", "parameters": {"height": 64}}, "image/png", tasks.TEXT_TO_IMAGE),
        ({"inputs": "x", "parameters": {}}, "*/*", None),
    ],
)
def test_detect_task(body: dict, accept: str | None, task: str | None) -> None:
    assert tasks.detect_task(body, accept) == task


def test_classification_nesting_and_zero_shot_conversion() -> None:
    flat = [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]
    assert tasks.nest_classification(flat) == [flat]
    assert tasks.nest_classification([flat]) == [flat]
    legacy = {"sequence": "s", "labels": ["a", "b"], "scores": [0.7, 0.3]}
    assert tasks.zero_shot_list(legacy) == [{"label": "a", "score": 0.7}, {"label": "b", "score": 0.3}]


def test_embeddings_to_openai_base64_is_little_endian_float32() -> None:
    out = tasks.embeddings_to_openai("m", "base64")([[0.5, -1.0]])
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)
    assert tasks.embeddings_to_openai("m", None)([0.5])["data"][0]["embedding"] == [0.5]


@pytest.mark.parametrize("body, det", [
    ({"temperature": 0}, True), ({"temperature": 0.7}, False), ({"seed": 3, "temperature": 0.7}, True),
    ({"parameters": {"do_sample": False}}, True), ({}, False),
])
def test_determinism_of_generation(body: dict, det: bool) -> None:
    assert tasks.is_deterministic("chat" if "parameters" not in body else tasks.TEXT_GENERATION, body) is det


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}, 0) == 3.0
    assert parse_retry_after({"retry-after-ms": "300", "retry-after": "9"}, 0) == 0.3
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4.0) == 6.0
    assert parse_retry_after({}, 0) is None


def test_loading_bodies_list_and_dict() -> None:
    for body in (b'{"error":"Model x is currently loading","estimated_time":20.0}',
                 b'[{"error":"Model x is currently loading","estimated_time":20.0}]'):
        err = status_error(503, {}, body, now=0, upstream="hf", retry_after_cap=120)
        assert isinstance(err, ModelLoading) and err.estimated_time == 20.0
    err = status_error(429, {"retry-after": "5"}, b'{"error":{"message":"slow down"}}', now=0, upstream="hf",
                       retry_after_cap=120)
    assert err.status == 429 and err.retry_after == 5 and err.message == "slow down"
    html = status_error(502, {}, b"<html>bad gateway</html>", now=0, upstream="hf", retry_after_cap=120)
    assert "hf" in html.message and "<html>" not in html.message


@pytest.mark.parametrize("body, plain", [
    ({"inputs": "a"}, True), ({"inputs": ["a", "b"], "normalize": True}, True),
    ({"inputs": "a", "parameters": {}}, False),  # every other text task sends `parameters`, even empty
    ({"inputs": {"source_sentence": "a", "sentences": ["b"]}}, False), ({"inputs": []}, False),
    ({"inputs": [1, 2]}, False), (None, False),
])
def test_plain_text_inputs_is_how_feature_extraction_is_written(body: dict[str, object] | None, plain: bool) -> None:
    assert tasks.plain_text_inputs(body) is plain


def test_embeddings_to_openai_reports_the_given_prompt_tokens() -> None:
    out = tasks.embeddings_to_openai("m", None, 7)([[0.5, 0.5]])
    assert out["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(80)).decode()
WAV_B64 = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(80)).decode()
AGENT = "unknown/None; hf_hub/2.4.0; python/3.11.7"


@pytest.mark.parametrize(
    "body, accept, agent, task",
    [
        (None, "image/png", None, tasks.IMAGE_TO_IMAGE),  # a raw file with Accept: image/png
        ({"inputs": PNG_B64, "parameters": {"prompt": "p"}}, "image/png", None, tasks.IMAGE_TO_IMAGE),
        ({"inputs": PNG_B64, "parameters": {"candidate_labels": ["a"]}}, None, None, tasks.ZERO_SHOT_IMAGE),
        # a file's `function_to_apply` / `top_k` is audio or image classification, never text classification
        ({"inputs": WAV_B64, "parameters": {"function_to_apply": "softmax"}}, None, None, None),
        ({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {}}, None, None,
         tasks.SENTENCE_SIMILARITY),
        ({"inputs": "hi", "parameters": {"temperature": 0.5, "num_beams": 2}}, None, None, tasks.TEXT_TO_SPEECH),
        ({"inputs": "hi"}, None, AGENT, tasks.FEATURE_EXTRACTION),  # only feature_extraction omits `parameters`
        ({"inputs": ["a", "b"]}, None, "unknown/None; hf_hub/1.0.0", tasks.FEATURE_EXTRACTION),
        ({"inputs": "hi"}, None, "curl/8.5.0", None),  # a legacy caller: the model's own pipeline decides
        ({"inputs": "hi"}, None, "unknown/None; hf_hub/0.26.5", None),
        ({"inputs": "hi", "parameters": {}}, None, AGENT, None),
    ],
)
def test_detect_task_from_files_structures_and_the_client(
    body: dict | None, accept: str | None, agent: str | None, task: str | None
) -> None:
    assert tasks.detect_task(body, accept, agent) == task


@pytest.mark.parametrize(
    "inputs, media",
    [
        (PNG_B64, True),
        (WAV_B64, True),
        (base64.b64encode(b"fLaC" + bytes(60)).decode(), True),
        (base64.b64encode(b"\x00\x00\x00\x20ftypM4A " + bytes(60)).decode(), True),
        (base64.b64encode(b"just some text, encoded " * 4).decode(), False),
        ("I really like this new phone, the battery lasts for days and the screen is great.", False),
        (PNG_B64[:40], False),  # too short to be a file
        (["a"], False),
    ],
)
def test_is_media_tells_a_base64_file_from_text(inputs: object, media: bool) -> None:
    assert tasks.is_media(inputs) is media


def test_generated_media_is_deterministic_only_when_seeded() -> None:
    for task in (tasks.TEXT_TO_SPEECH, tasks.IMAGE_TO_IMAGE, tasks.TEXT_TO_AUDIO):
        assert not tasks.is_deterministic(task, {"inputs": "x", "parameters": {}})
        assert tasks.is_deterministic(task, {"inputs": "x", "parameters": {"seed": 3}})
