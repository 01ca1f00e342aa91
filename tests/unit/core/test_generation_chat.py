"""HF text generation carried over a chat route: the request, the answer and the stream (docs/hf-router.md)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.errors import BadRequest, UpstreamProtocolError
from gateway.core.generation_chat import TgiEvents, chat_request, tgi_answer
from gateway.core.sse import DONE

PROMPT = "Once upon a time"


def body(**params: Any) -> dict[str, Any]:
    return {"inputs": PROMPT, "parameters": params}


def test_generation_parameters_become_chat_parameters() -> None:
    sent = chat_request(body(max_new_tokens=7, temperature=0.2, top_p=0.9, seed=3, stop=["\n"], top_k=5,
                             repetition_penalty=1.1, details=True), "org/llm:novita", stream=False)
    assert sent == {"model": "org/llm:novita", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 7,
                    "temperature": 0.2, "top_p": 0.9, "seed": 3, "stop": ["\n"], "stream": False}


def test_greedy_decoding_is_temperature_zero_and_a_detailed_stream_asks_for_usage() -> None:
    sent = chat_request(body(do_sample=False, details=True), "m", stream=True)
    assert sent["temperature"] == 0 and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert "stream_options" not in chat_request(body(), "m", stream=True)


def test_a_json_grammar_becomes_a_response_format_and_a_regex_is_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    sent = chat_request(body(grammar={"type": "json", "value": orjson.dumps(schema).decode()}), "m", stream=False)
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "grammar", "schema": schema}}
    with pytest.raises(BadRequest, match="regex"):
        chat_request(body(grammar={"type": "regex", "value": "[a-z]+"}), "m", stream=False)
    with pytest.raises(BadRequest, match="one prompt"):
        chat_request({"inputs": ["a", "b"], "parameters": {}}, "m", stream=False)


def chat_answer(content: str, finish: str = "length", completion_tokens: int = 3) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": finish,
                                                      "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 4, "completion_tokens": completion_tokens, "total_tokens": 7}}


def test_the_chat_answer_becomes_tgis_list_or_object() -> None:
    assert tgi_answer(body(), as_list=True)(chat_answer(" a b c")) == [{"generated_text": " a b c"}]
    assert tgi_answer(body(), as_list=False)(chat_answer(" a b c")) == {"generated_text": " a b c"}
    full = tgi_answer(body(return_full_text=True), as_list=False)(chat_answer(" a b c"))
    assert full == {"generated_text": PROMPT + " a b c"}
    detailed = tgi_answer(body(details=True, seed=9), as_list=True)(chat_answer(" a", finish="stop"))
    assert detailed[0]["details"] == {"finish_reason": "eos_token", "generated_tokens": 3, "seed": 9, "prefill": [],
                                      "tokens": []}
    with pytest.raises(UpstreamProtocolError):
        tgi_answer(body(), as_list=True)({"object": "list"})


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return event({"object": "chat.completion.chunk", "choices": [choice]})


def tgi(events: list[bytes]) -> list[dict[str, Any]]:
    assert all(e.startswith(b"data:{") and e.endswith(b"\n\n") for e in events)  # TGI: no space after `data:`
    return [orjson.loads(e[5:]) for e in events]


def run(convert: TgiEvents, events: list[bytes]) -> list[dict[str, Any]]:
    out = [o for e in events for o in convert.feed(e)]
    return tgi(out + convert.end())


def test_chat_chunks_become_tgi_token_events_the_last_with_generated_text() -> None:
    convert = TgiEvents(body())
    got = run(convert, [chunk(role=True, content=""), chunk(" a"), chunk(" b"), chunk(finish="length"), DONE])
    assert [g["token"]["text"] for g in got] == [" a", " b"] and [g["index"] for g in got] == [0, 1]
    assert [g["generated_text"] for g in got] == [None, " a b"] and got[-1]["details"] is None


def test_a_detailed_stream_ends_with_tgis_details_from_the_usage_chunk() -> None:
    convert = TgiEvents(body(details=True, seed=5))
    usage = event({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 4,
                                                                              "completion_tokens": 2}})
    got = run(convert, [chunk(" a", role=True), chunk(" b", finish="stop"), usage, DONE])
    assert got[-1]["details"] == {"finish_reason": "eos_token", "generated_tokens": 2, "input_length": 4, "seed": 5}


def test_comments_pass_and_an_error_ends_the_stream_without_a_final_event() -> None:
    convert = TgiEvents(body())
    assert convert.feed(b": keep-alive\n\n") == [b": keep-alive\n\n"]
    assert convert.feed(chunk(" a")) == []  # held until the next token tells it is not the last
    failed = convert.feed(event({"error": {"message": "provider down", "type": "server_error"}}))
    assert tgi(failed) == [{"error": "provider down", "error_type": "generation"}]
    assert convert.end() == [] and convert.error is not None


def test_an_empty_generation_still_ends_with_generated_text() -> None:
    got = run(TgiEvents(body()), [chunk(role=True, content=""), chunk(finish="stop"), DONE])
    assert len(got) == 1 and got[0]["generated_text"] == "" and got[0]["token"]["text"] == ""
