"""SIGTERM on a real `hf-gateway serve` process: stop accepting at once, finish the requests and
streams in flight (within `drain_timeout`), exit 0. Past the drain timeout, what is still running
is cut and the upstream is released; the exit code is still 0.

This is aiohttp's `run_app(shutdown_timeout=...)` at work (gateway/server.py passes
`drain_timeout`): the listening socket closes first, idle keep-alive connections are closed,
handlers in progress get up to the timeout to finish, then are cancelled, then the app's cleanup
closes the upstream pools. These tests prove that end to end.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.simulator.app import SIM_STATE, create_simulator_app
from tests.support.processes import Processes, free_port, gateway_env, wait_healthy
from tests.support.rig import UPSTREAM_TOKEN, Tally, eventually

pytestmark = pytest.mark.slow


@asynccontextmanager
async def _gateway(sim_url: str, drain: float, workers: int = 1) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = gateway_env({"HF_TOKEN": UPSTREAM_TOKEN, "GATEWAY_DRAIN_TIMEOUT": str(drain),
                       "GATEWAY_LOG_FORMAT": "text", "GATEWAY_RESILIENCE__IDLE_AFTER": "0"})
    url = f"http://127.0.0.1:{port}"
    # stop_timeout=0: a gateway a failed test left running is killed at once, not drained
    with tempfile.TemporaryDirectory() as logs, Processes(Path(logs), stop_timeout=0) as procs:
        gw = procs.gateway("gateway", "serve", "--port", str(port), "--upstream", sim_url, "--workers", str(workers),
                           env=env)
        await asyncio.to_thread(wait_healthy, gw, url + "/healthz")  # fails with the log if it exits first
        yield gw.popen, url


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    assert await eventually(lambda: proc.poll() is not None, timeout), "the gateway did not exit"
    return proc.returncode


async def _stream(session: aiohttp.ClientSession, url: str, model: str, tokens: int,
                  started: asyncio.Event) -> tuple[int, bytes]:
    body = {"inputs": "drain me", "parameters": {"max_new_tokens": tokens}, "stream": True}
    async with session.post(f"{url}/models/{model}", json=body) as resp:
        first = await resp.content.readline()
        started.set()
        return resp.status, first + await resp.read()


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_finishes_what_is_in_flight_then_exits_zero(faults_tally: Tally, workers: int) -> None:
    sim = TestServer(create_simulator_app(), handler_cancellation=True)
    await sim.start_server()
    state = sim.app[SIM_STATE]
    try:
        async with _gateway(str(sim.make_url("")).rstrip("/"), drain=10, workers=workers) as (proc, url), \
                aiohttp.ClientSession() as session:
            started = asyncio.Event()
            stream = asyncio.create_task(_stream(session, url, "org/gen-drip-100ms", 10, started))
            chat = {"model": "org/chat-slow-ttfb-800ms", "messages": [{"role": "user", "content": "hi"}]}
            slow = asyncio.create_task(session.post(f"{url}/v1/chat/completions", json=chat))
            await asyncio.wait_for(started.wait(), 10)
            assert await eventually(lambda: state.in_flight == 2)
            faults_tally.sent += 2

            proc.send_signal(signal.SIGTERM)
            # Stop accepting: new connections are refused while the two requests are still running.
            assert await eventually(lambda: not _accepts(int(url.rsplit(":", 1)[1])), 5)
            assert not stream.done() and state.in_flight >= 1

            status, body = await stream
            resp = await slow
            answer = await resp.json()
            faults_tally.answered += 2
            assert status == 200
            events = [e for e in body.split(b"\n\n") if e.strip()]
            assert len(events) == 10 and b'"generated_text":"' in events[-1]  # the whole stream, to its end
            assert resp.status == 200 and answer["choices"][0]["message"]["content"]
            assert await _exit_code(proc, 15) == 0
            assert state.cancelled == 0  # nothing was cut
    finally:
        await sim.close()


async def test_past_the_drain_timeout_streams_are_cut_and_the_upstream_released(faults_tally: Tally) -> None:
    sim = TestServer(create_simulator_app(), handler_cancellation=True)
    await sim.start_server()
    state = sim.app[SIM_STATE]
    try:
        async with _gateway(str(sim.make_url("")).rstrip("/"), drain=0.5) as (proc, url), \
                aiohttp.ClientSession() as session:
            started = asyncio.Event()
            stream = asyncio.create_task(_stream(session, url, "org/gen-endless-stream-drip-50ms", 10, started))
            await asyncio.wait_for(started.wait(), 10)
            faults_tally.sent += 1
            faults_tally.abandoned += 1  # the gateway, not the client, ends it: no complete answer exists
            proc.send_signal(signal.SIGTERM)
            assert await _exit_code(proc, 15) == 0
            with pytest.raises(aiohttp.ClientPayloadError):
                await stream  # cut: the chunked body never completes
            assert await eventually(lambda: state.cancelled == 1 and state.in_flight == 0)
    finally:
        await sim.close()
