"""The HF router dialect (`kind: hf`): `{base}/hf-inference/models/{id}[/pipeline/{task}]` and `{base}/v1/...`."""

from __future__ import annotations

from typing import Any

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.core.errors import BadRequest
from gateway.core.model_ids import is_path_id
from gateway.core.tokens import prompt_tokens
from gateway.upstream.dialects.bodies import dump, hf_body, unsupported, unsupported_responses, with_model
from gateway.upstream.plan import Plan, SseStyle

# Route tasks the HF router can answer as a chat model (and so through its Responses API).
_CHAT_TASKS = frozenset({None, tasks.TEXT_GENERATION, "chat", "conversational", "image-text-to-text"})


def plan(call: Call, model: str, base_url: str) -> Plan:
    op = call.op
    if op is Op.CHAT:
        return Plan(f"{base_url}/v1/chat/completions", with_model(call, model), stream=call.stream)
    if op is Op.COMPLETIONS:
        return Plan(f"{base_url}/v1/completions", with_model(call, model), stream=call.stream)
    if op is Op.RESPONSES:
        return _responses(call, model, base_url)
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
        path_task = call.path_task
        url = f"{model_url}/pipeline/{path_task}" if path_task else model_url
        if call.task == tasks.TEXT_TO_IMAGE:
            return Plan(url, hf_body(call), accept=call.accept or "image/png", expect_json=False,
                        content_type=call.content_type)
        if call.task == tasks.TEXT_GENERATION and call.stream:
            return Plan(url, hf_body(call), stream=True, sse=SseStyle.TGI)
        return Plan(url, hf_body(call), adapt=hf_adapter(call), content_type=call.content_type or "application/json",
                    expect_json=call.body is not None)
    if op is Op.TGI_GENERATE:
        if call.stream:
            return Plan(model_url, dump({**(call.body or {}), "stream": True}), stream=True, sse=SseStyle.TGI)
        return Plan(model_url, hf_body(call), adapt=tasks.first_item)
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


def _path_id(model: str) -> str:
    """The id for the URL path (without a `:provider` suffix), or BadRequest when it cannot be one."""
    name = model.split(":", 1)[0]
    if not is_path_id(name):
        raise BadRequest(f"model {model[:80]!r} cannot be sent to an HF upstream's task routes: there the id is "
                         "part of the URL path and must look like 'org/name'; route it to an `openai` upstream")
    return name


def hf_adapter(call: Call) -> Any:
    """The shape fix the HF client needs for this task (PROTOCOL.md §1.4), if any."""
    body = call.body if isinstance(call.body, dict) else {}
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    if call.task == tasks.ZERO_SHOT or "candidate_labels" in params:
        return tasks.zero_shot_list
    if call.task in (tasks.TEXT_CLASSIFICATION, None):
        return tasks.nest_classification
    return None
