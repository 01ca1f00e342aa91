"""Every simulator route, driven in-process: shapes, determinism, task dispatch and stats."""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from gateway.core.clock import FakeClock
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import ModelSpec, SimConfig
from gateway.simulator.state import SimState

GPT2 = "/hf-inference/models/openai-community/gpt2"


@pytest.fixture
async def sim() -> AsyncIterator[TestClient]:
    config = SimConfig(models={
        "acme/pinned-embedder": ModelSpec(task="feature-extraction", dim=4),
        "my-tei": ModelSpec(task="feature-extraction"),
        "my-emotions": ModelSpec(labels=["joy", "anger", "fear"]),
    })
    app = create_simulator_app(config, clock=FakeClock(autojump=True))
    async with TestClient(TestServer(app)) as client:
        yield client


def state_of(client: TestClient) -> SimState:
    return client.server.app[SIM_STATE]


def sse_events(raw: bytes) -> list[bytes]:
    return [e for e in raw.split(b"\n\n") if e]


def sse_json(raw: bytes, prefix: bytes) -> list[Any]:
    out = []
    for event in sse_events(raw):
        assert event.startswith(prefix), event
        payload = event[len(prefix):]
        if payload != b"[DONE]":
            out.append(orjson.loads(payload))
    return out


async def post(client: TestClient, path: str, body: Any, **headers: str) -> tuple[int, bytes, Any]:
    resp = await client.post(path, json=body, headers=headers or None)
    raw = await resp.read()
    return resp.status, raw, resp


async def test_text_generation_list_shape_details_and_determinism(sim: TestClient) -> None:
    body = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}}
    status, raw, _ = await post(sim, GPT2, body)
    assert status == 200
    again = await post(sim, GPT2, body)
    assert again[1] == raw  # same request, same bytes
    out = orjson.loads(raw)
    assert isinstance(out, list) and len(out[0]["generated_text"].split()) == 4
    _, raw, _ = await post(sim, GPT2, {"inputs": "Hi", "parameters": {"details": True, "max_new_tokens": 3}})
    details = orjson.loads(raw)[0]["details"]
    assert details["generated_tokens"] == 3 and details["finish_reason"] == "length" and len(details["tokens"]) == 3
    _, raw, _ = await post(sim, GPT2, {"inputs": "Hi"})
    assert len(orjson.loads(raw)[0]["generated_text"].split()) == 5  # default max_new_tokens


async def test_text_generation_stream_is_tgi_sse_without_done(sim: TestClient) -> None:
    body = {"inputs": "Hi", "parameters": {"details": True, "max_new_tokens": 3}, "stream": True}
    status, raw, resp = await post(sim, GPT2, body)
    assert status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    assert b"[DONE]" not in raw and raw.startswith(b"data:{")
    events = sse_json(raw, b"data:")
    assert [e["index"] for e in events] == [1, 2, 3]
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    assert events[-1]["details"]["generated_tokens"] == 3
    assert events[-1]["generated_text"] == "".join(e["token"]["text"] for e in events)
    plain = orjson.loads((await post(sim, GPT2, {**body, "stream": False}))[1])
    assert plain[0]["generated_text"] == events[-1]["generated_text"]


async def test_tgi_native_routes(sim: TestClient) -> None:
    _, raw, _ = await post(sim, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}})
    assert set(orjson.loads(raw)) == {"generated_text"}
    _, raw, _ = await post(sim, "/", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}})
    assert isinstance(orjson.loads(raw), list)
    _, raw, _ = await post(sim, "/", {"inputs": "Hi", "stream": True})
    assert len(sse_json(raw, b"data:")) == 5
    _, raw, _ = await post(sim, "/generate_stream", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}})
    assert len(sse_json(raw, b"data:")) == 2 and b"[DONE]" not in raw
    info = await (await sim.get("/info")).json()
    assert info["model_id"] == "default" and info["model_pipeline_tag"] == "text-generation"
    health = await sim.get("/endpoints/x/health")
    assert health.status == 200 and await health.read() == b""


