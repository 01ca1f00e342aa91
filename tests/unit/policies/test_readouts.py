"""Scrape-time read-outs: circuit states per deployment label, models loading, outbound queue depth."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.core.call import Call, Dialect, Op, Reply
from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.core.routing import Router
from gateway.http.app import create_app
from gateway.http.appkeys import BREAKERS, LOADING, METRICS
from gateway.observability.metrics import Metrics
from gateway.observability.readouts import watch_policies
from gateway.policies.limits.shaping import ShapingStage
from gateway.policies.resilience.breaker import Outcome
from gateway.policies.resilience.loading import LoadState
from gateway.policies.resilience.target import Target
from gateway.store.memory import MemoryStore
from gateway.upstream.fake import FakeUpstream


def gauge(m: Metrics, name: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(m.render()[0].decode()):
        for s in family.samples:
            if s.name == name:
                out[s.labels.get("deployment", "")] = s.value
    return out


def app_with(**upstream: Any) -> Any:
    settings = load_settings(
        None,
        upstreams={"hf": {"token_env": None, "breaker_failures": 1, **upstream},
                   "tgi": {"kind": "tgi", "token_env": None, "breaker_failures": 1}},
        models=[{"name": "*", "deployments": [{"upstream": "hf"}]},
                {"name": "llama", "deployments": [{"upstream": "tgi", "model": "org/llama"}]}],
    )  # fmt: skip
    clock = FakeClock()
    return create_app(settings, clock=clock, upstreams={"hf": FakeUpstream("hf"), "tgi": FakeUpstream("tgi", "tgi")})


def test_circuits_start_closed_and_show_the_worst_circuit_behind_each_deployment() -> None:
    app = app_with()
    m = app[METRICS]
    assert gauge(m, "gateway_circuit_state") == {"hf": 0, "tgi:org/llama": 0}
    breakers = app[BREAKERS]
    # The `*` route forwards the asked-for name: its circuits count under the upstream's name.
    breakers.record(Target("hf", "some/model"), Outcome.FAILURE)
    breakers.record(Target("tgi", "org/llama"), Outcome.FAILURE)
    assert gauge(m, "gateway_circuit_state") == {"hf": 2, "tgi:org/llama": 2}
    breakers.record(Target("hf", "some/model"), Outcome.SUCCESS)
    assert gauge(m, "gateway_circuit_state") == {"hf": 0, "tgi:org/llama": 2}


def test_models_loading_is_what_this_process_saw_loading() -> None:
    app = app_with()
    board = app[LOADING]
    board.note_loading(Target("hf", "a/b"), LoadState("loading", 0.0, 20.0, 5.0, 20.0))
    assert gauge(app[METRICS], "gateway_models_loading") == {"": 1}
    board.note_up(Target("hf", "a/b"))
    assert gauge(app[METRICS], "gateway_models_loading") == {"": 0}


async def test_queue_depth_counts_calls_waiting_for_an_outbound_slot() -> None:
    settings = load_settings(None, upstreams={"hf": {"token_env": None, "budget": "1/s"}})
    clock = FakeClock()
    m = Metrics(deployments=["hf"])
    stage = ShapingStage(settings, MemoryStore(clock), clock)

    upstream = FakeUpstream("hf", config=settings.upstreams["hf"])  # the budget is the upstream's
    watch_policies(m, deployments=["hf"], paced=["hf"], breakers=None, board=None, shaping=stage)
    router = Router(settings.models, {"hf": upstream})

    async def nxt(call: Call) -> Reply:
        return Reply(200, b"{}")

    def call() -> Call:
        return Call(request_id="r", dialect=Dialect.OPENAI, op=Op.CHAT, route_label="chat", model="m",
                    route=router.resolve("m"), body={}, raw=b"", deadline=clock.monotonic() + 60)

    assert gauge(m, "gateway_outbound_queue_depth") == {"hf": 0}  # a paced upstream has a queue from the start
    first = await stage(call(), nxt)
    assert first.status == 200
    waiting = [asyncio.ensure_future(stage(call(), nxt)) for _ in range(2)]
    for _ in range(100):
        if clock.sleepers == 2:
            break
        await asyncio.sleep(0)
    assert gauge(m, "gateway_outbound_queue_depth") == {"hf": 2}
    clock.advance(1.0)
    await asyncio.sleep(0)
    clock.advance(1.0)
    await asyncio.gather(*waiting)
    assert gauge(m, "gateway_outbound_queue_depth") == {"hf": 0}
