"""Which renderer answers which HF task: the one table every HF-style route dispatches through.

Router and legacy routes (`hf_routes.py`) and a native endpoint's `POST /` (`native_routes.py`)
both come here once the task is known (`tasks.detect_task`). The table has a renderer for every
task in `config.TASKS`, and `test_every_task_has_a_renderer` holds it to that.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.simulator import render_audio, render_text, render_vision, task_render
from gateway.simulator.calls import SimCall
from gateway.simulator.wire import Rendered

Renderer = Callable[[SimCall], Rendered]

RENDERERS: dict[str, Renderer] = {
    "text-generation": task_render.render_text_generation,
    "feature-extraction": task_render.render_embed,
    "sentence-similarity": task_render.render_similarity,
    "zero-shot-classification": task_render.render_zero_shot,
    "token-classification": task_render.render_tokens,
    "text-to-image": task_render.render_image,
    "fill-mask": render_text.render_fill_mask,
    "summarization": render_text.render_summarization,
    "translation": render_text.render_translation,
    "question-answering": render_text.render_question_answering,
    "table-question-answering": render_text.render_table_question_answering,
    "tabular-classification": render_text.render_tabular_classification,
    "tabular-regression": render_text.render_tabular_regression,
    "text-to-speech": render_audio.render_speech,
    "text-to-audio": render_audio.render_speech,
    "automatic-speech-recognition": render_audio.render_speech_recognition,
    "audio-classification": render_audio.render_audio_classification,
    "audio-to-audio": render_audio.render_audio_to_audio,
    "image-classification": render_vision.render_image_classification,
    "zero-shot-image-classification": render_vision.render_zero_shot_image,
    "object-detection": render_vision.render_object_detection,
    "image-segmentation": render_vision.render_image_segmentation,
    "image-to-text": render_vision.render_image_to_text,
    "image-to-image": render_vision.render_image_to_image,
    "visual-question-answering": render_vision.render_visual_question_answering,
    "document-question-answering": render_vision.render_document_question_answering,
}


def task_renderer(task: str, *, native: bool) -> Renderer:
    """The renderer of an HF task; `native` selects a TEI-style flat single classification."""
    if task == "text-classification":
        return lambda call: task_render.classify(call, flat_single=native)
    return RENDERERS[task]
