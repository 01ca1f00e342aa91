"""Which upstream kinds serve `/v1/responses`, where they send it, and the refusal of the others."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.call import Call, Dialect, Op
from gateway.core.config import load_settings
from gateway.core.errors import UnsupportedRoute
from gateway.core.routing import Router
from gateway.upstream.dialects import hf, openai, tei, tgi
from gateway.upstream.fake import FakeUpstream
from gateway.upstream.plan import SseStyle

KINDS = ("hf", "tgi", "tei", "openai")
SETTINGS = load_settings(
    None, upstreams={k: {"kind": k, "base_url": f"http://{k}.test"} for k in KINDS},
    models=[{"name": "hf/embedder", "task": "feature-extraction", "deployments": [{"upstream": "hf"}]},
            {"name": "hf/chat", "deployments": [{"upstream": "hf"}]},
            *({"name": f"{k}/*", "deployments": [{"upstream": k}]} for k in KINDS)],
)
ROUTER = Router(SETTINGS.models, {k: FakeUpstream(k, config=SETTINGS.upstreams[k]) for k in KINDS})


def _call(model: str, stream: bool = False, **body: Any) -> Call:
    body = {"model": model, "input": "hi", **body}
    return Call(request_id="r", dialect=Dialect.OPENAI, op=Op.RESPONSES, route_label="responses", model=model,
                route=ROUTER.resolve(model), body=body, raw=orjson.dumps(body), stream=stream, task="responses")


@pytest.mark.parametrize("stream", [False, True])
def test_openai_kind_relays_to_its_responses_path(stream: bool) -> None:
    call = _call("openai/gpt", stream)
    plan = openai.plan(call, "upstream-name", "http://vllm.test/v1")
    assert plan.url == "http://vllm.test/v1/responses"
    assert plan.stream is stream and plan.sse is SseStyle.RESPONSES
    assert orjson.loads(plan.body or b"")["model"] == "upstream-name"
    assert openai.plan(call, "openai/gpt", "http://vllm.test/v1").body == call.raw  # the client's bytes


def test_the_hf_router_serves_it_for_chat_models() -> None:
    plan = hf.plan(_call("hf/chat", True), "hf/chat", "https://router.test")
    assert (plan.url, plan.sse, plan.stream) == ("https://router.test/v1/responses", SseStyle.RESPONSES, True)


@pytest.mark.parametrize("model, planner, named", [
    ("hf/embedder", hf.plan, "'hf' upstream for the HF task 'feature-extraction'"),
    ("tgi/llama", tgi.plan, "'tgi' upstream"),
    ("tei/bge", tei.plan, "'tei' upstream"),
])
def test_other_upstreams_refuse_it_naming_the_kind_and_the_fix(model: str, planner: Any, named: str) -> None:
    with pytest.raises(UnsupportedRoute) as caught:
        planner(_call(model), model, "http://x.test")
    err = caught.value
    assert (err.status, err.code, err.type) == (422, "unsupported_route", "invalid_request_error")
    assert named in err.message and "kind: openai" in err.message and "/v1/responses" in err.message
