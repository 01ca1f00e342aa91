"""The Python load generator: raw HTTP/1.1 keep-alive connections on uvloop, one request in flight per connection.

Three jobs, each bounded in requests and in time:
- `load`: N connections send requests back to back for `duration` seconds (or `max_requests`),
  recording each request's latency; prints one JSON object.
- `ttfb`: one keep-alive connection sends `count` streaming requests one after another and records
  the time to the first `data:` byte and to the end of each stream.
- `hold`: opens `count` streams at once, reports when each has its first event, keeps them open
  (reading) until a line arrives on stdin or `hold` seconds pass, then closes them.

It frames responses itself (Content-Length or chunked) instead of using a client library, so one
core drives far more requests than the servers under test can answer. A body template may hold
`@N@`, replaced per request by a run-unique counter (the cache-miss path needs unique bodies).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from dataclasses import dataclass
from typing import Any

MARK = b"@N@"


@dataclass(frozen=True)
class Target:
    """What to send: host, port, path, headers and a body template."""

    host: str
    port: int
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def head(self) -> bytes:
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\n{extra}Content-Length: ").encode()


class Requests:
    """Request bytes: precomputed when the body is fixed, counter-stamped when it holds `@N@`."""

    def __init__(self, target: Target, salt: str = "", start: int = 0) -> None:
        self._head = target.head()
        self._body = target.body
        self._unique = MARK in target.body
        self._salt = salt.encode()
        self.n = start
        self._fixed = self._build(target.body)

    def _build(self, body: bytes) -> bytes:
        return self._head + str(len(body)).encode() + b"\r\n\r\n" + body

    def next(self) -> bytes:
        self.n += 1
        if not self._unique:
            return self._fixed
        return self._build(self._body.replace(MARK, self._salt + str(self.n).encode()))


def frame(buf: bytearray) -> tuple[int, int] | None:
    """(status, length) of the complete response at the start of `buf`, or None if more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    status = int(buf[9:12])
    head = bytes(buf[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17: stop if stop >= 0 else None])
        total = end + 4 + length
        return (status, total) if len(buf) >= total else None
    if b"transfer-encoding: chunked" not in head:
        return status, end + 4
    pos = end + 4
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if size == 0:
            return (status, eol + 4) if len(buf) >= eol + 4 else None
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return None


class _Load:
    """Shared state of one `load` job."""

    def __init__(self, reqs: Requests, duration: float, warmup: float, max_requests: int) -> None:
        now = time.perf_counter()
        self.reqs = reqs
        self.measure_from = now + warmup
        self.stop_at = self.measure_from + duration
        self.max_requests = max_requests
        self.sent = 0
        self.latencies = array("d")
        self.errors = 0
        self.statuses: dict[int, int] = {}
        self.last_done = now
        self.done = asyncio.get_running_loop().create_future()
        self.open = 0

    def more(self) -> bool:
        return self.sent < self.max_requests and time.perf_counter() < self.stop_at

    def record(self, started: float, status: int) -> None:
        now = time.perf_counter()
        if started >= self.measure_from:
            self.latencies.append(now - started)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not 200 <= status < 400:
                self.errors += 1
            self.last_done = now

    def closed(self) -> None:
        self.open -= 1
        if self.open <= 0 and not self.done.done():
            self.done.set_result(None)


class _Conn(asyncio.Protocol):
    def __init__(self, job: _Load) -> None:
        self.job = job
        self.buf = bytearray()
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if not self.job.more():
            self.transport.close()
            return
        self.job.sent += 1
        self.started = time.perf_counter()
        self.transport.write(self.job.reqs.next())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        got = frame(self.buf)
        if got is None:
            return
        status, length = got
        del self.buf[:length]
        self.job.record(self.started, status)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.job.more():  # the server closed a connection mid-run
            self.job.errors += 1
        self.job.closed()


async def run_load(target: Target, connections: int, duration: float, warmup: float = 0.5,
                   max_requests: int = 10_000_000, salt: str = "", start: int = 0) -> dict[str, Any]:
    """Drive `connections` keep-alive connections; return counts, rate and latency percentiles (ms)."""
    loop = asyncio.get_running_loop()
    job = _Load(Requests(target, salt, start), duration, warmup, max_requests)
    job.open = connections
    for _ in range(connections):
        await loop.create_connection(lambda: _Conn(job), target.host, target.port)
    try:
        await asyncio.wait_for(job.done, duration + warmup + 30)
    except TimeoutError:
        job.errors += 1
    elapsed = max(job.last_done - job.measure_from, 1e-9)
    lat = sorted(job.latencies)
    return {"tool": "python", "connections": connections, "count": len(lat), "errors": job.errors,
            "statuses": job.statuses, "elapsed": elapsed, "rps": len(lat) / elapsed, **percentiles(lat)}


