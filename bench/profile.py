"""Where a gateway's CPU goes under load: py-spy attached to a running gateway (cProfile when py-spy is absent).

The summary lists the functions with the most samples on top of the stack (self) and on the
stack at all (inclusive), grouped as `function (file)` with the line numbers dropped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .measure import CHAT, CHAT_PATH, Meter
from .procs import CLIENT_CPUS, SERVER_CPUS, BenchError, Procs, free_port
from .topology import REPO, UPSTREAM_TOKEN, Server


def profile(procs: Procs, meter: Meter, server: Server, upstream: Server, seconds: float, out_dir: Path,
            path: str = CHAT_PATH, body: bytes = CHAT, name: str | None = None) -> str:
    """Profile `server` (a running gateway) under 32-connection load; a text summary, also in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or server.name
    if shutil.which("py-spy"):
        text = _with_py_spy(procs, meter, server, seconds, out_dir / name, path, body)
    else:  # cProfile needs its own process: a zero-config gateway, whatever `server` was
        text = "cProfile of a zero-config gateway (py-spy is not installed)\n" + _with_cprofile(
            procs, meter, upstream, seconds, out_dir)
    (out_dir / f"{name}-profile.txt").write_text(text)
    return text


def _with_py_spy(procs: Procs, meter: Meter, server: Server, seconds: float, stem: Path, path: str,
                 body: bytes) -> str:
    raw = stem.with_suffix(".pyspy.txt")
    spy = procs.spawn(f"py-spy-{stem.name}", ["py-spy", "record", "--pid", str(server.pid), "--duration",
                                                 str(int(seconds)), "--rate", "200", "--nonblocking", "--format",
                                                 "raw", "-o", str(raw)], CLIENT_CPUS)
    try:
        meter.load(server, path, body, 32, seconds + 1, warmup=0)
        spy.popen.wait(seconds + 30)
    finally:
        procs.stop(spy)
    if not raw.exists():
        raise BenchError(f"py-spy wrote nothing:\n{spy.tail()}")
    return summarize_collapsed(raw.read_text())


def summarize_collapsed(text: str, top: int = 30) -> str:
    """Self and inclusive sample shares from py-spy's raw (collapsed stack) output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"samples: {total} (busy only; idle waits are not sampled)", "", "self (top of stack):"]
    lines += [f"  {100 * n / max(1, total):5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (anywhere on the stack):"]
    lines += [f"  {100 * n / max(1, total):5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines) + "\n"


def _frame(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (to/file.py)`; keeps the last two path parts."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short})"


def _with_cprofile(procs: Procs, meter: Meter, upstream: Server, seconds: float, out_dir: Path) -> str:
    port = free_port()
    prof = out_dir / "zero-config.pstats"
    argv = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "gateway", "serve", "--port", str(port),
            "--upstream", upstream.url]
    proc = procs.start_server("gw-cprofile", argv, SERVER_CPUS, port,
                              env={"PYTHONPATH": str(REPO), "HF_TOKEN": UPSTREAM_TOKEN})
    try:
        meter.load(Server("gw-cprofile", port, proc), CHAT_PATH, CHAT, 32, seconds, warmup=0)
    finally:
        procs.stop(proc)  # SIGTERM: aiohttp exits cleanly and cProfile writes its file
    if not prof.exists():
        raise BenchError("cProfile wrote nothing")
    # Printed by a child process, so a large profile never loads into the runner.
    out = subprocess.run([sys.executable, "-c", "import pstats,sys; pstats.Stats(sys.argv[1]).sort_stats("
                          "'tottime').print_stats(30)", str(prof)], capture_output=True, text=True, timeout=60)
    return out.stdout
