"""Every `huggingface_hub.InferenceClient` task method (2.4.0) as a case: method, model, small generated inputs,
the task the simulator must detect, and a check of the typed result.

Inputs are made here (a Pillow PNG, a stdlib WAV); `comparable` turns a typed result into plain data
so that two answers (directly from the simulator, and through the gateway) can be compared.
Used by tests/integration/test_simulator_client_tasks.py (the simulator alone) and
tests/e2e/test_every_client_task.py (through the gateway).
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from huggingface_hub import (
    AudioClassificationOutputElement,
    AutomaticSpeechRecognitionOutput,
    DocumentQuestionAnsweringOutputElement,
    FillMaskOutputElement,
    ImageClassificationOutputElement,
    ImageSegmentationOutputElement,
    ImageToTextOutput,
    ObjectDetectionOutputElement,
    QuestionAnsweringOutputElement,
    SummarizationOutput,
    TableQuestionAnsweringOutputElement,
    TranslationOutput,
    VisualQuestionAnsweringOutputElement,
    ZeroShotImageClassificationOutputElement,
)
from PIL import Image

from gateway.simulator.render_audio import AUDIO_LABELS
from gateway.simulator.render_vision import IMAGE_LABELS, VQA_ANSWERS
from tests.support.live_simulator import png_bytes, wav_bytes

PNG = png_bytes(20, 12)
WAV = wav_bytes(0.8)  # 0.8 s: two words of transcript at the simulator's 2.5 words a second
CONTEXT = "My name is Clara and I live in Berkeley."
SUMMARY_INPUT = "The tower is 324 metres tall, about as tall as an 81-storey building, and the tallest in Paris."
TABLE = {"Repository": ["Transformers", "Datasets", "Tokenizers"], "Stars": ["36542", "4512", "3934"]}


def _sorted_scores(items: list[Any]) -> None:
    scores = [i.score for i in items]
    assert scores == sorted(scores, reverse=True)


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data), "rb") as clip:
        return clip.getnframes() / clip.getframerate()


def check_audio_classes(out: list[Any]) -> None:
    assert len(out) == 5 and all(isinstance(o, AudioClassificationOutputElement) for o in out)
    assert {o.label for o in out} <= set(AUDIO_LABELS) and sum(o.score for o in out) == pytest.approx(1, abs=1e-4)
    _sorted_scores(out)


def check_two_audio_classes(out: list[Any]) -> None:
    assert len(out) == 2 and {o.label for o in out} <= set(AUDIO_LABELS)
    _sorted_scores(out)


def check_transcript(out: Any) -> None:
    assert isinstance(out, AutomaticSpeechRecognitionOutput) and len(out.text.split()) == 2 and out.chunks is None


def check_timestamps(out: Any) -> None:
    assert [c.timestamp for c in out.chunks] == [[0.0, 0.4], [0.4, 0.8]]
    assert " ".join(c.text for c in out.chunks) == out.text


def check_audio_to_audio(out: list[Any]) -> None:
    assert len(out) == 1 and out[0].content_type == "audio/wav" and out[0].label == "label_0"
    assert _wav_seconds(out[0].blob) == pytest.approx(0.8)  # the client decoded the base64 blob


def check_document_qa(out: list[Any]) -> None:
    assert len(out) == 1 and isinstance(out[0], DocumentQuestionAnsweringOutputElement)
    assert out[0].answer and out[0].start == out[0].end and 0 < out[0].score < 1


def check_fill_mask(out: list[Any]) -> None:
    assert len(out) == 5 and all(isinstance(o, FillMaskOutputElement) for o in out)
    assert all(o.sequence == f"The goal of life is {o.token_str}." for o in out)
    assert len({o.token_str for o in out}) == 5
    _sorted_scores(out)


def check_image_classes(out: list[Any]) -> None:
    assert len(out) == 5 and all(isinstance(o, ImageClassificationOutputElement) for o in out)
    assert {o.label for o in out} <= set(IMAGE_LABELS)
    _sorted_scores(out)


def check_segments(out: list[Any], *, semantic: bool) -> None:
    assert len(out) == 3 and all(isinstance(o, ImageSegmentationOutputElement) for o in out)
    masks = [np.array(o.mask) for o in out]  # the client turned the base64 PNGs into PIL images
    assert all(o.mask.mode == "L" and o.mask.size == (20, 12) for o in out)
    coverage = np.sum([m // 255 for m in masks], axis=0)
    assert (coverage == 1).all()  # the bands cover every pixel exactly once
    assert all((o.score is None) is semantic for o in out)


def check_boxes(out: list[Any]) -> None:
    assert out and all(isinstance(o, ObjectDetectionOutputElement) for o in out)
    for o in out:
        assert 0 <= o.box.xmin < o.box.xmax <= 20 and 0 <= o.box.ymin < o.box.ymax <= 12 and o.score >= 0.5


def check_answer(out: Any) -> None:
    assert isinstance(out, QuestionAnsweringOutputElement) and CONTEXT[out.start:out.end] == out.answer


def check_answers(out: Any) -> None:
    assert isinstance(out, list) and len(out) == 2 and all(CONTEXT[o.start:o.end] == o.answer for o in out)


def check_table_answer(out: Any) -> None:
    assert isinstance(out, TableQuestionAnsweringOutputElement)
    assert (out.answer, out.coordinates, out.cells) == ("36542", [[0, 1]], ["36542"])


def check_vqa(out: list[Any]) -> None:
    assert len(out) == 5 and all(isinstance(o, VisualQuestionAnsweringOutputElement) for o in out)
    assert {o.answer for o in out} <= set(VQA_ANSWERS)
    _sorted_scores(out)


def check_zero_shot_image(out: list[Any]) -> None:
    assert all(isinstance(o, ZeroShotImageClassificationOutputElement) for o in out)
    assert {o.label for o in out} == {"cat", "dog"} and sum(o.score for o in out) == pytest.approx(1, abs=1e-4)


def check_speech(out: Any) -> None:
    assert isinstance(out, bytes) and _wav_seconds(out) == pytest.approx(0.6)  # 2 words, 0.3 s each


def holds(predicate: Callable[[Any], bool]) -> Callable[[Any], None]:
    """A check made of a predicate; a failure shows the result."""
    def check(out: Any) -> None:
        assert predicate(out), repr(out)
    return check


def comparable(value: Any) -> Any:
    """A typed result as plain data (PIL images by their pixels), so two answers can be compared."""
    if isinstance(value, Image.Image):
        return (value.mode, value.size, value.tobytes())
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):  # the client's output dataclasses are dicts too
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


@dataclass(frozen=True)
class Case:
    """One client call: the method, the model id, the arguments, the task the simulator must detect."""

    method: str
    model: str
    args: tuple[Any, ...]
    task: str
    check: Callable[[Any], None]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method}-{self.model}"


CASES = [
    Case(
        "audio_classification",
        "MIT/ast-finetuned-audioset-10-10-0.4593",
        (WAV,),
        "audio-classification",
        check_audio_classes,
    ),
    Case(
        "audio_classification",
        "superb/hubert-large-superb-er",
        (WAV,),
        "audio-classification",
        check_two_audio_classes,
        {"top_k": 2},
    ),
    Case(
        "automatic_speech_recognition",
        "openai/whisper-large-v3",
        (WAV,),
        "automatic-speech-recognition",
        check_transcript,
    ),
    Case(
        "automatic_speech_recognition",
        "facebook/wav2vec2-base-960h",
        (WAV,),
        "automatic-speech-recognition",
        check_timestamps,
        {"extra_body": {"return_timestamps": True}},
    ),
    Case("audio_to_audio", "speechbrain/sepformer-wham", (WAV,), "audio-to-audio", check_audio_to_audio),
    Case(
        "document_question_answering",
        "impira/layoutlm-document-qa",
        (PNG, "What is the invoice number?"),
        "document-question-answering",
        check_document_qa,
    ),
    Case(
        "feature_extraction",
        "BAAI/bge-small-en-v1.5",
        ("hello",),
        "feature-extraction",
        holds(lambda out: out.shape == (1, 8)),
    ),
    Case("fill_mask", "google-bert/bert-base-uncased", ("The goal of life is [MASK].",), "fill-mask", check_fill_mask),
    Case("fill_mask", "FacebookAI/roberta-base", ("The goal of life is <mask>.",), "fill-mask", check_fill_mask),
    Case("image_classification", "google/vit-base-patch16-224", (PNG,), "image-classification", check_image_classes),
    Case(
        "image_segmentation",
        "nvidia/segformer-b0-finetuned-ade-512-512",
        (PNG,),
        "image-segmentation",
        lambda out: check_segments(out, semantic=True),
    ),
    Case(
        "image_segmentation",
        "facebook/mask2former-swin-large-coco-panoptic",
        (PNG,),
        "image-segmentation",
        lambda out: check_segments(out, semantic=False),
        {"threshold": 0.5},
    ),
    Case(
        "image_to_image",
        "timbrooks/instruct-pix2pix",
        (PNG,),
        "image-to-image",
        holds(lambda out: isinstance(out, Image.Image) and out.size == (20, 12)),
        {"prompt": "make it blue"},
    ),
    Case(
        "image_to_text",
        "Salesforce/blip-image-captioning-large",
        (PNG,),
        "image-to-text",
        holds(lambda out: isinstance(out, ImageToTextOutput) and len(out.generated_text.split()) == 6),
    ),
    Case("object_detection", "facebook/detr-resnet-50", (PNG,), "object-detection", check_boxes),
    Case(
        "question_answering",
        "deepset/roberta-base-squad2",
        ("What's my name?", CONTEXT),
        "question-answering",
        check_answer,
    ),
    Case(
        "question_answering",
        "distilbert/distilbert-base-cased-distilled-squad",
        ("Where?", CONTEXT),
        "question-answering",
        check_answers,
        {"top_k": 2},
    ),
    Case(
        "sentence_similarity",
        "sentence-transformers/all-MiniLM-L6-v2",
        ("a cat", ["a dog", "a car"]),
        "sentence-similarity",
        holds(lambda out: len(out) == 2 and all(isinstance(x, float) for x in out)),
    ),
    Case(
        "summarization",
        "facebook/bart-large-cnn",
        (SUMMARY_INPUT,),  # 18 words: a 6-word summary
        "summarization",
        holds(lambda out: isinstance(out, SummarizationOutput) and len(out.summary_text.split()) == 6),
    ),
    Case(
        "table_question_answering",
        "google/tapas-base-finetuned-wtq",
        (TABLE, "How many stars does the transformers repository have?"),
        "table-question-answering",
        check_table_answer,
    ),
    Case(
        "tabular_classification",
        "julien-c/wine-quality",
        ({"acidity": ["7.4", "7.8"], "ph": ["3.5", "3.2"]},),
        "tabular-classification",
        holds(lambda out: len(out) == 2 and set(out) <= {"0", "1"}),
    ),
    Case(
        "text_classification",
        "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        ("I like you",),
        "text-classification",
        holds(lambda out: {o.label for o in out} == {"POSITIVE", "NEGATIVE"}),
    ),
    Case(
        "text_generation",
        "openai-community/gpt2",
        ("Once upon a time",),
        "text-generation",
        holds(lambda out: len(out.split()) == 5),
    ),
    Case(
        "text_to_image",
        "black-forest-labs/FLUX.1-dev",
        ("an astronaut",),
        "text-to-image",
        holds(lambda out: out.size == (24, 16)),
        {"width": 24, "height": 16},
    ),
    Case("text_to_speech", "facebook/mms-tts-eng", ("Hello world",), "text-to-speech", check_speech),
    Case("text_to_speech", "suno/bark-small", ("Hello world",), "text-to-speech", check_speech),
    Case(
        "token_classification",
        "dslim/bert-base-NER",
        ("My name is Sarah and I live in London",),
        "token-classification",
        holds(lambda out: [e.word for e in out] == ["Sarah", "London"]),
    ),
    Case(
        "translation",
        "Helsinki-NLP/opus-mt-en-fr",
        ("My name is Wolfgang",),
        "translation",
        holds(lambda out: isinstance(out, TranslationOutput) and len(out.translation_text.split()) == 4),
    ),
    Case(
        "translation",
        "acme/any-seq2seq",
        ("My name is Wolfgang",),
        "translation",  # found by src/tgt_lang
        holds(lambda out: len(out.translation_text.split()) == 4),
        {"src_lang": "en_XX", "tgt_lang": "fr_XX"},
    ),
    Case(
        "visual_question_answering",
        "dandelin/vilt-b32-finetuned-vqa",
        (PNG, "What colour is it?"),
        "visual-question-answering",
        check_vqa,
    ),
    Case(
        "zero_shot_classification",
        "facebook/bart-large-mnli",
        ("I lost my keys",),
        "zero-shot-classification",
        holds(lambda out: {o.label for o in out} == {"urgent", "calm"}),
        {"candidate_labels": ["urgent", "calm"]},
    ),
    Case(
        "zero_shot_image_classification",
        "openai/clip-vit-large-patch14",
        (PNG,),
        "zero-shot-image-classification",
        check_zero_shot_image,
        {"candidate_labels": ["cat", "dog"]},
    ),
]

# The methods also run through `AsyncInferenceClient`: a file upload, a text task, audio and image answers.
ASYNC_METHODS = frozenset({
    "automatic_speech_recognition", "image_classification", "fill_mask", "text_to_speech", "image_segmentation",
    "visual_question_answering",
})  # fmt: skip
