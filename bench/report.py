"""The results: one markdown block per run (facts, the side-by-side table, the performance targets, notes).

Every figure is from the same run; "added" columns subtract the direct-to-upstream figure of
that run, and "x bare" divides by the bare pass-through's throughput of that run.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .topology import REPO

RESULTS = Path(__file__).parent / "RESULTS.md"


@dataclass
class Row:
    key: str
    label: str
    rps: float | None = None
    p50: float | None = None
    p99: float | None = None
    cpu: float | None = None  # the server's CPU use during the throughput run (1.0 = one core)
    ttfb50: float | None = None
    ttfb99: float | None = None
    errors: int = 0
    note: str = ""


@dataclass
class Report:
    title: str
    settings: str
    rows: dict[str, Row] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    trips: dict[str, Any] | None = None
    streams: dict[str, Any] | None = None
    flat: dict[str, dict[str, Any]] | None = None  # by scenario label
    workers: dict[str, Any] | None = None
    cache_hits: tuple[int, int] | None = None  # (hits, probes)

    def row(self, key: str, label: str) -> Row:
        return self.rows.setdefault(key, Row(key, label))


def _f(value: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if value is None else fmt.format(value)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def table(rep: Report) -> str:
    direct, bare = rep.rows.get("direct"), rep.rows.get("bare")
    out = ["| scenario | req/s @32 | × bare | server CPU | p50 @1 (ms) | p99 @1 (ms) | added p50 | added p99 "
           "| stream TTFB p50 (ms) | TTFB added | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rep.rows.values():
        ref = direct if r.key not in ("direct", "server", "hit") else None
        out.append(
            f"| {r.label} | {_f(r.rps, '{:,.0f}')} | {_f(_ratio(r.rps, bare.rps if bare else None), '{:.2f}')} "
            f"| {_f(r.cpu, '{:.0%}')} "
            f"| {_f(r.p50)} | {_f(r.p99)} | {_f(_sub(r.p50, ref.p50) if ref else None)} "
            f"| {_f(_sub(r.p99, ref.p99) if ref else None)} | {_f(r.ttfb50)} "
            f"| {_f(_sub(r.ttfb50, ref.ttfb50) if ref else None)} | {r.errors} |"
        )
    return "\n".join(out)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def targets(rep: Report) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each performance target (bench/README.md)."""
    g = rep.rows.get
    direct, bare, full, hit = g("direct"), g("bare"), g("full"), g("hit")
    out: list[tuple[str, str, str]] = []
    share = _ratio(full.rps if full else None, bare.rps if bare else None)
    out.append(("full chain throughput ≥ 90% of bare", _f(share, "{:.0%}"),
                _verdict(None if share is None else share >= 0.9)))
    added = _sub(full.p50 if full else None, direct.p50 if direct else None)
    out.append(("full chain median added latency ≤ 0.4 ms", _f(added, "{:.3f} ms"),
                _verdict(None if added is None else added <= 0.4)))
    ttfb = _sub(full.ttfb50 if full else None, direct.ttfb50 if direct else None)
    out.append(("full chain stream TTFB added ≤ 1 ms", _f(ttfb, "{:.3f} ms"),
                _verdict(None if ttfb is None else ttfb <= 1.0)))
    hit_ratio = _ratio(hit.rps if hit else None, bare.rps if bare else None)
    hit_text = _f(hit_ratio, "{:.2f}×")
    hitting = rep.cache_hits is None or rep.cache_hits[0] > 0
    if rep.cache_hits is not None:
        hit_text += f" ({rep.cache_hits[0]}/{rep.cache_hits[1]} probes hit)"
    alone = _ratio(g("server").rps if g("server") else None, bare.rps if bare else None)
    if alone is not None:
        hit_text += f"; an aiohttp server alone answering a fixed body: {alone:.2f}×"
    out.append(("cache-hit throughput ≥ 1.5× bare", hit_text,
                _verdict(None if hit_ratio is None else hit_ratio >= 1.5 and hitting)))
    if rep.trips:
        t = rep.trips
        text = (f"{t['trips_per_request']:.2f} round trips ({t['commands_per_request']:.0f} commands, counting "
                f"those run inside scripts)") + (
            "" if t["exact"] else " (shared Redis: approximate)")
        out.append(("≤ 1 Redis round trip per request", text, _verdict(t["trips_per_request"] <= 1.05)))
    if rep.streams:
        s = rep.streams
        text = f"{s['rss_mb']:.0f} MB with {s['ready']}/{s['streams']} streams open (idle {s['base_mb']:.0f} MB)"
        out.append((f"{s['streams']:,} open streams ≤ 200 MB RSS", text,
                    _verdict(s["rss_mb"] <= 200 and s["ready"] == s["streams"])))
    for name, f in (rep.flat or {}).items():
        text = (f"{f['requests']:,} requests: {f.get('warm_mb', 0):.1f} → {f.get('last_mb', 0):.1f} MB "
                f"(+{f.get('growth_mb') or 0:.1f} MB after warm-up)")
        scope = "" if f["requests"] >= 1_000_000 else " (target run is 1,000,000: --long)"
        out.append((f"RSS flat over the run, {name}{scope}", text, _verdict(f.get("flat"))))
    if rep.workers:
        w = rep.workers
        out.append(("--workers 2 scaling (measured, no threshold)",
                    f"{w['rps2']:,.0f} vs {w['rps1']:,.0f} req/s = {w['rps2'] / w['rps1']:.2f}×", "measured"))
    return out


