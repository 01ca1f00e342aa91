"""Malformed and slow clients against a real `hf-gateway serve` process: a 400 or 408 each, one quiet log line,
a count in `gateway_malformed_requests_total`, and a silent error log (no traceback, no ERROR line)."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.processes import Processes, free_port, wait_healthy

MALFORMED = {
    "cl-te": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-cl": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
             b"\r\nzz\r\nhi\r\n0\r\n\r\n",
    "te-twice": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-odd": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "length-plus": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: +5\r\n\r\nhello",
    "bad-chunk": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n",
    "nul-header": b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "bad-line": b"POST /v1/chat completions HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n",
}


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()  # the gateway answers and closes
    finally:
        writer.close()


async def _drip(port: int, extra: bytes) -> bytes:
    """A request whose body never arrives in full: the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n" + extra + b"\r\n{\"model\":")
        await writer.drain()
        async with asyncio.timeout(15):  # the deadline is far shorter: this only stops a hang
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
            return head + await reader.readexactly(length)
    finally:
        writer.close()


@pytest.mark.slow
async def test_malformed_and_slow_clients_are_refused_quietly(processes: Processes, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "upstreams": {"up": {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "token_env": None}},
        "models": [{"name": "*", "deployments": [{"upstream": "up"}]}],
        "request_timeout": 2.0, "log_format": "text", "log_level": "INFO"}))
    child = processes.gateway("gateway", "serve", "--config", str(config), "--port", str(port))
    await asyncio.to_thread(wait_healthy, child, f"http://127.0.0.1:{port}/healthz")

    for name, data in MALFORMED.items():
        answer = await _send(port, data)
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], (name, answer[:200])

    # A body dripped slowly is cut at the request's deadline: the client's X-Gateway-Timeout, else request_timeout.
    for extra, deadline in ((b"X-Gateway-Timeout: 0.5\r\n", 0.5), (b"", 2.0)):
        loop = asyncio.get_running_loop()
        start = loop.time()
        answer = await _drip(port, extra)
        assert loop.time() - start < deadline + 2.0  # (the slack is for a loaded machine)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"code":"request_timeout"' in answer, answer[:300]
        assert b"\r\nConnection: close\r\n" in answer  # what is left of the body cannot be told from a next request

    metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    counts = {kind: float(value) for kind, value in
              re.findall(r'^gateway_malformed_requests_total\{kind="(\w+)"\} (\S+)$', metrics, re.M)}
    assert sum(counts.values()) == len(MALFORMED), counts
    assert counts["framing"] >= 5, counts

    processes.stop()
    log = child.log.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log and "ERROR:" not in log, log[-3000:]
    lines = [ln for ln in log.splitlines() if "malformed request from" in ln]
    assert len(lines) == len(MALFORMED), log[-3000:]
    assert all("refused with 400" in ln for ln in lines)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()
