"""Structured-output libraries against the simulator on a real port: `instructor` (tools, JSON-schema
and JSON modes; skipped unless the `instructor` extra is installed) and `pydantic-ai` (its OpenAI
chat and Responses models, with a function tool and a structured output) get valid answers, so an
app built on them can rehearse against the simulator."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.state import SimState
from tests.support.redis_server import unavailable
from tests.support.serving import serving
from tests.support.tools import INSTRUCTOR_INSTALL, need_module


def need(module: str) -> ModuleType:
    """A `[test]` dependency (pydantic-ai): a skip locally when missing, a failure in CI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"{module} is not installed")


class Place(BaseModel):
    city: str
    country: str = Field(min_length=2)


class Trip(BaseModel):
    destination: Place
    stops: list[Place] = Field(min_length=1)
    days: int = Field(ge=1, le=30)
    budget: Literal["low", "mid", "high"]
    notes: str | None = None


@pytest.fixture
async def live() -> AsyncIterator[tuple[str, SimState]]:
    app = create_simulator_app()
    async with serving(app) as url:
        yield f"{url}/v1", app[SIM_STATE]


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "JSON"])
async def test_instructor_gets_a_valid_model(live: tuple[str, SimState], mode: str) -> None:
    instructor = need_module("instructor", INSTRUCTOR_INSTALL)
    base_url, state = live
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-fake-test-key", max_retries=0)
    client = instructor.from_openai(sdk, mode=getattr(instructor.Mode, mode))
    trip = await client.chat.completions.create(
        model="meta-llama/Llama-3.1-8B-Instruct", response_model=Trip, max_retries=0,
        messages=[{"role": "user", "content": "Plan a week in Portugal"}])
    assert isinstance(trip, Trip) and trip.stops
    assert state.count(path_prefix="/v1/chat/completions") == 1  # valid first time: no re-ask
    await sdk.close()


async def test_pydantic_ai_chat_model_calls_a_tool_then_returns_structured_output(
        live: tuple[str, SimState]) -> None:
    agent_module, models, providers = (need("pydantic_ai"), need("pydantic_ai.models.openai"),
                                       need("pydantic_ai.providers.openai"))
    base_url, state = live
    provider = providers.OpenAIProvider(base_url=base_url, api_key="sk-fake-test-key")
    model = models.OpenAIChatModel("meta-llama/Llama-3.1-8B-Instruct", provider=provider)
    agent = agent_module.Agent(model, output_type=Trip)
    looked_up: list[str] = []

    @agent.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        looked_up.append(city)
        return "sunny"

    result = await agent.run("Plan a sunny trip")
    assert isinstance(result.output, Trip)
    assert len(looked_up) == 1  # first turn calls `weather`, the second the output tool
    assert state.count(path_prefix="/v1/chat/completions") == 2


async def test_pydantic_ai_responses_model_returns_structured_output(live: tuple[str, SimState]) -> None:
    agent_module, models, providers = (need("pydantic_ai"), need("pydantic_ai.models.openai"),
                                       need("pydantic_ai.providers.openai"))
    base_url, state = live
    provider = providers.OpenAIProvider(base_url=base_url, api_key="sk-fake-test-key")
    model: Any = models.OpenAIResponsesModel("meta-llama/Llama-3.1-8B-Instruct", provider=provider)
    result = await agent_module.Agent(model, output_type=Trip).run("Plan a trip")
    assert isinstance(result.output, Trip)
    assert state.count(path_prefix="/v1/responses") == 1
