"""The HF toolkit container's dialect: a dedicated endpoint whose engine is `huggingface` (or `custom`).

Such an endpoint takes the task's HF body on `POST {url}/` (what `InferenceClient` sends to an endpoint
URL for every task but chat), and chat on `{url}/v1/chat/completions`. Answers are reshaped as the HF
router's are (`hf.hf_adapter`). Used only by managed endpoints (`kind: endpoint`), which pick it from
the control plane's `model.image`.
"""

from __future__ import annotations

from typing import Any

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.upstream.dialects.bodies import dump, hf_body, unsupported, with_model
from gateway.upstream.dialects.hf import task_plan
from gateway.upstream.plan import Plan, SseStyle


def plan(call: Call, model: str, base_url: str) -> Plan:
    op = call.op
    root = f"{base_url}/"
    if op is Op.CHAT:
        return Plan(f"{base_url}/v1/chat/completions", with_model(call, model), stream=call.stream)
    if op is Op.COMPLETIONS:
        return Plan(f"{base_url}/v1/completions", with_model(call, model), stream=call.stream)
    if op is Op.EMBEDDINGS:
        body = call.body or {}
        payload: dict[str, Any] = {"inputs": body.get("input")}
        return Plan(root, dump(payload), adapt=tasks.embeddings_to_openai(call.model, body.get("encoding_format")))
    if op is Op.HF_TASK:  # as for the router: files and media answers untouched (hf.task_plan)
        return task_plan(call, root)
    if op is Op.TGI_GENERATE:
        if call.stream:
            return Plan(root, dump({**(call.body or {}), "stream": True}), stream=True, sse=SseStyle.TGI)
        return Plan(root, hf_body(call), adapt=tasks.first_item)
    if op is Op.TEI_EMBED:
        return Plan(root, hf_body(call))
    if op is Op.TEI_PREDICT:
        return Plan(root, hf_body(call), adapt=tasks.flat_classification)
    raise unsupported(call, "huggingface endpoint")
