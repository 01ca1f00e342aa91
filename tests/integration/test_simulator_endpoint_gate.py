"""The data plane of control-plane endpoints on the wire (in-process, FakeClock): refusal bodies, health,
the idle timer, malformed headers, `/_sim/endpoints`, and endpoints the control plane does not manage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import FakeClock
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import SimConfig
from gateway.simulator.state import SimState

TOKEN = "hf_fake_test_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = {
    "control_plane": {
        "namespaces": {"acme": {"tokens": [{"token": TOKEN}]}},
        "endpoints": {
            "chat": {"namespace": "acme", "scale_up_delay": 30, "scale_to_zero_timeout": 600},
            "cold": {"namespace": "acme", "state": "scaledToZero", "scale_up_delay": 30},
            "open": {"namespace": "acme", "type": "public"},
        },
    },
}
GEN = {"inputs": "Hi", "parameters": {"max_new_tokens": 2}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_simulator_app(SimConfig.model_validate(CONFIG), clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield client


def state_of(client: TestClient[Any, Any]) -> SimState:
    app = client.app
    assert app is not None
    state: SimState = app[SIM_STATE]
    return state


async def call(sim: TestClient[Any, Any], path: str, **headers: str) -> tuple[int, Any]:
    resp = await sim.post(path, json=GEN, headers={**AUTH, **headers})
    return resp.status, await resp.json()


async def sim_state(sim: TestClient[Any, Any], name: str) -> dict[str, Any]:
    resp = await sim.get(f"/_sim/endpoints/{name}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until `predicate()` holds (bounded; the clock is not involved)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_a_scaled_to_zero_endpoint_answers_503_in_hf_shape_and_wakes(sim: TestClient[Any, Any]) -> None:
    status, body = await call(sim, "/endpoints/cold/generate")
    assert status == 503 and set(body) == {"error"} and "scaling up" in body["error"]
    assert state_of(sim).count(model="cold") == 1  # refused requests are counted under the endpoint
    snapshot = await sim_state(sim, "cold")
    assert snapshot["state"] == "initializing" and snapshot["counters"]["wake_ups"] == 1


async def test_health_answers_by_state_and_never_wakes(sim: TestClient[Any, Any], clock: FakeClock) -> None:
    assert (await sim.get("/endpoints/chat/health", headers=AUTH)).status == 200
    cold = await sim.get("/endpoints/cold/health", headers=AUTH)
    assert cold.status == 503
    assert (await sim_state(sim, "cold"))["state"] == "scaledToZero"
    await sim.post("/_sim/endpoints/chat/state", json={"state": "paused"})
    paused = await sim.get("/endpoints/chat/health", headers=AUTH)
    assert paused.status == 400 and (await paused.json()) == {"error": "Bad Request: Invalid state"}
    await sim.post("/_sim/endpoints/chat/state", json={"state": "running"})
    clock.advance(599)
    assert (await sim.get("/endpoints/chat/health", headers=AUTH)).status == 200
    clock.advance(1)  # health probes are not activity: the idle timer ran out
    assert (await sim_state(sim, "chat"))["state"] == "scaledToZero"


async def test_traffic_keeps_a_running_endpoint_up(sim: TestClient[Any, Any], clock: FakeClock) -> None:
    clock.advance(599)
    assert (await call(sim, "/endpoints/chat/generate"))[0] == 200
    clock.advance(599)
    assert (await sim_state(sim, "chat"))["state"] == "running"
    clock.advance(1)
    assert (await sim_state(sim, "chat"))["state"] == "scaledToZero"


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", ""])
async def test_a_malformed_scale_up_timeout_is_a_400(sim: TestClient[Any, Any], value: str) -> None:
    status, body = await call(sim, "/endpoints/cold/generate", **{"X-Scale-Up-Timeout": value})
    assert status == 400 and "X-Scale-Up-Timeout" in body["error"]
    assert (await sim_state(sim, "cold"))["counters"]["wake_ups"] == 0


async def test_a_client_leaving_a_held_request_is_counted_cancelled(
    sim: TestClient[Any, Any], clock: FakeClock
) -> None:
    state = state_of(sim)
    pending = asyncio.ensure_future(
        sim.post("/endpoints/cold/generate", json=GEN, headers={**AUTH, "X-Scale-Up-Timeout": "600"}))
    await until(lambda: state.in_flight == 1 and clock.sleepers == 1)
    pending.cancel()
    await until(lambda: state.cancelled == 1 and state.in_flight == 0 and clock.sleepers == 0)
    machine = state.endpoints.get("cold")
    assert machine is not None and machine.in_flight == 0 and machine.counters.held_served == 0


async def test_failed_endpoints_answer_503_and_public_ones_need_no_token(sim: TestClient[Any, Any]) -> None:
    await sim.post("/_sim/endpoints/chat/state", json={"state": "updateFailed", "message": "bad image"})
    status, body = await call(sim, "/endpoints/chat/generate")
    assert status == 503 and "updateFailed" in body["error"]
    resp = await sim.post("/endpoints/open/generate", json=GEN)
    assert resp.status == 200
    missing = await sim.post("/endpoints/chat/generate", json=GEN)
    assert missing.status == 401 and missing.headers["WWW-Authenticate"] == "Bearer"


async def test_endpoints_outside_the_control_plane_keep_serving(sim: TestClient[Any, Any]) -> None:
    resp = await sim.post("/endpoints/elsewhere/generate", json=GEN)
    assert resp.status == 200 and "generated_text" in await resp.json()


async def test_sim_routes_list_force_validate_and_reset(sim: TestClient[Any, Any]) -> None:
    listing = await (await sim.get("/_sim/endpoints")).json()
    assert sorted(listing) == ["chat", "cold", "open"] and listing["chat"]["namespace"] == "acme"
    forced = await sim.post("/_sim/endpoints/chat/state", json={"state": "failed", "message": "boom"})
    assert forced.status == 200 and (await forced.json())["state"] == "failed"
    described = await sim.get("/v2/endpoint/acme/chat", headers=AUTH)
    status = (await described.json())["status"]
    assert status["state"] == "failed" and status["message"] == "boom" and "url" not in status
    for bad in ({"state": "asleep"}, {"state": "running", "message": 3}, [1]):
        assert (await sim.post("/_sim/endpoints/chat/state", json=bad)).status == 400
    assert (await sim.post("/_sim/endpoints/chat/state", data=b"{")).status == 400
    assert (await sim.post("/_sim/endpoints/nope/state", json={"state": "running"})).status == 404
    assert (await sim.get("/_sim/endpoints/nope")).status == 404
    await sim.post("/_sim/reset")
    assert (await sim_state(sim, "chat"))["state"] == "running"
