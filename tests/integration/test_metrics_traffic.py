"""Traffic of every kind through the real app, against the simulator, and the metrics that must move.

One gateway (in-process, real HTTP upstreams, state in the real Redis under its own prefix) sits
in front of the simulator on a real port; both share one `FakeClock(autojump=True)`, so cold starts,
backoff and outbound pacing take no real time. The fixture sends streams, cache misses and hits,
requests over a gateway limit, upstream 429s and 503s that are retried, a cold start, a fallback, a
breaking deployment, paced calls and a call to a scaled-to-zero dedicated endpoint (woken once, served
by serverless meanwhile), then scrapes `/metrics` once. Each test checks one kind;
every series the dashboards query must be in that one scrape.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.appkeys import ENDPOINTS
from gateway.observability.logs import configure_logging
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import SimConfig
from tests.support.dashboards import DASHBOARDS, load, metric_names, queries
from tests.support.redis_server import shared_redis_url
from tests.support.serving import app_client, serving
from tests.support.tools import need

KEY = "gw_fake_traffic_key_0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
Labels = dict[str, str]

@dataclass
class Scrape:
    """The one `/metrics` answer after all the traffic, plus what was sent and logged."""

    text: str
    sent: int = 0
    access: list[dict[str, Any]] = field(default_factory=list)
    upstream_ids: list[str | None] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def values(self, name: str, **match: str) -> list[tuple[Labels, float]]:
        out = []
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                    out.append((s.labels, s.value))
        return out

    def total(self, name: str, **match: str) -> float:
        return sum(v for _, v in self.values(name, **match))


ENDPOINT_TOKEN_ENV = "GW_TRAFFIC_ENDPOINT_TOKEN"
SIM_WITH_ENDPOINT = SimConfig.model_validate({"control_plane": {"endpoints": {
    "traffic-chat": {"namespace": "acme", "state": "scaledToZero", "scale_up_delay": 600}}}})


def settings_for(sim_url: str, prefix: str, redis_url: str) -> Any:
    def up(**extra: Any) -> dict[str, Any]:
        return {"kind": "hf", "base_url": sim_url, "token_env": None,
                "retry": {"max_attempts": 3, "base": 0.1, "cap": 0.5}, **extra}

    def model(name: str, upstream: str = "sim", **extra: Any) -> dict[str, Any]:
        return {"name": name, "deployments": [{"upstream": upstream}], **extra}

    return load_settings(
        None, redis_url=redis_url, redis_prefix=prefix,
        upstreams={"sim": up(), "fragile": up(breaker_failures=2, breaker_cooldown=3600.0), "paced": up(budget="1/10s"),
                   "dedicated": {"kind": "endpoint", "name": "traffic-chat", "namespace": "acme",
                                 "control_plane_url": sim_url, "token_env": ENDPOINT_TOKEN_ENV}},
        models=[
            model("sim/gpt2"), model("BAAI/bge-small-en"), model("sim/limited", limits={"requests": "2/minute"}),
            model("sim/busy-429x1-ra1"), model("sim/flaky-503x1"), model("sim/late-cold-20s"),
            model("sim/paced", "paced"),
            {"name": "sim/primary", "deployments": [{"upstream": "sim", "model": "sim/primary-503xall"},
                                                     {"upstream": "sim", "model": "sim/backup"}]},
            {"name": "sim/broken", "deployments": [{"upstream": "fragile", "model": "sim/broken-503xall"}]},
            {"name": "sim/dedicated", "deployments": [{"upstream": "dedicated"},
                                                       {"upstream": "sim", "model": "sim/gpt2"}]},
        ],
        keys=[{"sha256": hashlib.sha256(KEY.encode()).hexdigest(), "tenant": "acme", "name": "traffic"}],
    )  # fmt: skip


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "say something"}], **extra}


class Driver:
    """Sends requests and remembers their statuses per kind."""

    def __init__(self, client: TestClient[Any, Any], scrape: Scrape) -> None:
        self.client = client
        self.scrape = scrape

    async def post(self, kind: str, path: str, body: Any, headers: dict[str, str] | None = None) -> bytes:
        resp = await self.client.post(path, json=body, headers={**AUTH, **(headers or {})})
        data = await resp.read()
        self.scrape.sent += 1
        self.scrape.statuses.setdefault(kind, []).append(resp.status)
        return data


async def drive(d: Driver) -> None:
    """Every kind of traffic, in an order that does not let one kind disturb another."""
    # Paced calls first: later kinds leave sleepers on the shared fake clock (cold-start watchers),
    # and a jump to one of them between the two budget decisions would refill the bucket.
    await asyncio.gather(*(d.post("paced", "/v1/chat/completions", chat("sim/paced", temperature=0.7))
                           for _ in range(2)))  # fmt: skip
    for extra in ({}, {"stream_options": {"include_usage": True}}):
        await d.post("stream", "/v1/chat/completions", chat("sim/gpt2", stream=True, **extra))
    await d.post("plain", "/v1/chat/completions", chat("sim/gpt2", temperature=0.7))
    for _ in range(2):  # a miss, then a hit
        await d.post("cache", "/v1/embeddings", {"model": "BAAI/bge-small-en", "input": "cache me"})
    for _ in range(3):  # the model allows 2 a minute
        await d.post("limited", "/v1/chat/completions", chat("sim/limited", temperature=0.7))
    await d.post("retry429", "/v1/chat/completions", chat("sim/busy-429x1-ra1", temperature=0.7))
    await d.post("retry5xx", "/v1/chat/completions", chat("sim/flaky-503x1", temperature=0.7))
    await d.post("cold", "/v1/chat/completions", chat("sim/late-cold-20s", temperature=0.7))
    await d.post("fallback", "/v1/chat/completions", chat("sim/primary", temperature=0.7))
    for _ in range(2):  # the first one opens the circuit, the second one finds it open
        await d.post("broken", "/v1/chat/completions", chat("sim/broken", temperature=0.7))
    for _ in range(2):  # the first wakes the endpoint, both are served by serverless meanwhile
        await d.post("endpoint", "/v1/chat/completions", chat("sim/dedicated", temperature=0.7))
    await d.client.get("/no/such/route", headers=AUTH)
    d.scrape.sent += 1


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scrape(redis_url_module: str) -> AsyncIterator[Scrape]:
    clock = FakeClock(autojump=True)
    sim = create_simulator_app(SIM_WITH_ENDPOINT, clock=clock)
    prefix = f"gwtest-{uuid.uuid4().hex[:12]}"
    buffer, root = io.StringIO(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("json", "INFO", stream=buffer)
    try:
        os.environ[ENDPOINT_TOKEN_ENV] = "hf_fake_traffic_endpoint_token"
        async with serving(sim, cancel=True) as sim_url:
            app = create_app(settings_for(sim_url, prefix, redis_url_module), clock=clock)
            # The endpoint poller sleeps between readings for as long as the app lives: on the shared
            # autojumping clock that sleep would let time leap forward at every idle moment (refilling
            # the buckets this test counts on). It sleeps on a clock of its own that never moves; a
            # wake-up still wakes it at once (the watch's kick), which is all this traffic needs.
            for poller in app[ENDPOINTS].pollers.values():
                poller.clock = FakeClock()
            async with app_client(app, cancel=True) as client:
                result = Scrape(text="")
                await drive(Driver(client, result))
                result.text = await (await client.get("/metrics")).text()
                result.sent += 1
                result.upstream_ids = [r.headers.get("x-request-id") for r in sim[SIM_STATE].requests
                                       if not _gateway_own(r.path)]
                lines = [orjson.loads(x) for x in buffer.getvalue().splitlines()]
                result.access = [x for x in lines if x["logger"] == "gateway.access"]
                yield result
    finally:
        os.environ.pop(ENDPOINT_TOKEN_ENV, None)
        root.handlers[:] = handlers
        root.setLevel(level)
        await _delete_keys(redis_url_module, prefix)


def _gateway_own(path: str) -> bool:
    """The gateway's own calls (control-plane readings, health checks), which no client request caused."""
    return path.startswith("/v2/endpoint/") or path.endswith("/health")


