"""The benchmark must not rot: its parts, and one tiny end-to-end run. No timing is asserted anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bench import wrk
from bench.config_check import effective_config
from bench.loadgen import Target, frame, run_hold, run_load, run_ttfb
from bench.memory import flatness
from bench.profile import summarize_collapsed
from bench.upstream import create_upstream_app

REPO = Path(__file__).resolve().parents[2]
CHAT = b'{"model":"m","messages":[{"role":"user","content":"q @N@"}]}'
WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:4000/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.25ms  420.11us  12.50ms   91.00%
    Req/Sec     9.80k   300.00     10.20k    70.00%
  Latency Distribution
     50%    3.10ms
     75%    3.40ms
     90%    3.80ms
     99%  812.00us
  19600 requests in 2.00s, 8.10MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   9800.50
Transfer/sec:      4.05MB
"""


def test_frame_reads_content_length_and_chunked_responses() -> None:
    fixed = bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1")
    assert frame(fixed) == (200, len(fixed) - len(b"HTTP/1.1"))
    chunked = b"HTTP/1.1 429 X\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndata:\r\n0\r\n\r\n"
    assert frame(bytearray(chunked)) == (429, len(chunked))
    assert frame(bytearray(chunked[:-3])) is None


def test_wrk_report_is_parsed() -> None:
    res = wrk.parse(WRK_OUTPUT, 32)
    assert res["count"] == 19600 and res["rps"] == 9800.5 and res["errors"] == 3
    assert res["p50_ms"] == 3.1 and res["p99_ms"] == pytest.approx(0.812) and res["max_ms"] == 12.5


def test_wrk_script_stamps_unique_bodies_and_keeps_header_names_intact() -> None:
    script = wrk.lua_script(Target("127.0.0.1", 1, "/p", CHAT, (("Authorization", "Bearer k]=]"),)), "salt")
    assert "wrk.headers[ [=[Authorization]=] ] = [==[Bearer k]=]]==]" in script
    assert "before .. n .. after" in script and "salt" in script


async def test_loadgen_drives_the_bench_upstream() -> None:
    async with TestServer(create_upstream_app()) as server:
        target = Target("127.0.0.1", server.port, "/v1/chat/completions", CHAT)
        load = await run_load(target, connections=4, duration=0.2, warmup=0.0, max_requests=200)
        ttfb = await run_ttfb(Target("127.0.0.1", server.port, "/v1/chat/completions",
                                     b'{"stream":true,"n":"@N@"}'), count=5, timeout=10)
    assert load["count"] > 0 and load["errors"] == 0 and set(load["statuses"]) == {200}
    assert ttfb["count"] == 5 and ttfb["errors"] == 0


async def test_hold_keeps_streams_open_until_told(monkeypatch: pytest.MonkeyPatch) -> None:
    async with TestServer(create_upstream_app(drip=0.05, drip_events=100)) as server:
        target = Target("127.0.0.1", server.port, "/v1/chat/completions", b'{"stream":true}')
        read, write = os.pipe()
        os.write(write, b"stop\n")  # the line that ends the hold
        with open(read) as stdin:
            monkeypatch.setattr(sys, "stdin", stdin)
            res = await run_hold(target, count=3, hold=5, first_timeout=5)
        os.close(write)
    assert res == {"ready": 3, "failed": 0}


def test_flatness_verdicts() -> None:
    assert flatness([(0, 50_000), (100, 60_000), (200, 60_100), (300, 60_200)])["flat"] is True
    assert flatness([(0, 50_000), (100, 60_000), (200, 80_000), (300, 99_000)])["flat"] is False


def test_profile_summary_counts_self_and_inclusive_samples() -> None:
    text = "main (a/app.py:1);handle (a/h.py:9) 3\nmain (a/app.py:1) 1\n"
    out = summarize_collapsed(text)
    assert "samples: 4" in out and "75.0%  handle (a/h.py)" in out and "100.0%  main (a/app.py)" in out


def test_unknown_config_options_are_dropped_and_reported(tmp_path: Path) -> None:
    src = tmp_path / "src.yaml"
    src.write_text("cache:\n  enabled: true\n  not_an_option_yet: 3\n")
    path, dropped = effective_config(src, tmp_path / "out.yaml")
    assert [d.split(" ")[0] for d in dropped] == ["cache.not_an_option_yet"]
    assert "not_an_option_yet" not in path.read_text()


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    """Upstream, floor and zero-config gateway started, measured, stopped; a table comes out."""
    results = tmp_path / "RESULTS.md"
    argv = [sys.executable, "-m", "bench", "--quick", "--loadgen", "python", "--only", "direct,bare,server,zero",
            "--skip", "trips,workers", "--rounds", "1", "--duration", "0.3", "--latency-duration", "0.2",
            "--streams", "10", "--open-streams", "5", "--flat-requests", "200", "--sample-every", "100",
            "--results", str(results)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    text = results.read_text()
    for label in ("direct to upstream", "bare aiohttp pass-through (floor)",
                  "aiohttp server alone, fixed answer (embeddings)", "hf-gateway zero-config"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
        assert line.split("|")[2].strip() not in ("—", "0"), line  # a throughput was measured
    assert "open streams" in text and "RSS flat" in text
    assert "failed" not in text, text
