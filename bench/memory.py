"""Memory: the gateway's RSS with many concurrent open streams, and RSS over a long run of requests.

RSS is VmRSS from /proc/PID/status. The open-streams run puts a slow-drip upstream behind a
gateway (with a pool large enough not to queue the streams), opens the streams from a separate
`loadgen hold` process, reads the RSS once every stream has its first event, then lets them go.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from typing import Any

from .config_check import CONFIG_DIR
from .measure import CHAT, CHAT_PATH, CHAT_STREAM, Meter
from .procs import CLIENT_CPUS, BenchError, Procs, rss_kib
from .topology import REPO, Server, Topology


def open_streams_rss(procs: Procs, topo: Topology, count: int, hold: float = 60.0) -> dict[str, Any]:
    """RSS of a zero-config gateway (pool enlarged) holding `count` open SSE streams."""
    up = topo.mini_upstream("drip-upstream", drip=1.0, drip_events=int(hold) + 60)
    gw = topo.gateway("gw-streams", up, config=CONFIG_DIR / "streams.yaml")
    assert gw.pid is not None
    time.sleep(0.5)
    base = rss_kib(gw.pid)
    argv = [sys.executable, "-m", "bench.loadgen", "hold", "--port", str(gw.port), "--path", CHAT_PATH,
            "--body", CHAT_STREAM.decode(), "--count", str(count), "--hold", str(hold)]
    holder = procs.spawn("hold", argv, CLIENT_CPUS, env={"PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        ready = _first_line(holder.popen, timeout=hold)
        peak = 0
        for _ in range(5):  # the peak over a second: the drip keeps every stream busy
            peak = max(peak, rss_kib(gw.pid))
            time.sleep(0.2)
        assert holder.popen.stdin is not None
        holder.popen.stdin.write(b"stop\n")
        holder.popen.stdin.flush()
        holder.popen.wait(30)
    finally:
        procs.stop(holder)
        procs.stop(gw.proc)  # type: ignore[arg-type]
        procs.stop(up.proc)  # type: ignore[arg-type]
    return {"streams": count, "ready": ready.get("ready", 0), "failed": ready.get("failed", 0),
            "base_mb": base / 1024, "rss_mb": peak / 1024, "per_stream_kb": (peak - base) / max(1, count)}


def _first_line(popen: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert popen.stdout is not None
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    if not ready:
        raise BenchError("the stream holder reported nothing in time")
    line = popen.stdout.readline()
    if not line:
        raise BenchError(f"the stream holder exited ({popen.poll()})")
    result: dict[str, Any] = json.loads(line)
    return result


def rss_flatness(meter: Meter, server: Server, total: int, every: int) -> dict[str, Any]:
    """`total` unique chat requests in segments of `every`, sampling RSS after each segment."""
    assert server.pid is not None
    samples: list[tuple[int, int]] = [(0, rss_kib(server.pid))]
    done = errors = 0
    started = time.monotonic()
    while done < total:
        n = min(every, total - done)
        res = meter.count(server, CHAT_PATH, CHAT, n, start=done)
        done += n
        errors += res["errors"]
        samples.append((done, rss_kib(server.pid)))
    return {"requests": done, "errors": errors, "seconds": time.monotonic() - started, "samples": samples,
            **flatness(samples)}


def flatness(samples: list[tuple[int, int]]) -> dict[str, Any]:
    """Growth after warm-up (from the first sample at >= 20% of the run to the last); flat if <= max(3%, 2 MB)."""
    if len(samples) < 3:
        return {"growth_mb": None, "flat": None}
    total = samples[-1][0]
    warm = next(kib for n, kib in samples if n >= total * 0.2 and n > 0)
    growth = samples[-1][1] - warm
    flat = growth <= max(0.03 * warm, 2048)
    return {"warm_mb": warm / 1024, "last_mb": samples[-1][1] / 1024, "growth_mb": growth / 1024, "flat": flat}
