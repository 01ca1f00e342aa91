"""Driving `wrk` (when installed): a Lua script per target, and parsing its report into the loadgen's result shape.

wrk is bounded by `-d` (time) and `--timeout`; the runner also wraps it in a subprocess timeout.
Unique bodies (the `@N@` marker) are made by a Lua `request()` that stamps a counter, salted per
run so entries cached by an earlier run never turn a miss into a hit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .loadgen import MARK, Target
from .procs import BenchError, pinned

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_str(data: str) -> str:
    """A Lua long-bracket string literal that cannot be closed by `data`."""
    level = 1
    while f"]{'=' * level}]" in data:
        level += 1
    eq = "=" * level
    return f"[{eq}[{data}]{eq}]"


def lua_script(target: Target, salt: str) -> str:
    lines = ['wrk.method = "POST"', f"wrk.path = {_lua_str(target.path)}",
             'wrk.headers["Content-Type"] = "application/json"']
    # The spaces matter: `headers[[=[...` would open a Lua long string instead of indexing.
    lines += [f"wrk.headers[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in target.headers]
    body = target.body.decode()
    if MARK.decode() not in body:
        lines.append(f"wrk.body = {_lua_str(body)}")
        return "\n".join(lines) + "\n"
    before, after = body.split(MARK.decode(), 1)
    lines += [
        f"local before = {_lua_str(before + salt)}",
        f"local after = {_lua_str(after)}",
        "local n = 0",
        "request = function()",
        "  n = n + 1",
        "  return wrk.format(nil, nil, nil, before .. n .. after)",
        "end",
    ]
    return "\n".join(lines) + "\n"


def run(target: Target, connections: int, duration: float, script_dir: Path, salt: str,
        cpus: str | None, warmup: float = 0.5) -> dict[str, Any]:
    """One wrk run (after a short unrecorded warm-up run); the loadgen's result shape."""
    url = f"http://{target.host}:{target.port}{target.path}"
    if warmup > 0:  # its own salt: warm-up bodies must not be cached for the measured run
        _wrk(url, _script(script_dir, target, salt + "w"), connections, warmup, cpus)
    return parse(_wrk(url, _script(script_dir, target, salt), connections, duration, cpus), connections)


def _script(script_dir: Path, target: Target, salt: str) -> Path:
    path = script_dir / f"wrk-{target.port}-{salt}.lua"
    path.write_text(lua_script(target, salt))
    return path


def _wrk(url: str, script: Path, connections: int, duration: float, cpus: str | None) -> str:
    secs = max(1, round(duration))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--latency", "--timeout", "5s", "-s", str(script), url]
    try:
        out = subprocess.run(pinned(argv, cpus), capture_output=True, text=True, timeout=secs + 30)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {exc}") from exc
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return out.stdout


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(text: str, connections: int) -> dict[str, Any]:
    """Requests, rate, errors and the latency distribution from wrk's `--latency` report."""
    count = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not count or not rps:
        raise BenchError(f"unreadable wrk output:\n{text[:500]}")
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(int(x) for x in sock.groups()) if sock else 0
    maxm = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    return {
        "tool": "wrk", "connections": connections, "count": int(count.group(1)), "errors": errors,
        "elapsed": float(count.group(2)) * _UNITS[count.group(3)] / 1000, "rps": float(rps.group(1)),
        "p50_ms": pct.get(50), "p90_ms": pct.get(90), "p99_ms": pct.get(99),
        "max_ms": _ms(maxm.group(1)) if maxm else None,
    }
