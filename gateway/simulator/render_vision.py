"""Renderers for the image tasks: classification, zero-shot classification, object detection,
segmentation, captioning (image-to-text), image-to-image, visual and document question answering.

Shapes, as huggingface_hub 2.4.0 parses them (`inference/_generated/types/`):
    image-classification, zero-shot-image-classification   [{label, score}] sorted
    object-detection      [{score, label, box: {xmin, ymin, xmax, ymax}}], boxes inside the input image
    image-segmentation    [{score, label, mask}], `mask` a base64 one-channel PNG the input's size
    image-to-text         [{generated_text}]
    image-to-image        raw PNG bytes (image/png)
    visual-question-answering     [{score, answer}]
    document-question-answering   [{answer, score, start, end}] (word indices)

Inputs come raw or as base64 JSON (`media_inputs.py`); a file that is not an image is a 400.
Every value is a pure function of the model id, the file's SHA-256 and the parameters.
"""

from __future__ import annotations

import base64
from typing import Any

from gateway.simulator import outputs
from gateway.simulator.calls import SimCall
from gateway.simulator.media import image_size
from gateway.simulator.media_inputs import (
    MediaInput,
    decode_file,
    file_digest,
    invalid,
    media_input,
    require_kind,
)
from gateway.simulator.png import clamp_side, make_mask_png, make_png
from gateway.simulator.task_render import candidate_labels, int_param, labels
from gateway.simulator.textgen import digest_stream, generate
from gateway.simulator.wire import Body, Rendered, json_body

IMAGE_LABELS = ("tabby cat", "golden retriever", "tiger", "sports car", "daisy", "espresso")
DETECTION_LABELS = ("person", "car", "dog", "cat", "bicycle", "chair")
SEGMENT_LABELS = ("sky", "tree", "person", "road")
VQA_ANSWERS = ("yes", "no", "2", "1", "red", "blue", "cat", "dog", "outside", "table")
DEFAULT_SIDE = 8
_DETECTIONS = 3
_SEGMENTS = 3


def image_input(call: SimCall) -> MediaInput:
    """The request's image (raw or base64) and parameters; a non-image is rejected."""
    found = media_input(call)
    require_kind(call, found.data, "image")
    return found