async def _delete_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    async for k in client.scan_iter(match=f"{prefix}*", count=500):
        await client.delete(k)
    await client.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_url_module() -> str:
    """The real Redis (skipped locally, a failure in CI, when it is unreachable)."""
    return await shared_redis_url()


# -- what every request leaves behind ----------------------------------------------------------


def test_every_request_is_counted_once_and_logged_once(scrape: Scrape) -> None:
    traffic = [x for x in scrape.access if x["path"] != "/metrics"]
    assert len(scrape.access) == scrape.sent
    assert scrape.total("gateway_requests_total") == len(traffic)  # /metrics itself is not traffic
    assert scrape.total("gateway_request_duration_seconds_count") == len(traffic)
    assert scrape.total("gateway_overhead_seconds_count") == len(traffic)
    assert scrape.total("gateway_in_flight_requests") == 0
    assert scrape.total("gateway_requests_total", route="unmatched", status_class="4xx") == 1
    assert {labels["tenant"] for labels, _ in scrape.values("gateway_requests_total")} == {"acme"}


def test_the_request_id_reaches_the_upstream(scrape: Scrape) -> None:
    ids = {x["request_id"] for x in scrape.access}
    assert scrape.upstream_ids and all(rid in ids for rid in scrape.upstream_ids)


def test_upstream_calls_are_timed_per_deployment_and_pools_are_shown(scrape: Scrape) -> None:
    assert scrape.total("gateway_upstream_duration_seconds_count", deployment="sim") >= 4
    pools = {labels["deployment"] for labels, _ in scrape.values("gateway_upstream_connections")}
    assert pools == {"sim", "fragile", "paced", "dedicated"}
    assert scrape.total("gateway_upstream_connections", state="idle") >= 1


def test_redis_operations_are_timed(scrape: Scrape) -> None:
    assert scrape.total("gateway_redis_duration_seconds_count") > 0
    assert scrape.values("gateway_redis_errors_total")  # started at 0 per operation


# -- one kind each ------------------------------------------------------------------------------


