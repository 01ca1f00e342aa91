"""The `hf` dialect's plans: where each call goes on the router and what goes with it (docs/hf-router.md).

Plans are pure: a Call in, a Plan out. The wire itself (bytes and headers as the simulator
receives them) is covered by tests/e2e/test_every_client_task.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core import tasks
from gateway.core.call import Call, Dialect, Flags, Op
from gateway.core.config import load_settings
from gateway.core.errors import BadRequest, UpstreamStatusError
from gateway.core.routing import Router
from gateway.upstream.dialects import hf, openai, tei, tgi
from gateway.upstream.fake import FakeUpstream
from gateway.upstream.plan import Plan

BASE = "https://router.example"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
SETTINGS = load_settings(None, upstreams={"hf": {"kind": "hf"}}, models=[
    {"name": "org/chat-llm", "text_generation": "chat"},
    {"name": "org/hf-only", "text_generation": "hf-inference"},
    {"name": "*"},
])  # fmt: skip
ROUTER = Router(SETTINGS.models, {"hf": FakeUpstream("hf")})


def call(model: str, body: dict[str, Any] | None = None, *, op: Op = Op.HF_TASK, task: str | None = None,
         raw: bytes | None = None, content_type: str | None = "application/json", accept: str | None = "*/*",
         stream: bool = False, path_task: str | None = None) -> Call:
    made = Call(request_id="r", dialect=Dialect.HF, op=op, route_label=op.value, model=model,
                route=ROUTER.resolve(model), body=body, raw=raw if raw is not None else orjson.dumps(body),
                stream=stream, task=task, flags=Flags(), forward_headers={"x-hf-bill-to": "acme"})
    made.content_type, made.accept, made.path_task = content_type, accept, path_task
    return made


def plan(c: Call) -> Plan:
    return hf.plan(c, c.model, BASE)


@pytest.mark.parametrize(("task", "suffix"), [
    (tasks.FEATURE_EXTRACTION, "/pipeline/feature-extraction"),
    (tasks.SENTENCE_SIMILARITY, "/pipeline/sentence-similarity"),
    (tasks.TEXT_CLASSIFICATION, ""), ("fill-mask", ""), (tasks.TEXT_TO_SPEECH, ""), (None, ""),
])  # fmt: skip
def test_tasks_go_to_hf_inference_with_the_clients_pipeline_rule(task: str | None, suffix: str) -> None:
    made = plan(call("org/m", {"inputs": "x", "parameters": {}}, task=task))
    assert made.url == f"{BASE}/hf-inference/models/org/m{suffix}"
    assert made.headers == {"x-hf-bill-to": "acme"}


def test_a_task_named_by_the_inbound_path_stays_in_the_path() -> None:
    made = plan(call("org/m", {"inputs": "x"}, task="summarization", path_task="summarization"))
    assert made.url == f"{BASE}/hf-inference/models/org/m/pipeline/summarization"


def test_a_raw_file_keeps_its_content_type_or_its_absence_and_the_clients_accept() -> None:
    bare = plan(call("org/vit", None, raw=PNG, content_type=None, accept="*/*"))
    assert (bare.body, bare.content_type, bare.accept, bare.adapt) == (PNG, None, "*/*", None)
    assert bare.expect_json is False  # an unknown task may answer a file
    typed = plan(call("org/vit", None, raw=PNG, content_type="image/png", accept="image/png",
                      task=tasks.IMAGE_TO_IMAGE))
    assert (typed.content_type, typed.accept, typed.expect_json) == ("image/png", "image/png", False)


FLAT = [{"label": "a", "score": 0.9}, {"label": "b", "score": 0.1}]


@pytest.mark.parametrize(("body", "task", "nested"), [
    ({"inputs": "I like it", "parameters": {}}, None, True),
    ({"inputs": "I like it", "parameters": {}}, tasks.TEXT_CLASSIFICATION, True),
    (None, None, False),  # raw image or audio
    ({"inputs": "iVBORw0KGgo" + "A" * 80, "parameters": {"top_k": 2}}, None, False),  # base64 PNG with top_k
    ({"inputs": "x", "parameters": {}}, "image-classification", False),
])  # fmt: skip
def test_only_text_classification_answers_are_nested(body: dict[str, Any] | None, task: str | None,
                                                     nested: bool) -> None:
    made = plan(call("org/m", body, task=task, raw=PNG if body is None else None))
    adapt = made.adapt or (lambda data: data)
    assert adapt(FLAT) == ([FLAT] if nested else FLAT)


def test_json_only_tasks_still_require_json() -> None:
    assert plan(call("org/m", {"inputs": "x", "parameters": {}}, task=tasks.TEXT_CLASSIFICATION)).expect_json


@pytest.mark.parametrize("model", ["org/m:hf-inference", "org/m:fastest", "org/m:cheapest"])
def test_hf_inference_and_policy_suffixes_are_dropped_on_tasks(model: str) -> None:
    made = plan(call(model, {"inputs": "x", "parameters": {}}, task=tasks.TEXT_CLASSIFICATION))
    assert made.url == f"{BASE}/hf-inference/models/org/m"


def test_another_provider_on_a_task_is_refused() -> None:
    with pytest.raises(BadRequest, match="hf-inference only"):
        plan(call("org/flux:fal-ai", {"inputs": "x", "parameters": {}}, task=tasks.TEXT_TO_IMAGE))


GEN = {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}


@pytest.mark.parametrize(("model", "chat"), [
    ("org/small", False),  # auto, no suffix: hf-inference, as the client does when that provider serves it
    ("org/llm:novita", True), ("org/llm:fastest", True), ("org/llm:hf-inference", False),
    ("org/chat-llm", True), ("org/chat-llm:hf-inference", True),
])  # fmt: skip
def test_where_text_generation_goes(model: str, chat: bool) -> None:
    made = plan(call(model, GEN, task=tasks.TEXT_GENERATION))
    if chat:
        assert made.url == f"{BASE}/v1/chat/completions"
        assert orjson.loads(made.body or b"")["model"] == model
        assert made.adapt is not None and made.adapt({"choices": [{"message": {"content": " ok"}}]}) == [
            {"generated_text": " ok"}]
    else:
        assert made.url == f"{BASE}/hf-inference/models/{model.split(':')[0]}"
    assert made.headers == {"x-hf-bill-to": "acme"}


def test_tgis_generate_through_chat_answers_a_bare_object_and_streams_are_reshaped() -> None:
    made = plan(call("org/chat-llm", GEN, op=Op.TGI_GENERATE))
    assert made.adapt is not None and made.adapt({"choices": [{"message": {"content": "x"}}]}) == {
        "generated_text": "x"}
    streamed = plan(call("org/llm:together", {**GEN, "stream": True}, task=tasks.TEXT_GENERATION, stream=True))
    assert streamed.stream and streamed.reshape is not None and orjson.loads(streamed.body or b"")["stream"]


def test_an_undetected_text_task_is_generation_only_where_nothing_else_could_be_meant() -> None:
    body = {"inputs": "Hi", "parameters": {}}  # text_generation() without options names no task
    assert plan(call("org/chat-llm", body)).url == f"{BASE}/v1/chat/completions"
    assert plan(call("org/llm:novita", body)).url == f"{BASE}/v1/chat/completions"
    assert plan(call("org/small", body)).url == f"{BASE}/hf-inference/models/org/small"
    assert plan(call("org/chat-llm", body, task="summarization")).url == f"{BASE}/hf-inference/models/org/chat-llm"


def test_a_route_pinned_to_hf_inference_refuses_another_provider() -> None:
    assert plan(call("org/hf-only", GEN, task=tasks.TEXT_GENERATION)).url.endswith("/hf-inference/models/org/hf-only")
    with pytest.raises(BadRequest, match="text_generation: chat"):
        plan(call("org/hf-only:novita", GEN, task=tasks.TEXT_GENERATION))


def test_a_404_on_generation_says_how_to_route_it_and_other_errors_stay() -> None:
    made = plan(call("org/small", GEN, task=tasks.TEXT_GENERATION))
    assert made.explain is not None
    err = made.explain(UpstreamStatusError("Model org/small is not served", status=404))
    assert "`text_generation: chat`" in err.message and "'org/small:fastest'" in err.message
    assert made.explain(UpstreamStatusError("busy", status=503)).message == "busy"
    assert plan(call("org/m", {"inputs": "x", "parameters": {}}, task="fill-mask")).explain is None
    untold = plan(call("org/small", {"inputs": "Hi", "parameters": {}})).explain  # text_generation() without options
    assert untold is not None
    assert "if this is text generation" in untold(UpstreamStatusError("Not Found", status=404)).message


def test_chat_keeps_the_provider_the_client_chose() -> None:
    messages = {"model": "dummy", "messages": [{"role": "user", "content": "hi"}]}
    pinned = call("org/small", messages, op=Op.CHAT)
    pinned.provider = "hf-inference"  # came in on /hf-inference/models/org/small/v1/chat/completions
    made = plan(pinned)
    assert made.url == f"{BASE}/hf-inference/models/org/small/v1/chat/completions"
    assert orjson.loads(made.body or b"")["model"] == "org/small"
    assert plan(call("org/small", messages, op=Op.CHAT)).url == f"{BASE}/v1/chat/completions"
    suffixed = call("org/small:groq", messages, op=Op.CHAT)
    suffixed.provider = "hf-inference"
    assert plan(suffixed).url == f"{BASE}/v1/chat/completions"  # the id's own suffix wins


@pytest.mark.parametrize("planner", [openai.plan, tgi.plan, tei.plan])
def test_other_kinds_never_get_the_clients_bill_to(planner: Any) -> None:
    c = call("org/m", {"model": "org/m", "messages": [{"role": "user", "content": "x"}]}, op=Op.CHAT)
    if planner is tei.plan:
        c = call("org/m", {"model": "org/m", "input": "x"}, op=Op.EMBEDDINGS)
    assert planner(c, "org/m", BASE).headers == {}