def _float_param(call: SimCall, params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise invalid(call, f"`parameters.{name}` must be a number")
    return float(value)


def render_image_classification(call: SimCall) -> Rendered:
    """`[{label, score}]` over the labels, sorted, cut to `top_k` (default 5)."""
    found = image_input(call)
    top_k = int_param(call, found.params, "top_k") or 5
    return json_body(outputs.classification(call.model, file_digest(found.data), labels(call, IMAGE_LABELS), top_k))


def render_zero_shot_image(call: SimCall) -> Rendered:
    """`[{label, score}]` over `candidate_labels`, sorted, scores summing to 1."""
    found = image_input(call)
    candidates = candidate_labels(call, found.params)
    return json_body(outputs.zero_shot(call.model, file_digest(found.data), candidates, multi_label=False))


def render_object_detection(call: SimCall) -> Rendered:
    """Up to three boxes inside the image, scores in [0.5, 1), those under `threshold` dropped."""
    found = image_input(call)
    threshold = _float_param(call, found.params, "threshold", 0.5)
    width, height = image_size(found.data) or (DEFAULT_SIDE, DEFAULT_SIDE)
    names = labels(call, DETECTION_LABELS)
    material = digest_stream(call.model, file_digest(found.data), "detect")
    boxes = []
    for i in range(_DETECTIONS):
        a, b, c, d, e, f = material[6 * i: 6 * i + 6]
        xmin, ymin = a * width // 512, b * height // 512  # in the top-left quarter...
        xmax, ymax = xmin + 1 + c * (width - xmin - 1) // 255, ymin + 1 + d * (height - ymin - 1) // 255
        score = round(0.5 + e / 512, 6)  # ...so every box has a positive size within the image
        if score >= threshold:
            boxes.append({"score": score, "label": names[f % len(names)],
                          "box": {"xmin": xmin, "ymin": ymin, "xmax": min(xmax, width), "ymax": min(ymax, height)}})
    return json_body(sorted(boxes, key=lambda box: -box["score"]))


def render_image_segmentation(call: SimCall) -> Rendered:
    """Three bands covering the image, each with a base64 PNG mask; `score` is null for semantic."""
    found = image_input(call)
    threshold = _float_param(call, found.params, "threshold", 0.9)
    width, height = (clamp_side(side) for side in image_size(found.data) or (DEFAULT_SIDE, DEFAULT_SIDE))
    semantic = found.params.get("subtask") == "semantic" or "segformer" in call.model.lower()
    names = labels(call, SEGMENT_LABELS)
    material = digest_stream(call.model, file_digest(found.data), "segment")
    vertical = material[0] % 2 == 0
    span = width if vertical else height
    segments = []
    for i in range(_SEGMENTS):
        score = round(0.9 + material[i + 1] / 2560, 6)
        if score < threshold and not semantic:
            continue
        low, high = i * span // _SEGMENTS, (i + 1) * span // _SEGMENTS

        def inside(x: int, y: int, low: int = low, high: int = high) -> bool:
            return low <= (x if vertical else y) < high

        mask = base64.b64encode(make_mask_png(width, height, inside)).decode()
        segments.append({"score": None if semantic else score, "label": names[(material[4] + i) % len(names)],
                         "mask": mask})
    return json_body(segments)


def render_image_to_text(call: SimCall) -> Rendered:
    """A caption: `[{generated_text}]` of `max_new_tokens` words (default 6)."""
    found = image_input(call)
    count = int_param(call, found.params, "max_new_tokens") or 6
    text = generate(call.model, file_digest(found.data), min(count, call.state.config.max_tokens_cap)).text
    return json_body([{"generated_text": text.strip()}])


def render_image_to_image(call: SimCall) -> Rendered:
    """A PNG the size of `target_size`, else of the input (each side clamped to 64), coloured by the prompt."""
    found = image_input(call)
    target = found.params.get("target_size")
    if target is not None and not isinstance(target, dict):
        raise invalid(call, "`parameters.target_size` must be {width, height}")
    width, height = image_size(found.data) or (DEFAULT_SIDE, DEFAULT_SIDE)
    if target:
        width = int_param(call, target, "width") or width
        height = int_param(call, target, "height") or height
    prompt = found.params.get("prompt")
    prompt = prompt if isinstance(prompt, str) else ""
    seed = digest_stream(call.model, file_digest(found.data), prompt, "image-to-image")
    return Body(make_png(width, height, seed), "image/png")


def _question_and_image(call: SimCall) -> tuple[str, bytes, dict[str, Any]]:
    body = call.require_json()
    params = call.params()
    inputs = body.get("inputs")
    if isinstance(body.get("question"), str):  # InferenceClient: the question and image at the root
        question, image = body["question"], body.get("image", inputs)
    elif isinstance(inputs, dict) and isinstance(inputs.get("question"), str):
        question, image = inputs["question"], inputs.get("image")
    else:
        raise invalid(call, "a question is required: `inputs: {image, question}`")
    data = decode_file(call, image, "`image`")
    require_kind(call, data, "image")
    return question, data, params


def render_visual_question_answering(call: SimCall) -> Rendered:
    """`[{score, answer}]`, `top_k` answers (default 5) sorted by score."""
    question, data, params = _question_and_image(call)
    top_k = max(1, min(int_param(call, params, "top_k") or 5, len(VQA_ANSWERS)))
    ranked = outputs.classification(call.model, file_digest(data) + question, VQA_ANSWERS, top_k)
    return json_body([{"score": r["score"], "answer": r["label"]} for r in ranked])


def render_document_question_answering(call: SimCall) -> Rendered:
    """`[{answer, score, start, end}]`, `top_k` answers (default 1); start and end are word indices."""
    question, data, params = _question_and_image(call)
    top_k = max(1, min(int_param(call, params, "top_k") or 1, 10))
    seed_text = file_digest(data) + question
    material = digest_stream(call.model, seed_text, "document-qa")
    answers = []
    for i in range(top_k):
        word = material[2 * i] % 64
        answers.append({"answer": generate(call.model, seed_text, 1, seed=i).text.strip(),
                        "score": round(0.99 - 0.1 * i - material[2 * i + 1] / 25600, 6),
                        "start": word, "end": word})
    return json_body(answers)
