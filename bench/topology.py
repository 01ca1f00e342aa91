"""Starting the servers of a bench run: the upstream, Redis, the bare floor, nginx, and gateways.

Placement: every system under test runs alone on core 0 (SERVER_CPUS); the upstream, Redis and
the load generator share core 1, so the server's core is never shared with its own load.
Every process goes through `Procs`, so all of them are stopped when the run ends.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .procs import CLIENT_CPUS, SERVER_CPUS, BenchError, Proc, Procs, free_port

REPO = Path(__file__).resolve().parent.parent
API_KEY = "hf_fake_bench_key"  # its SHA-256 is in configs/full.yaml
UPSTREAM_TOKEN = "hf_fake_bench_upstream_token"
AUTH = (("Authorization", f"Bearer {API_KEY}"),)


@dataclass
class Server:
    """Something the load generator can be pointed at."""

    name: str
    port: int
    proc: Proc | None = None
    headers: tuple[tuple[str, str], ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def http(url: str, body: bytes | None = None, headers: tuple[tuple[str, str], ...] = (),
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request from the runner itself (probes, stats): status, headers, body."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    for k, v in headers:
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


class Topology:
    """Starts the run's servers through one `Procs`."""

    def __init__(self, procs: Procs) -> None:
        self.procs = procs

    def _py(self, name: str, args: list[str], cpus: str | None, port: int, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> Proc:
        return self.procs.start_server(name, [sys.executable, *args], cpus, port,
                                       env={"PYTHONPATH": str(REPO), **(env or {})}, timeout=timeout)

    def mini_upstream(self, name: str = "upstream", drip: float | None = None, drip_events: int = 120,
                      cpus: str | None = CLIENT_CPUS) -> Server:
        port = free_port()
        args = ["-m", "bench.upstream", "--port", str(port)]
        if drip is not None:
            args += ["--drip", str(drip), "--drip-events", str(drip_events)]
        return Server(name, port, self._py(name, args, cpus, port))

    def server_alone(self) -> Server:
        """The bench upstream on the server's core: an aiohttp server answering a fixed body, calling nobody
        (what a cache hit cannot go below while it is served by aiohttp)."""
        return self.mini_upstream("server-alone", cpus=SERVER_CPUS)

    def simulator(self) -> Server:
        port = free_port()
        proc = self._py("simulator", ["-m", "gateway", "simulate", "--fast", "--port", str(port)], CLIENT_CPUS, port)
        return Server("simulator", port, proc)

    def redis(self) -> tuple[str, Proc | None]:
        """Our own redis-server on core 1 (exact command counts, nothing shared); else the machine's."""
        if shutil.which("redis-server") is None:
            return "redis://127.0.0.1:6379/0", None
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.procs.run_dir)]
        return f"redis://127.0.0.1:{port}/0", self.procs.start_server("redis", argv, CLIENT_CPUS, port)

    def bare(self, upstream: Server) -> Server:
        port = free_port()
        proc = self._py("bare", ["-m", "bench.passthrough", "--port", str(port), "--upstream", upstream.url],
                        SERVER_CPUS, port)
        return Server("bare", port, proc)

    def gateway(self, name: str, upstream: Server, config: Path | None = None, redis_url: str | None = None,
                workers: int = 1, cpus: str | None = SERVER_CPUS, headers: tuple[tuple[str, str], ...] = ()) -> Server:
        port = free_port()
        args = ["-m", "gateway", "serve", "--port", str(port), "--upstream", upstream.url]
        if config is not None:
            args += ["--config", str(config)]
        if redis_url:
            args += ["--redis-url", redis_url]
        if workers > 1:
            args += ["--workers", str(workers)]
        proc = self._py(name, args, cpus, port, env={"HF_TOKEN": UPSTREAM_TOKEN})
        return Server(name, port, proc, headers)

    def nginx(self, upstream: Server) -> Server | None:
        """nginx `proxy_pass` as a reference row, when nginx is installed (it is optional)."""
        if shutil.which("nginx") is None:
            return None
        port = free_port()
        run = self.procs.run_dir
        conf = run / "nginx.conf"
        conf.write_text(_NGINX.format(run=run, port=port, up=upstream.port))
        proc = self.procs.start_server("nginx", ["nginx", "-p", str(run), "-c", str(conf)], SERVER_CPUS, port)
        return Server("nginx", port, proc)


_NGINX = """worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {run}/nginx-body;
  proxy_temp_path {run}/nginx-proxy;
  upstream up {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def upstream_requests(upstream: Server) -> int | None:
    """The bench upstream's request count (None when it has no counter, e.g. the simulator)."""
    try:
        status, _, body = http(f"{upstream.url}/__bench/stats", timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    return int(json.loads(body)["requests"])


def require_ok(server: Server, path: str, body: bytes, expect: bytes) -> None:
    status, _, got = http(server.url + path, body, server.headers)
    if status != 200 or expect not in got:
        raise BenchError(f"{server.name}: {path} answered {status}: {got[:300]!r}")
