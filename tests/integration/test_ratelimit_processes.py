"""Three `hf-gateway serve` processes share one real Redis: together they admit exactly the limit.

Real processes, real sockets, real time (kept short): the simulator as the upstream, 3 x 40
concurrent requests from one tenant whose bucket holds 50 and refills at 50 a day, so nothing
refills while the test runs. Any overshoot would mean two replicas spent the same token.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.auth import hash_key

KEY = "gwk_fake_test_key_processes"
LIMIT = 50
PER_GATEWAY = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(args: list[str]) -> list[str]:
    exe = shutil.which("hf-gateway")  # the installed console script, as an operator runs it
    return [exe, *args] if exe else [sys.executable, "-m", "gateway", *args]


def _spawn(args: list[str], redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_TOKEN": "hf_fake_test_token", "GATEWAY_REDIS_URL": redis_url}
    return subprocess.Popen(_command(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
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
def gateways(tmp_path: Path, redis_url: str, key_prefix: str, real_redis: object) -> Iterator[list[str]]:
    """The simulator and three gateways on free ports; each stopped by its own pid afterwards."""
    sim_port, ports = _free_port(), [_free_port() for _ in range(3)]
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"redis_prefix: {key_prefix}\nlog_format: text\nlog_level: WARNING\n"
        f"upstreams:\n  hf: {{kind: hf, base_url: 'http://127.0.0.1:{sim_port}'}}\n"
        "models:\n  - {name: '*'}\n"
        "cache: {enabled: false, coalesce: false}\n"
        "ratelimit: {store_timeout: 2.0, on_store_error: fail_closed}\n"  # a slow CI box must not admit extra
        f"tenants:\n  team-a: {{limits: {{requests: {{rate: '{LIMIT}/day'}}}}}}\n"
        f"keys:\n  - {{sha256: {hash_key(KEY)}, tenant: team-a}}\n",
        encoding="utf-8",
    )
    procs = [_spawn(["simulate", "--port", str(sim_port)], redis_url)]
    procs += [_spawn(["serve", "--config", str(config), "--port", str(p)], redis_url) for p in ports]
    try:
        _until_up(f"http://127.0.0.1:{sim_port}/health", procs[0])
        for port, proc in zip(ports, procs[1:]):
            _until_up(f"http://127.0.0.1:{port}/healthz", proc)
        yield [f"http://127.0.0.1:{p}" for p in ports]
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
async def test_three_processes_admit_exactly_the_limit(gateways: list[str]) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(base: str, i: int) -> tuple[int, str | None]:
            body = {"model": "sim/gpt2", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2}
            async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        results = await asyncio.gather(*(one(base, i) for base in gateways for i in range(PER_GATEWAY)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: LIMIT, 429: 3 * PER_GATEWAY - LIMIT}, statuses
    # one token at 50/day takes 1728 s: that is what every rejection says, whichever replica answered
    assert {ra for status, ra in results if status == 429} == {"1728"}
