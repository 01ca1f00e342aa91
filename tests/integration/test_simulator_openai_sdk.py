"""Real clients against the simulator on a real port. The `openai` SDK: tool calls (and the `.stream()`
helper accumulating their deltas), `chat.completions.parse` with pydantic models, n choices, logprobs,
and the Responses API (`responses.create`, `.stream()`, `.parse()`); `huggingface_hub.InferenceClient`:
tool calls, JSON output and logprobs on an HF router URL. Sync clients run in threads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from gateway.simulator.app import create_simulator_app
from tests.support.serving import serving

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
USER: list[Any] = [{"role": "user", "content": "Plan a trip to Paris"}]


class Place(BaseModel):
    city: str
    country: str = Field(min_length=2)


class Trip(BaseModel):
    destination: Place
    stops: list[Place] = Field(min_length=1)
    days: int = Field(ge=1, le=30)
    budget: Literal["low", "mid", "high"]
    notes: str | None


class GetWeather(BaseModel):
    """Weather for a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with serving(create_simulator_app()) as url:
        yield f"{url}/v1"


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="sk-fake-test-key", max_retries=0)


async def test_tool_call_plain_and_through_the_stream_helper(base_url: str) -> None:
    sdk = client(base_url)
    tools = [openai.pydantic_function_tool(GetWeather)]
    parsed = await asyncio.to_thread(sdk.chat.completions.parse, model=MODEL, messages=USER, tools=tools)
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "GetWeather" and isinstance(call.function.parsed_arguments, GetWeather)

    def stream() -> tuple[list[Any], Any]:
        with sdk.chat.completions.stream(model=MODEL, messages=USER, tools=tools) as events:
            seen = list(events)
            return seen, events.get_final_completion()

    events, final = await asyncio.to_thread(stream)
    deltas = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(deltas) > 3 and len(done) == 1 and done[0].name == "GetWeather"
    assert done[0].parsed_arguments == call.function.parsed_arguments
    streamed = final.choices[0].message.tool_calls[0]
    assert streamed.id == call.id and streamed.function.arguments == call.function.arguments
    assert final.choices[0].finish_reason == "tool_calls"


async def test_parse_with_a_nested_pydantic_model_plain_and_streamed(base_url: str) -> None:
    sdk = client(base_url)
    parsed = await asyncio.to_thread(sdk.chat.completions.parse, model=MODEL, messages=USER, response_format=Trip)
    trip = parsed.choices[0].message.parsed
    assert isinstance(trip, Trip) and trip.stops and 1 <= trip.days <= 30

    def stream() -> Any:
        with sdk.chat.completions.stream(model=MODEL, messages=USER, response_format=Trip) as events:
            return [e for e in events if e.type == "content.done"]

    done = await asyncio.to_thread(stream)
    assert len(done) == 1 and done[0].parsed == trip


async def test_n_choices_and_logprobs_with_the_async_client(base_url: str) -> None:
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-fake-test-key", max_retries=0)
    # No max_tokens: with a limit the simulator fills it (finish_reason "length"), and the stream
    # helper's get_final_completion() raises LengthFinishReasonError on that, as on a real model.
    out = await sdk.chat.completions.create(model=MODEL, messages=USER, n=3, logprobs=True, top_logprobs=3)
    assert [c.index for c in out.choices] == [0, 1, 2] and len({c.message.content for c in out.choices}) == 3
    entries = out.choices[2].logprobs.content  # type: ignore[union-attr]
    assert entries is not None and len(entries) == 5 and all(len(e.top_logprobs) == 3 for e in entries)
    assert out.usage is not None and out.usage.completion_tokens == 15

    async with sdk.chat.completions.stream(model=MODEL, messages=USER, n=3, logprobs=True, top_logprobs=3) as events:
        logprob_done = [e async for e in events if e.type == "logprobs.content.done"]
        final = await events.get_final_completion()
    assert [c.message.content for c in final.choices] == [c.message.content for c in out.choices]
    assert len(logprob_done) == 3 and logprob_done[2].content == entries
    await sdk.close()


async def test_bad_n_is_a_bad_request_for_the_sdk(base_url: str) -> None:
    sdk = client(base_url)
    with pytest.raises(openai.BadRequestError) as raised:
        await asyncio.to_thread(sdk.chat.completions.create, model=MODEL, messages=USER, n=200)
    assert raised.value.param == "n"


async def test_responses_create_plain_and_streamed(base_url: str) -> None:
    sdk = client(base_url)
    out = await asyncio.to_thread(sdk.responses.create, model=MODEL, instructions="Be brief.", input="Say hi")
    assert out.status == "completed" and out.output_text and out.usage is not None
    assert out.usage.total_tokens == out.usage.input_tokens + out.usage.output_tokens

    def raw_stream() -> list[Any]:
        return list(sdk.responses.create(model=MODEL, input="Say hi", stream=True))

    events = await asyncio.to_thread(raw_stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))

    def helper() -> Any:
        with sdk.responses.stream(model=MODEL, input="Say hi") as stream:
            deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            return deltas, stream.get_final_response()

    deltas, final = await asyncio.to_thread(helper)
    assert final.output_text == deltas == events[-1].response.output_text


async def test_responses_parse_and_function_calls(base_url: str) -> None:
    sdk = client(base_url)
    parsed = await asyncio.to_thread(sdk.responses.parse, model=MODEL, input="Plan a trip", text_format=Trip)
    assert isinstance(parsed.output_parsed, Trip)

    tool = {"type": "function", "name": "get_weather", "parameters": GetWeather.model_json_schema()}
    out = await asyncio.to_thread(sdk.responses.create, model=MODEL, input="Weather in Paris?", tools=[tool])
    call = out.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    GetWeather.model_validate_json(call.arguments)
    follow = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}]
    answer = await asyncio.to_thread(sdk.responses.create, model=MODEL, input=follow, tools=[tool])
    assert answer.output[0].type == "message" and answer.output_text


async def test_huggingface_hub_client_reads_tool_calls_json_and_logprobs(base_url: str) -> None:
    from huggingface_hub import InferenceClient

    hf = InferenceClient(model=base_url.removesuffix("/v1") + f"/hf-inference/models/{MODEL}",
                         token="hf_fake_test_token")
    tools = [openai.pydantic_function_tool(GetWeather)]
    out = await asyncio.to_thread(hf.chat_completion, USER, tools=tools, tool_choice="auto")
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert out.choices[0].finish_reason == "tool_calls"
    GetWeather.model_validate_json(call.function.arguments)  # type: ignore[arg-type]

    def streamed_arguments() -> str:
        return "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index]
                       for c in hf.chat_completion(USER, tools=tools, stream=True)
                       if c.choices and c.choices[0].delta.tool_calls)

    assert await asyncio.to_thread(streamed_arguments) == call.function.arguments
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": Trip.model_json_schema()}}
    out = await asyncio.to_thread(hf.chat_completion, USER, response_format=fmt, logprobs=True, top_logprobs=2)
    Trip.model_validate_json(out.choices[0].message.content or "")
    assert out.choices[0].logprobs is not None and out.choices[0].logprobs.content