def cpu_snapshot() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: a VM's stolen time makes tail latencies noisy."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (parts[7] if len(parts) > 7 else 0), sum(parts)


def gateway_version() -> str:
    """The commit the run measures, read when its servers start (a commit made during a long run is not it)."""
    sha = _git("rev-parse", "--short", "HEAD")
    dirty = " (gateway/ has uncommitted changes)" if _git("status", "--porcelain", "--", "gateway") else ""
    return sha + dirty


def facts(tool: str, upstream: str, load_at_start: float, cpu: tuple[tuple[int, int], tuple[int, int]],
          version: str | None = None) -> str:
    def ver(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    (steal0, total0), (steal1, total1) = cpu
    steal = 100 * (steal1 - steal0) / max(1, total1 - total0)
    model = "unknown"
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    version = version or gateway_version()
    wrk = _wrk_version() if tool == "wrk" else ""
    pinning = "taskset (server core 0; load, upstream, Redis core 1)" if shutil.which("taskset") else "none"
    return (f"- machine: {os.cpu_count()} cores, {model}; {platform.system()} {platform.release()}; "
            f"load average {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at the end (other work on the "
            f"machine shows as noise); CPU steal during the run {steal:.1f}%\n"
            f"- versions: python {platform.python_version()}, aiohttp {ver('aiohttp')}, uvloop {ver('uvloop')}, "
            f"orjson {ver('orjson')}, redis-py {ver('redis')}; gateway {version}\n"
            f"- load generator: {wrk or tool}; upstream: {upstream}; "
            f"pinning: {pinning}")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "wrk"
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr)
    return f"wrk {m.group(1)}" if m else "wrk"


def render(rep: Report, machine_facts: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"## {now} — {rep.title}", "", machine_facts, f"- settings: {rep.settings}", "", table(rep), "",
             "| target | measured | verdict |", "|---|---|---|"]
    parts += [f"| {t} | {m} | {v} |" for t, m, v in targets(rep)]
    if rep.trips and rep.trips.get("by_command"):
        ranked = sorted(rep.trips["by_command"].items(), key=lambda kv: -kv[1])
        by = ", ".join(f"{k} {v:.2f}" for k, v in ranked if v >= 0.005)
        parts += ["", f"Redis commands per request, full chain (inside scripts included): {by}"]
    for name, f in (rep.flat or {}).items():
        pts = ", ".join(f"{n // 1000}k:{kib / 1024:.1f}" for n, kib in f["samples"])
        parts += ["", f"RSS samples, {name} (requests:MB): {pts}"]
    if rep.notes:
        parts += ["", "Notes:"] + [f"- {n}" for n in rep.notes]
    return "\n".join(parts) + "\n"


def append(text: str, path: Path = RESULTS) -> None:
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `python -m bench`; newest last. How to read them: "
                        "README.md.\n\n")
    with path.open("a") as f:
        f.write("\n" + text)
