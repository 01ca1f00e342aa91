"""Task detection for requests that never name their task: path, config, body cues, name keywords
per input kind, the mask-token cue and the defaults. Bodies are shaped as huggingface_hub 2.4.0's
InferenceClient sends them on the hf-inference provider."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.simulator.config import TASKS
from gateway.simulator.renderers import RENDERERS
from gateway.simulator.tasks import (
    detect_task,
    pipeline_tag,
    task_from_body,
    task_from_name,
)
from tests.support.live_simulator import b64, png_bytes, wav_bytes

PNG, WAV = png_bytes(), wav_bytes(0.1)


def detect(
    model: str, body: Any = None, *, raw: bytes = b"", accept: str = "*/*", content_type: str = ""
) -> str | None:
    return detect_task(None, None, body, accept, model, raw=raw, content_type=content_type)


def test_every_task_has_a_renderer() -> None:
    assert set(RENDERERS) | {"text-classification"} == TASKS


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("google-bert/bert-base-uncased", "fill-mask"),
        ("FacebookAI/roberta-base", "fill-mask"),
        ("FacebookAI/xlm-roberta-large", "fill-mask"),
        ("deepset/roberta-base-squad2", "question-answering"),  # squad before roberta-base
        ("distilbert/distilbert-base-cased-distilled-squad", "question-answering"),
        ("cardiffnlp/twitter-roberta-base-sentiment-latest", "text-classification"),  # sentiment before roberta-base
        ("google/tapas-base-finetuned-wtq", "table-question-answering"),
        ("facebook/bart-large-cnn", "summarization"),
        ("facebook/bart-large-mnli", "zero-shot-classification"),
        ("google/pegasus-xsum", "summarization"),
        ("google-t5/t5-small", "summarization"),
        ("Helsinki-NLP/opus-mt-en-fr", "translation"),
        ("facebook/nllb-200-distilled-600M", "translation"),
        ("facebook/mms-tts-eng", "text-to-speech"),
        ("suno/bark-small", "text-to-speech"),
        ("microsoft/speecht5_tts", "text-to-speech"),
        ("espnet/kan-bayashi_ljspeech_vits", "text-to-speech"),
        ("facebook/musicgen-small", "text-to-audio"),
        ("scikit-learn/fish-regressor", "tabular-regression"),
        ("julien-c/wine-quality", "tabular-classification"),
        ("openai-community/gpt2", "text-generation"),
        ("Qwen/Qwen2.5-Assistant", "text-generation"),
    ],
)
def test_text_keywords(model: str, task: str) -> None:
    assert task_from_name(model) == task


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("google/vit-base-patch16-224", "image-classification"),
        ("microsoft/resnet-50", "image-classification"),
        ("facebook/detr-resnet-50", "object-detection"),  # detr before resnet
        ("hustvl/yolos-tiny", "object-detection"),
        ("facebook/detr-resnet-50-panoptic", "image-segmentation"),  # panoptic before detr
        ("nvidia/segformer-b0-finetuned-ade-512-512", "image-segmentation"),
        ("facebook/mask2former-swin-large-coco-panoptic", "image-segmentation"),
        ("Salesforce/blip-image-captioning-large", "image-to-text"),
        ("nlpconnect/vit-gpt2-image-captioning", "image-to-text"),  # before vit
        ("Salesforce/blip-vqa-base", "visual-question-answering"),  # vqa before blip
        ("impira/layoutlm-document-qa", "document-question-answering"),
        ("timbrooks/instruct-pix2pix", "image-to-image"),
        ("openai/clip-vit-large-patch14", "zero-shot-image-classification"),  # clip before vit
        ("acme/anything", "image-classification"),
    ],
)
def test_image_keywords(model: str, task: str) -> None:
    assert task_from_name(model, "image") == task


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("openai/whisper-large-v3", "automatic-speech-recognition"),
        ("facebook/wav2vec2-base-960h", "automatic-speech-recognition"),
        ("MIT/ast-finetuned-audioset-10-10-0.4593", "audio-classification"),
        ("superb/hubert-large-superb-er", "audio-classification"),  # superb-er before hubert
        ("speechbrain/sepformer-wham", "audio-to-audio"),
        ("acme/anything", "automatic-speech-recognition"),
    ],
)
def test_audio_keywords(model: str, task: str) -> None:
    assert task_from_name(model, "audio") == task


@pytest.mark.parametrize(
    ("model", "body", "task"),
    [
        ("acme/m", {"inputs": {"question": "q", "context": "c"}, "parameters": {}}, "question-answering"),
        ("acme/m", {"inputs": {"query": "q", "table": {"a": ["1"]}}, "parameters": {}}, "table-question-answering"),
        ("acme/m", {"inputs": {"question": "q", "image": b64(PNG)}, "parameters": {}}, "document-question-answering"),
        ("acme/vilt-vqa", {"inputs": {"question": "q", "image": b64(PNG)}}, "visual-question-answering"),
        (
            "acme/m",
            {"inputs": b64(PNG), "parameters": {}, "question": "q", "image": b64(PNG)},
            "visual-question-answering",
        ),
        ("acme/m", {"parameters": {}, "table": {"a": ["1"]}}, "tabular-classification"),
        ("acme/house-regressor", {"parameters": {}, "table": {"a": ["1"]}}, "tabular-regression"),
        ("acme/m", {"inputs": {"data": {"a": ["1"]}}}, "tabular-classification"),
        ("acme/m", {"inputs": "x", "parameters": {"src_lang": "en", "tgt_lang": "fr"}}, "translation"),
        ("acme/m", {"inputs": "x", "parameters": {"targets": ["a"]}}, "fill-mask"),
        (
            "acme/m",
            {"inputs": b64(PNG), "parameters": {"candidate_labels": ["a", "b"]}},
            "zero-shot-image-classification",
        ),
        ("acme/m", {"inputs": "a text", "parameters": {"candidate_labels": ["a", "b"]}}, "zero-shot-classification"),
        ("acme/m", {"inputs": b64(PNG), "parameters": {"prompt": "p"}}, "image-to-image"),
        ("acme/m", {"inputs": b64(WAV), "parameters": {"return_timestamps": True}}, "automatic-speech-recognition"),
        ("acme/m", {"inputs": "The goal of life is [MASK]."}, "fill-mask"),
        ("acme/m", {"inputs": "The goal of life is <mask>."}, "fill-mask"),
        ("acme/m", {"inputs": "A plain prompt"}, "text-generation"),
    ],
)
def test_json_bodies(model: str, body: dict[str, Any], task: str) -> None:
    assert detect(model, body) == task


def test_raw_files_by_their_kind_then_the_name() -> None:
    assert detect("acme/m", raw=PNG) == "image-classification"
    assert detect("acme/m", raw=WAV) == "automatic-speech-recognition"
    assert detect("facebook/detr-resnet-50", raw=PNG) == "object-detection"
    assert detect("MIT/ast-finetuned-audioset", raw=WAV) == "audio-classification"
    assert detect("timbrooks/instruct-pix2pix", raw=PNG, accept="image/png") == "image-to-image"
    assert detect("acme/m", raw=PNG, accept="image/png") == "image-to-image"  # Accept alone, with an image
    assert detect("acme/m", {"inputs": "a prompt"}, accept="image/png") == "text-to-image"


def test_a_file_sent_to_a_model_of_another_kind_goes_to_that_model() -> None:
    # The model's own loader rejects it then, as the real one would.
    assert detect("openai/whisper-tiny", raw=PNG) == "automatic-speech-recognition"
    assert detect("google/vit-base-patch16-224", raw=WAV) == "image-classification"
    assert detect("facebook/bart-large-cnn", raw=PNG) == "summarization"


def test_unrecognised_bytes_read_every_table_and_fall_back_on_content_type() -> None:
    assert detect("google/vit-base-patch16-224", raw=b"\x00\x01garbage") == "image-classification"
    assert detect("openai/whisper-tiny", raw=b"\x00\x01garbage") == "automatic-speech-recognition"
    assert detect("acme/m", raw=b"\x00\x01garbage") == "text-generation"
    assert detect("acme/m", raw=b"\x00\x01garbage", content_type="audio/x-raw") == "automatic-speech-recognition"


def test_path_and_config_win_over_the_body_and_the_name() -> None:
    assert detect_task("image-segmentation", None, None, "*/*", "openai/whisper-tiny", raw=WAV) == "image-segmentation"
    assert detect_task(None, "object-detection", None, "*/*", "google/vit-base", raw=PNG) == "object-detection"
    assert detect_task("asr", None, None, "*/*", "acme/m") == "automatic-speech-recognition"
    assert detect_task("text-to-video", None, None, "*/*", "acme/m") is None  # not served


def test_body_cues_alone() -> None:
    assert task_from_body({"inputs": "x"}, "*/*") is None
    assert task_from_body(None, "*/*", raw=PNG) is None  # a file with no cue: the name decides
    assert task_from_body(None, "image/png", raw=PNG) == "image-to-image"
    assert (
        task_from_body({"inputs": b64(PNG), "parameters": {"candidate_labels": "a,b"}}, "*/*")
        == "zero-shot-image-classification"
    )


def test_info_reads_every_table() -> None:
    assert pipeline_tag("openai/whisper-tiny") == "automatic-speech-recognition"
    assert pipeline_tag("facebook/detr-resnet-50") == "object-detection"
    assert pipeline_tag("facebook/bart-large-cnn") == "summarization"
    assert pipeline_tag("openai-community/gpt2") == "text-generation"
