"""The Responses API through a listening gateway: the real openai SDK and pydantic-ai's Responses model.

The simulator plays an OpenAI-compatible server that speaks `/v1/responses`; the gateway relays it
for `kind: openai` upstreams (and the HF router's chat models), refuses it in OpenAI's shape where
the routed upstream cannot serve it, and puts it through the same limits as chat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pydantic_ai
import pytest
from openai import OpenAI
from openai.types.responses import FunctionToolParam, ResponseErrorEvent
from pydantic import BaseModel, Field
from pydantic_ai import NativeOutput
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from gateway.core.config import Settings, load_settings
from gateway.http.middleware.auth import hash_key
from tests.support.thread_stack import Stack, start_stack, stop_stack

KEY = "gwk_fake_responses_apps"
TIGHT_KEY = "gwk_fake_responses_tight"
TIGHT_TOKENS = 600  # the tight tenant's token bucket


def _settings(sim_url: str) -> Settings:
    return load_settings(
        None,
        upstream_url=sim_url,
        upstreams={
            "hf": {"kind": "hf"},
            "tgi": {"kind": "tgi", "base_url": f"{sim_url}/endpoints/tgi-a"},
            "oai": {"kind": "openai", "base_url": f"{sim_url}/v1"},
        },
        models=[
            {"name": "tgi/chat", "deployments": [{"upstream": "tgi"}]},
            {"name": "hf/embedder", "task": "feature-extraction", "deployments": [{"upstream": "hf"}]},
            {"name": "oai/*", "deployments": [{"upstream": "oai"}]},
            {"name": "mixed/*", "deployments": [{"upstream": "tgi"}, {"upstream": "oai"}]},
            {"name": "*", "deployments": [{"upstream": "hf"}]},
        ],
        keys=[{"sha256": hash_key(KEY), "tenant": "apps"}, {"sha256": hash_key(TIGHT_KEY), "tenant": "tight"}],
        tenants={"tight": {"limits": {"tokens": f"{TIGHT_TOKENS}/hour"}}},
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = start_stack(_settings)
    yield s
    stop_stack(s)


@pytest.fixture
def client(stack: Stack) -> OpenAI:
    return OpenAI(base_url=f"{stack.gw_url}/v1", api_key=KEY, max_retries=0)


class Weather(BaseModel):
    city: str
    celsius: int = Field(ge=-60, le=60)


class Trip(BaseModel):
    city: str
    days: int = Field(ge=1, le=30)
    budget: Literal["low", "mid", "high"]


WEATHER_TOOL: FunctionToolParam = {
    "type": "function", "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
    "strict": True,
}  # fmt: skip


@pytest.mark.parametrize("model", ["oai/assistant", "meta-llama/Llama-3.1-8B-Instruct"])
def test_create_answers_a_response_with_usage(client: OpenAI, model: str) -> None:
    response = client.responses.create(model=model, instructions="Be brief.", input="Say hello")
    assert response.status == "completed"
    assert response.output_text.strip()
    assert response.usage is not None and response.usage.output_tokens > 0


def test_a_stream_is_typed_events_in_order_ending_with_the_completed_response(client: OpenAI) -> None:
    events = list(client.responses.create(model="oai/assistant", input="Tell me a story", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == text
    same = client.responses.create(model="oai/assistant", input="Tell me a story")
    assert same.output_text == text  # the stream and its non-stream twin agree


def test_the_stream_is_relayed_byte_for_byte_without_done(stack: Stack) -> None:
    body = {"model": "oai/bytes", "input": "Relay me", "stream": True}
    direct = httpx.post(f"{stack.sim_url}/v1/responses", json=body).content
    via = httpx.post(f"{stack.gw_url}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert via.status_code == 200 and via.headers["content-type"].startswith("text/event-stream")
    assert via.content == direct
    assert b"[DONE]" not in via.content
    assert via.content.startswith(b"event: response.created\ndata: {")


def test_a_stream_cut_mid_way_ends_with_an_error_event_the_sdk_parses(client: OpenAI) -> None:
    events = list(client.responses.create(model="oai/story-cut-k4", input="Tell me a story", stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.output_item.added",
                                        "response.content_part.added", "error"]
    error = events[-1]
    assert isinstance(error, ResponseErrorEvent)
    assert error.sequence_number == 4 and error.code == "upstream_bad_response" and "oai" in error.message


def test_the_stream_helper_accumulates_the_final_response(client: OpenAI) -> None:
    with client.responses.stream(model="oai/assistant", input="Stream me a haiku") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) != ""


def test_a_function_call_round_trip(client: OpenAI) -> None:
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model="oai/agent", input=ask, tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    args = json.loads(calls[0].arguments)
    assert isinstance(args["city"], str)
    turn = [*ask, calls[0].model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"celsius": 21}'}]
    second = client.responses.create(model="oai/agent", input=turn, tools=[WEATHER_TOOL])
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text.strip()


def test_a_streamed_function_call_reaches_the_helper(client: OpenAI) -> None:
    with client.responses.stream(model="oai/agent", input="Weather in Oslo?", tools=[WEATHER_TOOL],
                                 tool_choice="required") as stream:
        final = stream.get_final_response()
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments)["city"]


def test_parse_returns_the_pydantic_model(client: OpenAI) -> None:
    parsed = client.responses.parse(model="oai/structured", input="Weather in Rome as JSON", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)


@pytest.mark.parametrize("output", ["tool", "native"])
def test_pydantic_ai_responses_model_gets_a_structured_answer(stack: Stack, output: str) -> None:
    model = OpenAIResponsesModel("oai/agent", provider=OpenAIProvider(base_url=f"{stack.gw_url}/v1", api_key=KEY))
    output_type: Any = Trip if output == "tool" else NativeOutput(Trip)
    result = pydantic_ai.Agent(model, output_type=output_type).run_sync("Plan a short trip")
    assert isinstance(result.output, Trip)


def test_the_openai_agents_sdk_calls_a_tool_and_returns_a_structured_output(stack: Stack) -> None:
    agents = pytest.importorskip("agents")  # the `agents` extra (openai-agents)
    agents.set_tracing_disabled(True)
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    model = agents.OpenAIResponsesModel(
        model="oai/agent", openai_client=openai.AsyncOpenAI(base_url=f"{stack.gw_url}/v1", api_key=KEY))
    agent = agents.Agent(name="planner", instructions="Check the weather, then plan.", model=model,
                         tools=[agents.function_tool(get_weather)], output_type=Trip)
    result = agents.Runner.run_sync(agent, "Plan a trip somewhere sunny")
    assert isinstance(result.final_output, Trip)
    assert len(calls) == 1  # the tool ran once, its result went back in the next Responses call


@pytest.mark.parametrize("model, kind", [("hf/embedder", "'hf' upstream for the HF task 'feature-extraction'"),
                                         ("tgi/chat", "'tgi' upstream")])
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_cannot_serve_it_is_a_clear_openai_error(client: OpenAI, model: str, kind: str,
                                                                   stream: bool) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.responses.create(model=model, input="hi", stream=stream)
    err = caught.value
    assert err.code == "unsupported_route" and err.type == "invalid_request_error"
    assert kind in err.message and "kind: openai" in err.message  # what it is routed to, and what to configure


def test_a_route_falls_back_past_a_deployment_that_cannot_serve_it(client: OpenAI, stack: Stack) -> None:
    response = client.responses.with_raw_response.create(model="mixed/assistant", input="hi")
    assert response.parse().output_text.strip()
    sent = stack.call_soon(lambda: [r.path for r in stack.sim.requests if r.model == "mixed/assistant"])
    assert sent == ["/v1/responses"]  # the tgi deployment refused before sending anything
    chat = client.chat.completions.create(model="mixed/assistant", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content  # chat still goes to the first deployment


def test_a_tenant_over_its_token_limit_gets_429_in_the_openai_shape(stack: Stack) -> None:
    tight = OpenAI(base_url=f"{stack.gw_url}/v1", api_key=TIGHT_KEY, max_retries=0)
    tight.responses.create(model="oai/limited", input="short", max_output_tokens=400)  # settles at ~401 used
    probe = tight.responses.with_raw_response.create(model="oai/limited", input="ok", max_output_tokens=1)
    left = int(probe.headers["x-ratelimit-remaining-tokens"])  # after the probe's own reservation (6)
    # The reservation is `instructions` + `input` (characters / 4, + 4 per item) + `max_output_tokens`:
    # the instructions' 100 tokens are what tip this one over.
    ask: dict[str, Any] = {"model": "oai/limited", "input": "y" * 8, "max_output_tokens": left - 60}
    with pytest.raises(openai.RateLimitError) as caught:
        tight.responses.create(instructions="x" * 400, **ask)
    err = caught.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "rate_limit_error"
    assert int(err.response.headers["retry-after"]) >= 1
    assert tight.responses.create(**ask).status == "incomplete"  # without them it fits (and fills its cap)
