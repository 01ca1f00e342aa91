"""Clients that go away: while the upstream is slow, while parked behind a cold start, during a
retry's backoff, and mid-stream. No upstream work continues for them (the simulator counts the
request as cancelled, or receives nothing more), and nothing is left behind in the gateway.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.core.clock import FakeClock
from tests.support.rig import Rig, Tally, chat, eventually, rig


async def _abandon(r: Rig, path: str, body: dict[str, Any], ready: Any, *, read_first: bool = False) -> None:
    """Send one request on its own connection, wait until `ready()`, then drop the connection."""
    r.tally.sent += 1
    r.tally.abandoned += 1
    session = aiohttp.ClientSession()
    got_first = asyncio.Event()
    try:
        async def go() -> None:
            resp = await session.post(r.gw_url + path, json=body)
            if read_first:
                await resp.content.readline()
                got_first.set()
            await asyncio.sleep(3600)

        task = asyncio.create_task(go())
        if read_first:
            await asyncio.wait_for(got_first.wait(), 10)
        assert await eventually(ready), "the request never reached the expected point"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await session.close()  # the socket closes: the gateway sees its client leave


async def _quiet_for(r: Rig, clk: FakeClock, model: str, seconds: float) -> int:
    """How many more requests for `model` reached the simulator while the gateway's clock moved on
    `seconds`, in 0.1 s steps (each followed by a turn of the loop, so a woken waiter runs), until
    nothing is left in flight."""
    before = r.sim.count(model=model)
    for _ in range(round(seconds / 0.1)):
        clk.advance(0.1)
        for _ in range(5):
            await asyncio.sleep(0)
    await r.settled()  # a probe or retry sent by a woken waiter is in flight until the simulator answers
    return r.sim.count(model=model) - before


async def test_disconnect_while_upstream_is_slow(tally: Tally) -> None:
    async with rig(tally) as r:
        model = "oai/chat-slow-ttfb-20s"
        await _abandon(r, "/v1/chat/completions", chat(model), lambda: r.sim.in_flight == 1)
        assert await eventually(lambda: r.sim.cancelled == 1), "the upstream request was not dropped"
        await r.settled()
        assert r.sim.count(model=model) == 1


async def test_disconnect_while_parked_behind_a_cold_start(tally: Tally) -> None:
    """Three callers park on a loading model and leave; when the model would be ready, no probe goes out for them."""
    clk = FakeClock()
    async with rig(tally, clock=clk) as r:
        model = "org/gen-cold-2s"
        body = {"inputs": "hello", "parameters": {"max_new_tokens": 4}}
        # All three are parked on the gateway's clock before any of them leaves.
        def parked() -> bool:
            return r.sim.count(model=model) >= 1 and clk.sleepers >= 3

        await asyncio.gather(*(_abandon(r, f"/models/{model}", body, parked) for _ in range(3)))
        await r.settled()
        assert clk.sleepers == 0, "a caller that left is still parked"
        # The cold window (2 s) ends while nobody is waiting: the model must not be probed for them.
        assert await _quiet_for(r, clk, model, 2.5) == 0
        assert r.sim.count(model=model) == 1


async def test_disconnect_during_retry_backoff(tally: Tally) -> None:
    clk = FakeClock()
    async with rig(tally, clock=clk) as r:
        model = "oai/chat-503xall-ra1"
        # In backoff: the 503 came back and the retry policy sleeps on the gateway's clock.
        await _abandon(r, "/v1/chat/completions", chat(model),
                       lambda: r.sim.count(model=model) == 1 and r.sim.in_flight == 0 and clk.sleepers >= 1)
        await r.settled()
        assert clk.sleepers == 0, "the abandoned request is still backing off"
        assert await _quiet_for(r, clk, model, 1.5) == 0  # the retry after Retry-After: 1 never happens
        assert r.sim.count(model=model) == 1


async def test_disconnect_mid_stream_stops_the_upstream(tally: Tally) -> None:
    async with rig(tally) as r:
        model = "oai/chat-drip-100ms"
        await _abandon(r, "/v1/chat/completions", chat(model, stream=True), lambda: r.sim.in_flight == 1,
                       read_first=True)
        assert await eventually(lambda: r.sim.cancelled == 1), "the upstream stream was not dropped"
        await r.settled()


async def test_disconnect_mid_tgi_stream_stops_the_upstream(tally: Tally) -> None:
    async with rig(tally) as r:
        body = {"inputs": "hello", "parameters": {"max_new_tokens": 20}, "stream": True}
        await _abandon(r, "/models/org/gen-drip-100ms", body, lambda: r.sim.in_flight == 1, read_first=True)
        assert await eventually(lambda: r.sim.cancelled == 1), "the upstream stream was not dropped"
        await r.settled()


async def test_many_clients_leave_at_once(tally: Tally) -> None:
    """Twenty streams and twenty slow calls abandoned together: all cancelled upstream, nothing left."""
    async with rig(tally) as r:
        jobs = []
        for i in range(20):
            jobs.append(_abandon(r, "/v1/chat/completions", chat(f"oai/chat-{i}-drip-100ms", stream=True),
                                 lambda: True, read_first=True))
            slow = f"oai/chat-{i}-slow-ttfb-20s"
            jobs.append(_abandon(r, "/v1/chat/completions", chat(slow),
                                 lambda m=slow: r.sim.count(model=m) >= 1))  # type: ignore[misc]
        await asyncio.gather(*jobs)
        assert await eventually(lambda: r.sim.cancelled == 40), f"cancelled upstream: {r.sim.cancelled}/40"
        await r.settled()
        ok = await r.send("POST", "/v1/chat/completions", json=chat("oai/after"), expect={200})
        assert ok.json()["choices"]
