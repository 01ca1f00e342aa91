"""What the simulated model answers: which tool it calls, when it answers with text or JSON, how a
limit cuts an answer, and the tokens and logprobs entries of any answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway.simulator.answers import (
    Ask,
    FunctionTool,
    OutputFormat,
    ToolChoice,
    answer,
    tool_to_call,
)
from gateway.simulator.logprobs import logprob_entries, split_tokens
from gateway.simulator.textgen import generate

WEATHER = FunctionTool("get_weather", {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]})
TIME = FunctionTool("get_time", {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}})
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"title": {"type": "string"},
                                                           "year": {"type": "integer", "minimum": 1900}},
                          "required": ["title", "year"], "additionalProperties": False}


def ask(**kw: Any) -> Ask:
    base: dict[str, Any] = {"model": "m", "prompt": "What is the weather in Paris", "seed": None, "limit": None,
                            "default_tokens": 5}
    return Ask(**{**base, **kw})


@pytest.mark.parametrize(("choice", "called", "after_tool", "expected"), [
    (ToolChoice("auto"), frozenset(), False, "get_weather"),
    (ToolChoice("auto"), frozenset({"get_weather"}), True, None),  # a tool result ends the loop
    (ToolChoice("none"), frozenset(), False, None),
    (ToolChoice("named", "get_time"), frozenset({"get_time"}), True, "get_time"),
    (ToolChoice("required"), frozenset({"get_weather"}), True, "get_time"),  # the next uncalled tool
    (ToolChoice("required"), frozenset({"get_weather", "get_time"}), True, "get_weather"),
])
def test_tool_selection(choice: ToolChoice, called: frozenset[str], after_tool: bool, expected: str | None) -> None:
    request = ask(tools=(WEATHER, TIME), tool_choice=choice, called=called, after_tool_result=after_tool)
    tool = tool_to_call(request)
    assert (tool.name if tool else None) == expected
    result = answer(request)
    if expected is None:
        assert result.tool_call is None and result.finish == "stop"
    else:
        assert result.tool_call is not None and result.tool_call.name == expected
        assert result.finish == "tool_calls" and result.tool_call.call_id.startswith("call_")


def test_tool_arguments_are_a_json_string_valid_against_the_parameters() -> None:
    result = answer(ask(tools=(WEATHER,)))
    assert result.tool_call is not None
    arguments = json.loads(result.tool_call.arguments)
    assert not list(Draft202012Validator(WEATHER.parameters).iter_errors(arguments))
    assert result.text == result.tool_call.arguments  # tokens are the argument pieces


def test_json_formats_give_json_content() -> None:
    loose = json.loads(answer(ask(output=OutputFormat("json_object"))).text)
    assert isinstance(loose, dict) and loose
    strict = answer(ask(output=OutputFormat("json_schema", SCHEMA, "movie", strict=True)))
    assert strict.finish == "stop"
    assert not list(Draft202012Validator(SCHEMA).iter_errors(json.loads(strict.text)))


def test_a_limit_shorter_than_the_json_cuts_it_with_length() -> None:
    full = answer(ask(output=OutputFormat("json_schema", SCHEMA)))
    cut = answer(ask(output=OutputFormat("json_schema", SCHEMA), limit=3))
    assert cut.finish == "length" and len(cut.tokens) == 3 and full.text.startswith(cut.text)
    roomy = answer(ask(output=OutputFormat("json_schema", SCHEMA), limit=500))
    assert roomy.finish == "stop" and roomy.text == full.text
    tool = answer(ask(tools=(WEATHER,), limit=2))
    assert tool.finish == "length" and tool.tool_call is not None and len(tool.tokens) == 2


def test_prose_choice_zero_is_the_generator_text_and_other_choices_differ() -> None:
    first = answer(ask(limit=4), 0)
    assert first.text == generate("m", "What is the weather in Paris", 4).text and first.finish == "length"
    assert answer(ask(limit=4), 1).text != first.text
    assert answer(ask(), 0).finish == "stop" and len(answer(ask(), 0).tokens) == 5
    assert answer(ask(), 2) == answer(ask(), 2)


@pytest.mark.parametrize("text", ['{"city":"Paris","days":[1,2]}', " the quick fox", "héllo  wörld !", ""])
def test_tokens_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(split_tokens(text)) == text


def test_prose_token_count_is_the_word_count() -> None:
    assert split_tokens(" the quick brown fox") == [" the", " quick", " brown", " fox"]


def test_logprob_entries_have_the_openai_shape_and_rank_the_chosen_token_first() -> None:
    entries = logprob_entries([" the", " café"], b"seed", top=3)
    assert [e["token"] for e in entries] == [" the", " café"]
    for entry in entries:
        assert entry["bytes"] == list(entry["token"].encode("utf-8")) and entry["logprob"] < 0
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and tops[0]["token"] == entry["token"]
        assert len({t["token"] for t in tops}) == 3
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
    assert logprob_entries([" the"], b"seed", top=0)[0]["top_logprobs"] == []
    assert logprob_entries([" the", " café"], b"seed", top=3) == entries


def test_json_object_follows_a_schema_written_in_the_prompt() -> None:
    prompt = f"Answer in JSON matching this schema:\n{json.dumps(SCHEMA, indent=2)}\nThanks {{not json}}"
    content = json.loads(answer(ask(prompt=prompt, output=OutputFormat("json_object"))).text)
    assert set(content) == {"title", "year"} and content["year"] >= 1900
    broken = 'Schema: {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}'
    assert set(json.loads(answer(ask(prompt=broken, output=OutputFormat("json_object"))).text)) == {"answer"}
    assert set(json.loads(answer(ask(prompt="{} {[", output=OutputFormat("json_object"))).text)) == {"answer"}
