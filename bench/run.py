"""`python -m bench`: start everything, measure side by side in one run, print the table, append it to RESULTS.md.

Order: upstream (+ Redis) -> servers under test (bare floor, nginx if installed, hf-gateway
zero-config, hf-gateway full chain) -> probes (each answers correctly; is auth on; does the cache
hit) -> throughput at N connections -> latency at 1 connection -> stream TTFB -> extras (Redis
round trips, --workers scaling, RSS with open streams, RSS flatness, profile). A step that fails
is noted in the results and the run goes on; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from . import wrk
from .config_check import CONFIG_DIR, effective_config
from .measure import CHAT, CHAT_PATH, CHAT_STREAM, EMBED, EMBED_PATH, Meter
from .memory import open_streams_rss, rss_flatness
from .procs import BenchError, Procs
from .profile import profile
from .redis_trips import trips_per_request
from .report import RESULTS, Report, append, cpu_snapshot, facts, gateway_version, render
from .topology import AUTH, UPSTREAM_TOKEN, Server, Topology, http, require_ok, upstream_requests

ROWS = {"direct": "direct to upstream", "bare": "bare aiohttp pass-through (floor)", "nginx": "nginx proxy_pass",
        "server": "aiohttp server alone, fixed answer (embeddings)",
        "zero": "hf-gateway zero-config", "full": "hf-gateway full chain (miss path)",
        "hit": "hf-gateway full chain, cache hit (embeddings)"}
ANSWER_ONLY = ("server", "hit")  # rows that answer embeddings without an upstream call: no TTFB, no "added"
EXTRAS = ("trips", "workers", "streams", "flat", "profile")
ONE_CHAT = CHAT.replace(b"@N@", b"probe")
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    duration: float
    latency_duration: float
    connections: int
    streams: int
    open_streams: int
    flat_requests: int
    sample_every: int
    workers: int
    rounds: int
    rows: tuple[str, ...]
    extras: tuple[str, ...]
    profile_seconds: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="hf-gateway benchmark")
    p.add_argument("--quick", action="store_true", help="short runs (about a minute and a half)")
    p.add_argument("--long", action="store_true", help="RSS flatness over 1,000,000 requests")
    p.add_argument("--duration", type=float, help="seconds of load per throughput round (5; quick 2)")
    p.add_argument("--latency-duration", type=float, help="seconds per 1-connection latency round (4; quick 1)")
    p.add_argument("--connections", type=int, default=32, help="connections for throughput rows")
    p.add_argument("--streams", type=int, help="streams per TTFB row (1000; quick 200)")
    p.add_argument("--open-streams", type=int, default=1000, help="concurrent open streams for the RSS row")
    p.add_argument("--flat-requests", type=int, help="requests in the RSS-flatness run (200k; quick 20k; long 1M)")
    p.add_argument("--sample-every", type=int, help="RSS sample interval in requests (default: 1/10 of the run)")
    p.add_argument("--workers", type=int, default=2, help="workers for the scaling row")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement (median kept)")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--upstream", choices=["mini", "sim"], default="mini",
                   help="mini: bench/upstream.py (default: see README for why); sim: `hf-gateway simulate --fast`")
    p.add_argument("--only", help=f"comma-separated rows to measure, of {','.join(ROWS)}")
    p.add_argument("--skip", default="", help=f"comma-separated extras to skip, of {','.join(EXTRAS)}")
    p.add_argument("--profile", action="store_true",
                   help="also profile the zero-config and full-chain gateways with py-spy")
    p.add_argument("--no-append", action="store_true", help="print the table without appending to RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    flat = args.flat_requests or (1_000_000 if args.long else 20_000 if quick else 200_000)
    rows = tuple(r for r in (args.only.split(",") if args.only else ROWS) if r in ROWS)
    skip = set(args.skip.split(","))
    extras = tuple(e for e in EXTRAS if e not in skip and (e != "profile" or args.profile))
    return Plan(
        duration=args.duration or (2.0 if quick else 5.0),
        latency_duration=args.latency_duration or (1.0 if quick else 4.0),
        connections=args.connections, streams=args.streams or (200 if quick else 1000),
        open_streams=args.open_streams, flat_requests=flat, sample_every=args.sample_every or max(1, flat // 10),
        workers=args.workers, rounds=args.rounds, rows=rows, extras=extras, profile_seconds=5.0 if quick else 10.0,
    )


def choose_tool(wanted: str) -> str:
    if wanted == "wrk" and not wrk.available():
        raise SystemExit("bench: --loadgen wrk but wrk is not installed (apt-get install -y wrk)")
    return "wrk" if wanted in ("auto", "wrk") and wrk.available() else "python"


def start_upstream(topo: Topology, wanted: str, rep: Report) -> tuple[Server, str]:
    if wanted == "sim":
        sim = topo.simulator()
        require_ok(sim, CHAT_PATH, ONE_CHAT, b"choices")
        rep.notes.append("upstream: the simulator in fast mode; it has no request counter, so cache hits are "
                         "read from the X-Cache header, and it shares core 1 with the load generator")
        return sim, "simulator --fast"
    return topo.mini_upstream(), "bench/upstream.py"


def start_servers(topo: Topology, up: Server, plan: Plan, rep: Report) -> tuple[dict[str, Server], str | None, bool]:
    """Servers by row key (the `hit` row reuses the full-chain gateway); the Redis URL and whether it is ours."""
    servers: dict[str, Server] = {"direct": up}
    starters: dict[str, Callable[[], Server | None]] = {
        "bare": lambda: topo.bare(up), "nginx": lambda: topo.nginx(up), "server": topo.server_alone,
        "zero": lambda: topo.gateway("gw-zero", up)}
    for key, start in starters.items():
        if key in plan.rows:
            server = _try(rep, f"starting {key}", start)
            if server is not None:
                servers[key] = server
            elif key == "nginx":
                rep.notes.append("nginx is not installed: no nginx row (apt-get install -y nginx adds it)")
    redis_url, own = None, False
    if "full" in plan.rows or "hit" in plan.rows:
        redis_url, redis_proc = topo.redis()
        own = redis_proc is not None
        cfg, dropped = effective_config(CONFIG_DIR / "full.yaml", topo.procs.run_dir / "full.yaml",
                                        env=_env({"HF_TOKEN": UPSTREAM_TOKEN}))
        for d in dropped:
            rep.notes.append(f"full.yaml: this gateway version refused `{d}`: dropped for this run")
        full = _try(rep, "starting the full chain",
                    lambda: topo.gateway("gw-full", up, cfg, redis_url, headers=AUTH))
        if full is not None:
            servers["full"] = full
            if "hit" in plan.rows:
                servers["hit"] = full
    return servers, redis_url, own


def probe(servers: dict[str, Server], up: Server, rep: Report) -> None:
    """Each server answers a chat request correctly; auth and cache behaviour of the full chain."""
    for key in list(servers):
        if key in ANSWER_ONLY:
            continue
        server = servers[key]
        if _try(rep, f"probing {key}", lambda s=server: require_ok(s, CHAT_PATH, ONE_CHAT, b"choices") or True) is None:
            servers.pop(key)
            if key == "full":
                servers.pop("hit", None)
    full = servers.get("full")
    if full is None:
        return
    status, _, _ = http(full.url + CHAT_PATH, ONE_CHAT)
    rep.notes.append("full chain: a request without an API key got "
                     + ("401: auth is enforced" if status == 401 else f"{status}: auth is NOT enforced by this build"))
    if "hit" in servers:
        rep.cache_hits = cache_hits(full, up)
        if rep.cache_hits[0] == 0:
            rep.notes.append("cache-hit row: no probe was served from the cache (no cache stage in this build?), "
                             "so the row measures embeddings on the miss path")


def cache_hits(full: Server, up: Server, probes: int = 20) -> tuple[int, int]:
    """How many of `probes` identical embedding requests never reached the upstream."""
    before = upstream_requests(up)
    header_hits = 0
    for _ in range(probes):
        _, headers, _ = http(full.url + EMBED_PATH, EMBED, full.headers)
        if any("cache" in k.lower() and "hit" in v.lower() for k, v in headers.items()):
            header_hits += 1
    after = upstream_requests(up)
    if before is None or after is None:
        return header_hits, probes
    return max(0, probes - (after - before)), probes


def measure_rows(meter: Meter, servers: dict[str, Server], plan: Plan, rep: Report) -> None:
    """Throughput, then latency, then TTFB, each in `plan.rounds` rounds interleaved over the rows
    (so a burst of noise on the machine hits one round of every row, not every round of one row);
    each figure is the median over the rounds."""
    keys = [k for k in ROWS if k in servers]
    body = {k: (EMBED_PATH, EMBED) if k in ANSWER_ONLY else (CHAT_PATH, CHAT) for k in keys}
    got: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rnd in range(plan.rounds):
        warm = 0.5 if rnd == 0 else 0.0  # connections and caches warm up once, in round 0
        for k in keys:
            _keep(rep, got, "throughput", k, partial(meter.load, servers[k], *body[k], plan.connections,
                                                     plan.duration, warm))
    for rnd in range(plan.rounds):
        for k in keys:
            _keep(rep, got, "latency", k, partial(meter.load, servers[k], *body[k], 1, plan.latency_duration,
                                                  0.5 if rnd == 0 else 0.0))
    per_round = max(10, plan.streams // plan.rounds)
    for _ in range(plan.rounds):
        for k in (k for k in keys if k not in ANSWER_ONLY):
            _keep(rep, got, "ttfb", k, partial(meter.ttfb, servers[k], CHAT_STREAM, per_round))
    for k in keys:
        row = rep.row(k, ROWS[k])
        tp, lat, tt = got.get(("throughput", k), []), got.get(("latency", k), []), got.get(("ttfb", k), [])
        row.rps = _median([r["rps"] for r in tp])
        row.cpu = _median([r.get("server_cpu") for r in tp])
        row.p50, row.p99 = _median([r["p50_ms"] for r in lat]), _median([r["p99_ms"] for r in lat])
        row.ttfb50 = _median([r["ttfb"]["p50_ms"] for r in tt])
        row.ttfb99 = _median([r["ttfb"]["p99_ms"] for r in tt])
        row.errors = sum(r["errors"] for r in tp + lat + tt)


def _keep(rep: Report, got: dict[tuple[str, str], list[dict[str, Any]]], what: str, key: str,
          fn: Callable[[], dict[str, Any]]) -> None:
    res = _try(rep, f"{what} {key}", fn)
    if res is not None and _valid(rep, f"{what} {key}", res):
        got.setdefault((what, key), []).append(res)


def _median(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _valid(rep: Report, what: str, res: dict[str, Any]) -> bool:
    """A measurement with more than 1% errors measures the error path: it is left out, with a note."""
    count, errors = res["count"], res["errors"]
    if errors <= 0.01 * max(1, count):
        return True
    rep.notes.append(f"{what}: {errors} errors in {count} responses ({res.get('statuses', 'see logs')}): left out")
    return False


def run_extras(meter: Meter, topo: Topology, servers: dict[str, Server], up: Server, redis: tuple[str | None, bool],
               plan: Plan, rep: Report) -> None:
    full, zero = servers.get("full"), servers.get("zero")
    if "trips" in plan.extras and full and redis[0]:
        url, own = redis
        rep.trips = _try(rep, "Redis round trips", lambda: trips_per_request(meter, full, url or "", 2000, own))
    if "workers" in plan.extras and zero and plan.workers > 1 and rep.rows.get("zero"):
        rep.workers = _try(rep, "workers scaling", lambda: workers_scaling(meter, topo, up, plan, rep))
    if "streams" in plan.extras:
        rep.streams = _try(rep, "open streams RSS", lambda: open_streams_rss(topo.procs, topo, plan.open_streams))
    if "flat" in plan.extras:
        rep.flat = {}
        for key, server in (("zero-config (in-memory state)", zero), ("full chain (Redis)", full)):
            if server is not None:
                res = _try(rep, f"RSS flatness {key}",
                           partial(rss_flatness, meter, server, plan.flat_requests, plan.sample_every))
                if res is not None:
                    rep.flat[key] = res
    if "profile" in plan.extras:
        out_dir = Path(__file__).parent / "out" / "profile"
        jobs = [(zero, CHAT_PATH, CHAT, "gw-zero"), (full, CHAT_PATH, CHAT, "gw-full"),
                (servers.get("hit"), EMBED_PATH, EMBED, "gw-full-hit")]
        for server, path, body, name in jobs:
            if server is None:
                continue
            text = _try(rep, f"profile {name}", partial(profile, topo.procs, meter, server, up, plan.profile_seconds,
                                                        out_dir, path, body, name))
            if text:
                print(f"--- profile of {name} ---\n{text}", file=sys.stderr)
                rep.notes.append(f"profile of {name}: bench/out/profile/{name}-profile.txt "
                                 "(findings: bench/PROFILE.md)")


def workers_scaling(meter: Meter, topo: Topology, up: Server, plan: Plan, rep: Report) -> dict[str, float]:
    gw = topo.gateway(f"gw-w{plan.workers}", up, workers=plan.workers, cpus="0,1")
    try:
        require_ok(gw, CHAT_PATH, ONE_CHAT, b"choices")
        res = meter.load(gw, CHAT_PATH, CHAT, plan.connections, plan.duration)
    finally:
        topo.procs.stop(gw.proc)  # type: ignore[arg-type]
    rep.notes.append(f"--workers {plan.workers}: workers on cores 0-1, sharing core 1 with the load generator "
                     "and upstream, so this understates what 2 free cores give")
    return {"rps1": rep.rows["zero"].rps or 0.0, "rps2": res["rps"], "workers": plan.workers}


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def _try(rep: Report, what: str, fn: Callable[[], T]) -> T | None:
    """Run one step; a failure becomes a note in the results instead of ending the run."""
    try:
        return fn()
    except (BenchError, OSError, KeyError, ValueError) as exc:
        rep.notes.append(f"{what} failed: {str(exc).strip()[:400]}")
        print(f"bench: {what} failed: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    tool = choose_tool(args.loadgen)
    run_dir = Path(tempfile.mkdtemp(prefix="hf-gateway-bench-"))
    meter = Meter(tool, run_dir, secrets.token_hex(4))
    title = ("long" if args.long else "quick" if args.quick else "full") + " run"
    rep = Report(title, f"median of {plan.rounds} interleaved rounds; throughput {plan.connections} connections × "
                        f"{plan.duration:g} s; latency 1 connection × {plan.latency_duration:g} s; "
                        f"TTFB {plan.streams} streams in all")
    print(f"bench: {title}, load generator {tool}, logs in {run_dir}", file=sys.stderr)
    load_at_start, cpu_start, version = os.getloadavg()[0], cpu_snapshot(), gateway_version()
    with Procs(run_dir) as procs:
        topo = Topology(procs)
        up, up_kind = start_upstream(topo, args.upstream, rep)
        servers, redis_url, own = start_servers(topo, up, plan, rep)
        probe(servers, up, rep)
        measure_rows(meter, servers, plan, rep)
        run_extras(meter, topo, servers, up, (redis_url, own), plan, rep)
    text = render(rep, facts(tool, up_kind, load_at_start, (cpu_start, cpu_snapshot()), version))
    print(text)
    if not args.no_append:
        append(text, args.results)
        print(f"bench: appended to {args.results}", file=sys.stderr)
    return 0
