"""An upstream's own error fields reach the client as they came, on every route, streamed or not.

The simulator plays the upstream with custom error bodies (`FaultSpec.body`); the gateway may add
its own fields but never replaces the upstream's `type`, `code`, `param` or `error_type`.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.simulator.config import FaultSpec
from tests.support.loop_stack import stack

OAI = {"oai": {"kind": "openai", "base_url": "{sim}/v1"}}
CHAT_MODEL = "acme/chat"
MSGS = [{"role": "user", "content": "hi"}]
CONTEXT = {"error": {
    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9100 tokens.",
    "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
# Shapes clients branch on, as OpenAI-compatible servers send them.
CASES: list[tuple[int, dict[str, Any]]] = [
    (400, CONTEXT),
    (429, {"error": {"message": "Rate limit reached for requests", "type": "requests", "param": None,
                     "code": "rate_limit_exceeded"}}),
    (429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": None,
                     "code": "insufficient_quota"}}),
    (404, {"error": {"message": "The model `x` does not exist", "type": "invalid_request_error", "param": None,
                     "code": "model_not_found"}}),
    (400, {"error": {"message": "The response was filtered", "type": None, "param": "prompt", "code": "content_filter",
                     "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                   "content_filter_result": {"hate": {"filtered": True}}}}}),
    (400, {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError", "param": None,
           "code": 400}),  # vLLM's older top-level shape
]


def _expected(body: dict[str, Any]) -> dict[str, Any]:
    """What the client must find inside `error`: every upstream field, the message included."""
    inner = body["error"] if isinstance(body.get("error"), dict) else body
    return {k: v for k, v in inner.items() if k != "object"}


def _oai_models(model: str = "*") -> list[dict[str, Any]]:
    return [{"name": model, "deployments": [{"upstream": "oai"}]}]


@pytest.mark.parametrize("status, body", CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_v1_relays_the_upstreams_error_fields(status: int, body: dict[str, Any], stream: bool) -> None:
    async with stack(upstreams=OAI, models=_oai_models()) as s:
        s.sim.set_faults(CHAT_MODEL, [FaultSpec(kind="status", status=status, body=body)])
        resp = await s.client.post("/v1/chat/completions",
                                   json={"model": CHAT_MODEL, "messages": MSGS, "stream": stream})
        assert resp.status == status
        error = (await resp.json())["error"]
        assert error.items() >= _expected(body).items()
        assert resp.headers["X-Error-Message"].startswith(_expected(body)["message"][:40])


async def test_an_in_band_error_as_the_first_event_becomes_an_http_error_with_the_upstreams_fields() -> None:
    async with stack(upstreams=OAI, models=_oai_models()) as s:
        s.sim.set_faults(CHAT_MODEL, [FaultSpec(kind="midstream", after_events=0, body=CONTEXT)])
        resp = await s.client.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": MSGS, "stream": True})
        assert resp.status == 400  # invalid_request_error: a client error, not a 502
        assert (await resp.json())["error"].items() >= CONTEXT["error"].items()
        assert s.upstream_calls(CHAT_MODEL) == 1


async def test_an_in_band_error_mid_stream_is_relayed_byte_for_byte() -> None:
    event = {"error": {"message": "content filtered mid-answer", "type": "invalid_request_error",
                       "param": None, "code": "content_filter"}}
    async with stack(upstreams=OAI, models=_oai_models()) as s:
        s.sim.set_faults(CHAT_MODEL, [FaultSpec(kind="midstream", after_events=2, body=event)])
        resp = await s.client.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": MSGS, "stream": True})
        assert resp.status == 200
        events = [e for e in (await resp.read()).split(b"\n\n") if e]
        assert events[-1] == b"data: " + orjson.dumps(event)  # the last event, untouched, and no [DONE]
        assert len(events) == 3


async def test_hf_routes_relay_tgi_error_types_and_openai_fields_beside_error() -> None:
    tgi_body = {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
                "error_type": "validation"}
    ups = {**OAI, "tgi": {"kind": "tgi", "base_url": "{sim}/endpoints/tgi-a"}}
    models = [{"name": "tgi/gen", "deployments": [{"upstream": "tgi"}]},
              {"name": "oai/embedder", "task": "feature-extraction", "deployments": [{"upstream": "oai"}]}]
    async with stack(upstreams=ups, models=models) as s:
        s.sim.set_faults("tgi-a", [FaultSpec(kind="tgi-error", status=422, body=tgi_body)])
        resp = await s.client.post("/models/tgi/gen", json={"inputs": "x", "parameters": {"max_new_tokens": 9000}})
        assert resp.status == 422
        assert await resp.json() == tgi_body
        s.sim.set_faults("oai/embedder", [FaultSpec(kind="status", status=400, body=CONTEXT)])
        resp = await s.client.post("/models/oai/embedder", json={"inputs": "x" * 50})
        assert resp.status == 400
        got = await resp.json()
        assert got["error"] == CONTEXT["error"]["message"]  # the HF shape: `error` is the message
        assert {k: got[k] for k in ("type", "param", "code")} == {
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}


async def test_the_gateways_own_errors_keep_their_own_codes() -> None:
    async with stack(upstreams=OAI, models=[{"name": "only/this", "deployments": [{"upstream": "oai"}]}]) as s:
        resp = await s.client.post("/v1/chat/completions", json={"model": "not/configured", "messages": MSGS})
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "model_not_found"
        resp = await s.client.post("/v1/chat/completions", json={"model": "only/this", "messages": []})
        assert (await resp.json())["error"]["code"] == "bad_request"
        s.sim.set_faults("only/this", [FaultSpec(kind="status", status=400)])  # the simulator's plain 400
        resp = await s.client.post("/v1/chat/completions", json={"model": "only/this", "messages": MSGS})
        error = (await resp.json())["error"]
        assert error["code"] == "bad_request" and "param" in error  # the upstream's own body, param and all
