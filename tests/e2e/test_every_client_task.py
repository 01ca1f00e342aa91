"""Every InferenceClient task method through a listening gateway (`kind: hf`) against the simulator playing the router.

For each case of tests/support/client_tasks.py the same call is made directly against the
simulator and through the gateway. The typed results must be equal, and so must what the
simulator received: the body byte for byte, the Content-Type (or its absence) and the Accept.
The gateway's request also goes where huggingface_hub 2.4.0 itself would send it for the repo id
(its own hf-inference helper computes the path), carries `x-hf-bill-to`, and carries the
gateway's credential, never the client's.

The simulator plays today's router for two LLMs: served by other providers, not by hf-inference.
Text generation on them goes through the router's chat route (a route set to `text_generation:
chat`, or a `:provider` / `:policy` suffix), or is refused with what to configure.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx2
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.inference._providers import get_provider_helper

from gateway.core.config import Settings, load_settings
from gateway.simulator.config import ModelSpec, SimConfig
from gateway.simulator.stats import ReceivedRequest
from tests.support.client_tasks import ASYNC_METHODS, CASES, PNG, Case, comparable
from tests.support.thread_stack import CLIENT_TOKEN, GATEWAY_TOKEN, Stack, start_stack, stop_stack

LLM = "meta-llama/Llama-3.1-8B-Instruct"  # today's router: novita (fastest) and together (cheapest) serve it
CHAT_LLM = "Qwen/Qwen2.5-7B-Instruct"  # the same, and its gateway route says `text_generation: chat`
BILL_TO = "acme-research"
_ids = itertools.count()


def settings_for(sim_url: str) -> Settings:
    return load_settings(
        None,
        upstream_url=sim_url,
        upstreams={"hf": {"kind": "hf"}, "oai": {"kind": "openai", "base_url": f"{sim_url}/v1"}},
        models=[
            {"name": CHAT_LLM, "text_generation": "chat"},
            {"name": "oai/*", "deployments": [{"upstream": "oai"}]},
            {"name": "*", "deployments": [{"upstream": "hf"}]},
        ],
        cache={"tasks": {"text-to-image": {}}},  # generated images are cacheable when seeded
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    providers = {LLM: ModelSpec(providers=["novita", "together"]), CHAT_LLM: ModelSpec(providers=["together"])}
    s = start_stack(settings_for, SimConfig(models=providers))
    yield s
    stop_stack(s)


def request_id() -> str:
    return f"rid-every-task-{next(_ids)}"


def received(stack: Stack, rid: str) -> ReceivedRequest:
    """The one request the simulator received with this X-Request-Id."""
    found = stack.call_soon(lambda: [r for r in stack.sim.requests if r.headers.get("x-request-id") == rid])
    assert len(found) == 1, f"{rid}: {len(found)} requests"
    return found[0]


def direct(stack: Stack, model: str, rid: str) -> InferenceClient:
    return InferenceClient(model=f"{stack.sim_url}/hf-inference/models/{model}", token=CLIENT_TOKEN,
                           headers={"X-Request-Id": rid})


def via(stack: Stack, model: str, rid: str, **kwargs: Any) -> InferenceClient:
    # x-use-cache: false, so that every call of this module reaches the simulator.
    headers = {"X-Request-Id": rid, "x-use-cache": "false"}
    return InferenceClient(model=f"{stack.gw_url}/models/{model}", token=CLIENT_TOKEN, bill_to=BILL_TO,
                           headers=headers, **kwargs)


def client_path(case: Case) -> str:
    """Where huggingface_hub 2.4.0 sends this task for the repo id (its hf-inference helper's own URL)."""
    helper = get_provider_helper("hf-inference", task=case.task, model=case.model)
    return urlparse(helper._prepare_url("hf_unused", case.model)).path  # type: ignore[attr-defined]


def assert_sent_as_the_client_would(mine: ReceivedRequest, theirs: ReceivedRequest, case: Case) -> None:
    assert mine.path == client_path(case)
    assert mine.body == theirs.body  # byte for byte, raw files included
    assert mine.content_type == theirs.content_type  # None stays None (raw bytes)
    assert mine.headers.get("Accept") == theirs.headers.get("Accept")
    assert mine.headers.get("x-hf-bill-to") == BILL_TO
    assert mine.headers.get("Authorization") == f"Bearer {GATEWAY_TOKEN}"
    assert CLIENT_TOKEN not in str(dict(mine.headers)) and CLIENT_TOKEN.encode() not in mine.body


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_task_method_answers_and_sends_as_it_does_directly(stack: Stack, case: Case) -> None:
    rid_direct, rid_via = request_id(), request_id()
    want = getattr(direct(stack, case.model, rid_direct), case.method)(*case.args, **case.kwargs)
    got = getattr(via(stack, case.model, rid_via), case.method)(*case.args, **case.kwargs)
    case.check(got)
    assert comparable(got) == comparable(want)
    assert_sent_as_the_client_would(received(stack, rid_via), received(stack, rid_direct), case)


@pytest.mark.parametrize("case", [c for c in CASES if c.method in ASYNC_METHODS], ids=lambda c: c.id)
async def test_the_async_client_gets_the_same_answers_through_the_gateway(stack: Stack, case: Case) -> None:
    want = await asyncio.to_thread(getattr(direct(stack, case.model, request_id()), case.method), *case.args,
                                   **case.kwargs)
    rid = request_id()
    client = AsyncInferenceClient(model=f"{stack.gw_url}/models/{case.model}", token=CLIENT_TOKEN, bill_to=BILL_TO,
                                  headers={"X-Request-Id": rid, "x-use-cache": "false"})
    try:
        got = await getattr(client, case.method)(*case.args, **case.kwargs)
    finally:
        await client.close()
    assert comparable(got) == comparable(want)
    sent = await asyncio.to_thread(received, stack, rid)
    assert sent.path == client_path(case) and sent.headers.get("x-hf-bill-to") == BILL_TO


@pytest.mark.parametrize(("path", "body", "accept", "ctype"), [
    ("facebook/mms-tts-eng", {"inputs": "Hello world", "parameters": {}}, "*/*", "audio/wav"),
    ("black-forest-labs/FLUX.1-dev", {"inputs": "an astronaut", "parameters": {}}, "image/png", "image/png"),
])  # fmt: skip
def test_media_answers_keep_their_content_type(stack: Stack, path: str, body: dict[str, Any], accept: str,
                                               ctype: str) -> None:
    headers = {"Accept": accept, "x-use-cache": "false"}
    direct_answer = httpx2.post(f"{stack.sim_url}/hf-inference/models/{path}", json=body, headers=headers)
    answer = httpx2.post(f"{stack.gw_url}/models/{path}", json=body, headers=headers)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == ctype
    assert answer.content == direct_answer.content


def test_a_seeded_image_is_cached_as_bytes(stack: Stack) -> None:
    body = {"inputs": "a lighthouse", "parameters": {"seed": 7, "width": 16, "height": 16}}
    url = f"{stack.gw_url}/models/black-forest-labs/FLUX.1-schnell"
    first = httpx2.post(url, json=body, headers={"Accept": "image/png"})
    second = httpx2.post(url, json=body, headers={"Accept": "image/png"})
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.headers["Content-Type"] == "image/png" and second.content == first.content
    unseeded = {"inputs": "a lighthouse", "parameters": {"width": 16, "height": 16}}
    assert "X-Cache" not in httpx2.post(url, json=unseeded, headers={"Accept": "image/png"}).headers


def chat_reference(stack: Stack, model: str, prompt: str, max_tokens: int) -> str:
    """What the simulated router's chat route answers for the prompt as one user message."""
    sim = openai.OpenAI(base_url=f"{stack.sim_url}/v1", api_key="sk-unused")
    answer = sim.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                         max_tokens=max_tokens)
    content = answer.choices[0].message.content
    assert content
    return content


