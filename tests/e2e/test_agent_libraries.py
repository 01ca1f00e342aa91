"""Structured-output libraries through a listening gateway: pydantic-ai (a `[test]` dependency) and
instructor in tools mode (its own extra: skipped unless installed) get valid models from the simulator."""

from __future__ import annotations

from typing import Literal

import openai
import pydantic_ai
import pytest
from pydantic import BaseModel, Field
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.support.thread_stack import Stack
from tests.support.tools import INSTRUCTOR_INSTALL, need_module

MODELS = ["oai/agent", "meta-llama/Llama-3.1-8B-Instruct"]  # an openai upstream, the hf upstream's chat


class Place(BaseModel):
    city: str
    country: str = Field(min_length=2)


class Trip(BaseModel):
    destination: Place
    days: int = Field(ge=1, le=30)
    budget: Literal["low", "mid", "high"]


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_gets_a_valid_structured_output(stack: Stack, model: str) -> None:
    chat = OpenAIChatModel(model, provider=OpenAIProvider(base_url=f"{stack.gw_url}/v1", api_key="sk-fake-client"))
    result = pydantic_ai.Agent(chat, output_type=Trip).run_sync("Plan a short trip")
    assert isinstance(result.output, Trip)


@pytest.mark.parametrize("model", MODELS)
def test_instructor_tools_mode_gets_a_valid_model(stack: Stack, model: str) -> None:
    instructor = need_module("instructor", INSTRUCTOR_INSTALL)
    client = instructor.from_openai(openai.OpenAI(base_url=f"{stack.gw_url}/v1", api_key="sk-fake-client",
                                                  max_retries=0), mode=instructor.Mode.TOOLS)
    trip = client.chat.completions.create(model=model, response_model=Trip, max_retries=0,
                                          messages=[{"role": "user", "content": "Plan a short trip"}])
    assert isinstance(trip, Trip)
