"""Token limits: the estimate reserved up front, settled with real usage (JSON answers and streams)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.call import Call, Dialect, Op, Reply
from gateway.core.clock import FakeClock
from gateway.core.errors import UpstreamUnreachable
from gateway.core.upstream_config import RetryConfig, UpstreamConfig
from gateway.policies.limits.limit_plan import format_duration
from gateway.policies.limits.token_accounting import StreamMeter, estimate, prompt_tokens, reply_tokens
from gateway.store.memory import MemoryStore
from gateway.upstream.fake import FakeUpstream
from tests.support.limits_kit import A, chat, openai_chunks, settings, sse_stream, with_usage
from tests.support.serving import gateway_client

TOKENS = {"team-a": {"limits": {"tokens": {"rate": "1000/minute"}}}}


def _call(op: Op, body: dict[str, Any] | None, task: str | None = None) -> Call:
    return Call(request_id="r", dialect=Dialect.OPENAI, op=op, route_label=op.value, model="m",
                route=None, body=body, raw=b"", task=task)  # type: ignore[arg-type]


@pytest.mark.parametrize("op, body, task, expected", [
    (Op.CHAT, chat(text="x" * 400, max_tokens=50), None, 100 + 4 + 50),
    (Op.CHAT, chat(text="x" * 40, max_completion_tokens=10, n=3), None, 10 + 4 + 30),
    (Op.CHAT, {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 80}]}]},
     None, 20 + 4 + 256),
    (Op.COMPLETIONS, {"prompt": ["a" * 8, "b" * 8], "max_tokens": 5}, None, 4 + 5),
    (Op.EMBEDDINGS, {"input": ["z" * 400]}, None, 100),
    (Op.HF_TASK, {"inputs": "w" * 40, "parameters": {"max_new_tokens": 7}}, "text-generation", 10 + 7),
    (Op.HF_TASK, {"inputs": "w" * 40}, "text-classification", 10),
    (Op.TGI_GENERATE, {"inputs": "q" * 4, "parameters": {"max_new_tokens": 3}}, None, 1 + 3),
    (Op.TEI_RERANK, {"query": "q" * 8, "texts": ["t" * 8, "u" * 8]}, None, 6),
    (Op.HF_TASK, None, "image-classification", 1),
])
def test_estimate(op: Op, body: dict[str, Any] | None, task: str | None, expected: int) -> None:
    assert estimate(_call(op, body, task), 256) == expected


def test_reply_tokens_prefers_usage_then_tgi_details() -> None:
    call = _call(Op.TGI_GENERATE, {"inputs": "q" * 40})
    assert reply_tokens(call, Reply(200, b'{"generated_text":"hi","details":{"generated_tokens":7}}')) == 10 + 7
    assert reply_tokens(call, Reply(200, b'[{"generated_text":"hi"}]')) is None  # the estimate stands
    call.tokens_in, call.tokens_out = 12, 30
    assert reply_tokens(call, Reply(200, b"{}")) == 42


@pytest.mark.parametrize("events, expected", [
    (openai_chunks(5), 10 + 5),  # no usage: one token per content chunk
    (openai_chunks(5, usage=(9, 6)), 15),  # the final usage chunk is exact
    ([b'data:{"token":{"text":"a"}}\n\n', b'data:{"token":{"text":"b"},"details":{"generated_tokens":2}}\n\n'],
     10 + 2),
    ([b": keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"], 10 + 1),
])
def test_stream_meter(events: list[bytes], expected: int) -> None:
    meter = StreamMeter(prompt=10)
    for ev in events:
        meter.feed(ev)
    assert meter.total() == expected


@pytest.mark.parametrize("seconds, text", [(0.0201, "21ms"), (1.5, "1.5s"), (2.0, "2s"), (360, "6m0s"),
                                           (3723.25, "1h2m3.25s")])
def test_reset_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


class Gw:
    def __init__(self, client: TestClient, clock: FakeClock, up: FakeUpstream) -> None:
        self.client, self.clock, self.up = client, clock, up

    async def chat(self, text: str = "x" * 40, **body: Any) -> Any:
        return await self.client.post("/v1/chat/completions", json=chat(text=text, **body), headers=A)


@pytest.fixture
async def gw() -> AsyncIterator[Gw]:
    clock = FakeClock()
    up = FakeUpstream("hf", config=UpstreamConfig(retry=RetryConfig(max_attempts=1)))  # failures come straight back
    async with gateway_client(
        settings(TOKENS), clock=clock, store=MemoryStore(clock), upstreams={"hf": up}, cancel=False
    ) as client:
        yield Gw(client, clock, up)


# A request of 40 characters and max_tokens=100 reserves 10 + 4 + 100 = 114 tokens.


async def test_the_estimate_is_reserved_and_settled_with_usage(gw: Gw) -> None:
    gw.up.script(with_usage(20, 30))
    r = await gw.chat(max_tokens=100)
    assert r.status == 200
    assert r.headers["x-ratelimit-limit-tokens"] == "1000"
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 114)
    assert gw.up.calls[0][0].limiting.tokens_settled == 50
    r = await gw.chat(max_tokens=100)  # the first one was settled at 50: 1000 - 50 - 114
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 50 - 114)


async def test_a_failed_call_gives_its_tokens_back(gw: Gw) -> None:
    gw.up.script(UpstreamUnreachable("down"))
    assert (await gw.chat(max_tokens=100)).status == 502
    r = await gw.chat(max_tokens=100)
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 114)


async def test_a_big_request_passes_a_full_bucket_then_its_debt_holds_the_next(gw: Gw) -> None:
    gw.up.script(with_usage(100, 1900))
    assert (await gw.chat(max_tokens=5000)).status == 200  # estimate clamped to the bucket's 1000
    r = await gw.chat(max_tokens=10)
    assert r.status == 429
    # 1000 - 2000 = -1000 left; the next needs 24 more: 1024 tokens at 1000/60 per second = 61.44 s
    assert r.headers["retry-after-ms"] == "61440" and r.headers["Retry-After"] == "62"
    assert r.headers["x-ratelimit-remaining-tokens"] == "0"
    gw.clock.advance(61.44)
    assert (await gw.chat(max_tokens=10)).status == 200


async def test_a_stream_is_counted_and_settled_when_it_ends(gw: Gw) -> None:
    gw.up.script(sse_stream(openai_chunks(7)))
    r = await gw.chat(max_tokens=100, stream=True)
    assert r.status == 200 and r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 114)
    body = await r.read()
    assert body.count(b"data: ") == 8
    call = gw.up.calls[0][0]
    assert call.limiting.tokens_settled == 14 + 7  # prompt estimate + one token per chunk
    r = await gw.chat(max_tokens=100)
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 21 - 114)


async def test_a_stream_with_a_usage_chunk_settles_exactly(gw: Gw) -> None:
    gw.up.script(sse_stream(openai_chunks(3, usage=(300, 200))))
    r = await gw.chat(max_tokens=100, stream=True, stream_options={"include_usage": True})
    await r.read()
    assert gw.up.calls[0][0].limiting.tokens_settled == 500
    r = await gw.chat(max_tokens=100)
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 500 - 114)


async def test_per_tenant_model_tokens() -> None:
    clock = FakeClock()
    up = FakeUpstream("hf")
    tenants = {"team-a": {"model_limits": {"org/m": {"tokens": "200/minute"}}}}
    async with gateway_client(
        settings(tenants), clock=clock, store=MemoryStore(clock), upstreams={"hf": up}, cancel=False
    ) as client:
        statuses = []
        for _ in range(3):
            r = await client.post("/v1/chat/completions", json=chat(max_tokens=80), headers=A)
            statuses.append(r.status)
        assert statuses == [200, 200, 429]  # 81 tokens each (1 + 80): the third does not fit in 200
        r = await client.post("/v1/chat/completions", json=chat(model="org/other", max_tokens=80), headers=A)
        assert r.status == 200


def test_prompt_tokens_of_raw_bodies_is_zero() -> None:
    assert prompt_tokens(_call(Op.HF_TASK, None, "image-classification")) == 0
