"""Two real `hf-gateway serve` processes on one real Redis, in front of the simulator (`hf-gateway simulate`).

50 identical embedding requests, split between the two gateways and sent together while the
simulator holds its first byte: the simulator must see exactly one request, and every client the
same body. Real processes and a short real wait (the slow first byte), so it is marked slow.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

MODEL = "sim/bge-cache-slow-ttfb-800ms"  # simulator fault token: 800 ms before the first byte


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, limit: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"process exited with {proc.returncode} before it was ready:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {limit}s")
        time.sleep(0.05)


class Processes:
    """Subprocesses started by one test, stopped (by pid) at its end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop()


def hf_gateway() -> list[str]:
    """The installed `hf-gateway` console script (beside this interpreter), else the same entry point via -m."""
    script = Path(sys.executable).with_name("hf-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


@pytest.mark.slow
@pytest.mark.redis
async def test_fifty_requests_through_two_gateways_make_one_upstream_call(
    tmp_path: Path, redis_url: str, key_prefix: str, real_redis: object, processes: Processes,
) -> None:
    env = {**os.environ, "HF_TOKEN": "hf_fake_test_token", "GATEWAY_REDIS_URL": redis_url}
    env.pop("GATEWAY_CONFIG", None)
    sim_port = free_port()
    sim = processes.start([*hf_gateway(), "simulate", "--port", str(sim_port)], env)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "redis_prefix": key_prefix,
        "log_format": "text",
        "log_level": "WARNING",
        "upstreams": {"hf": {"kind": "hf", "base_url": f"http://127.0.0.1:{sim_port}", "token_env": "HF_TOKEN"}},
        "models": [{"name": "*"}],
    }))
    ports = [free_port(), free_port()]
    gateways = [processes.start([*hf_gateway(), "serve", "--config", str(config), "--port", str(p)], env)
                for p in ports]
    wait_ready(sim, f"http://127.0.0.1:{sim_port}/_sim/stats")
    for proc, port in zip(gateways, ports):
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz")

    body = {"model": MODEL, "input": ["the same sentence", "and another"]}
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> tuple[int, str, bytes]:
            url = f"http://127.0.0.1:{ports[i % 2]}/v1/embeddings"
            async with session.post(url, json=body) as resp:
                return resp.status, f"{i % 2}:{resp.headers.get('X-Cache', '')}", await resp.read()

        results = await asyncio.gather(*(one(i) for i in range(50)))
        async with session.get(f"http://127.0.0.1:{sim_port}/_sim/stats") as resp:
            stats = await resp.json()

    assert [status for status, _, _ in results] == [200] * 50, results[:3]
    assert len({raw for _, _, raw in results}) == 1
    assert stats["total"] == 1, stats
    verdicts = [x.split(":")[1] for _, x, _ in results]
    assert verdicts.count("MISS") == 1 and set(verdicts) <= {"MISS", "COALESCED", "HIT"}
    # both gateways had followers waiting on the one leader (the others arrived inside the slow first byte)
    assert {"0:COALESCED", "1:COALESCED"} <= {x for _, x, _ in results}
