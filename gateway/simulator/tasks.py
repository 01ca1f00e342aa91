"""Which task a `POST <model URL>` asks for, since the client never says (docs/simulator.md,
"Task detection").

Order of evidence, first match wins:
1. the path: `/pipeline/{task}` (router or legacy);
2. the config: `models[<id>].task`;
3. the body (`task_from_body`): what the JSON carries and, for binary tasks, whether the input is an
   image or audio file (the raw body, or base64 `inputs`, sniffed by `media.py`);
4. the model id (`task_names.py`), with one keyword table per input kind: a JSON text body reads
   the text table; an image or audio file reads its own kind's table, then the others; a body that
   is neither JSON nor a recognised file, or is empty, reads them all (so the model's own loader
   rejects it);
5. a weak body cue: a text input holding a `[MASK]` or `<mask>` token -> fill-mask;
6. the default of the input kind: text-generation (text, or unrecognised bytes),
   image-classification or automatic-speech-recognition.

The body shapes are those huggingface_hub 2.4.0's `InferenceClient` sends on the hf-inference
provider; they are listed, with the cue each one gives, in docs/simulator.md.
"""

from __future__ import annotations

from typing import Any

from gateway.simulator.config import TASKS
from gateway.simulator.media import Kind, declared_kind, sniff, sniff_base64
from gateway.simulator.task_names import default_task, name_match

_ALIASES = {
    "zero-shot": "zero-shot-classification",
    "ner": "token-classification",
    "sentiment-analysis": "text-classification",
    "embeddings": "feature-extraction",
    "sentence-embeddings": "feature-extraction",
    "asr": "automatic-speech-recognition",
    "speech-recognition": "automatic-speech-recognition",
    "vqa": "visual-question-answering",
}
_EMBEDDING_KEYS = ("normalize", "truncate", "prompt_name", "dimensions", "truncation_direction")
_MASK_TOKENS = ("[MASK]", "<mask>")


def normalize_task(task: str) -> str | None:
    """The canonical task name, or None when the simulator does not serve it."""
    task = _ALIASES.get(task, task)
    return task if task in TASKS else None


def task_from_name(model: str, kind: Kind | None = None) -> str:
    """The task a model id suggests for this kind of input (None: text), or the kind's default."""
    return name_match(model, kind) or default_task(kind)


def pipeline_tag(model: str) -> str:
    """The task a model id suggests whatever its input (text keywords first, then image, then audio),
    for `GET .../info`, which has no request body to look at."""
    return name_match(model) or name_match(model, "image") or name_match(model, "audio") or default_task(None)


def input_kind(body: Any, raw: bytes = b"", content_type: str = "") -> Kind | None:
    """Whether the request carries an image or an audio file, and which; None for text."""
    if body is None:
        if not raw:
            return None
        found = sniff(raw)
        return found.kind if found is not None else declared_kind(content_type)
    if not isinstance(body, dict):
        return None
    for value in (body.get("inputs"), body.get("image")):
        if isinstance(value, str) and len(value) >= 16:
            found = sniff_base64(value)
            if found is not None:
                return found.kind
    return None


def _from_inputs_object(inputs: dict[str, Any], model: str) -> str | None:
    if "source_sentence" in inputs:
        return "sentence-similarity"
    if "question" in inputs and "image" in inputs:
        # Document QA and the task spec's VQA body look alike: the name tells them apart.
        vqa = name_match(model, "image") == "visual-question-answering"
        return "visual-question-answering" if vqa else "document-question-answering"
    if "question" in inputs and "context" in inputs:
        return "question-answering"
    if "query" in inputs and "table" in inputs:
        return "table-question-answering"
    if "data" in inputs:
        return _tabular(model)
    return None


def _tabular(model: str) -> str:
    return "tabular-regression" if name_match(model) == "tabular-regression" else "tabular-classification"


def _from_media(kind: Kind, params: dict[str, Any], accept: str) -> str | None:
    if kind == "image":
        if "candidate_labels" in params:
            return "zero-shot-image-classification"
        if accept.lower().startswith("image/") or "prompt" in params:
            return "image-to-image"
    return None


def task_from_body(body: Any, accept: str, *, raw: bytes = b"", content_type: str = "",
                   model: str = "") -> str | None:
    """The task the request body (or the Accept header) gives away, if any."""
    return _body_cues(body, accept, input_kind(body, raw, content_type), model)


def _body_cues(body: Any, accept: str, kind: Kind | None, model: str) -> str | None:
    params = body.get("parameters") if isinstance(body, dict) else None
    params = params if isinstance(params, dict) else {}
    if isinstance(body, dict) and "question" in body and "image" in body:
        return "visual-question-answering"  # InferenceClient puts them at the root
    if kind is not None:
        return _from_media(kind, params, accept)
    if accept.lower().startswith("image/"):
        return "text-to-image"
    if not isinstance(body, dict):
        return None
    inputs = body.get("inputs")
    if isinstance(inputs, dict):
        found = _from_inputs_object(inputs, model)
        if found is not None:
            return found
    if "table" in body:
        return _tabular(model)
    return _from_parameters(params) or _from_root(body)


def _from_parameters(params: dict[str, Any]) -> str | None:
    if "candidate_labels" in params:
        return "zero-shot-classification"
    if "aggregation_strategy" in params:
        return "token-classification"
    if "src_lang" in params or "tgt_lang" in params:
        return "translation"
    if "targets" in params:
        return "fill-mask"
    return None


def _from_root(body: dict[str, Any]) -> str | None:
    if any(key in body for key in _EMBEDDING_KEYS):
        return "feature-extraction"
    if "stream" in body:
        return "text-generation"
    return None


def _has_mask_token(body: Any) -> bool:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    return isinstance(inputs, str) and any(token in inputs for token in _MASK_TOKENS)


def _name_tables(kind: Kind | None, body: Any) -> tuple[Kind | None, ...]:
    # A file reads its own kind's keywords first, then the others: a speech model sent an image is
    # still a speech model (and rejects the image, as the real one would). A body that is neither
    # JSON nor a file we recognise (or is empty) reads every table. JSON text reads the text table.
    if kind == "image":
        return ("image", None, "audio")
    if kind == "audio":
        return ("audio", None, "image")
    if body is None:
        return (None, "image", "audio")
    return (None,)


def detect_task(path_task: str | None, pinned: str | None, body: Any, accept: str, model: str, *,
                raw: bytes = b"", content_type: str = "") -> str | None:
    """Combine the evidence in order; None when the path names a task the simulator lacks."""
    if path_task is not None:
        return normalize_task(path_task)
    if pinned:
        return pinned
    kind = input_kind(body, raw, content_type)
    found = _body_cues(body, accept, kind, model)
    if found is not None:
        return found
    for table in _name_tables(kind, body):
        named = name_match(model, table)
        if named is not None:
            return named
    if kind is None and _has_mask_token(body):
        return "fill-mask"
    return default_task(kind)
