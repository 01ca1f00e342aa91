"""Every fault over HTTP, in-process on a fake clock: statuses, bodies, streams, disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import FakeClock
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import FaultSpec, ModelSpec, SimConfig
from gateway.simulator.state import SimState

TOKEN = "hf_fake_test_token"
HF = "/hf-inference/models/"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(autojump=True)


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[TestClient]:
    config = SimConfig(token=TOKEN, models={"scripted": ModelSpec(faults=[FaultSpec(kind="status", status=502,
                                                                                        times=1)])})
    async with TestClient(TestServer(create_simulator_app(config, clock=clock))) as client:
        yield client


def state_of(client: TestClient) -> SimState:
    return client.server.app[SIM_STATE]


def events(raw: bytes) -> list[bytes]:
    return [e for e in raw.split(b"\n\n") if e]


async def post(client: TestClient, path: str, body: Any, **headers: str) -> tuple[int, bytes, Any]:
    resp = await client.post(path, json=body, headers=headers or None)
    return resp.status, await resp.read(), resp


async def until(predicate: Any, *, attempts: int = 500) -> None:
    """Yield to the loop until `predicate()` holds (bounded; no fixed sleeps)."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_cold_start_503_counts_down_then_serves(sim: TestClient, clock: FakeClock) -> None:
    path = HF + "sim/gpt2-cold-20s"
    status, raw, resp = await post(sim, path, {"inputs": "x"})
    assert status == 503 and orjson.loads(raw) == {"error": "Model sim/gpt2-cold-20s is currently loading",
                                                   "estimated_time": 20.0}
    assert "Retry-After" not in resp.headers
    clock.advance(12.5)
    assert orjson.loads((await post(sim, path, {"inputs": "x"}))[1])["estimated_time"] == 7.5
    health = await sim.get(HF + "sim/gpt2-cold-20s/health")
    assert health.status == 503 and (await health.json())["error_type"] == "healthcheck"
    clock.advance(7.5)
    assert (await post(sim, path, {"inputs": "x"}))[0] == 200


async def test_cold_list_form_and_cold_on_openai_route(sim: TestClient) -> None:
    status, raw, _ = await post(sim, "/models/m-cold-5s-list", {"inputs": "x"})
    assert status == 503 and orjson.loads(raw)[0]["estimated_time"] == 5.0
    status, raw, _ = await post(sim, "/v1/chat/completions", {"model": "org/m-cold-5s",
                                                              "messages": [{"role": "user", "content": "x"}]})
    assert status == 503 and orjson.loads(raw)["error"] == "Model org/m-cold-5s is currently loading"


async def test_wait_for_model_blocks_on_the_clock_instead(sim: TestClient, clock: FakeClock) -> None:
    start = clock.monotonic()
    status, _, _ = await post(sim, HF + "m-cold-30s", {"inputs": "x"}, **{"X-Wait-For-Model": "true"})
    assert status == 200 and clock.monotonic() - start >= 30
    status, _, _ = await post(sim, HF + "n-cold-30s", {"inputs": "x", "options": {"wait_for_model": True}})
    assert status == 200


async def test_429_then_success_with_retry_after_variants(sim: TestClient) -> None:
    results = [await post(sim, "/v1/chat/completions", {"model": "m-429x2-ra2",
                                                       "messages": [{"role": "user", "content": "x"}]})
               for _ in range(3)]
    assert [r[0] for r in results] == [429, 429, 200]
    assert results[0][2].headers["Retry-After"] == "2"
    assert orjson.loads(results[0][1])["error"]["type"] == "rate_limit_error"
    status, _, resp = await post(sim, HF + "m-429x1-ra300ms", {"inputs": "x"})
    assert status == 429 and resp.headers["retry-after-ms"] == "300" and "Retry-After" not in resp.headers


