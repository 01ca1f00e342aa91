"""Managed dedicated endpoints through the whole gateway, against the simulated control plane, on a manual clock.

Each test drives one state of the endpoint's life: discovered and served, woken once while serverless
answers, parked while it wakes with nowhere else to go, paused (resumed or refused), failed.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.support.endpoint_kit import TOKEN, TOKEN_ENV, sim_config, stack, until


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


async def test_a_running_endpoint_is_discovered_and_serves_in_its_engines_dialect() -> None:
    async with stack(sim_config("running")) as s:
        assert s.watch.record.state == "running" and s.watch.record.ready
        status, body = await s.chat("solo")
        assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"]
        assert s.served_by_endpoint() == 1 and s.served_by_serverless() == 0
        ep = (await (await s.client.get("/status")).json())["endpoints"][0]
        assert ep["state"] == "running" and ep["ready"] and ep["dialect"] == "tgi"
        assert ep["url"] == f"{s.sim_url}/endpoints/acme-chat" and ep["endpoint"] == "acme/acme-chat"


@pytest.mark.parametrize("image,dialect", [("vllm", "openai"), ("tei", "tei"), ("huggingface", "native")])
async def test_the_dialect_follows_the_engine(image: str, dialect: str) -> None:
    async with stack(sim_config("running", image=image)) as s:
        aim = s.watch.upstream.aim
        assert aim is not None and aim.dialect.name == dialect
        if dialect == "openai":
            status, _ = await s.chat("solo")
            assert status == 200
            [record] = [r for r in s.sim.requests if r.path.startswith("/endpoints/acme-chat/v1/chat")]
            assert orjson.loads(record.body)["model"] == "openai-community/gpt2"  # the endpoint's repository


async def test_scaled_to_zero_with_serverless_behind_it_wakes_once_and_serves_from_serverless() -> None:
    async with stack(sim_config("scaledToZero", scale_up_delay=5)) as s:
        results = await asyncio.gather(*(s.chat() for _ in range(20)))
        assert [status for status, _ in results] == [200] * 20
        assert s.counters().wake_ups == 1
        assert s.served_by_serverless() == 20
        assert s.served_by_endpoint() == 1  # the one request that woke it (answered 503)
        await until(lambda: s.watch.record.state == "initializing", "the poller seeing the wake-up")
        await s.advance(6)
        await until(lambda: s.watch.record.ready, "the endpoint ready")
        before = s.served_by_endpoint()
        status, _ = await s.chat()
        assert status == 200 and s.served_by_endpoint() == before + 1
        ep = (await (await s.client.get("/status")).json())["endpoints"][0]
        assert ep["wake_ups"] == 1 and ep["last_time_to_ready"] >= 5


async def test_scaled_to_zero_without_fallback_parks_until_it_is_up() -> None:
    async with stack(sim_config("scaledToZero", scale_up_delay=5), resilience={"probe_hold": 1000.0}) as s:
        calls = [asyncio.ensure_future(s.chat("solo")) for _ in range(5)]
        await until(lambda: s.counters().wake_ups == 1, "the wake-up")
        await s.advance(8)
        results = await asyncio.gather(*calls)
        assert [status for status, _ in results] == [200] * 5
        assert s.counters().wake_ups == 1
        assert s.counters().held == 1  # the waker waited in HF's proxy; the others in the gateway


async def test_a_parked_stream_gets_keepalives_while_the_endpoint_wakes() -> None:
    async with stack(sim_config("scaledToZero", scale_up_delay=6),
                     resilience={"probe_hold": 1000.0, "keepalive_interval": 2.0}) as s:
        first = asyncio.ensure_future(s.chat("solo"))
        await until(lambda: s.counters().wake_ups == 1, "the wake-up")
        stream = asyncio.ensure_future(s.chat("solo", stream=True))
        await s.advance(9)
        assert (await first)[0] == 200
        status, body = await stream
        events = [e for e in body.split(b"\n\n") if e]
        assert status == 200 and events[0].startswith(b":") and events[-1] == b"data: [DONE]"


async def test_paused_without_resume_is_an_immediate_clear_503_or_the_fallback() -> None:
    async with stack(sim_config("paused")) as s:
        status, body = await s.chat("solo")
        error = orjson.loads(body)["error"]
        assert status == 503 and error["code"] == "endpoint_unavailable"
        assert "paused" in error["message"] and "hf-gateway endpoints resume ep" in error["message"]
        status, _ = await s.chat("chat")
        assert status == 200 and s.served_by_serverless() == 1
        assert s.counters().resume_calls == 0 and s.served_by_endpoint() == 0


async def test_paused_with_resume_is_resumed_once_and_serves_when_running() -> None:
    async with stack(sim_config("paused", pending_delay=1, scale_up_delay=3), endpoint={"resume": True},
                     resilience={"probe_hold": 1000.0}) as s:
        calls = [asyncio.ensure_future(s.chat("solo")) for _ in range(4)]
        await until(lambda: s.counters().resume_calls == 1, "the resume")
        await s.advance(6)
        results = await asyncio.gather(*calls)
        assert [status for status, _ in results] == [200] * 4
        assert s.counters().resume_calls == 1


async def test_a_failed_endpoint_is_skipped_with_a_clear_error() -> None:
    async with stack(sim_config("failed")) as s:
        status, body = await s.chat("solo")
        assert status == 503 and "failed" in orjson.loads(body)["error"]["message"]
        assert (await s.chat("chat"))[0] == 200
        assert (await (await s.client.get("/status")).json())["status"] == "degraded"


async def test_a_503_from_an_endpoint_believed_running_marks_it_waking_before_the_next_poll() -> None:
    async with stack(sim_config("running", scale_to_zero_timeout=60), endpoint={"poll_interval": 3600}) as s:
        await s.advance(100)  # HF's own idle timer scaled it to zero; the gateway has not polled since
        assert s.sim_state() == "scaledToZero" and s.watch.record.ready
        status, _ = await s.chat()
        assert status == 200 and s.served_by_serverless() == 1
        assert s.counters().wake_ups == 1 and s.watch.record.state == "initializing"
        assert (await s.chat())[0] == 200
        assert s.served_by_endpoint() == 1  # the second request went straight to serverless
        metrics = await (await s.client.get("/metrics")).text()
        assert 'gateway_endpoint_wakeups_total{endpoint="ep"} 1.0' in metrics


async def test_an_endpoint_paused_behind_the_gateways_back_is_skipped_at_once() -> None:
    async with stack(sim_config("running"), endpoint={"poll_interval": 3600}) as s:
        machine = s.sim.endpoints.get("acme-chat")
        assert machine is not None
        machine.pause(s.clock.monotonic())  # someone paused it in the HF UI
        status, _ = await s.chat()
        assert status == 200 and s.served_by_serverless() == 1
        assert s.watch.record.state == "paused"
        status, body = await s.chat("solo")
        assert status == 503 and "paused" in orjson.loads(body)["error"]["message"]


async def test_an_update_keeps_serving() -> None:
    async with stack(sim_config("running", scale_up_delay=60)) as s:
        machine = s.sim.endpoints.get("acme-chat")
        assert machine is not None
        machine.force("updating", s.clock.monotonic())
        await s.advance(40)  # a poll (30 s +-10 %): updating, and the health route still answers
        assert s.watch.record.state == "updating" and s.watch.record.ready
        assert (await s.chat("solo"))[0] == 200
