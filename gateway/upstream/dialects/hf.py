"""The HF router dialect (`kind: hf`): each call goes where huggingface_hub 2.4.0 would send it (docs/hf-router.md).

- HF tasks: `{base}/hf-inference/models/{id}`, with `/pipeline/{task}` for feature-extraction and
  sentence-similarity (the client's rule) or when the inbound path named the task. Raw file bodies
  keep their Content-Type (or its absence) and the client's `Accept`; image and audio answers are
  relayed with their own Content-Type.
- Text generation (`text_generation`, TGI's `/generate`): to hf-inference, or converted to the
  router's `{base}/v1/chat/completions` when the route says `text_generation: chat` or the client
  named another provider or a policy (`org/name:novita`, `:fastest`); `generation.py` does the
  conversion.
- Chat: `{base}/v1/chat/completions` with the model as named (a `:provider` / `:policy` suffix
  kept); InferenceClient's `/hf-inference/models/{id}/v1/chat/completions` keeps its provider.
- `x-hf-bill-to` is forwarded (the router bills by it); the other kinds never get it.
"""

from __future__ import annotations

from typing import Any

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.core.errors import BadRequest
from gateway.core.model_ids import HF_INFERENCE, POLICIES, is_path_id, other_provider, split_provider
from gateway.core.tokens import prompt_tokens
from gateway.upstream.dialects.bodies import dump, hf_body, unsupported, unsupported_responses, with_model
from gateway.upstream.dialects.generation import explain_not_served, generation_plan, via_chat
from gateway.upstream.plan import Plan, SseStyle

# The tasks the client sends to `/pipeline/{task}` (hf_inference.py `_prepare_url`): models serving several.
_PIPELINE_TASKS = (tasks.FEATURE_EXTRACTION, tasks.SENTENCE_SIMILARITY)
# Route tasks the HF router can answer as a chat model (and so through its Responses API).
_CHAT_TASKS = frozenset({None, tasks.TEXT_GENERATION, "chat", "conversational", "image-text-to-text"})


def plan(call: Call, model: str, base_url: str) -> Plan:
    made = _plan(call, model, base_url)
    made.headers = dict(call.forward_headers)  # x-hf-bill-to: HF bills the router's calls by it
    return made


def _plan(call: Call, model: str, base_url: str) -> Plan:
    op = call.op
    if op is Op.CHAT:
        return _chat(call, model, base_url)
    if op is Op.COMPLETIONS:
        return Plan(f"{base_url}/v1/completions", with_model(call, model), stream=call.stream)
    if op is Op.RESPONSES:
        return _responses(call, model, base_url)
    if op in (Op.HF_TASK, Op.TGI_GENERATE) and via_chat(call, model):
        return generation_plan(call, model, base_url)
    # Here the id becomes part of the URL path: only a strict id may (core/model_ids.py).
    model_url = f"{base_url}/hf-inference/models/{_path_id(model)}"
    if op is Op.EMBEDDINGS:
        body = call.body or {}
        payload: dict[str, Any] = {"inputs": body.get("input")}
        if body.get("dimensions") is not None:
            payload["dimensions"] = body["dimensions"]
        # HF feature-extraction counts no tokens: `usage` gets the estimate the rate limiter uses too.
        adapt = tasks.embeddings_to_openai(call.model, body.get("encoding_format"), prompt_tokens(call))
        return Plan(f"{model_url}/pipeline/feature-extraction", dump(payload), adapt=adapt)
    if op is Op.HF_TASK:
        return _task(call, model, model_url)
    if op is Op.TGI_GENERATE:
        explain = explain_not_served(model)
        if call.stream:
            return Plan(model_url, dump({**(call.body or {}), "stream": True}), stream=True, sse=SseStyle.TGI,
                        explain=explain)
        return Plan(model_url, hf_body(call), adapt=tasks.first_item, explain=explain)
    if op is Op.TEI_EMBED:
        return Plan(f"{model_url}/pipeline/feature-extraction", hf_body(call))
    if op is Op.TEI_PREDICT:
        return Plan(f"{model_url}/pipeline/text-classification", hf_body(call), adapt=tasks.flat_classification)
    raise unsupported(call, "hf")


