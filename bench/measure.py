"""Measurements against one server: throughput at N connections, latency at one, stream time to first byte.

The load generator always runs on core 1 (CLIENT_CPUS) in its own process, bounded in time
(and, for the Python generator, in requests); a run that does not finish is killed by the
subprocess timeout. Every call gets a fresh salt, so unique bodies are unique across calls too.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import wrk
from .loadgen import Target
from .procs import CLIENT_CPUS, BenchError, cpu_seconds, pinned
from .topology import REPO, Server

CHAT_PATH = "/v1/chat/completions"
EMBED_PATH = "/v1/embeddings"
# `@N@` becomes a run-unique counter: the cache (when on) sees a new request every time: the miss path.
CHAT = (b'{"model":"bench/model","messages":[{"role":"user","content":"bench question @N@"}],'
        b'"temperature":0,"max_tokens":16}')
CHAT_STREAM = (b'{"model":"bench/model","messages":[{"role":"user","content":"bench stream @N@"}],'
               b'"temperature":0,"max_tokens":16,"stream":true}')
# The same body every time: after the first request, the cache-hit path.
EMBED = b'{"model":"bench/embed","input":"the same sentence, every time"}'


class Meter:
    """Runs the load generator (wrk or Python) against servers."""

    def __init__(self, tool: str, run_dir: Path, salt: str) -> None:
        self.tool = tool
        self.run_dir = run_dir
        self.salt = salt
        self._seq = itertools.count()

    def _salt(self) -> str:
        return f"{self.salt}x{next(self._seq)}x"

    def load(self, server: Server, path: str, body: bytes, connections: int, duration: float,
             warmup: float = 0.5) -> dict[str, Any]:
        """Requests back to back on `connections` keep-alive connections for `duration` seconds.

        `server_cpu` is the server's CPU use over the whole call (1.0 = one core busy): a server
        well under 1.0 at full load is waiting on something (Redis, the upstream), not computing."""
        target = Target("127.0.0.1", server.port, path, body, server.headers)
        cpu0, wall0 = (cpu_seconds(server.pid) if server.pid else 0.0), time.monotonic()
        if self.tool == "wrk":
            res = wrk.run(target, connections, duration, self.run_dir, self._salt(), CLIENT_CPUS, warmup)
        else:
            res = self.python("load", server, path, body, ["--connections", str(connections), "--duration",
                                                            str(duration), "--warmup", str(warmup)],
                              timeout=duration + warmup + 60)
        if server.pid:
            res["server_cpu"] = (cpu_seconds(server.pid) - cpu0) / max(1e-9, time.monotonic() - wall0)
        return res

    def count(self, server: Server, path: str, body: bytes, requests: int, connections: int = 32,
              start: int = 0) -> dict[str, Any]:
        """Exactly `requests` requests (bounded in time too), with the Python generator."""
        return self.python("load", server, path, body,
                           ["--connections", str(connections), "--max-requests", str(requests), "--duration",
                            "600", "--warmup", "0", "--start", str(start)], timeout=660)

    def ttfb(self, server: Server, body: bytes, count: int) -> dict[str, Any]:
        """`count` chat streams one after another: time to the first `data:` byte."""
        return self.python("ttfb", server, CHAT_PATH, body, ["--count", str(count), "--timeout", "120"],
                           timeout=180)

    def python(self, job: str, server: Server, path: str, body: bytes, extra: list[str],
               timeout: float) -> dict[str, Any]:
        argv = [sys.executable, "-m", "bench.loadgen", job, "--port", str(server.port), "--path", path,
                "--body", body.decode(), "--salt", self._salt(), *extra]
        for k, v in server.headers:
            argv += ["--header", f"{k}: {v}"]
        try:
            out = subprocess.run(pinned(argv, CLIENT_CPUS), capture_output=True, text=True, timeout=timeout,
                                 cwd=REPO)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"load generator ({job} on {server.name}) did not finish in {timeout:.0f}s") from exc
        if out.returncode != 0 or not out.stdout.strip():
            raise BenchError(f"load generator ({job} on {server.name}) failed: {out.stderr.strip()[-500:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
