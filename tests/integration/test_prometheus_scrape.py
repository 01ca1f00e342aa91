"""A real `hf-gateway serve --workers 2` process, scraped by a real Prometheus server.

The gateway runs as the CLI runs it (two forked workers on one SO_REUSEPORT port, text logs) in
front of the simulator. Every request uses a new connection, so the kernel spreads them over both
workers; every scrape must still report all of them. `promtool check metrics` must find nothing in
the live output, and Prometheus, configured from `config/prometheus.local.yml` (port rewritten,
1 s scrape interval, in a temporary copy), must answer dashboard queries with data.

Real time is unavoidable here (two processes and a server); the waits are polls with a deadline.
Without the `prometheus` package this is skipped locally and fails in CI (`.ci/run` installs it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.simulator.app import create_simulator_app
from tests.support.dashboards import DASHBOARDS, load, queries, substitute
from tests.support.processes import Child, Processes, free_port
from tests.support.serving import serving
from tests.support.tools import need

pytestmark = pytest.mark.slow  # a real Prometheus server scraping a two-worker gateway

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
REQUESTS = 12
DEADLINE = 15.0  # seconds for any one wait (boot, first scrape, query answered)
CHAT = {"model": "sim/gpt2", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}
# Overview panels that must answer once anything was scraped.
MUST_ANSWER = ("Requests / s", "In flight", "Version", "Requests / s by status class")


async def wait_until(what: str, probe: Any) -> Any:
    """Poll `await probe()` until it returns something truthy, or fail after DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while True:
        try:
            result = await probe()
        except (aiohttp.ClientError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def get(url: str, **params: str) -> tuple[int, str]:
    # A fresh connection every time: SO_REUSEPORT then spreads requests over the workers.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(url, params=params) as r:
            return r.status, await r.text()


@dataclass
class Gateway:
    url: str
    process: Child  # its log is readable while it runs


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def simulator() -> AsyncIterator[str]:
    async with serving(create_simulator_app()) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(simulator: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_")) and k != "HF_TOKEN"}
    cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2",
           "--upstream", simulator, "--log-format", "text"]  # fmt: skip
    with Processes(tmp_path_factory.mktemp("gateway"), stop_timeout=20) as procs:  # SIGTERM on exit
        gw = Gateway(f"http://127.0.0.1:{port}", procs.spawn("gateway", cmd, env=env, cwd=REPO))
        await wait_until("the gateway to listen", lambda: _healthy(gw.url))
        for _ in range(REQUESTS):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                async with s.post(f"{gw.url}/v1/chat/completions", json=CHAT) as r:
                    assert r.status == 200, await r.text()
        yield gw


async def _healthy(url: str) -> bool:
    status, _ = await get(f"{url}/healthz")
    return status == 200


def requests_total(text: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "gateway_requests_total")  # fmt: skip


@pytest.mark.asyncio(loop_scope="module")
async def test_two_workers_add_up_on_every_scrape(gateway: Gateway) -> None:
    totals = []
    for _ in range(6):
        status, text = await get(f"{gateway.url}/metrics")
        assert status == 200
        totals.append(requests_total(text))
    assert totals == [REQUESTS] * 6


@pytest.mark.asyncio(loop_scope="module")
async def test_promtool_finds_nothing_in_the_live_output(gateway: Gateway) -> None:
    promtool = need("promtool")
    _, text = await get(f"{gateway.url}/metrics")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@dataclass
class Prometheus:
    url: str
    process: Child


@pytest.fixture(scope="module")
def prometheus(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = need("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((REPO / "config" / "prometheus.local.yml").read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    [job] = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8080"]  # what the README tells people to run
    job["static_configs"][0]["targets"] = [gateway.url.removeprefix("http://")]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with Processes(tmp) as procs:
        proc = procs.spawn(
            "prometheus",
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            env=os.environ)  # fmt: skip
        yield Prometheus(f"http://127.0.0.1:{port}", proc)


async def query(prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    status, text = await get(f"{prom.url}/api/v1/query", query=expr)
    if status != 200:
        return []
    body = yaml.safe_load(text)  # JSON is YAML
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.asyncio(loop_scope="module")
async def test_prometheus_scrapes_the_gateway_and_dashboard_queries_answer(
    prometheus: Prometheus, gateway: Gateway
) -> None:
    up = await wait_until("a successful scrape", lambda: query(prometheus, 'up{job="hf-gateway"} == 1'))
    assert len(up) == 1
    scraped = await wait_until("the request counter", lambda: query(prometheus, "sum(gateway_requests_total)"))
    assert float(scraped[0]["value"][1]) == REQUESTS
    panels = {}
    for path in DASHBOARDS:
        for where, expr, _ in queries(load(path)):
            panels.setdefault(where.split("'")[1], substitute(expr))
    for title in MUST_ANSWER:
        # rate() needs two samples in its window: wait for the second scrape.
        answer = await wait_until(f"panel {title!r} to show data", lambda t=title: query(prometheus, panels[t]))
        assert answer, title


@pytest.mark.asyncio(loop_scope="module")
async def test_the_text_log_format_has_one_access_line_per_request(gateway: Gateway) -> None:
    # Info lines are held briefly and written together (gateway.cli.serve.LOG_HOLD): wait until
    # the workers have written them, rather than reading the file the moment the requests ended.
    async def written() -> list[str] | None:
        lines = gateway.process.log.read_text().splitlines()
        access = [line for line in lines if " gateway.access " in line]
        return access if sum(" POST /v1/chat/completions 200 " in line for line in access) >= REQUESTS else None

    access = await wait_until("the access lines", written)
    lines = gateway.process.log.read_text().splitlines()
    assert sum(" POST /v1/chat/completions 200 " in line for line in access) == REQUESTS
    assert all(" route=chat " in line and " model=sim/gpt2 " in line for line in access if " POST " in line)
    assert lines and not any(line.startswith("{") for line in lines)  # text, not JSON