def _responses(call: Call, model: str, base_url: str) -> Plan:
    """The HF router serves `/v1/responses` for its chat models (Inference Providers, beta); a route
    pinned to another HF task (embeddings, classification, ...) is served by hf-inference task
    pipelines, which have no Responses API."""
    task = call.route.task
    if task not in _CHAT_TASKS:
        raise unsupported_responses(call, f"an 'hf' upstream for the HF task {task!r} (the route's `task:`)")
    return Plan(f"{base_url}/v1/responses", with_model(call, model), stream=call.stream, sse=SseStyle.RESPONSES)


def _task(call: Call, model: str, model_url: str) -> Plan:
    """An HF task call to hf-inference, at the client's URL for it; a 404 on generation explained."""
    task = call.task
    pipeline = call.path_task or (task if task in _PIPELINE_TASKS else None)
    url = f"{model_url}/pipeline/{pipeline}" if pipeline else model_url
    made = task_plan(call, url)
    if task == tasks.TEXT_GENERATION or (task is None and tasks.text_inputs(call.body)):
        made.explain = explain_not_served(model, certain=task is not None)
    return made


def task_plan(call: Call, url: str) -> Plan:
    """An HF task call as the client sent it: its bytes, Content-Type and Accept; a file answer relayed as it is."""
    # JSON bodies always carry their Content-Type; a raw file goes with the client's, or none (as sent).
    ctype = call.content_type if call.body is None else (call.content_type or "application/json")
    if call.stream and call.task in (tasks.TEXT_GENERATION, None):
        return Plan(url, hf_body(call), stream=True, sse=SseStyle.TGI, content_type=ctype, accept=call.accept)
    return Plan(url, hf_body(call), adapt=hf_adapter(call), content_type=ctype, accept=call.accept,
                expect_json=call.task in tasks.JSON_ANSWER_TASKS)


def _chat(call: Call, model: str, base_url: str) -> Plan:
    """`/v1/chat/completions` as named; InferenceClient's hf-inference chat URL keeps that provider."""
    name, suffix = split_provider(model)
    if call.provider == HF_INFERENCE and suffix is None:
        url = f"{base_url}/hf-inference/models/{_path_id(name)}/v1/chat/completions"
        return Plan(url, with_model(call, name), stream=call.stream)
    return Plan(f"{base_url}/v1/chat/completions", with_model(call, model), stream=call.stream)


def _path_id(model: str) -> str:
    """The id for hf-inference's URL path (a `:hf-inference` or policy suffix dropped), or BadRequest."""
    name, suffix = split_provider(model)
    if other_provider(suffix) and suffix not in POLICIES:
        raise BadRequest(
            f"model {model[:80]!r} asks for the provider {suffix!r}, but the gateway sends HF tasks to hf-inference "
            "only (other providers take their own request formats); only chat and text generation reach other "
            "providers, through the router's chat route. Drop the suffix, or call the model's chat route")
    if not is_path_id(name):
        raise BadRequest(f"model {model[:80]!r} cannot be sent to an HF upstream's task routes: there the id is "
                         "part of the URL path and must look like 'org/name'; route it to an `openai` upstream")
    return name


def hf_adapter(call: Call) -> Any:
    """The shape fix the HF client needs for this task (docs/protocol.md, 'InferenceClient: answer shapes'), if any.

    Text classification must be nested (`[[{label, score}]]`); a backend answering one text flat
    gets its answer nested. Never for a file: image and audio classification, detection and
    segmentation answer flat lists, and the client reads them flat.
    """
    body = call.body if isinstance(call.body, dict) else {}
    nested = body.get("parameters")
    params: dict[str, Any] = nested if isinstance(nested, dict) else {}
    if call.task == tasks.ZERO_SHOT or (call.task is None and "candidate_labels" in params and tasks.text_inputs(body)):
        return tasks.zero_shot_list
    if call.task == tasks.TEXT_CLASSIFICATION or (call.task is None and tasks.text_inputs(call.body)):
        return tasks.nest_classification
    return None
