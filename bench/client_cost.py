"""CPU per request of an upstream client: aiohttp's `ClientSession` against the gateway's `transport.Pool`.

Both clients send the same small keep-alive POST (`/v1/embeddings`, a fixed JSON answer of 516
bytes) to `bench/upstream.py` on loopback. The upstream is its own process, pinned to core 1
when the machine has one, and this process is pinned to core 0, so `time.process_time()` here
counts the client's work only. A round sends `--requests` requests from `--concurrency` tasks
through one client; rounds alternate between the two clients (noise hits both alike) and the
median of `--rounds` rounds is kept. The run is bounded: 2 × (rounds + 1) × requests requests.

Run: `python -m bench.client_cost [--requests 5000] [--rounds 5] [--concurrency 32] [--loop uvloop]`.
It prints a markdown block (figures, date, commit, versions) to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import aiohttp

from bench.procs import Procs, free_port
from gateway.upstream.transport.pool import Pool

BODY = b'{"model":"bench/embed","input":"a short input"}'
HEADERS = {"Content-Type": "application/json", "Accept": "*/*", "X-Request-Id": "0123456789abcdef"}
REPO = Path(__file__).resolve().parents[1]

Round = Callable[[int], Awaitable[None]]


def _shares(n: int, k: int) -> list[int]:
    """`n` requests spread over `k` tasks."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def aiohttp_round(session: aiohttp.ClientSession, url: str, concurrency: int) -> Round:
    async def worker(count: int) -> None:
        for _ in range(count):
            async with session.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"aiohttp client: upstream answered {resp.status}")

    async def run(n: int) -> None:
        await asyncio.gather(*(worker(c) for c in _shares(n, concurrency)))
    return run


def pool_round(pool: Pool, url: str, concurrency: int) -> Round:
    async def worker(count: int) -> None:
        for _ in range(count):
            resp = await pool.request("POST", url, HEADERS, BODY)
            await resp.read()
            resp.release()
            if resp.status != 200:
                raise RuntimeError(f"gateway client: upstream answered {resp.status}")

    async def run(n: int) -> None:
        await asyncio.gather(*(worker(c) for c in _shares(n, concurrency)))
    return run


async def _timed(run: Round, n: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second of wall time) for one round."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run(n)
    return (time.process_time() - cpu) / n * 1e6, n / (time.perf_counter() - wall)


async def measure(base: str, requests: int, rounds: int, concurrency: int) -> dict[str, list[tuple[float, float]]]:
    url = f"{base}/v1/embeddings"
    connector = aiohttp.TCPConnector(limit=concurrency)
    pool = Pool(base, limit=concurrency, connect_timeout=5.0, read_timeout=30.0)
    results: dict[str, list[tuple[float, float]]] = {"aiohttp ClientSession": [], "gateway transport.Pool": []}
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = {"aiohttp ClientSession": aiohttp_round(session, url, concurrency),
                   "gateway transport.Pool": pool_round(pool, url, concurrency)}
        try:
            for run in clients.values():  # warm-up: connections opened, code paths hot
                await run(min(requests, 1000))
            for i in range(rounds):
                order = list(clients.items()) if i % 2 == 0 else list(reversed(clients.items()))
                for name, run in order:
                    results[name].append(await _timed(run, requests))
        finally:
            await pool.close()
    return results


def _pin_self() -> bool:
    """This process on core 0 when cores 0 and 1 are both ours (the upstream takes core 1)."""
    if not hasattr(os, "sched_setaffinity") or not {0, 1} <= os.sched_getaffinity(0):
        return False
    os.sched_setaffinity(0, {0})
    return True


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace, pinned: bool) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### Upstream client CPU per request ({when}, `{_commit()}`)", "",
             f"`python -m bench.client_cost --requests {args.requests} --rounds {args.rounds} "
             f"--concurrency {args.concurrency} --loop {args.loop}`: python {platform.python_version()}, "
             f"aiohttp {version('aiohttp')}, uvloop {version('uvloop')}, {os.cpu_count()} CPUs, "
             f"{'client on core 0, upstream on core 1' if pinned else 'not pinned'}, "
             f"load average {os.getloadavg()[0]:.2f} at the end.", "",
             "| client | CPU per request (median) | rounds (µs) | req/s (median) |", "|---|---:|---|---:|"]
    for name, rows in results.items():
        cpu = [r[0] for r in rows]
        rate = [r[1] for r in rows]
        lines.append(f"| {name} | {statistics.median(cpu):.0f} µs | {', '.join(f'{c:.0f}' for c in cpu)} "
                     f"| {statistics.median(rate):,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.client_cost", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000, help="requests per round and client (at most 100000)")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds per client (at most 50)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (and connections) per client")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop",
                   help="event loop of this process (hf-gateway serve runs on uvloop)")
    args = p.parse_args(argv)
    if not (1 <= args.requests <= 100_000 and 1 <= args.rounds <= 50 and 1 <= args.concurrency <= 256):
        p.error("--requests must be 1..100000, --rounds 1..50, --concurrency 1..256")
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    pinned = _pin_self()
    port = free_port()
    with Procs(Path(tempfile.mkdtemp(prefix="hf-gateway-client-cost-"))) as procs:
        procs.start_server("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(port)],
                           "1" if pinned else None, port)
        results = asyncio.run(measure(f"http://127.0.0.1:{port}", args.requests, args.rounds, args.concurrency))
    print(report(results, args, pinned))


if __name__ == "__main__":
    main()
