"""The simulator's OpenAI routes on the wire (in-process): tool calls and their deltas, n choices,
logprobs, structured output, the Responses API object and events, and 400s for bad values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from gateway.core.clock import FakeClock
from gateway.simulator.app import SIM_STATE, create_simulator_app

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_PARAMS: dict[str, Any] = {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city", "unit"], "additionalProperties": False}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}]
FLAT_TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMS}]
MOVIE: dict[str, Any] = {"type": "object", "properties": {"title": {"type": "string"},
                                                          "year": {"type": "integer"}},
                         "required": ["title", "year"], "additionalProperties": False}


@pytest.fixture
async def sim() -> AsyncIterator[TestClient]:
    app = create_simulator_app(clock=FakeClock(autojump=True))
    async with TestClient(TestServer(app)) as client:
        yield client


async def post(sim: TestClient, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    resp = await sim.post(path, json=body)
    return resp.status, await resp.read()


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    assert raw.endswith(b"data: [DONE]\n\n")
    return [orjson.loads(e[len(b"data: "):]) for e in raw.split(b"\n\n") if e and e != b"data: [DONE]"]


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """Responses SSE: each event is an `event:` line naming the `data:` line's type."""
    out = []
    for block in [b for b in raw.split(b"\n\n") if b]:
        name, data = block.split(b"\n")
        event = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + event["type"].encode()
        out.append(event)
    return out


async def test_chat_tool_call_plain_and_streamed_as_openai_deltas(sim: TestClient) -> None:
    body = {"model": "m", "messages": USER, "tools": CHAT_TOOLS}
    status, raw = await post(sim, "/v1/chat/completions", body)
    assert status == 200
    choice = orjson.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert not list(Draft202012Validator(WEATHER_PARAMS).iter_errors(json.loads(call["function"]["arguments"])))

    _, raw = await post(sim, "/v1/chat/completions", {**body, "stream": True})
    chunks = chunks_of(raw)
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["tool_calls"] == [
        {"index": 0, "id": call["id"], "type": "function", "function": {"name": "get_weather", "arguments": ""}}]
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1]]
    assert len(pieces) > 3 and all(set(p) == {"index", "function"} and set(p["function"]) == {"arguments"}
                                   for p in pieces)
    assert "".join(p["function"]["arguments"] for p in pieces) == call["function"]["arguments"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


async def test_a_tool_result_gets_text_so_the_agent_loop_ends(sim: TestClient) -> None:
    _, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": USER, "tools": CHAT_TOOLS})
    call = orjson.loads(raw)["choices"][0]["message"]["tool_calls"][0]
    history = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"}]
    _, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": history, "tools": CHAT_TOOLS})
    choice = orjson.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"]
    assert "tool_calls" not in choice["message"]
    named = {"type": "function", "function": {"name": "get_weather"}}
    _, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": history, "tools": CHAT_TOOLS,
                                                      "tool_choice": named})
    assert orjson.loads(raw)["choices"][0]["finish_reason"] == "tool_calls"  # a named tool is always called


