"""Two gateway trees, one harness: CPU per request and cProfile call counts, side by side.

    python -m bench.cost_diff --tree after=/work/wt-after --tree now=/work/main --mode zero
    python -m bench.cost_diff --tree after=/work/wt-after --tree now=. --mode full --profile /tmp/prof

Every tree's gateway runs at once (pinned to core 0 when `taskset` exists) in front of one
`bench/upstream.py` (and, with `--mode full`, one `redis-server` and each tree's own
`bench/configs/full.yaml`). Requests go one at a time over one keep-alive connection, every chat
body unique (the cache's miss path): chat, chat stream, embeddings. The CPU figure is the gateway
process's on-CPU time (`/proc/PID/task/*/schedstat`, nanoseconds) over a round of requests, rounds
alternating between the trees, median kept: it counts the gateway's own work, not the wall time
other processes on the machine steal. With `--profile DIR`, cProfile is switched on by a signal for
a last set of requests only (no start-up, no warm-up), and the per-request call counts and own
times are printed per function, the biggest differences first.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import pstats
import signal
import statistics
import sys
import time
from pathlib import Path

from .measure import CHAT, CHAT_PATH, CHAT_STREAM, EMBED_PATH
from .procs import SERVER_CPUS, Procs, free_port
from .topology import AUTH, UPSTREAM_TOKEN, Topology

EMBED_UNIQUE = b'{"model":"bench/embed","input":"a sentence @N@"}'
KINDS = {"chat": (CHAT_PATH, CHAT), "stream": (CHAT_PATH, CHAT_STREAM), "embed": (EMBED_PATH, EMBED_UNIQUE)}

# Runs `python -m gateway ...` with a profiler that SIGUSR1 starts and SIGUSR2 stops and writes.
_WRAPPER = """
import cProfile, os, runpy, signal, sys
prof = cProfile.Profile()
out = os.environ["COST_DIFF_PSTATS"]
sys.path[0] = os.environ["COST_DIFF_TREE"]  # not the current directory: each tree runs its own code
signal.signal(signal.SIGUSR1, lambda *a: prof.enable())
def _stop(*a):
    prof.disable(); prof.dump_stats(out); open(out + ".done", "w").close()