def test_streams_record_time_to_first_byte_and_tokens(scrape: Scrape) -> None:
    assert scrape.statuses["stream"] == [200, 200]
    assert scrape.total("gateway_stream_ttfb_seconds_count", model="sim/gpt2", route="chat") == 2
    assert scrape.total("gateway_tokens_total", model="sim/gpt2", tenant="acme", direction="out") >= 3 * 5
    assert scrape.total("gateway_tokens_total", model="sim/gpt2", direction="in") > 0


def test_cache_misses_and_hits(scrape: Scrape) -> None:
    assert scrape.statuses["cache"] == [200, 200]
    assert scrape.total("gateway_cache_events_total", outcome="miss") == 1
    assert scrape.total("gateway_cache_events_total", outcome="hit") == 1
    assert scrape.total("gateway_cache_events_total", outcome="store") == 1
    assert scrape.total("gateway_requests_total", model="BAAI/bge-small-en", cache="hit") == 1
    assert scrape.total("gateway_cache_bytes_total", direction="served") > 0
    assert scrape.total("gateway_cache_bytes_total", direction="stored") > 0


def test_gateway_429s(scrape: Scrape) -> None:
    assert scrape.statuses["limited"] == [200, 200, 429]
    assert scrape.total("gateway_ratelimit_decisions_total", scope="model", outcome="limited") == 1
    assert scrape.total("gateway_ratelimit_decisions_total", scope="model", outcome="allowed") >= 2
    assert scrape.total("gateway_requests_total", model="sim/limited", status_class="4xx") == 1


def test_upstream_429s_and_503s_are_retried(scrape: Scrape) -> None:
    assert (scrape.statuses["retry429"], scrape.statuses["retry5xx"]) == ([200], [200])
    assert scrape.total("gateway_retries_total", deployment="sim", reason="429") >= 1
    assert scrape.total("gateway_retries_total", deployment="sim", reason="5xx") >= 1
    retried = [x for x in scrape.access if x.get("model") in ("sim/busy-429x1-ra1", "sim/flaky-503x1")]
    assert [x["retries"] for x in retried] == [1, 1] and all(x["waited_s"] > 0 for x in retried)


def test_a_cold_start_is_waited_out(scrape: Scrape) -> None:
    assert scrape.statuses["cold"] == [200]
    assert scrape.total("gateway_coldstart_waits_total", model="sim/late-cold-20s") == 1
    assert scrape.total("gateway_coldstart_wait_seconds_total", model="sim/late-cold-20s") >= 15
    # It came up; the one target still loading is the dedicated endpoint, waking for 10 minutes.
    assert scrape.total("gateway_models_loading") == 1


def test_a_failing_deployment_falls_back(scrape: Scrape) -> None:
    assert scrape.statuses["fallback"] == [200]
    assert scrape.total("gateway_fallbacks_total", model="sim/primary") == 1


def test_a_scaled_to_zero_endpoint_is_woken_once_and_served_around(scrape: Scrape) -> None:
    assert scrape.statuses["endpoint"] == [200, 200]
    assert scrape.total("gateway_endpoint_wakeups_total", endpoint="dedicated") == 1
    assert scrape.total("gateway_endpoint_fallback_requests_total", endpoint="dedicated") == 2
    assert scrape.total("gateway_endpoint_state", endpoint="dedicated", state="initializing") == 1
    assert scrape.total("gateway_endpoint_state", endpoint="dedicated") == 1  # one state at a time


def test_a_breaking_deployment_opens_its_circuit(scrape: Scrape) -> None:
    assert scrape.statuses["broken"][0] >= 500 and scrape.statuses["broken"][1] == 503
    assert scrape.total("gateway_circuit_state", deployment="fragile:sim/broken-503xall") == 2
    assert scrape.total("gateway_circuit_state", deployment="sim") == 0


def test_paced_calls_wait_in_the_outbound_queue(scrape: Scrape) -> None:
    assert scrape.statuses["paced"] == [200, 200]
    assert scrape.total("gateway_outbound_queue_wait_seconds_count", deployment="paced") == 2
    # The budget lives in Redis, on Redis's clock: the second call's wait is ~10 s less the real time
    # between the two decisions (a loaded machine cannot eat 5 s of it); it is slept on the fake clock.
    assert scrape.total("gateway_outbound_queue_wait_seconds_sum", deployment="paced") >= 5
    assert scrape.total("gateway_ratelimit_decisions_total", scope="outbound", outcome="allowed") == 2


# -- the dashboard against the live output --------------------------------------------------------


def test_promtool_finds_nothing_in_the_output_after_every_kind_of_traffic(scrape: Scrape) -> None:
    result = subprocess.run([need("promtool"), "check", "metrics"], input=scrape.text, capture_output=True, text=True,
                            timeout=30)  # fmt: skip
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_series_is_in_the_live_output(path: Path, scrape: Scrape) -> None:
    exported = {s.name for f in text_string_to_metric_families(scrape.text) for s in f.samples}
    missing = set()
    for _, expr, _ in queries(load(path)):
        missing.update(name for name in metric_names(expr) if name not in exported)
    assert missing == set()
