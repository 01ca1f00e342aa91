"""The TEI dialect (`kind: tei`): embeddings, classification and reranking.

Routes: `/embed`, `/predict`, `/rerank`, `/v1/embeddings`.
"""

from __future__ import annotations

from typing import Any

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.upstream.dialects.bodies import dump, hf_body, unsupported, with_model
from gateway.upstream.plan import Plan

_EMBED_KEYS = ("inputs", "normalize", "truncate", "truncation_direction", "prompt_name", "dimensions")


def plan(call: Call, model: str, base_url: str) -> Plan:
    op = call.op
    if op is Op.EMBEDDINGS:
        return Plan(f"{base_url}/v1/embeddings", with_model(call, model))
    if op is Op.TEI_EMBED:
        return Plan(f"{base_url}/embed", hf_body(call))
    if op is Op.TEI_PREDICT:
        return Plan(f"{base_url}/predict", hf_body(call))
    if op is Op.TEI_RERANK:
        return Plan(f"{base_url}/rerank", hf_body(call))
    if op is Op.HF_TASK:
        body: dict[str, Any] = call.body if isinstance(call.body, dict) else {}
        if call.task in (tasks.FEATURE_EXTRACTION, None):
            return Plan(f"{base_url}/embed", dump({k: body[k] for k in _EMBED_KEYS if k in body}))
        if call.task == tasks.TEXT_CLASSIFICATION:
            nested = body.get("parameters")
            params: dict[str, Any] = nested if isinstance(nested, dict) else {}
            payload = {"inputs": body.get("inputs")}
            if isinstance(body.get("inputs"), str):
                adapt = _compose(tasks.nest_classification, tasks.top_k(params.get("top_k")))
            else:
                adapt = tasks.top_k(params.get("top_k"))
            return Plan(f"{base_url}/predict", dump(payload), adapt=adapt)
    raise unsupported(call, "tei")


def _compose(first: Any, second: Any) -> Any:
    return lambda data: second(first(data))
