"""The HF router dialect (`kind: hf`): `{base}/hf-inference/models/{id}[/pipeline/{task}]` and `{base}/v1/...`."""

from __future__ import annotations

from typing import Any

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.upstream.dialects.bodies import dump, hf_body, unsupported, with_model
from gateway.upstream.plan import Plan, SseStyle


def plan(call: Call, model: str, base_url: str) -> Plan:
    op = call.op
    if op is Op.CHAT:
        return Plan(f"{base_url}/v1/chat/completions", with_model(call, model), stream=call.stream)
    if op is Op.COMPLETIONS:
        return Plan(f"{base_url}/v1/completions", with_model(call, model), stream=call.stream)
    model_url = f"{base_url}/hf-inference/models/{model.split(':', 1)[0]}"
    if op is Op.EMBEDDINGS:
        body = call.body or {}
        payload: dict[str, Any] = {"inputs": body.get("input")}
        if body.get("dimensions") is not None:
            payload["dimensions"] = body["dimensions"]
        return Plan(f"{model_url}/pipeline/feature-extraction", dump(payload),
                    adapt=tasks.embeddings_to_openai(call.model, (call.body or {}).get("encoding_format")))
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


def hf_adapter(call: Call) -> Any:
    """The shape fix the HF client needs for this task (docs/protocol.md, 'InferenceClient: answer shapes'), if any."""
    body = call.body if isinstance(call.body, dict) else {}
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    if call.task == tasks.ZERO_SHOT or "candidate_labels" in params:
        return tasks.zero_shot_list
    if call.task in (tasks.TEXT_CLASSIFICATION, None):
        return tasks.nest_classification
    return None