async def test_n_choices_interleave_in_index_order_with_usage_over_all(sim: TestClient) -> None:
    body = {"model": "m", "messages": USER, "n": 3, "max_tokens": 4}
    _, raw = await post(sim, "/v1/chat/completions", body)
    plain = orjson.loads(raw)
    texts = [c["message"]["content"] for c in plain["choices"]]
    assert [c["index"] for c in plain["choices"]] == [0, 1, 2] and len(set(texts)) == 3
    assert plain["usage"]["completion_tokens"] == 12
    _, raw = await post(sim, "/v1/chat/completions", {**body, "stream": True,
                                                      "stream_options": {"include_usage": True}})
    chunks = chunks_of(raw)
    assert all(len(c["choices"]) == 1 and c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    order = [c["choices"][0]["index"] for c in chunks[:-1]]
    assert order[:3] == [0, 1, 2] and order[3:6] == [0, 1, 2]  # round robin, in index order
    for index, text in enumerate(texts):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        assert "".join(m["delta"].get("content") or "" for m in mine) == text
        assert mine[0]["delta"]["role"] == "assistant" and mine[-1]["finish_reason"] == "length"


async def test_logprobs_in_the_real_shape_streamed_and_not(sim: TestClient) -> None:
    body = {"model": "m", "messages": USER, "logprobs": True, "top_logprobs": 2, "max_tokens": 3}
    _, raw = await post(sim, "/v1/chat/completions", body)
    logprobs = orjson.loads(raw)["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None and len(logprobs["content"]) == 3
    entry = logprobs["content"][0]
    assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"} and len(entry["top_logprobs"]) == 2
    assert set(entry["top_logprobs"][0]) == {"token", "logprob", "bytes"}
    _, raw = await post(sim, "/v1/chat/completions", {**body, "stream": True})
    streamed = [e for c in chunks_of(raw) if c["choices"][0]["logprobs"]
                for e in c["choices"][0]["logprobs"]["content"]]
    assert streamed == logprobs["content"]
    _, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert orjson.loads(raw)["choices"][0]["logprobs"] is None


async def test_json_schema_and_json_object_content(sim: TestClient) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "movie", "schema": MOVIE, "strict": True}}
    _, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": USER, "response_format": fmt})
    choice = orjson.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert not list(Draft202012Validator(MOVIE).iter_errors(json.loads(choice["message"]["content"])))
    _, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": USER, "response_format": fmt,
                                                      "stream": True})
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks_of(raw))
    assert streamed == choice["message"]["content"]
    _, raw = await post(sim, "/endpoints/my-tgi/v1/chat/completions",
                        {"messages": USER, "response_format": {"type": "json_object"}})
    assert isinstance(json.loads(orjson.loads(raw)["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize(("patch", "param"), [
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function"),
    ({"n": 0}, "n"),
    ({"n": 129}, "n"),
    ({"n": "3"}, "n"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": "json"}, "response_format"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": CHAT_TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/$defs/x"}}}]}, "tools"),
    ({"max_tokens": 0}, "max_tokens"),
])
async def test_bad_chat_values_get_a_400_in_openai_shape(sim: TestClient, patch: dict[str, Any], param: str) -> None:
    status, raw = await post(sim, "/v1/chat/completions", {"model": "m", "messages": USER, **patch})
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


async def test_bad_values_on_an_endpoint_get_the_tgi_dialect(sim: TestClient) -> None:
    status, raw = await post(sim, "/endpoints/my-tgi/v1/chat/completions", {"messages": USER, "n": 0})
    assert status == 422 and orjson.loads(raw)["error_type"] == "validation"
    status, raw = await post(sim, "/endpoints/my-tgi/v1/responses", {"input": 3})
    assert status == 422 and "input" in orjson.loads(raw)["error"]


RESPONSE_TEXT_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
]


async def test_responses_object_and_its_numbered_event_stream(sim: TestClient) -> None:
    body = {"model": "m", "instructions": "Be brief.", "input": "Say hello"}
    status, plain_raw = await post(sim, "/v1/responses", body)
    assert status == 200
    response = orjson.loads(plain_raw)
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["id"].startswith("resp_") and response["instructions"] == "Be brief."
    message = response["output"][0]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    text = message["content"][0]["text"]
    assert response["usage"]["input_tokens"] == 4 and response["usage"]["output_tokens"] == 5  # instructions count
    _, raw = await post(sim, "/v1/responses", {**body, "stream": True})
    assert b"[DONE]" not in raw
    events = events_of(raw)
    assert [e["type"] for e in events] == RESPONSE_TEXT_EVENTS
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == text
    final = events[-1]["response"]  # the body differs by `stream`, so the ids do too
    assert final["output"][0]["content"] == message["content"] and final["usage"] == response["usage"]
    assert {e["item"]["id"] for e in events if "item" in e} == {final["output"][0]["id"]}
    assert (await post(sim, "/v1/responses", body))[1] == plain_raw  # same request, same bytes


async def test_responses_function_call_then_text_after_its_output(sim: TestClient) -> None:
    body: dict[str, Any] = {"model": "m", "input": [{"role": "user", "content": "Weather?"}], "tools": FLAT_TOOLS}
    _, raw = await post(sim, "/v1/responses", body)
    call = orjson.loads(raw)["output"][0]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["call_id"].startswith("call_")
    assert not list(Draft202012Validator(WEATHER_PARAMS).iter_errors(json.loads(call["arguments"])))
    _, raw = await post(sim, "/v1/responses", {**body, "stream": True})
    kinds = [e["type"] for e in events_of(raw)]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    follow = {**body, "input": [*body["input"], call, {"type": "function_call_output", "call_id": call["call_id"],
                                                       "output": "18 degrees"}]}
    _, raw = await post(sim, "/v1/responses", follow)
    assert orjson.loads(raw)["output"][0]["type"] == "message"


async def test_responses_limit_json_schema_and_endpoint_route(sim: TestClient) -> None:
    _, raw = await post(sim, "/v1/responses", {"model": "m", "input": "x", "max_output_tokens": 3})
    response = orjson.loads(raw)
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["output_tokens"] == 3
    fmt = {"format": {"type": "json_schema", "name": "movie", "schema": MOVIE, "strict": True}}
    _, raw = await post(sim, "/endpoints/my-tgi/v1/responses", {"input": "x", "text": fmt})
    response = orjson.loads(raw)
    assert response["model"] == "my-tgi" and response["text"] == fmt
    content = json.loads(response["output"][0]["content"][0]["text"])
    assert not list(Draft202012Validator(MOVIE).iter_errors(content))
    assert sim.server.app[SIM_STATE].count(model="my-tgi", path_prefix="/endpoints/my-tgi/v1/responses") == 1
    status, raw = await post(sim, "/v1/responses", {"model": "m", "input": "x", "text": {"format": {"type": "x"}}})
    assert status == 400 and orjson.loads(raw)["error"]["param"] == "text.format.type"


async def test_a_failing_responses_stream_ends_with_a_numbered_error_event(sim: TestClient) -> None:
    _, raw = await post(sim, "/v1/responses", {"model": "m-midstream-k3", "input": "x", "stream": True})
    events = events_of(raw)
    assert [e["sequence_number"] for e in events] == [0, 1, 2, 3]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "server_error"
