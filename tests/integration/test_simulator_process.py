"""`run_simulator` in its own process (what `hf-gateway simulate --fast` runs): it serves and counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port


def _call(url: str, body: Any | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.slow
def test_run_simulator_fast_mode_with_config_file(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("models:\n  flaky: {faults: '503x1'}\n", encoding="utf-8")
    port = free_port()
    code = (
        "from gateway.simulator.app import run_simulator; "
        f"run_simulator('127.0.0.1', {port}, {str(config)!r}, fast=True)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if _call(f"{base}/health")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        status, raw = _call(f"{base}/generate", {"inputs": "Hi"})
        assert status == 200 and "generated_text" in json.loads(raw)
        assert _call(f"{base}/endpoints/flaky/generate", {"inputs": "Hi"})[0] == 503
        assert _call(f"{base}/endpoints/flaky/generate", {"inputs": "Hi"})[0] == 200
        stats = json.loads(_call(f"{base}/_sim/stats")[1])
        assert stats["total"] == 4 and stats["by_model"]["flaky"] == 2
        assert json.loads(_call(f"{base}/_sim/requests")[1]) == []  # fast mode keeps no records
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert b"fast mode" in (proc.stdout.read() if proc.stdout else b"")
