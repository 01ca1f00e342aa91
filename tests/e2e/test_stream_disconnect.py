"""A client that leaves mid-stream makes the gateway drop the upstream request at once."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.thread_stack import Stack


async def _wait_for(pred, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


async def test_disconnect_mid_stream_cancels_the_upstream(stack: Stack) -> None:
    model = "org/chat-drip-200ms"
    before = stack.call_soon(lambda: stack.sim.cancelled)
    body = {"model": model, "messages": [{"role": "user", "content": "a long answer please"}],
            "max_tokens": 50, "stream": True}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{stack.gw_url}/v1/chat/completions", json=body)
        assert resp.status == 200
        first = await resp.content.readline()
        assert first.startswith(b"data:")
        resp.close()  # the client goes away after one event
    assert await _wait_for(lambda: stack.call_soon(lambda: stack.sim.cancelled) > before)
    assert await _wait_for(lambda: stack.call_soon(lambda: stack.sim.in_flight) == 0)


async def test_tgi_stream_passes_through_untouched(stack: Stack) -> None:
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 3}, "stream": True}
    async with aiohttp.ClientSession() as session:
        via = await (await session.post(f"{stack.gw_url}/models/org/gen", json=body)).read()
        direct = await (await session.post(f"{stack.sim_url}/hf-inference/models/org/gen", json=body)).read()
    assert via == direct
    assert via.startswith(b"data:{") and b"[DONE]" not in via