async def test_chat_completion_plain_and_stream_agree(sim: TestClient) -> None:
    path = "/hf-inference/models/meta-llama/Llama-3.1-8B-Instruct/v1/chat/completions"
    body = {"model": "dummy", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4}
    _, raw, _ = await post(sim, path, {**body, "stream": False})
    obj = orjson.loads(raw)
    assert obj["object"] == "chat.completion" and obj["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert obj["choices"][0]["message"]["role"] == "assistant"
    assert obj["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    _, raw, _ = await post(sim, path, stream_body)
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = sse_json(raw, b"data: ")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length" and chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == obj["usage"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == obj["choices"][0]["message"]["content"]


async def test_openai_completions_and_models(sim: TestClient) -> None:
    _, raw, _ = await post(sim, "/v1/completions", {"model": "tgi", "prompt": "Once upon", "max_tokens": 3})
    obj = orjson.loads(raw)
    assert obj["object"] == "text_completion" and obj["usage"]["completion_tokens"] == 3
    _, raw, _ = await post(sim, "/v1/completions", {"model": "tgi", "prompt": "Once upon", "max_tokens": 3,
                                                   "stream": True})
    chunks = sse_json(raw, b"data: ")
    assert "".join(c["choices"][0]["text"] for c in chunks) == obj["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    _, raw, _ = await post(sim, "/v1/completions", {"model": "tgi", "prompt": ["a", "b"]})
    assert [c["index"] for c in orjson.loads(raw)["choices"]] == [0, 1]
    models = await (await sim.get("/v1/models")).json()
    assert models["object"] == "list" and {m["id"] for m in models["data"]} >= {"my-tei"}
    named = await (await sim.get("/endpoints/my-tgi/v1/models")).json()
    assert [m["id"] for m in named["data"]] == ["my-tgi"]


async def test_openai_embeddings_float_and_base64(sim: TestClient) -> None:
    body = {"model": "BAAI/bge-small-en-v1.5:hf-inference", "input": ["a", "b"]}
    _, raw, _ = await post(sim, "/v1/embeddings", {**body, "encoding_format": "float"})
    floats = orjson.loads(raw)
    assert floats["model"] == "BAAI/bge-small-en-v1.5" and len(floats["data"]) == 2
    _, raw, _ = await post(sim, "/v1/embeddings", {**body, "encoding_format": "base64"})
    encoded = orjson.loads(raw)["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], rel=1e-6)
    assert state_of(sim).count(model="BAAI/bge-small-en-v1.5") == 2


async def test_feature_extraction_shapes_dims_and_normalize(sim: TestClient) -> None:
    path = "/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction"
    _, raw, _ = await post(sim, path, {"inputs": "hello world", "normalize": True})
    single = orjson.loads(raw)
    assert len(single) == 1 and len(single[0]) == 8
    assert sum(x * x for x in single[0]) == pytest.approx(1.0)
    _, raw, _ = await post(sim, path, {"inputs": ["a", "b", "c"], "normalize": False, "dimensions": 3})
    batch = orjson.loads(raw)
    assert [len(v) for v in batch] == [3, 3, 3]
    _, raw, _ = await post(sim, "/hf-inference/models/acme/pinned-embedder", {"inputs": "x"})
    assert len(orjson.loads(raw)[0]) == 4  # task and dim from config
    _, raw, _ = await post(sim, "/pipeline/feature-extraction/sentence-transformers/all-MiniLM-L6-v2",
                           {"inputs": "x"})
    assert len(orjson.loads(raw)) == 1
    _, raw, _ = await post(sim, "/embed", {"inputs": "x"})
    assert len(orjson.loads(raw)) == 1 and isinstance(orjson.loads(raw)[0], list)


async def test_classification_nested_on_hf_routes_flat_on_tei_predict(sim: TestClient) -> None:
    path = "/hf-inference/models/distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    _, raw, _ = await post(sim, path, {"inputs": "I love this!", "parameters": {}})
    nested = orjson.loads(raw)
    assert len(nested) == 1 and {r["label"] for r in nested[0]} == {"POSITIVE", "NEGATIVE"}
    _, raw, _ = await post(sim, "/predict", {"inputs": "I love this!"})
    flat = orjson.loads(raw)
    assert isinstance(flat[0], dict)
    _, raw, _ = await post(sim, "/predict", {"inputs": ["a", "b"]})
    assert [len(x) for x in orjson.loads(raw)] == [2, 2]
    _, raw, _ = await post(sim, "/endpoints/my-emotions/predict", {"inputs": "x"})
    assert {r["label"] for r in orjson.loads(raw)} == {"joy", "anger", "fear"}


async def test_zero_shot_list_form_and_legacy_dict(sim: TestClient) -> None:
    body = {"inputs": "my phone broke", "parameters": {"candidate_labels": ["urgent", "not urgent"],
                                                       "multi_label": False}}
    _, raw, _ = await post(sim, "/hf-inference/models/facebook/bart-large-mnli", body)
    ranked = orjson.loads(raw)
    assert ranked[0]["score"] >= ranked[1]["score"]
    _, raw, _ = await post(sim, "/models/acme/legacy-mnli", body)
    legacy = orjson.loads(raw)
    assert legacy["sequence"] == "my phone broke" and set(legacy["labels"]) == {"urgent", "not urgent"}


async def test_token_classification_image_similarity_and_rerank(sim: TestClient) -> None:
    _, raw, _ = await post(sim, "/hf-inference/models/dslim/bert-base-NER",
                           {"inputs": "My name is Sarah", "parameters": {"aggregation_strategy": "simple"}})
    (entity,) = orjson.loads(raw)
    assert (entity["word"], entity["start"], entity["end"]) == ("Sarah", 11, 16)
    assert set(entity) == {"entity_group", "score", "word", "start", "end"}
    status, raw, resp = await post(sim, "/hf-inference/models/some/model",
                                   {"inputs": "an astronaut", "parameters": {"width": 12, "height": 10}},
                                   Accept="image/png")
    assert status == 200 and resp.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(raw)).size == (12, 10)
    _, raw, _ = await post(sim, "/hf-inference/models/x/pipeline/sentence-similarity",
                           {"inputs": {"source_sentence": "a", "sentences": ["a", "b"]}})
    scores = orjson.loads(raw)
    assert scores[0] == pytest.approx(1.0) and len(scores) == 2
    _, raw, _ = await post(sim, "/rerank", {"query": "q", "texts": ["a", "b"], "return_text": True})
    assert {r["text"] for r in orjson.loads(raw)} == {"a", "b"}
    _, raw, _ = await post(sim, "/endpoints/my-tei", {"query": "q", "texts": ["a"]})
    assert orjson.loads(raw)[0]["index"] == 0


async def test_native_root_dispatches_on_endpoint_task(sim: TestClient) -> None:
    _, raw, _ = await post(sim, "/endpoints/my-tei", {"inputs": "x"})
    assert len(orjson.loads(raw)[0]) == 8
    _, raw, _ = await post(sim, "/endpoints/whatever/", {"inputs": "x", "normalize": True})
    assert isinstance(orjson.loads(raw)[0], list)


async def test_bad_input_gets_the_route_dialect(sim: TestClient) -> None:
    status, raw, _ = await post(sim, "/generate", {"parameters": {}})
    assert status == 422 and orjson.loads(raw)["error_type"] == "validation"
    status, raw, resp = await post(sim, "/v1/chat/completions", {"model": "m", "messages": []})
    assert status == 400 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
    assert resp.headers["X-Error-Message"]
    resp = await sim.post(GPT2, data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "error" in await resp.json()
    status, raw, _ = await post(sim, "/hf-inference/models/m/pipeline/speech-to-dance", {"inputs": "x"})
    assert status == 400
    assert (await sim.post("/nowhere", json={})).status == 404


async def test_stats_record_every_request_with_model_task_and_headers(sim: TestClient) -> None:
    await post(sim, GPT2, {"inputs": "Hi"}, **{"X-Custom-Header": "yes"})
    await post(sim, "/endpoints/my-tgi/generate", {"inputs": "Hi"})
    await post(sim, "/v1/chat/completions", {"model": "org/chat:novita", "messages": [{"role": "user",
                                                                                   "content": "x"}]})
    await post(sim, "/endpoints/my-tgi/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    state = state_of(sim)
    assert state.count() == 4
    assert state.count(model="openai-community/gpt2") == 1
    assert state.count(model="my-tgi") == 2 and state.count(path_prefix="/endpoints/") == 2
    assert state.count(model="org/chat") == 1
    first = state.requests[0]
    assert first.method == "POST" and first.path == GPT2 and first.task == "text-generation"
    assert first.headers["X-Custom-Header"] == "yes" and first.json() == {"inputs": "Hi"}
    assert "X-Custom-Header" in list(first.headers)  # original case kept...
    assert first.headers.get("x-custom-header") == "yes" and "x-CUSTOM-header" in first.headers  # ...lookups ignore it
    assert state.in_flight == 0 and state.max_in_flight >= 1
    stats = await (await sim.get("/_sim/stats")).json()
    assert stats["total"] == 4 and stats["by_model"]["my-tgi"] == 2
    listed = await (await sim.get("/_sim/requests")).json()
    assert len(listed) == 4 and listed[1]["path"] == "/endpoints/my-tgi/generate"
    assert (await sim.post("/_sim/reset")).status == 200
    assert state.count() == 0 and state.requests == []


async def test_fast_mode_serves_the_same_bytes_without_records() -> None:
    requests = [
        (GPT2, {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}),
        (GPT2, {"inputs": "Hi", "stream": True}),
        ("/v1/chat/completions", {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}),
        ("/v1/embeddings", {"model": "m", "input": "x"}),
    ]
    answers: dict[bool, list[bytes]] = {}
    for fast in (False, True):
        app = create_simulator_app(SimConfig(fast=fast), clock=FakeClock(autojump=True))
        async with TestClient(TestServer(app)) as client:
            answers[fast] = [(await post(client, path, body))[1] for path, body in requests * 2]
            state = state_of(client)
            assert state.count() == 8 and state.count(model="m") == 4
            assert (state.requests == []) is fast
            assert (await post(client, HF_COLD, {"inputs": "x"}))[0] == 503  # faults still apply
    assert answers[True] == answers[False]


HF_COLD = "/hf-inference/models/m-cold-10s"


async def test_oversized_body_is_counted_and_refused(sim: TestClient) -> None:
    from gateway.simulator.app import MAX_BODY

    resp = await sim.post(GPT2, data=b"x" * (MAX_BODY + 1), headers={"Content-Type": "application/json"})
    assert resp.status == 413 and "error" in await resp.json()
    assert state_of(sim).count(path_prefix=GPT2) == 1
