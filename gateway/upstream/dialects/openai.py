"""The OpenAI-compatible dialect (`kind: openai`): `{base}/chat/completions`, `/completions`, `/embeddings`,
`/responses`.

`base_url` is written as for the openai SDK, e.g. `https://api.example.com/v1`. The Responses API is
relayed as it is (vLLM and OpenAI speak it); its stream is `event:` + `data:` events ending at EOF,
without `[DONE]` (`SseStyle.RESPONSES`).
"""

from __future__ import annotations

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.upstream.dialects.bodies import dump, unsupported, with_model
from gateway.upstream.plan import Plan, SseStyle


def plan(call: Call, model: str, base_url: str) -> Plan:
    op = call.op
    if op is Op.CHAT:
        return Plan(f"{base_url}/chat/completions", with_model(call, model), stream=call.stream)
    if op is Op.COMPLETIONS:
        return Plan(f"{base_url}/completions", with_model(call, model), stream=call.stream)
    if op is Op.EMBEDDINGS:
        return Plan(f"{base_url}/embeddings", with_model(call, model))
    if op is Op.RESPONSES:
        return Plan(f"{base_url}/responses", with_model(call, model), stream=call.stream, sse=SseStyle.RESPONSES)
    if op is Op.TEI_EMBED or (op is Op.HF_TASK and call.task == tasks.FEATURE_EXTRACTION):
        body = call.body or {}
        payload = {"model": model, "input": body.get("inputs"), "encoding_format": "float"}
        return Plan(f"{base_url}/embeddings", dump(payload), adapt=tasks.openai_embeddings_to_rows)
    raise unsupported(call, "openai")
