"""Three gateway processes sharing one Redis in front of one managed endpoint (the simulator, another process):
exactly one resume, exactly one idle action, one warning per process when the control plane is down.
Real processes run on real time, so the endpoint's delays here are short and the waits poll for conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from openai import AsyncOpenAI

from tests.support.processes import Fleet, Processes, free_port, start_fleet

TOKEN_ENV, TOKEN = "GW_FLEET_ENDPOINT_TOKEN", "hf_fake_acme_write"
MESSAGES = [{"role": "user", "content": "hello"}]


def sim_config(state: str, **timings: float | None) -> dict[str, Any]:
    spec = {"namespace": "acme", "state": state, "pending_delay": 0.5, "scale_up_delay": 1.5,
            "scale_to_zero_timeout": None, **timings}
    return {"control_plane": {"namespaces": {"acme": {"tokens": [{"token": TOKEN}]}},
                              "endpoints": {"acme-chat": spec}}}


def gateway_config(redis_url: str, prefix: str, **endpoint: Any) -> Callable[[str], dict[str, Any]]:
    def config(sim_url: str) -> dict[str, Any]:
        ep = {"kind": "endpoint", "name": "acme-chat", "namespace": "acme", "token_env": TOKEN_ENV,
              "control_plane_url": sim_url, "wake_estimate": 10, "poll_interval": 1, "wake_poll_interval": 0.3,
              **endpoint}
        return {"redis_url": redis_url, "redis_prefix": prefix, "log_format": "text", "log_level": "WARNING",
                "upstreams": {"ep": ep}, "models": [{"name": "solo", "deployments": [{"upstream": "ep"}]}]}
    return config


async def counters(fleet: Fleet) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(f"{fleet.simulator}/_sim/endpoints/acme-chat") as r:
        return dict((await r.json())["counters"])


async def eventually(check: Callable[[], Any], what: str, limit: float = 30.0) -> None:
    """Wait for `await check()` to be true, polling (real processes: real time)."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        await asyncio.sleep(0.1)


async def chat(gateway: str) -> str:
    client = AsyncOpenAI(base_url=f"{gateway}/v1", api_key="sk-fake-client", max_retries=0, timeout=60)
    try:
        out = await client.chat.completions.create(model="solo", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
        return str(out.choices[0].message.content)
    finally:
        await client.close()


async def _cleanup(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    async for k in client.scan_iter(match=f"{prefix}*", count=500):
        await client.delete(k)
    await client.aclose()


@pytest.mark.slow
@pytest.mark.redis
async def test_a_paused_endpoint_is_resumed_once_by_a_fleet_of_three(
        processes: Processes, redis_url: str, key_prefix: str) -> None:
    fleet = start_fleet(processes, gateway_config(redis_url, key_prefix, resume=True), gateways=3,
                        env={TOKEN_ENV: TOKEN}, sim_config=sim_config("paused"))
    try:
        answers = await asyncio.gather(*(chat(fleet.gateways[i % 3]) for i in range(12)))
        assert all(answers)
        seen = await counters(fleet)
        assert seen["resume_calls"] == 1, seen
    finally:
        await _cleanup(redis_url, key_prefix)


@pytest.mark.slow
@pytest.mark.redis
async def test_the_idle_action_fires_once_across_three_processes_and_never_during_traffic(
        processes: Processes, redis_url: str, key_prefix: str) -> None:
    idle = {"after": 3, "action": "pause"}
    fleet = start_fleet(processes, gateway_config(redis_url, key_prefix, idle=idle), gateways=3,
                        env={TOKEN_ENV: TOKEN}, sim_config=sim_config("running"))
    try:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 6:  # twice idle.after of steady traffic, spread over the fleet
            assert await chat(fleet.gateways[i % 3])
            i += 1
            await asyncio.sleep(0.25)
        assert (await counters(fleet))["pause_calls"] == 0
        await eventually(lambda: _paused(fleet), "the idle pause")
        await asyncio.sleep(idle["after"] + 2)  # another idle period: nobody pauses it again
        seen = await counters(fleet)
        assert (seen["pause_calls"], seen["resume_calls"]) == (1, 0), seen
    finally:
        await _cleanup(redis_url, key_prefix)


async def _paused(fleet: Fleet) -> bool:
    return (await counters(fleet))["pause_calls"] >= 1


@pytest.mark.slow
@pytest.mark.redis
async def test_a_control_plane_down_from_the_start_is_one_warning_per_process(
        processes: Processes, redis_url: str, key_prefix: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    def config(sim_url: str) -> dict[str, Any]:
        cfg = gateway_config(redis_url, key_prefix, url=f"{sim_url}/endpoints/acme-chat", engine="tgi")(sim_url)
        cfg["upstreams"]["ep"]["control_plane_url"] = nowhere
        return cfg

    fleet = start_fleet(processes, config, gateways=3, env={TOKEN_ENV: TOKEN}, sim_config=sim_config("running"))
    try:
        for i in range(15):
            assert await chat(fleet.gateways[i % 3])
        await asyncio.sleep(2)  # a few poll steps (the backoff starts at 1 s)
    finally:
        await _cleanup(redis_url, key_prefix)
    logs = [child.log.read_text(errors="replace") for child in processes.children if child.name.startswith("gateway")]
    for log in logs:
        assert log.count("control plane of endpoint acme/acme-chat failed") <= 1, log
    assert sum(log.count("control plane of endpoint acme/acme-chat failed") for log in logs) >= 1