def percentiles(sorted_seconds: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds."""
    if not sorted_seconds:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    n = len(sorted_seconds)

    def at(q: float) -> float:
        return sorted_seconds[min(n - 1, int(q * n))] * 1000

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": sorted_seconds[-1] * 1000}


async def _read_stream(reader: asyncio.StreamReader, t0: float) -> tuple[int, float | None]:
    """Read one streamed response; (status, seconds to the first `data:` byte)."""
    buf = bytearray()
    first: float | None = None
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-stream")
        buf += chunk
        if first is None:
            end = buf.find(b"\r\n\r\n")
            if end >= 0 and buf.find(b"data:", end) >= 0:
                first = time.perf_counter() - t0
        got = frame(buf)
        if got is not None:
            if first is None and buf.find(b"data:") >= 0:
                first = time.perf_counter() - t0
            return got[0], first


async def run_ttfb(target: Target, count: int, timeout: float, salt: str = "") -> dict[str, Any]:
    """`count` streams, one after another on a keep-alive connection; TTFB and total percentiles."""
    reqs = Requests(target, salt)
    ttfb: list[float] = []
    total: list[float] = []
    errors = 0
    deadline = time.monotonic() + timeout
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            writer.write(reqs.next())
            try:
                status, first = await asyncio.wait_for(_read_stream(reader, t0), 10)
            except (ConnectionError, TimeoutError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(target.host, target.port)
                continue
            if status != 200 or first is None:
                errors += 1
                continue
            ttfb.append(first)
            total.append(time.perf_counter() - t0)
    finally:
        writer.close()
    ttfb.sort()
    total.sort()
    return {"count": len(ttfb), "errors": errors, "ttfb": percentiles(ttfb), "total": percentiles(total)}


async def run_hold(target: Target, count: int, hold: float, first_timeout: float = 30.0) -> dict[str, Any]:
    """Open `count` streams, print readiness as JSON, keep reading until stdin speaks or `hold` passes."""
    reqs = Requests(target)
    ready = 0
    conns: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(100)  # connect in waves, not 1,000 SYNs at once

    async def one() -> None:
        nonlocal ready
        async with gate:
            reader, writer = await asyncio.open_connection(target.host, target.port)
            conns.append(writer)
            writer.write(reqs.next())
            buf = bytearray()
            while buf.find(b"data:") < 0:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("closed before the first event")
                buf += chunk
        ready += 1
        while await reader.read(65536):  # keep consuming, as a real client does
            pass

    t0 = time.perf_counter()
    readers = [asyncio.create_task(one()) for _ in range(count)]
    wait_until = time.monotonic() + first_timeout
    # Polled, not an Event: three ways out (all ready, the deadline, every reader ended).
    while ready < count and time.monotonic() < wait_until and not all(t.done() for t in readers):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    failed = sum(1 for t in readers if t.done() and (t.cancelled() or t.exception() is not None))
    print(json.dumps({"ready": ready, "failed": failed, "seconds": time.perf_counter() - t0}), flush=True)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or stop.set_result(None))
    try:
        await asyncio.wait_for(stop, hold)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sys.stdin.fileno())
    for w in conns:
        w.close()
    for t in readers:
        t.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {"ready": ready, "failed": failed}


def _target(args: argparse.Namespace) -> Target:
    body = open(args.body_file, "rb").read() if args.body_file else (args.body or "").encode()
    headers = tuple(tuple(h.split(":", 1)) for h in args.header)
    return Target(args.host, args.port, args.path, body, tuple((k.strip(), v.strip()) for k, v in headers))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="hf-gateway bench load generator")
    p.add_argument("job", choices=["load", "ttfb", "hold"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--body")
    p.add_argument("--body-file")
    p.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--max-requests", type=int, default=10_000_000)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--salt", default="")
    p.add_argument("--start", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    target = _target(args)
    if args.job == "load":
        out = asyncio.run(run_load(target, args.connections, args.duration, args.warmup, args.max_requests,
                                   args.salt, args.start))
    elif args.job == "ttfb":
        out = asyncio.run(run_ttfb(target, args.count, args.timeout, args.salt))
    else:
        out = asyncio.run(run_hold(target, args.count, args.hold))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
