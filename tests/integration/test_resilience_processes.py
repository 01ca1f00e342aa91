"""Two gateway processes sharing a real Redis park behind ONE probe of a cold model (real time, real sockets)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

COLD = 2.5
MODEL = f"sim/gpt2-cold-{COLD}s"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_TOKEN": "hf_fake_test_token"}
    return subprocess.Popen([sys.executable, "-m", "gateway", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{proc.args} exited early: {err}")
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.05)


@pytest.fixture
def processes(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[tuple[str, list[str]]]:
    """The simulator and two gateways (ports), stopped afterwards by their own pids."""
    sim_port, ports = _free_port(), [_free_port(), _free_port()]
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"redis_url: {redis_url}\nredis_prefix: {key_prefix}\nlog_format: text\nlog_level: WARNING\n"
        f"upstreams:\n  hf: {{kind: hf, base_url: 'http://127.0.0.1:{sim_port}'}}\n"
        "models:\n  - {name: '*'}\n",
        encoding="utf-8",
    )
    procs = [_spawn(["simulate", "--port", str(sim_port)])]
    procs += [_spawn(["serve", "--config", str(config), "--port", str(p)]) for p in ports]
    try:
        _until_up(f"http://127.0.0.1:{sim_port}/health", procs[0])
        for port, proc in zip(ports, procs[1:]):
            _until_up(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{sim_port}", [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
@pytest.mark.redis
async def test_two_gateway_processes_share_the_loading_state_and_the_single_probe(
    processes: tuple[str, list[str]], redis_url: str, key_prefix: str
) -> None:
    sim, gateways = processes
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        body = {"inputs": "Hello", "parameters": {"max_new_tokens": 3}}

        async def one(i: int) -> int:
            async with session.post(f"{gateways[i % 2]}/models/{MODEL}", json=body) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(i) for i in range(10)))
        assert statuses == [200] * 10
        async with session.get(f"{sim}/_sim/requests") as resp:
            received = [r for r in await resp.json() if r["model"] == MODEL]
    times = sorted(r["at"] for r in received)
    ready = times[0] + COLD
    during_load = sum(1 for t in times if t < ready) + 1  # + the probe that found it ready
    assert during_load <= 2, times
    assert len(times) <= 11
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*cold*")]
        assert keys, "the loading state lives in the shared Redis"
        assert not [k for k in keys if k.endswith(b":probe")], "no probe lock is left behind"
        for k in keys:
            await client.delete(k)
    finally:
        await client.aclose()