def test_text_generation_on_a_chat_route_goes_through_the_routers_chat_completions(stack: Stack) -> None:
    prompt = "Write a haiku about gateways."
    want = chat_reference(stack, CHAT_LLM, prompt, 4)
    rid = request_id()
    client = via(stack, CHAT_LLM, rid)
    assert client.text_generation(prompt, max_new_tokens=4) == want
    sent = received(stack, rid)
    assert sent.path == "/v1/chat/completions" and sent.provider == "together"
    assert sent.json() == {"model": CHAT_LLM, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4,
                           "stream": False}
    assert sent.headers.get("x-hf-bill-to") == BILL_TO and CLIENT_TOKEN not in str(dict(sent.headers))
    detailed = client.text_generation(prompt, max_new_tokens=4, details=True)
    assert detailed.generated_text == want
    assert (detailed.details.finish_reason, detailed.details.generated_tokens) == ("length", 4)
    full = client.text_generation(prompt, max_new_tokens=4, return_full_text=True)
    assert full == prompt + want


def test_streamed_text_generation_on_a_chat_route_is_a_tgi_token_stream(stack: Stack) -> None:
    prompt = "Name three rivers."
    want = chat_reference(stack, CHAT_LLM, prompt, 5)
    client = via(stack, CHAT_LLM, request_id())
    tokens = list(client.text_generation(prompt, max_new_tokens=5, stream=True))
    assert "".join(tokens) == want and len(tokens) == 5
    events = list(client.text_generation(prompt, max_new_tokens=5, stream=True, details=True))
    last = events[-1]
    assert last.generated_text == want and [e.generated_text for e in events[:-1]] == [None] * 4
    assert (last.details.finish_reason, last.details.generated_tokens) == ("length", 5)
    assert last.details.input_length == len(prompt.split())


