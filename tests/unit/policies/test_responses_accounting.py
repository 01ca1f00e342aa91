"""Responses API calls in the token accounting (estimate, stream meter, stream watch) and the cache plan."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.call import Call, Dialect, Op
from gateway.core.clock import FakeClock
from gateway.core.routing import Router
from gateway.observability.stream_watch import StreamWatch
from gateway.policies.cache.key import CachePlanner
from gateway.policies.limits.token_accounting import StreamMeter, estimate
from gateway.upstream.fake import FakeUpstream
from tests.support.cache_kit import settings

CLOCK = FakeClock()


def _call(body: dict[str, Any], router: Router | None = None) -> Call:
    return Call(request_id="r", dialect=Dialect.OPENAI, op=Op.RESPONSES, route_label="responses", model="m",
                route=router.resolve("m") if router else None, body=body, raw=orjson.dumps(body),  # type: ignore[arg-type]
                task="responses")


@pytest.mark.parametrize("body, expected", [
    ({"input": "x" * 40}, 10 + 4 + 256),  # a string input is one message
    ({"input": "x" * 40, "instructions": "y" * 40, "max_output_tokens": 9}, 20 + 4 + 9),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x" * 80}, {"type": "input_image"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a":"' + "z" * 32 + '"}'},
                {"type": "function_call_output", "call_id": "c", "output": "w" * 40}],
      "max_output_tokens": 100}, 20 + 10 + 10 + 3 * 4 + 100),
])
def test_the_estimate_reads_input_instructions_and_max_output_tokens(body: dict[str, Any], expected: int) -> None:
    assert estimate(_call(body), 256) == expected


def _event(kind: str, **data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


USAGE = {"input_tokens": 11, "output_tokens": 3, "total_tokens": 14}
STREAM = [
    _event("response.created", response={"status": "in_progress", "usage": None, "error": None}),
    *(_event("response.output_text.delta", delta=w) for w in ("a", " b", " c")),
    _event("response.completed", response={"status": "completed", "usage": USAGE, "error": None}),
]


@pytest.mark.parametrize("last, status", [("response.completed", "completed"), ("response.incomplete", "incomplete")])
def test_the_meter_takes_the_usage_of_the_last_event(last: str, status: str) -> None:
    meter = StreamMeter(prompt=99)
    for event in [*STREAM[:-1], _event(last, response={"status": status, "usage": USAGE})]:
        meter.feed(event)
    assert meter.total() == 14


def test_without_usage_the_meter_counts_events() -> None:
    meter = StreamMeter(prompt=5)
    for event in STREAM[:-1]:
        meter.feed(event)
    assert meter.total() == 5 + 4


async def test_the_metrics_watch_reads_the_same_usage() -> None:
    async def rest() -> Any:
        for event in STREAM[1:]:
            yield event

    watch = StreamWatch(rest(), lambda: None, STREAM[0])
    assert [e async for e in watch] == STREAM[1:]
    call = _call({"input": "hi"})
    watch.settle(call)
    assert (call.tokens_in, call.tokens_out) == (11, 3)


ROUTER = Router(settings().models, {"hf": FakeUpstream("hf", config=settings().upstreams["hf"])})
TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def test_not_cached_unless_turned_on() -> None:
    assert CachePlanner(settings().cache, "t").plan(_call({"input": "hi", "temperature": 0}, ROUTER)) is None


@pytest.mark.parametrize("body, cached", [
    ({"input": "hi", "temperature": 0}, True),
    ({"input": "hi", "temperature": 0, "previous_response_id": "resp_1"}, True),
    ({"input": "hi"}, False),
    ({"input": "hi", "temperature": 0.7}, False),
    ({"input": "hi", "temperature": 0, "tools": [TOOL]}, False),
    ({"input": "hi", "temperature": 0, "conversation": "conv_1"}, False),
])
def test_turned_on_only_temperature_zero_without_tools_or_conversation(body: dict[str, Any], cached: bool) -> None:
    planner = CachePlanner(settings({"tasks": {"responses": {"enabled": True}}}).cache, "t")
    assert (planner.plan(_call(body, ROUTER)) is not None) is cached
