"""Faithfulness: the real `huggingface_hub.InferenceClient` and `openai.OpenAI` against the simulator
on a real port (sync clients run in threads; the server runs in the test's loop)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import numpy as np
import openai
import pytest
from huggingface_hub import InferenceClient
from PIL import Image

from gateway.simulator.config import ModelSpec, SimConfig
from tests.support.live_simulator import FAKE_TOKEN, LiveSimulator, live_simulator


@pytest.fixture
async def live() -> AsyncIterator[LiveSimulator]:
    async with live_simulator(SimConfig(models={"acme/tgi-chat": ModelSpec(task="text-generation")})) as sim:
        yield sim


async def test_hf_text_generation_plain_details_and_stream(live: LiveSimulator) -> None:
    client = live.hf("openai-community/gpt2")
    text = await asyncio.to_thread(client.text_generation, "The capital of France is", max_new_tokens=5)
    assert isinstance(text, str) and len(text.split()) == 5
    detailed = await asyncio.to_thread(client.text_generation, "Hi", details=True, max_new_tokens=3)
    assert detailed.details is not None and detailed.details.generated_tokens == 3
    assert detailed.details.finish_reason == "length"

    def stream_tokens() -> list[str]:
        return list(client.text_generation("The capital of France is", max_new_tokens=5, stream=True))

    tokens = await asyncio.to_thread(stream_tokens)
    assert "".join(tokens) == text

    def stream_details() -> list[object]:
        return list(client.text_generation("Hi", details=True, stream=True, max_new_tokens=3))

    outputs = await asyncio.to_thread(stream_details)
    assert [o.index for o in outputs] == [1, 2, 3]  # type: ignore[attr-defined]
    assert outputs[-1].generated_text == detailed.generated_text  # type: ignore[attr-defined]


async def test_hf_chat_completion_plain_and_stream(live: LiveSimulator) -> None:
    client = live.hf("meta-llama/Llama-3.1-8B-Instruct")
    messages = [{"role": "user", "content": "Say hello"}]
    out = await asyncio.to_thread(client.chat_completion, messages, max_tokens=4)
    assert out.choices[0].message.role == "assistant" and out.usage.completion_tokens == 4

    def stream() -> list[object]:
        return list(client.chat_completion(messages, max_tokens=4, stream=True))

    chunks = await asyncio.to_thread(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # type: ignore[attr-defined]
    assert text == out.choices[0].message.content
    assert live.state.count(path_prefix="/hf-inference/models/meta-llama/Llama-3.1-8B-Instruct/v1/") == 2


async def test_hf_feature_extraction_single_and_batch(live: LiveSimulator) -> None:
    client = live.hf("BAAI/bge-small-en-v1.5")
    single = await asyncio.to_thread(client.feature_extraction, "hello world", normalize=True)
    assert single.shape == (1, 8) and single.dtype == np.float32
    assert float(np.linalg.norm(single[0])) == pytest.approx(1.0, abs=1e-5)
    batch = await asyncio.to_thread(client.feature_extraction, ["a", "b", "c"], normalize=True)
    assert batch.shape == (3, 8)


async def test_hf_classification_tasks(live: LiveSimulator) -> None:
    sst = live.hf("distilbert/distilbert-base-uncased-finetuned-sst-2-english")
    labels = await asyncio.to_thread(sst.text_classification, "I love this!")
    assert isinstance(labels, list) and len(labels) == 2
    assert {x.label for x in labels} == {"POSITIVE", "NEGATIVE"} and labels[0].score >= labels[1].score

    mnli = live.hf("facebook/bart-large-mnli")
    zero = await asyncio.to_thread(mnli.zero_shot_classification, "I have a problem with my iphone",
                                   candidate_labels=["urgent", "not urgent"])
    assert {x.label for x in zero} == {"urgent", "not urgent"}

    ner = live.hf("dslim/bert-base-NER")
    entities = await asyncio.to_thread(ner.token_classification, "My name is Sarah",
                                       aggregation_strategy="simple")
    assert [(e.word, e.start, e.end) for e in entities] == [("Sarah", 11, 16)]


async def test_hf_text_to_image(live: LiveSimulator) -> None:
    client = live.hf("stabilityai/stable-diffusion-xl-base-1.0")
    image = await asyncio.to_thread(client.text_to_image, "an astronaut", height=16, width=24)
    assert isinstance(image, Image.Image) and image.size == (24, 16)


async def test_openai_chat_plain_and_stream(live: LiveSimulator) -> None:
    client = live.openai()
    messages = [{"role": "user", "content": "Say hello"}]
    out = await asyncio.to_thread(client.chat.completions.create, model="meta-llama/Llama-3.1-8B-Instruct",
                                  messages=messages, max_tokens=6)
    assert out.choices[0].message.content and out.usage is not None and out.usage.completion_tokens == 6

    def stream() -> list[object]:
        return list(client.chat.completions.create(model="meta-llama/Llama-3.1-8B-Instruct", messages=messages,
                                                   max_tokens=6, stream=True,
                                                   stream_options={"include_usage": True}))

    chunks = await asyncio.to_thread(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # type: ignore[attr-defined]
    assert text == out.choices[0].message.content
    assert chunks[-1].usage.total_tokens == out.usage.total_tokens  # type: ignore[attr-defined]


async def test_openai_completions_embeddings_and_models(live: LiveSimulator) -> None:
    client = live.openai()
    completion = await asyncio.to_thread(client.completions.create, model="tgi", prompt="Once upon", max_tokens=5)
    assert len(completion.choices[0].text.split()) == 5
    default = await asyncio.to_thread(client.embeddings.create, model="BAAI/bge-small-en-v1.5", input=["a", "b"])
    as_float = await asyncio.to_thread(client.embeddings.create, model="BAAI/bge-small-en-v1.5",
                                       input=["a", "b"], encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.data[1].embedding == pytest.approx(as_float.data[1].embedding, rel=1e-6)
    sent = [r.json() for r in live.state.requests if r.path == "/v1/embeddings"]
    assert sent[0]["encoding_format"] == "base64"  # the SDK's default, decoded by the SDK
    models = await asyncio.to_thread(client.models.list)
    assert [m.id for m in models.data] == ["acme/tgi-chat"]


async def test_openai_honours_simulated_retry_after_ms(live: LiveSimulator) -> None:
    client = live.openai(max_retries=2)
    out = await asyncio.to_thread(client.chat.completions.create, model="m-429x2-ra10ms",
                                  messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content
    retries = [r.headers.get("x-stainless-retry-count") for r in live.state.requests]
    assert retries == ["0", "1", "2"]


async def test_openai_sees_midstream_error_as_api_error(live: LiveSimulator) -> None:
    client = live.openai()

    def consume() -> None:
        for _ in client.chat.completions.create(model="m-midstream-k2", stream=True,
                                                messages=[{"role": "user", "content": "x"}]):
            pass

    with pytest.raises(openai.APIError, match="Request failed during generation"):
        await asyncio.to_thread(consume)


async def test_real_disconnect_is_detected_without_handler_cancellation(live: LiveSimulator) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{live.base}/v1/chat/completions", json={
            "model": "m-endless-stream", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        assert resp.status == 200
        await resp.content.readany()
        resp.close()
    for _ in range(400):
        if live.state.cancelled == 1 and live.state.in_flight == 0:
            break
        await asyncio.sleep(0.005)
    assert live.state.cancelled == 1 and live.state.in_flight == 0


def test_base64_helper_matches_openai_decoding() -> None:
    # The SDK decodes with np.frombuffer(..., "float32"): check our encoding round-trips that way.
    from gateway.simulator.openai_objects import float32_base64

    decoded = np.frombuffer(base64.b64decode(float32_base64([0.5, -1.25])), dtype="float32")
    assert decoded.tolist() == [0.5, -1.25]


async def test_real_disconnect_during_slow_first_byte_is_detected(live: LiveSimulator) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        call = asyncio.ensure_future(session.post(f"{live.base}/hf-inference/models/m-slow-ttfb-30s",
                                                  json={"inputs": "x"}))
        for _ in range(400):
            if live.state.in_flight == 1:
                break
            await asyncio.sleep(0.005)
        call.cancel()
    for _ in range(400):
        if live.state.cancelled == 1 and live.state.in_flight == 0:
            break
        await asyncio.sleep(0.005)
    assert live.state.cancelled == 1 and live.state.in_flight == 0


async def test_hf_endpoint_info_and_health_check(live: LiveSimulator) -> None:
    url = f"{live.base}/hf-inference/models/openai-community/gpt2"
    client = InferenceClient(model=url, provider="hf-inference", token=FAKE_TOKEN)
    info = await asyncio.to_thread(client.get_endpoint_info)
    assert info["model_id"] == "openai-community/gpt2" and info["model_pipeline_tag"] == "text-generation"
    assert await asyncio.to_thread(client.health_check) is True
    tgi = InferenceClient(model=f"{live.base}/endpoints/my-tgi", provider="hf-inference", token=FAKE_TOKEN)
    assert (await asyncio.to_thread(tgi.get_endpoint_info))["model_id"] == "my-tgi"
    assert await asyncio.to_thread(tgi.text_generation, "Hi", max_new_tokens=2)
