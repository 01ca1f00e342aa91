"""The idle action (opt-in): after `idle.after` without traffic the endpoint is paused or scaled to zero, once;
never while traffic flows, never on a state the control plane cannot confirm. One gateway, manual clock
(the three-process version is in tests/integration/test_endpoints_fleet.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.control_plane_proxy import ControlPlaneProxy
from tests.support.endpoint_kit import TOKEN, TOKEN_ENV, sim_config, stack, until

IDLE = {"idle": {"after": "2m", "action": "pause"}, "poll_interval": 10}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.mark.parametrize("action,state", [("pause", "paused"), ("scale_to_zero", "scaledToZero")])
async def test_the_idle_action_fires_once_after_the_quiet_period_and_not_before(action: str, state: str) -> None:
    endpoint = {**IDLE, "idle": {"after": "2m", "action": action}}
    async with stack(sim_config("running"), endpoint=endpoint) as s:
        for _ in range(30):  # 5 minutes of traffic, one request every 10 s
            assert (await s.chat("solo"))[0] == 200
            await s.advance(10)
        counters = s.counters()
        assert (counters.pause_calls, counters.scale_to_zero_calls) == (0, 0)
        await s.advance(100)  # quiet, but not yet for 2 minutes
        assert (counters.pause_calls, counters.scale_to_zero_calls) == (0, 0)
        await s.advance(60)
        await until(lambda: s.sim_state() == state, f"the endpoint {state}")
        await s.advance(600, step=5)  # quiet for much longer: nothing more to do
        fired = counters.pause_calls if action == "pause" else counters.scale_to_zero_calls
        assert fired == 1 and counters.resume_calls == 0
        metrics = await (await s.client.get("/metrics")).text()
        assert f'gateway_endpoint_idle_actions_total{{action="{action}",endpoint="ep"}} 1.0' in metrics
        ep = (await (await s.client.get("/status")).json())["endpoints"][0]
        assert ep["state"] == state and ep["idle"]["after"] == 120


async def test_a_stream_in_flight_is_traffic() -> None:
    async with stack(sim_config("running"), endpoint=IDLE) as s:
        s.watch.in_flight += 1  # a call still streaming from the endpoint (as the stage counts it)
        await s.advance(600, step=5)
        assert s.counters().pause_calls == 0
        s.watch.traffic_ended()
        await s.advance(200, step=5)
        await until(lambda: s.counters().pause_calls == 1, "the pause once the stream ended")


async def test_no_idle_action_without_the_setting() -> None:
    async with stack(sim_config("running")) as s:
        await s.advance(3600, step=20)
        counters = s.counters()
        assert (counters.pause_calls, counters.scale_to_zero_calls) == (0, 0)


@pytest.fixture
async def proxy() -> AsyncIterator[ControlPlaneProxy]:
    plane = ControlPlaneProxy(target="")
    await plane.up()
    yield plane
    await plane.close()


async def test_no_idle_action_when_the_state_cannot_be_read(proxy: ControlPlaneProxy) -> None:
    def control(sim_url: str) -> str:
        proxy.target = sim_url
        return proxy.url

    async with stack(sim_config("running"), endpoint=IDLE, control=control) as s:
        proxy.mode = "reads-fail"  # a pause would go through; the reading that must precede it fails
        await s.advance(1200, step=5)
        assert s.counters().pause_calls == 0
        proxy.mode = "pass"
        await s.advance(400, step=5)
        await until(lambda: s.counters().pause_calls == 1, "the pause once the state is known again")
