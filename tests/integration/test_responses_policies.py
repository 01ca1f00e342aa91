"""`/v1/responses` through the real app's policies: HttpUpstream to the simulator over a socket.

Token settlement from a stream's `response.completed`, the cache's decision (off unless turned on,
then only `temperature` 0 without tools), an early in-band error as an HTTP error, a failure mid-way
as a Responses `error` event, and the metrics and access line under the bounded `responses` label.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.middleware.auth import hash_key
from gateway.simulator.app import create_simulator_app
from gateway.store.memory import MemoryStore
from tests.support.serving import gateway_client

KEY = "gwk_fake_responses_policies"
AUTH = {"Authorization": f"Bearer {KEY}"}
CAP = 5000
INPUT = "tell me a long story about buckets"  # 34 chars: ceil(34/4) + 4 = 13 tokens estimated
EST = 13 + 64  # ... plus max_output_tokens


@dataclass
class Rig:
    client: TestClient[Any, Any]

    async def post(self, **body: Any) -> Any:
        payload = {"model": "oai/story", "input": INPUT, "max_output_tokens": 64, **body}
        return await self.client.post("/v1/responses", json=payload, headers=AUTH)

    async def left(self) -> int:
        """Tokens left, read from a probe (its own reservation added back; it settles at its usage)."""
        r = await self.post()
        await r.read()
        return int(r.headers["x-ratelimit-remaining-tokens"]) + EST


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    sim = TestServer(create_simulator_app(clock=FakeClock(autojump=True)))
    await sim.start_server()
    sim_url = str(sim.make_url("")).rstrip("/")
    cache = getattr(request, "param", {"enabled": False, "coalesce": False})
    settings = load_settings(
        None, upstreams={"oai": {"kind": "openai", "base_url": f"{sim_url}/v1", "token_env": None,
                            "retry": {"max_attempts": 1}}},  # (the gateway clock stands still: no backoff)
        models=[{"name": "oai/*", "deployments": [{"upstream": "oai"}]}],
        keys=[{"sha256": hash_key(KEY), "tenant": "team-a"}], cache=cache,
        tenants={"team-a": {"limits": {"tokens": f"{CAP}/hour"}}},
    )
    clock = FakeClock()  # the gateway's time stands still: no refill muddies the sums
    async with gateway_client(settings, clock=clock, store=MemoryStore(clock), cancel=False) as client:
        yield Rig(client)
    await sim.close()


def _events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.decode().split("\n\n"):
        if block:
            event, data = block.split("\n")
            assert event.startswith("event: ") and data.startswith("data: ")
            out.append((event[7:], orjson.loads(data[6:])))
    return out


async def test_a_complete_answer_is_settled_with_its_usage(rig: Rig) -> None:
    before = await rig.left()  # the probe then settles at its usage, the same as the call's below
    r = await rig.post()
    usage = (await r.json())["usage"]
    used = usage["input_tokens"] + usage["output_tokens"]
    assert used != EST
    assert before - await rig.left() == 2 * used


@pytest.mark.parametrize("cap, last", [(64, "response.incomplete"), (None, "response.completed")])
async def test_a_stream_is_settled_with_the_usage_of_its_last_event(rig: Rig, cap: int | None, last: str) -> None:
    probe = await rig.post()
    used = _used((await probe.json())["usage"])
    before = int(probe.headers["x-ratelimit-remaining-tokens"]) + EST - used  # what is left once it settled
    r = await rig.post(stream=True, max_output_tokens=cap)
    if cap is not None:
        assert r.headers["x-ratelimit-remaining-tokens"] == str(before - EST)  # reserved, not yet settled
    events = _events(await r.read())
    assert events[-1][0] == last
    charged = _used(events[-1][1]["response"]["usage"])
    assert len(events) > charged  # counting events would give another figure
    after = int((await rig.post()).headers["x-ratelimit-remaining-tokens"]) + EST
    assert before - after == charged  # settled at the stream's own count


def _used(usage: dict[str, int]) -> int:
    return usage["input_tokens"] + usage["output_tokens"]


async def test_a_stream_failing_mid_way_ends_with_a_responses_error_event(rig: Rig) -> None:
    r = await rig.post(model="oai/sim-cut-k4", stream=True)
    assert r.status == 200
    events = _events(await r.read())
    assert [e for e, _ in events[:4]] == ["response.created", "response.in_progress", "response.output_item.added",
                                           "response.content_part.added"]
    name, error = events[-1]
    assert (name, error["type"], error["sequence_number"]) == ("error", "error", 4)  # numbered after the last
    assert error["code"] == "upstream_bad_response" and "oai" in error["message"]
    assert set(error) == {"type", "code", "message", "param", "sequence_number"}


async def test_an_error_event_first_is_an_http_error(rig: Rig) -> None:
    r = await rig.post(model="oai/sim-midstream-k0", stream=True)
    assert r.status == 502
    body = await r.json()
    assert body["error"]["code"] == "server_error" and "simulated" in body["error"]["message"]
    assert "sequence_number" not in body["error"] and body["error"]["type"] != "error"


async def test_not_cached_by_default(rig: Rig) -> None:
    first = await rig.post(temperature=0)
    assert "X-Cache" not in first.headers
    second = await rig.post(temperature=0)
    assert "X-Cache" not in second.headers


ON = {"enabled": True, "coalesce": False, "tasks": {"responses": {"enabled": True}}}


@pytest.mark.parametrize("rig", [ON], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
async def test_turned_on_only_pinned_requests_without_tools_are_cached(rig: Rig, stream: bool) -> None:
    pinned = {"temperature": 0, "stream": stream}
    miss, hit = await rig.post(**pinned), await rig.post(**pinned)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert await hit.read() == await miss.read()
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    for uncacheable in ({"stream": stream}, {**pinned, "tools": [tool]}, {**pinned, "conversation": "conv_1"}):
        r = await rig.post(**uncacheable)
        await r.read()
        assert "X-Cache" not in r.headers, uncacheable


async def test_metrics_and_access_line_carry_the_responses_route(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        r = await rig.post(stream=True)
        events = _events(await r.read())
    usage = events[-1][1]["response"]["usage"]
    (line,) = [rec for rec in caplog.records if rec.name == "gateway.access"]
    assert (line.route, line.stream) == ("responses", True)  # type: ignore[attr-defined]
    assert (line.tokens_in, line.tokens_out) == (usage["input_tokens"], usage["output_tokens"])  # type: ignore[attr-defined]
    scrape = await (await rig.client.get("/metrics")).text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(scrape) for s in f.samples}
    requests = [v for (name, labels), v in samples.items()
                if name == "gateway_requests_total" and ("route", "responses") in labels]
    tokens_out = [v for (name, labels), v in samples.items()
                  if name == "gateway_tokens_total" and ("direction", "out") in labels]
    assert requests == [1.0] and tokens_out == [usage["output_tokens"]]


@pytest.mark.parametrize("body, field", [
    ({"model": "oai/x", "input": 42}, "`input`"),
    ({"model": "oai/x", "input": ["hi"]}, "`input`"),
    ({"model": "oai/x", "input": "hi", "instructions": ["a"]}, "`instructions`"),
    ({"model": "oai/x", "input": "hi", "max_output_tokens": "10"}, "`max_output_tokens`"),
    ({"model": "oai/x", "input": "hi", "stream": "yes"}, "`stream`"),
    ({"model": "oai/x", "input": "hi", "background": True}, "`background: true`"),
    ({"input": "hi"}, "model"),
])
async def test_bad_input_is_a_400_in_the_openai_shape(rig: Rig, body: dict[str, Any], field: str) -> None:
    r = await rig.client.post("/v1/responses", json=body, headers=AUTH)
    assert r.status == 400
    error = (await r.json())["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"]


async def test_stored_response_routes_are_not_served(rig: Rig) -> None:
    r = await rig.client.get("/v1/responses/resp_123", headers=AUTH)
    assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