async def test_the_async_client_streams_text_generation_through_the_chat_route(stack: Stack) -> None:
    prompt = "Count to three."
    want = await asyncio.to_thread(chat_reference, stack, CHAT_LLM, prompt, 3)
    client = AsyncInferenceClient(model=f"{stack.gw_url}/hf-inference/models/{CHAT_LLM}", token=CLIENT_TOKEN)
    try:
        text = await client.text_generation(prompt, max_new_tokens=3)
        tokens = [t async for t in await client.text_generation(prompt, max_new_tokens=3, stream=True)]
    finally:
        await client.close()
    assert text == want and "".join(tokens) == want


@pytest.mark.parametrize(("suffix", "provider"), [("novita", "novita"), ("cheapest", "together"),
                                                  ("fastest", "novita")])
def test_a_provider_or_policy_suffix_sends_text_generation_to_the_chat_route(stack: Stack, suffix: str,
                                                                             provider: str) -> None:
    prompt = "Say hello."
    rid = request_id()
    out = via(stack, f"{LLM}:{suffix}", rid).text_generation(prompt, max_new_tokens=3)
    assert out == chat_reference(stack, f"{LLM}:{suffix}", prompt, 3)
    sent = received(stack, rid)
    assert (sent.path, sent.json()["model"], sent.provider) == ("/v1/chat/completions", f"{LLM}:{suffix}", provider)


def test_an_llm_hf_inference_does_not_serve_is_refused_with_what_to_configure(stack: Stack) -> None:
    with pytest.raises(HfHubHTTPError) as caught:
        via(stack, LLM, request_id()).text_generation("Hello", max_new_tokens=3)
    assert caught.value.response.status_code == 404
    message = str(caught.value)
    assert "not served by provider hf-inference" in message and "`text_generation: chat`" in message
    assert f"{LLM}:fastest" in message


def test_a_foreign_provider_on_a_task_is_a_clear_400(stack: Stack) -> None:
    with pytest.raises(HfHubHTTPError) as caught:
        via(stack, "black-forest-labs/FLUX.1-dev:fal-ai", request_id()).text_to_image("a cat")
    assert caught.value.response.status_code == 400 and "hf-inference only" in str(caught.value)


def test_chat_keeps_the_provider_the_client_chose(stack: Stack) -> None:
    messages = [{"role": "user", "content": "hi"}]
    small = "HuggingFaceTB/SmolLM3-3B"  # served by hf-inference on the simulated router
    rid = request_id()
    InferenceClient(model=f"{stack.gw_url}/hf-inference/models/{small}", token=CLIENT_TOKEN,
                    headers={"X-Request-Id": rid}).chat_completion(messages, max_tokens=2)
    sent = received(stack, rid)
    assert (sent.path, sent.provider) == (f"/hf-inference/models/{small}/v1/chat/completions", "hf-inference")
    rid = request_id()
    InferenceClient(model=f"{stack.gw_url}/models/{LLM}:together", token=CLIENT_TOKEN,
                    headers={"X-Request-Id": rid}).chat_completion(messages, max_tokens=2)
    sent = received(stack, rid)
    assert (sent.path, sent.json()["model"], sent.provider) == ("/v1/chat/completions", f"{LLM}:together", "together")
    rid = request_id()
    InferenceClient(model=f"{stack.gw_url}/models/{LLM}", token=CLIENT_TOKEN,
                    headers={"X-Request-Id": rid}).chat_completion(messages, max_tokens=2)
    assert (received(stack, rid).path, received(stack, rid).provider) == ("/v1/chat/completions", "novita")


def test_bill_to_reaches_hf_upstreams_only(stack: Stack) -> None:
    messages = [{"role": "user", "content": "who pays?"}]
    for model, billed in ((LLM, True), ("oai/gpt-sim", False)):
        rid = request_id()
        InferenceClient(model=f"{stack.gw_url}/models/{model}", token=CLIENT_TOKEN, bill_to=BILL_TO,
                        headers={"X-Request-Id": rid}).chat_completion(messages, max_tokens=2)
        sent = received(stack, rid)
        assert (sent.headers.get("x-hf-bill-to") == BILL_TO) is billed
        assert ("x-hf-bill-to" in {k.lower() for k in sent.headers}) is billed
    rid = request_id()
    gw = openai.OpenAI(base_url=f"{stack.gw_url}/v1", api_key=CLIENT_TOKEN)
    gw.chat.completions.create(model="oai/gpt-sim", messages=[{"role": "user", "content": "x"}], max_tokens=2,
                               extra_headers={"X-Request-Id": rid, "X-HF-Bill-To": BILL_TO})
    assert "x-hf-bill-to" not in {k.lower() for k in received(stack, rid).headers}


def test_a_raw_file_without_content_type_reaches_the_upstream_without_one(stack: Stack) -> None:
    rid = request_id()
    answer = httpx2.post(f"{stack.gw_url}/models/google/vit-base-patch16-224", content=PNG,
                         headers={"X-Request-Id": rid, "x-use-cache": "false"})
    assert answer.status_code == 200 and isinstance(answer.json()[0]["label"], str)  # flat, as the client reads it
    sent = received(stack, rid)
    assert sent.body == PNG and sent.content_type is None
