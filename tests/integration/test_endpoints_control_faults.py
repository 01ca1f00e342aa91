"""A control plane that is unreachable, slow, refusing or babbling: the endpoint is still used at its last
known URL, each problem is logged once (not per request, not per poll), shown in /status and counted,
nothing is paused or resumed, and the token appears nowhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from gateway.core.clock import FakeClock
from gateway.store.memory import MemoryStore
from tests.support.control_plane_proxy import ControlPlaneProxy
from tests.support.endpoint_kit import TOKEN, TOKEN_ENV, Stack, sim_config, simulator, stack, until

ENDPOINT_LOG = "gateway.endpoints"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.fixture
async def proxy() -> AsyncIterator[ControlPlaneProxy]:
    plane = ControlPlaneProxy(target="")  # aimed at the simulator once it runs
    yield plane
    await plane.close()


def _aim(proxy: ControlPlaneProxy) -> object:
    def control(sim_url: str) -> str:
        proxy.target = sim_url
        return proxy.url
    return control


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ENDPOINT_LOG and r.levelno >= logging.WARNING]


async def _traffic(s: Stack, n: int = 5) -> list[int]:
    statuses = []
    for _ in range(n):
        statuses.append((await s.chat("solo"))[0])
        await s.advance(7)  # several polls between requests
    return statuses


async def test_down_at_start_serves_at_the_configured_url_and_says_so_once(
        proxy: ControlPlaneProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ENDPOINT_LOG)
    async with stack(sim_config("running"), control=_aim(proxy),  # type: ignore[arg-type]
                     endpoint={"url": "{sim}/endpoints/acme-chat", "engine": "tgi"}) as s:
        assert await _traffic(s) == [200] * 5
        problems = [m for m in warnings(caplog) if "control plane" in m]
        assert len(problems) == 1 and "unreachable" in problems[0]
        status = await (await s.client.get("/status")).json()
        ep = status["endpoints"][0]
        assert status["status"] == "degraded" and not ep["control_plane"]["ok"]
        assert ep["control_plane"]["error"].startswith("unreachable")
        metrics = await (await s.client.get("/metrics")).text()
        assert 'gateway_endpoint_control_errors_total{endpoint="ep",reason="unreachable"}' in metrics
        await proxy.up()
        await s.advance(60)  # the backoff, then a good reading
        await until(lambda: s.watch.record.error is None, "the control plane read again")
        assert warnings(caplog)[-1].endswith("answers again")


@pytest.mark.parametrize("mode,reason", [("down", "unreachable"), ("slow", "timeout"), ("401", "unauthorized"),
                                         ("403", "forbidden"), ("500", "server_error"), ("garbage", "garbage")])
async def test_a_failing_control_plane_during_traffic_keeps_the_last_known_url(
        proxy: ControlPlaneProxy, caplog: pytest.LogCaptureFixture, mode: str, reason: str) -> None:
    await proxy.up()
    async with stack(sim_config("running", scale_to_zero_timeout=None), control=_aim(proxy),  # type: ignore[arg-type]
                     endpoint={"idle": {"after": 20, "action": "pause"}, "resume": True, "control_timeout": 0.2}) as s:
        assert s.watch.record.ready
        if mode == "down":
            await proxy.down()
        else:
            proxy.mode = mode
        caplog.set_level(logging.INFO, logger=ENDPOINT_LOG)
        assert await _traffic(s, 8) == [200] * 8
        await s.advance(120)  # long idle: the idle action must not fire on a state it cannot read
        assert (await s.chat("solo"))[0] == 200
        problems = [m for m in warnings(caplog) if "control plane" in m]
        assert len(problems) == 1 and f"({reason}:" in problems[0]
        assert s.watch.record.url == f"{s.sim_url}/endpoints/acme-chat"
        counters = s.counters()
        assert (counters.pause_calls, counters.resume_calls, counters.scale_to_zero_calls) == (0, 0, 0)
        ep = (await (await s.client.get("/status")).json())["endpoints"][0]
        assert ep["state"] == "running" and ep["control_plane"]["error"].startswith(reason)
        proxy.release()


async def test_a_fleet_restarted_while_the_control_plane_is_down_uses_the_url_in_the_store(
        proxy: ControlPlaneProxy) -> None:
    clock = FakeClock()
    shared = MemoryStore(clock)  # what Redis is to a fleet: it outlives the gateway processes
    await proxy.up()
    async with simulator(sim_config("running"), clock) as sim:
        async with stack(sim, control=_aim(proxy), store=shared) as s:  # type: ignore[arg-type]
            assert s.watch.record.ready
        await proxy.down()
        async with stack(sim, control=_aim(proxy), store=shared) as s:  # type: ignore[arg-type]
            assert s.watch.record.url == f"{sim.url}/endpoints/acme-chat"  # read from the store
            assert (await s.chat("solo"))[0] == 200
            await s.advance(160, step=2)  # the old replica's poller lease runs out: this one polls, and fails
            await until(lambda: s.watch.record.error is not None, "a failed reading")
            assert s.watch.record.url == f"{sim.url}/endpoints/acme-chat"
            assert (await s.chat("solo"))[0] == 200


async def test_the_token_is_never_in_answers_logs_status_or_metrics(
        proxy: ControlPlaneProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await proxy.up()
    async with stack(sim_config("paused"), control=_aim(proxy)) as s:  # type: ignore[arg-type]
        proxy.mode = "401"
        await s.advance(40)
        bodies = [(await s.chat("solo"))[1], (await s.chat())[1]]
        bodies.append(await (await s.client.get("/status")).read())
        bodies.append(await (await s.client.get("/metrics")).read())
        assert all(TOKEN.encode() not in b for b in bodies)
        assert all(TOKEN not in r.getMessage() for r in caplog.records)
        assert all(had_token for _, _, had_token in proxy.seen)  # it was sent, where it belongs
        await asyncio.sleep(0)
