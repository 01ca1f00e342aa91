"""Renderers for the first HF text tasks (`{"inputs", "parameters"}`), and the helpers every task
renderer shares (text inputs, integer parameters, labels, candidate labels).

Shapes: text-generation `[{"generated_text"}]` (SSE when the root has `"stream": true`),
feature-extraction always 2-D, text-classification nested `[[{label,score}]]` on HF routes but
flat for a single input on a native `POST /` (TEI `/predict` behaviour), zero-shot
`[{label,score}]` (the legacy dict when the model name contains `legacy`),
token-classification `[{entity_group,score,word,start,end}]`, sentence-similarity `[float]`,
text-to-image raw PNG bytes. The other tasks live in `render_text.py`, `render_vision.py` and
`render_audio.py`; `renderers.py` maps every task to its renderer.
"""

from __future__ import annotations

from typing import Any

from gateway.simulator import outputs
from gateway.simulator.calls import SimCall
from gateway.simulator.media_inputs import invalid
from gateway.simulator.png import make_png
from gateway.simulator.textgen import (
    Generation,
    digest_stream,
    generate,
    tgi_object,
    tgi_stream,
)
from gateway.simulator.wire import Body, Rendered, json_body


def text_input(call: SimCall) -> str:
    """`inputs` that must be one string."""
    inputs = call.inputs()
    if not isinstance(inputs, str):
        raise invalid(call, "`inputs` must be a string")
    return inputs


def text_list(call: SimCall, value: Any) -> list[str]:
    """A string or list of strings/token ids as a list of texts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, (str, int, list)) for v in value):
        if all(isinstance(v, int) for v in value):
            return [outputs.text_of(value)]  # one sequence of token ids
        return [outputs.text_of(v) for v in value]
    raise invalid(call, "`inputs` must be a string or a non-empty list")


def generation(call: SimCall, text: str, params: dict[str, Any], *, limit_key: str = "max_new_tokens",
               unlimited_finish: str = "eos_token") -> Generation:
    """The deterministic generation for `text`; `finish_reason` is "length" when a limit was asked."""
    config = call.state.config
    asked = params.get(limit_key)
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool) or asked < 1):
        raise invalid(call, f"`{limit_key}` must be a positive integer")
    count = min(asked or config.max_new_tokens, config.max_tokens_cap)
    seed = params.get("seed") if isinstance(params.get("seed"), int) else None
    finish = "length" if asked is not None else unlimited_finish
    return generate(call.model, text, count, seed=seed, finish_reason=finish)


def render_text_generation(call: SimCall) -> Rendered:
    """TGI `POST /` (compat_generate): a list, or SSE when `stream` is true."""
    params = call.params()
    gen = generation(call, text_input(call), params)
    if call.stream:
        return tgi_stream(gen, params)
    return json_body([tgi_object(gen, params)])


def embedding_dim(call: SimCall, requested: Any) -> int:
    """The embedding size: `dimensions` if given, else the model's, else the default."""
    if requested is not None:
        if not isinstance(requested, int) or isinstance(requested, bool) or not 1 <= requested <= 65536:
            raise invalid(call, "`dimensions` must be a positive integer")
        return requested
    spec = call.state.config.spec(call.key)
    return (spec.dim if spec and spec.dim else None) or call.state.config.embedding_dim


def render_embed(call: SimCall) -> Rendered:
    """TEI `/embed` and HF feature-extraction: always 2-D."""
    body = call.require_json()
    texts = text_list(call, call.inputs())
    dim = embedding_dim(call, body.get("dimensions"))
    normalize = body.get("normalize", True) is not False
    return json_body([outputs.embedding(call.model, t, dim, normalize=normalize) for t in texts])


def labels(call: SimCall, default: tuple[str, ...] | None = None) -> tuple[str, ...] | list[str]:
    """Classification labels: configured for the key, else `default`, else from the model name."""
    spec = call.state.config.spec(call.key)
    if spec and spec.labels:
        return spec.labels
    return default or outputs.labels_for(call.model)


def int_param(call: SimCall, params: dict[str, Any], name: str) -> int | None:
    """An optional integer parameter (booleans are not integers here)."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(call, f"`parameters.{name}` must be an integer")
    return value


def candidate_labels(call: SimCall, params: dict[str, Any]) -> list[str]:
    """`candidate_labels` as a list (a comma-separated string is split), or a rejection."""
    candidates = params.get("candidate_labels")
    if isinstance(candidates, str):
        candidates = [c.strip() for c in candidates.split(",") if c.strip()]
    if not isinstance(candidates, list) or not candidates or not all(isinstance(c, str) for c in candidates):
        raise invalid(call, "`parameters.candidate_labels` must be a non-empty list of strings")
    return candidates


def classify(call: SimCall, *, flat_single: bool) -> Rendered:
    """Text classification; a single input is nested unless `flat_single` (TEI style)."""
    inputs = call.inputs()
    top_k = call.params().get("top_k")
    top_k = top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else None
    results = [outputs.classification(call.model, t, labels(call), top_k) for t in text_list(call, inputs)]
    if flat_single and isinstance(inputs, str):
        return json_body(results[0])
    return json_body(results)


def render_zero_shot(call: SimCall) -> Rendered:
    """Zero-shot: sorted `[{label, score}]`, or the legacy dict for `legacy` models."""
    text = text_input(call)
    params = call.params()
    candidates = candidate_labels(call, params)
    ranked = outputs.zero_shot(call.model, text, candidates, multi_label=params.get("multi_label") is True)
    if "legacy" in call.model.lower():
        return json_body(outputs.zero_shot_legacy(text, ranked))
    return json_body(ranked)


def render_tokens(call: SimCall) -> Rendered:
    """Token classification: aggregated entities."""
    inputs = call.inputs()
    if isinstance(inputs, str):
        return json_body(outputs.entities(call.model, inputs))
    return json_body([outputs.entities(call.model, t) for t in text_list(call, inputs)])


def render_similarity(call: SimCall) -> Rendered:
    """Sentence similarity: one score per sentence."""
    inputs = call.inputs()
    if not isinstance(inputs, dict) or not isinstance(inputs.get("source_sentence"), str):
        raise invalid(call, "`inputs` must be {source_sentence, sentences}")
    sentences = inputs.get("sentences")
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise invalid(call, "`inputs.sentences` must be a list of strings")
    return json_body(outputs.similarity(call.model, inputs["source_sentence"], sentences))


def render_image(call: SimCall) -> Rendered:
    """Text-to-image: a small PNG coloured by the prompt."""
    prompt = text_input(call)
    params = call.params()
    width = int_param(call, params, "width") or 8
    height = int_param(call, params, "height") or 8
    return Body(make_png(width, height, digest_stream(call.model, prompt, "image")), "image/png")