async def test_status_scripts_from_name_config_and_control_route(sim: TestClient) -> None:
    statuses = [(await post(sim, "/endpoints/tgi-503x2/generate", {"inputs": "x"}))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [(await post(sim, "/endpoints/scripted/generate", {"inputs": "x"}))[0] for _ in range(2)] == [502, 200]
    resp = await sim.post("/_sim/faults", json={"model": "plain-model", "faults": ["500x1", {"kind": "status",
                                                                                            "status": 504,
                                                                                            "times": 1}]})
    assert resp.status == 200
    statuses = [(await post(sim, HF + "plain-model", {"inputs": "x"}))[0] for _ in range(3)]
    assert statuses == [500, 504, 200]
    script = await (await sim.get("/_sim/faults", params={"model": "plain-model"})).json()
    assert [f["status"] for f in script["faults"]] == [500, 504]
    bad = await sim.post("/_sim/faults", json={"model": "m", "faults": [{"kind": "cold"}]})
    assert bad.status == 400


async def test_tgi_error_has_error_type(sim: TestClient) -> None:
    status, raw, _ = await post(sim, HF + "m-tgi-error-422", {"inputs": "x"})
    obj = orjson.loads(raw)
    assert status == 422 and set(obj) == {"error", "error_type"} and obj["error_type"] == "validation"
    status, raw, _ = await post(sim, "/endpoints/e-tgi-error-424-x1/generate", {"inputs": "x"})
    assert status == 424 and orjson.loads(raw)["error_type"] == "generation"


async def test_auth_requires_the_configured_bearer(sim: TestClient) -> None:
    path = "/endpoints/secure-auth/generate"
    status, raw, resp = await post(sim, path, {"inputs": "x"})
    assert status == 401 and resp.headers["WWW-Authenticate"] == "Bearer" and TOKEN not in raw.decode()
    assert (await post(sim, path, {"inputs": "x"}, Authorization="Bearer hf_wrong"))[0] == 401
    assert (await post(sim, path, {"inputs": "x"}, Authorization=f"Bearer {TOKEN}"))[0] == 200
    assert (await sim.get("/endpoints/secure-auth/info")).status == 401
    assert (await sim.get("/endpoints/secure-auth/info", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200


async def test_rate_budget_limit(sim: TestClient, clock: FakeClock) -> None:
    statuses = [(await post(sim, "/endpoints/ep-limit-3ps/generate", {"inputs": "x"}))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    clock.advance(1.5)
    assert (await post(sim, "/endpoints/ep-limit-3ps/generate", {"inputs": "x"}))[0] == 200


async def test_reset_before_drops_the_connection(sim: TestClient) -> None:
    with pytest.raises(aiohttp.ClientError):
        await post(sim, HF + "m-reset-before-x1", {"inputs": "x"})
    assert (await post(sim, HF + "m-reset-before-x1", {"inputs": "x"}))[0] == 200
    assert state_of(sim).count(model="m-reset-before-x1") == 2


async def test_reset_after_headers_breaks_the_body(sim: TestClient) -> None:
    resp = await sim.post(HF + "m-reset-after-headers", json={"inputs": "x"})
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_body_damage_faults(sim: TestClient) -> None:
    status, raw, _ = await post(sim, HF + "m-truncated-json", {"inputs": "x"})
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    status, raw, resp = await post(sim, HF + "m-garbage", {"inputs": "x"})
    assert resp.headers["Content-Type"] == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    _, raw, resp = await post(sim, HF + "m-wrong-content-type", {"inputs": "x"})
    assert resp.headers["Content-Type"].startswith("text/html") and orjson.loads(raw)[0]["generated_text"]
    _, raw, _ = await post(sim, HF + "m-huge-body-2mb", {"inputs": "x"})
    assert len(raw) >= 2 * 1024 * 1024 and orjson.loads(raw)[0]["generated_text"]


async def test_slow_first_byte_waits_on_the_clock(sim: TestClient, clock: FakeClock) -> None:
    start = clock.monotonic()
    assert (await post(sim, HF + "m-slow-ttfb-500ms", {"inputs": "x"}))[0] == 200
    assert clock.monotonic() - start >= 0.5


async def test_drip_spaces_stream_events(sim: TestClient, clock: FakeClock) -> None:
    start = clock.monotonic()
    _, raw, _ = await post(sim, "/endpoints/tgi-drip-200ms/generate_stream", {"inputs": "x"})
    assert len(events(raw)) == 5 and clock.monotonic() - start == pytest.approx(0.8)  # 4 gaps


async def test_midstream_error_in_each_dialect(sim: TestClient) -> None:
    _, raw, _ = await post(sim, "/endpoints/t-midstream-k2/generate_stream", {"inputs": "x"})
    evs = events(raw)
    assert len(evs) == 3 and evs[2].startswith(b"data:{")
    assert orjson.loads(evs[2][5:])["error_type"] == "generation"
    chat = {"model": "c-midstream-k1", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    _, raw, _ = await post(sim, "/v1/chat/completions", chat)
    evs = events(raw)
    assert len(evs) == 2 and b"[DONE]" not in raw
    assert orjson.loads(evs[1][6:])["error"]["type"] == "server_error"
    # Fewer events than k: the error replaces the terminator.
    _, raw, _ = await post(sim, "/endpoints/t-midstream-k99/generate_stream", {"inputs": "x"})
    assert b'"error_type":"generation"' in events(raw)[-1] and len(events(raw)) == 6
    # A stream-only fault leaves non-stream requests alone.
    assert (await post(sim, "/endpoints/t-midstream-k2/generate", {"inputs": "x"}))[0] == 200


async def test_cut_ends_the_stream_abruptly(sim: TestClient) -> None:
    resp = await sim.post("/endpoints/t-cut-k2/generate_stream", json={"inputs": "x"})
    assert resp.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in resp.content.iter_any():
            received += chunk
    assert len(events(received)) == 2


async def test_stream_damage_garbage_truncated_wrong_type_huge(sim: TestClient) -> None:
    _, raw, _ = await post(sim, "/endpoints/t-garbage/generate_stream", {"inputs": "x"})
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events(raw)[0][5:])
    _, raw, _ = await post(sim, "/endpoints/t-truncated-json/generate_stream", {"inputs": "x"})
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events(raw)[0][5:])
    assert orjson.loads(events(raw)[1][5:])["index"] == 2
    _, _, resp = await post(sim, "/endpoints/t-wrong-content-type/generate_stream", {"inputs": "x"})
    assert resp.headers["Content-Type"] == "application/json"
    _, raw, _ = await post(sim, "/endpoints/t-huge-body-1mb/generate_stream", {"inputs": "x"})
    assert raw.startswith(b":") and len(raw) > 1024 * 1024 and len(events(raw)) == 6


async def test_endless_stream_runs_until_the_client_leaves(sim: TestClient) -> None:
    state = state_of(sim)
    resp = await sim.post("/v1/chat/completions", json={"model": "m-endless-stream", "stream": True,
                                                        "messages": [{"role": "user", "content": "x"}]})
    received = b""
    while received.count(b"\n\n") < 50:
        received += await resp.content.readany()
    assert b"[DONE]" not in received
    resp.close()
    await until(lambda: state.cancelled == 1 and state.in_flight == 0)


async def test_client_leaving_a_slow_response_is_counted_cancelled(clock: FakeClock) -> None:
    manual = FakeClock()  # never advances: the response can only end by cancellation
    app = create_simulator_app(clock=manual)
    async with TestClient(TestServer(app)) as client:
        state = state_of(client)
        task = asyncio.ensure_future(client.post(HF + "m-slow-ttfb-10s", json={"inputs": "x"}))
        await until(lambda: state.in_flight == 1 and manual.sleepers == 1)
        task.cancel()
        await until(lambda: state.cancelled == 1 and state.in_flight == 0)
        assert state.requests[0].cancelled


async def test_concurrency_is_tracked(clock: FakeClock) -> None:
    manual = FakeClock()
    async with TestClient(TestServer(create_simulator_app(clock=manual))) as client:
        state = state_of(client)
        calls = [asyncio.ensure_future(client.post(HF + "m-slow-ttfb-1s", json={"inputs": "x"})) for _ in range(4)]
        await until(lambda: state.in_flight == 4 and manual.sleepers == 4)
        assert state.count() == 4  # counted on arrival, before any answer
        manual.advance(1)
        statuses = [(await c).status for c in calls]
        assert statuses == [200] * 4 and state.max_in_flight == 4
        await until(lambda: state.in_flight == 0)


async def test_reset_route_restarts_fault_progress(sim: TestClient) -> None:
    assert (await post(sim, HF + "m-500x1", {"inputs": "x"}))[0] == 500
    assert (await post(sim, HF + "m-500x1", {"inputs": "x"}))[0] == 200
    await sim.post("/_sim/reset")
    assert (await post(sim, HF + "m-500x1", {"inputs": "x"}))[0] == 500
    stats = await (await sim.get("/_sim/stats")).json()
    assert stats["total"] == 1 and stats["by_model"] == {"m-500x1": 1}
