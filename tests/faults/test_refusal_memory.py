"""Refused upstream answers do not stay in memory: a real `hf-gateway serve` process keeps a flat RSS.

The gateway runs as in production (uvloop, its tuned garbage collector that rarely looks for
cycles), in front of a `Hostile` upstream whose answers it must refuse: chunked bodies past
`max_response_bytes` (read up to the cap, then refused), invalid JSON just under the cap (read
whole, then refused), and gzip bombs (refused from the head). Each refusal buffers megabytes; if
anything (an exception's traceback and the frames it holds, a parser error keeping the document)
kept them until the cycle collector ran, RSS would climb by about that much per refusal.
"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pytest
import yaml

from tests.support.processes import Processes, free_port, wait_healthy
from tests.support.raw_client import RawConnection
from tests.support.scripted_upstream import Exchange, chunked, hostile

CAP = 4 * 1024 * 1024
WARMUP, ROUNDS = 20, 100


async def over_cap(ex: Exchange) -> bool:
    ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    block = chunked(b"x" * 65536, size=65536, end=False)
    for _ in range((CAP + CAP // 4) // 65536):  # 5 MiB, in 64 KiB chunks
        ex.send(block)
        await ex.drain()
    ex.send(b"0\r\n\r\n")
    return True


async def invalid_json(ex: Exchange) -> bool:
    body = b'{"choices": [' + b'"not closed", ' * (CAP // 16)
    ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return True


async def gzip_bomb(ex: Exchange) -> bool:
    body = gzip.compress(b"0" * (64 * 1024 * 1024))
    ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return True


CASES = {"over-cap": over_cap, "invalid-json": invalid_json, "gzip-bomb": gzip_bomb}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def refuse(conn: RawConnection, n: int) -> None:
    for i in range(n):
        case = list(CASES)[i % len(CASES)]
        body = {"model": case, "messages": [{"role": "user", "content": f"m{i}"}]}
        answer = await conn.post_json("/v1/chat/completions", body, within=30)
        assert answer.status == 502, (case, answer.status, answer.body[:200])
        assert orjson.loads(answer.body)["error"]["code"] == "upstream_bad_response"


@pytest.mark.slow
async def test_rss_stays_flat_over_100_refused_answers(processes: Processes, tmp_path: Path) -> None:
    async with hostile(CASES) as (_, base):
        port = free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({
            "upstreams": {"up": {"kind": "openai", "base_url": f"{base}/v1", "token_env": None,
                                 "max_response_bytes": CAP, "pool_size": 4, "retry": {"max_attempts": 1},
                                 "breaker_failures": 1_000_000}},
            "models": [{"name": "*", "deployments": [{"upstream": "up"}]}],
            "cache": {"enabled": False, "coalesce": False}, "log_format": "text"}))
        child = processes.gateway("gateway", "serve", "--config", str(config), "--port", str(port))
        await asyncio.to_thread(wait_healthy, child, f"http://127.0.0.1:{port}/healthz")
        conn = await RawConnection.open("127.0.0.1", port)
        try:
            await refuse(conn, WARMUP)  # allocator arenas and caches reach their working size
            before = rss_mib(child.popen.pid)
            await refuse(conn, ROUNDS)
            after = rss_mib(child.popen.pid)
        finally:
            await conn.close()
    # A leak would hold ~4 MiB per refusal (~400 MiB here); a flat process moves by a few MiB.
    assert after - before < 48, f"RSS grew from {before:.0f} MiB to {after:.0f} MiB over {ROUNDS} refusals"
