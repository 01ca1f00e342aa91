"""The real huggingface_hub InferenceClient, unmodified, through a listening gateway, for every seed task.

Each call is made twice, once against the simulator directly and once through the gateway: what
the client parses must be equal.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from PIL import Image

from tests.support.thread_stack import CLIENT_TOKEN, GATEWAY_TOKEN, Stack

GEN = "mistralai/Mistral-7B-Instruct-v0.3"
EMBED = "BAAI/bge-small-en-v1.5"
SST = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
MNLI = "facebook/bart-large-mnli"
NER = "dslim/bert-base-NER"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
PREFIXES = ["/models/", "/hf-inference/models/"]


def pair(stack: Stack, prefix: str, model: str) -> tuple[InferenceClient, InferenceClient]:
    direct = InferenceClient(model=f"{stack.sim_url}/hf-inference/models/{model}", token=CLIENT_TOKEN)
    via = InferenceClient(model=f"{stack.gw_url}{prefix}{model}", token=CLIENT_TOKEN)
    return direct, via


@pytest.mark.parametrize("prefix", PREFIXES)
def test_text_generation_plain_and_details(stack: Stack, prefix: str) -> None:
    direct, via = pair(stack, prefix, GEN)
    prompt = "Explain gradient descent in one paragraph."
    assert via.text_generation(prompt, max_new_tokens=20) == direct.text_generation(prompt, max_new_tokens=20)
    d1 = direct.text_generation(prompt, max_new_tokens=4, details=True)
    d2 = via.text_generation(prompt, max_new_tokens=4, details=True)
    assert d2.generated_text == d1.generated_text and d2.details.generated_tokens == d1.details.generated_tokens


@pytest.mark.parametrize("prefix", PREFIXES)
def test_text_generation_stream(stack: Stack, prefix: str) -> None:
    direct, via = pair(stack, prefix, GEN)
    prompt = "List 5 best practices for writing RAG prompts:"
    want = list(direct.text_generation(prompt, max_new_tokens=6, stream=True))
    got = list(via.text_generation(prompt, max_new_tokens=6, stream=True))
    assert got == want and len(got) == 6
    got_d = list(via.text_generation(prompt, max_new_tokens=3, stream=True, details=True))
    assert got_d[-1].details is not None and got_d[-1].generated_text


@pytest.mark.parametrize("prefix", PREFIXES)
def test_chat_completion_plain_and_stream(stack: Stack, prefix: str) -> None:
    direct, via = pair(stack, prefix, GEN)
    msgs = [{"role": "system", "content": "You are concise."}, {"role": "user", "content": "LSTM vs Transformer?"}]
    a = via.chat_completion(msgs, max_tokens=12)
    b = direct.chat_completion(msgs, max_tokens=12)
    assert a.choices[0].message.content == b.choices[0].message.content
    chunks = [c.choices[0].delta.content for c in via.chat_completion(msgs, max_tokens=5, stream=True) if c.choices]
    want = [c.choices[0].delta.content for c in direct.chat_completion(msgs, max_tokens=5, stream=True) if c.choices]
    assert chunks == want


@pytest.mark.parametrize("prefix", PREFIXES)
def test_feature_extraction_single_and_batch(stack: Stack, prefix: str) -> None:
    direct, via = pair(stack, prefix, EMBED)
    texts = ["How do I cancel my subscription?", "What is the process to unsubscribe?"]
    got = via.feature_extraction(texts, normalize=True)
    np.testing.assert_array_equal(got, direct.feature_extraction(texts, normalize=True))
    assert got.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    one = via.feature_extraction("hello world", normalize=True)
    np.testing.assert_array_equal(one, direct.feature_extraction("hello world", normalize=True))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_classifications(stack: Stack, prefix: str) -> None:
    direct, via = pair(stack, prefix, SST)
    text = "The new update broke all my workflows. Very frustrated."
    got = via.text_classification(text)
    assert got == direct.text_classification(text)
    assert isinstance(got, list) and got[0].label
    d, v = pair(stack, prefix, MNLI)
    labels = ["billing", "account", "technical support", "general"]
    zs = v.zero_shot_classification("I need to update my payment method.", labels)
    assert zs == d.zero_shot_classification("I need to update my payment method.", labels)
    assert sorted(x.label for x in zs) == sorted(labels)
    d, v = pair(stack, prefix, NER)
    text = "Elon Musk founded SpaceX in Hawthorne, California in 2002."
    ents = v.token_classification(text)
    assert ents == d.token_classification(text) and ents


@pytest.mark.parametrize("prefix", PREFIXES)
def test_text_to_image(stack: Stack, prefix: str) -> None:
    direct, via = pair(stack, prefix, SDXL)
    img = via.text_to_image("an astronaut", height=64, width=64)
    assert isinstance(img, Image.Image)
    ref = direct.text_to_image("an astronaut", height=64, width=64)
    buf_a, buf_b = io.BytesIO(), io.BytesIO()
    img.save(buf_a, "PNG")
    ref.save(buf_b, "PNG")
    assert buf_a.getvalue() == buf_b.getvalue()


def test_legacy_zero_shot_shape_is_adapted(stack: Stack) -> None:
    client = InferenceClient(model=f"{stack.gw_url}/models/legacy/bart-large-mnli-legacy", token=CLIENT_TOKEN)
    out = client.zero_shot_classification("my phone is broken", ["urgent", "not urgent"])
    assert {x.label for x in out} == {"urgent", "not urgent"}


def test_tei_backend_answers_in_hf_shapes(stack: Stack) -> None:
    client = InferenceClient(model=f"{stack.gw_url}/models/tei/embed", token=CLIENT_TOKEN)
    assert client.feature_extraction("hello", normalize=True).ndim == 2
    cls = InferenceClient(model=f"{stack.gw_url}/models/tei/classify", token=CLIENT_TOKEN)
    out = cls.text_classification("I love this!")
    assert isinstance(out, list) and len(out) >= 2  # TEI's flat single-input answer was nested for the client


async def test_async_inference_client(stack: Stack) -> None:
    client = AsyncInferenceClient(model=f"{stack.gw_url}/models/{GEN}", token=CLIENT_TOKEN)
    text = await client.text_generation("Hi", max_new_tokens=3)
    assert isinstance(text, str) and text
    tokens = [t async for t in await client.text_generation("Hi", max_new_tokens=3, stream=True)]
    assert len(tokens) == 3
    chat = await client.chat_completion([{"role": "user", "content": "hi"}], max_tokens=4)
    assert chat.choices[0].message.content
    emb = AsyncInferenceClient(model=f"{stack.gw_url}/hf-inference/models/{EMBED}", token=CLIENT_TOKEN)
    assert (await emb.feature_extraction(["a", "b"], normalize=True)).shape[0] == 2


def test_upstream_saw_the_gateway_credential_never_the_clients(stack: Stack) -> None:
    via = InferenceClient(model=f"{stack.gw_url}/models/{SST}", token=CLIENT_TOKEN)
    via.text_classification("credential check")
    seen = [r.headers for r in stack.sim.requests]
    auths = {h.get("Authorization") or h.get("authorization") for h in seen}
    assert f"Bearer {GATEWAY_TOKEN}" in auths
    gw_requests = [h for h in seen if (h.get("X-Request-Id") or h.get("x-request-id"))]
    assert gw_requests
    for h in gw_requests:
        assert CLIENT_TOKEN not in str(h)


def test_bill_to_and_request_id_are_forwarded_and_legacy_headers_are_not(stack: Stack) -> None:
    client = InferenceClient(model=f"{stack.gw_url}/models/{SST}", token=CLIENT_TOKEN, bill_to="my-org",
                             headers={"X-Wait-For-Model": "true", "X-Use-Cache": "false", "X-Request-Id": "rid-e2e-1"})
    client.text_classification("forwarding check")
    req = [r for r in stack.sim.requests if r.headers.get("x-request-id") == "rid-e2e-1"][-1]
    assert req.headers.get("x-hf-bill-to") == "my-org"
    assert "x-wait-for-model" not in {k.lower() for k in req.headers}
    assert "x-use-cache" not in {k.lower() for k in req.headers}


def test_legacy_options_are_parsed_not_forwarded(stack: Stack) -> None:
    import httpx2

    body = {"inputs": "legacy flags", "options": {"wait_for_model": True, "use_cache": False}}
    r = httpx2.post(f"{stack.gw_url}/models/{SST}", json=body, headers={"X-Request-Id": "rid-e2e-2"})
    assert r.status_code == 200
    req = [x for x in stack.sim.requests if x.headers.get("x-request-id") == "rid-e2e-2"][-1]
    assert b"options" not in req.body and b"wait_for_model" not in req.body
