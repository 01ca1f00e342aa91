"""The simulator playing today's router: providers per model, chosen by suffix or policy, hf-inference refusing LLMs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.simulator.config import ModelSpec, SimConfig
from tests.support.live_simulator import LiveSimulator, live_simulator

LLM = "meta-llama/Llama-3.1-8B-Instruct"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    config = SimConfig(models={LLM: ModelSpec(providers=["novita", "together", "groq"])})
    async with live_simulator(config) as live:
        yield live


async def post(sim: LiveSimulator, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.post(f"{sim.base}{path}", json=body) as resp:
        return resp.status, dict(resp.headers), await resp.json()


@pytest.mark.parametrize(("model", "provider"), [
    (LLM, "novita"), (f"{LLM}:fastest", "novita"), (f"{LLM}:preferred", "novita"), (f"{LLM}:cheapest", "groq"),
    (f"{LLM}:together", "together"), ("acme/unlisted", "hf-inference"), ("acme/unlisted:sambanova", "sambanova"),
])  # fmt: skip
async def test_the_chat_route_picks_the_provider_by_suffix(sim: LiveSimulator, model: str, provider: str) -> None:
    status, headers, answer = await post(sim, "/v1/chat/completions", {"model": model, "messages": MESSAGES})
    assert status == 200 and answer["choices"][0]["message"]["content"]
    assert headers["x-inference-provider"] == provider and sim.state.requests[-1].provider == provider


async def test_a_provider_that_does_not_serve_the_model_is_refused(sim: LiveSimulator) -> None:
    status, headers, answer = await post(sim, "/v1/chat/completions", {"model": f"{LLM}:fal-ai", "messages": MESSAGES})
    assert status == 400 and "x-inference-provider" not in headers
    assert answer["error"]["param"] == "model" and "fal-ai" in answer["error"]["message"]


@pytest.mark.parametrize("path", [f"/hf-inference/models/{LLM}", f"/models/{LLM}",
                                  f"/hf-inference/models/{LLM}/v1/chat/completions"])
async def test_hf_inference_refuses_a_model_it_does_not_serve(sim: LiveSimulator, path: str) -> None:
    body = {"inputs": "Hello", "parameters": {"max_new_tokens": 2}, "messages": MESSAGES}
    status, _, answer = await post(sim, path, body)
    error = answer["error"] if isinstance(answer["error"], str) else answer["error"]["message"]
    assert status == 404 and "not served by provider hf-inference" in error and "novita" in error


async def test_hf_inference_serves_and_names_itself_for_other_models(sim: LiveSimulator) -> None:
    status, headers, answer = await post(sim, "/hf-inference/models/openai-community/gpt2",
                                         {"inputs": "Hello", "parameters": {"max_new_tokens": 2}})
    assert status == 200 and answer[0]["generated_text"] and headers["x-inference-provider"] == "hf-inference"
