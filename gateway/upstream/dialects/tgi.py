"""The TGI dialect (`kind: tgi`): a dedicated text-generation endpoint (`/`, `/generate[_stream]`, `/v1/...`)."""

from __future__ import annotations

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
    if op is Op.HF_TASK and call.task in (tasks.TEXT_GENERATION, None):
        if call.stream:
            return Plan(f"{base_url}/", hf_body(call), stream=True, sse=SseStyle.TGI)
        return Plan(f"{base_url}/", hf_body(call), adapt=tasks.as_list)
    if op is Op.TGI_GENERATE:
        if call.stream:
            body = {k: v for k, v in (call.body or {}).items() if k not in ("stream", "options")}
            return Plan(f"{base_url}/generate_stream", dump(body), stream=True, sse=SseStyle.TGI)
        return Plan(f"{base_url}/generate", hf_body(call), adapt=tasks.first_item)
    raise unsupported(call, "tgi")