signal.signal(signal.SIGUSR2, _stop)
sys.argv = ["gateway", *sys.argv[1:]]
runpy.run_module("gateway", run_name="__main__")
"""


def on_cpu_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Client:
    """One keep-alive connection, one request at a time, bodies made unique by a counter."""

    def __init__(self, port: int, headers: tuple[tuple[str, str], ...], salt: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json", **dict(headers)}
        self.seq = itertools.count()
        self.salt = salt

    def send(self, kind: str) -> None:
        path, body = KINDS[kind]
        body = body.replace(b"@N@", f"{self.salt}-{next(self.seq)}".encode())
        self.conn.request("POST", path, body, self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{kind}: {resp.status} {data[:300]!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", action="append", required=True, help="NAME=PATH (two or more; the first is the reference)")
    p.add_argument("--mode", choices=("zero", "full"), default="zero")
    p.add_argument("--requests", type=int, default=1000, help="requests of each kind per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--profile", type=Path, default=None, help="directory for the pstats files")
    p.add_argument("--profile-requests", type=int, default=500)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    trees = [(n, Path(t).resolve()) for n, _, t in (s.partition("=") for s in args.tree)]

    with Procs(Path(f"/tmp/hf-gateway-costdiff-{os.getpid()}")) as procs:
        topo = Topology(procs)
        upstream = topo.mini_upstream()
        redis_url = topo.redis()[0] if args.mode == "full" else None
        gws = {}
        for name, tree in trees:
            port = free_port()
            argv = [sys.executable, "-c", _WRAPPER, "serve", "--port", str(port), "--upstream", upstream.url]
            if args.mode == "full":
                db = f"{redis_url.rpartition('/')[0]}/{len(gws)}"  # a database of its own: no cache hits across trees
                argv += ["--config", str(tree / "bench/configs/full.yaml"), "--redis-url", db]
            pstats_path = (args.profile or procs.run_dir) / f"{name}-{args.mode}.pstats"
            pstats_path.parent.mkdir(parents=True, exist_ok=True)
            env = {"PYTHONPATH": str(tree), "HF_TOKEN": UPSTREAM_TOKEN, "COST_DIFF_PSTATS": str(pstats_path),
                   "COST_DIFF_TREE": str(tree)}
            proc = procs.start_server(f"gw-{name}", argv, SERVER_CPUS, port, env=env)
            gws[name] = (proc, Client(port, AUTH if args.mode == "full" else (), f"{name}{os.getpid()}"), pstats_path)
        for _, client, _ in gws.values():
            for kind in KINDS:
                for _ in range(args.warmup):
                    client.send(kind)

        cpu: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for kind in KINDS:
                items = list(gws.items())
                k = r % len(items)
                order = items[k:] + items[:k]  # each tree goes first in turn
                for name, (proc, client, _) in order:
                    c0 = on_cpu_ns(proc.pid)
                    for _ in range(args.requests):
                        client.send(kind)
                    cpu.setdefault((name, kind), []).append((on_cpu_ns(proc.pid) - c0) / args.requests / 1000)
        print(f"## gateway CPU per request, µs (median of {args.rounds} rounds of {args.requests}; mode {args.mode})")
        print("| kind | " + " | ".join(gws) + " | rounds |")
        print("|---|" + "---:|" * len(gws) + "---|")
        for kind in KINDS:
            meds = [statistics.median(cpu[(n, kind)]) for n in gws]
            rounds = " / ".join(", ".join(f"{v:.0f}" for v in cpu[(n, kind)]) for n in gws)
            print(f"| {kind} | " + " | ".join(f"{m:.1f}" for m in meds) + f" | {rounds} |")

        if args.profile:
            for proc, client, path in gws.values():
                os.kill(proc.pid, signal.SIGUSR1)
                time.sleep(0.2)
                for _ in range(args.profile_requests):
                    for kind in KINDS:
                        client.send(kind)
                os.kill(proc.pid, signal.SIGUSR2)
                for _ in range(100):
                    if Path(str(path) + ".done").exists():
                        break
                    time.sleep(0.1)
            paths = [(n, path) for n, (_, _, path) in gws.items()]
            for other in paths[1:]:
                diff([paths[0], other], args.profile_requests * len(KINDS), args.top)


def _key(func: tuple[str, int, str]) -> str:
    file, _, name = func
    parts = file.split("/")
    short = "/".join(parts[-2:]) if "site-packages" in file or "gateway" not in parts else file[file.find("gateway/"):]
    return f"{name} ({short})"


def load(path: Path) -> dict[str, tuple[int, float]]:
    st = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    out: dict[str, tuple[int, float]] = {}
    for func, (_, nc, tt, _, _) in st.items():
        k = _key(func)
        c, t = out.get(k, (0, 0.0))
        out[k] = (c + nc, t + tt)
    return out


def diff(paths: list[tuple[str, Path]], n: int, top: int) -> None:
    (a_name, a_path), (b_name, b_path) = paths
    a, b = load(a_path), load(b_path)
    for name, path in paths:
        roots = {f[0].split("/gateway/")[0] for f in pstats.Stats(str(path)).stats if "/gateway/" in f[0]}  # type: ignore[attr-defined]
        print(f"{name}: gateway code from {', '.join(sorted(roots))}")
    ta, tb = sum(v[1] for v in a.values()), sum(v[1] for v in b.values())
    ca, cb = sum(v[0] for v in a.values()), sum(v[0] for v in b.values())
    print(f"\n## cProfile over {n} requests (chat, stream, embed in turn)")
    print(f"function calls per request: {a_name} {ca / n:.0f}, {b_name} {cb / n:.0f}")
    print(f"profiled own time per request (µs, inflated by the profiler): {a_name} {1e6 * ta / n:.0f}, "
          f"{b_name} {1e6 * tb / n:.0f}")
    keys = set(a) | set(b)
    files: dict[str, list[float]] = {}
    for src, col in ((a, 0), (b, 2)):
        for k, (c, t) in src.items():
            f = files.setdefault(k.rpartition(" (")[2].rstrip(")"), [0, 0.0, 0, 0.0])
            f[col] += c
            f[col + 1] += t
    print(f"\n### per file: calls per request ({a_name} -> {b_name}), biggest call differences")
    for f, (c0, t0, c1, t1) in sorted(files.items(), key=lambda kv: -abs(kv[1][2] - kv[1][0]))[:top]:
        print(f"  {(c1 - c0) / n:+7.2f}  {c0 / n:6.2f} -> {c1 / n:6.2f} calls  "
              f"{1e6 * t0 / n:6.1f} -> {1e6 * t1 / n:6.1f} µs  {f}")
    print(f"\n### calls per request, biggest differences ({b_name} - {a_name})")
    rows = sorted(keys, key=lambda k: -abs(b.get(k, (0, 0))[0] - a.get(k, (0, 0))[0]))
    for k in rows[:top]:
        x, y = a.get(k, (0, 0.0))[0] / n, b.get(k, (0, 0.0))[0] / n
        print(f"  {y - x:+7.2f}  {x:6.2f} -> {y:6.2f}  {k}")
    print(f"\n### own time per request, µs, biggest differences ({b_name} - {a_name})")
    rows = sorted(keys, key=lambda k: -abs(b.get(k, (0, 0.0))[1] - a.get(k, (0, 0.0))[1]))
    for k in rows[:top]:
        x, y = 1e6 * a.get(k, (0, 0.0))[1] / n, 1e6 * b.get(k, (0, 0.0))[1] / n
        print(f"  {y - x:+7.2f}  {x:6.1f} -> {y:6.1f}  {k}")
    print(f"\n### top own time per request, {b_name}")
    for k in sorted(b, key=lambda k: -b[k][1])[:top]:
        print(f"  {1e6 * b[k][1] / n:6.1f} µs  {b[k][0] / n:6.2f} calls  {k}")


if __name__ == "__main__":
    main()
