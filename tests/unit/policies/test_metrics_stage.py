"""The [metrics] stage, the stream watch and the upstream timer, without HTTP.

A pipeline of `MetricsStage` -> (a scripted inner stage) -> `UpstreamTimer(terminal)` runs Calls
built by hand; the assertions read the rendered registry.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.call import Answer, Call, Dialect, Op, Reply, StreamReply
from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.core.errors import BadRequest, ModelLoading, UpstreamStatusError, UpstreamUnreachable
from gateway.core.pipeline import Handler, build_pipeline
from gateway.core.routing import Router
from gateway.observability.metrics import Metrics
from gateway.observability.stage import MetricsStage, model_label
from gateway.observability.stream_watch import StreamWatch
from gateway.observability.upstream_timer import UpstreamTimer, retry_reason
from gateway.upstream.fake import FakeUpstream

_ids = itertools.count()


def world() -> tuple[Router, Metrics]:
    settings = load_settings(
        None, upstreams={"a": {"token_env": None}, "b": {"token_env": None}},
        models=[{"name": "llama", "aliases": ["l3"], "deployments": [{"upstream": "a"}, {"upstream": "b"}]},
                {"name": "*", "deployments": [{"upstream": "a"}]}],
    )  # fmt: skip
    router = Router(settings.models, {"a": FakeUpstream("a"), "b": FakeUpstream("b")})
    return router, Metrics(models=router.labels(), tenants=["acme"], deployments=["a", "b"])


def call_for(router: Router, model: str = "llama", *, stream: bool = False, body: Any = None) -> Call:
    body = body or {"model": model, "messages": [{"role": "user", "content": "x" * 40}]}
    return Call(request_id=f"r{next(_ids)}", dialect=Dialect.OPENAI, op=Op.CHAT, route_label="chat", model=model,
                route=router.resolve(model), body=body, raw=b"", stream=stream, tenant="acme", deadline=1e12)


def value(m: Metrics, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(m.render()[0].decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def stream(*events: bytes) -> StreamReply:
    async def rest() -> AsyncIterator[bytes]:
        for ev in events[1:]:
            yield ev

    return StreamReply(first=events[0], rest=rest())


async def relay(answer: StreamReply) -> list[bytes]:
    """What gateway/relay.py does with a stream: every event, then the close hooks."""
    out = [ev async for ev in answer.events()]
    for hook in answer.on_close:
        hook()
    return out


def pipeline(m: Metrics, clock: FakeClock, inner: Callable[[Call, Handler], Any], terminal: Handler) -> Handler:
    class Inner:
        async def __call__(self, call: Call, nxt: Handler) -> Answer:
            result: Answer = await inner(call, nxt)
            return result

    return build_pipeline([MetricsStage(m, clock), Inner()], UpstreamTimer(terminal, m, clock))


async def passthrough(call: Call, nxt: Handler) -> Answer:
    return await nxt(call)


async def test_ttfb_is_taken_after_the_first_event_went_out_and_tokens_at_the_end() -> None:
    router, m = world()
    clock = FakeClock()
    events = (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n',
              b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n', b"data: [DONE]\n\n")

    async def terminal(call: Call) -> Answer:
        clock.advance(0.5)  # the upstream's time to its first event
        return stream(*events)

    call = call_for(router, stream=True)
    call.started = clock.monotonic()
    answer = await pipeline(m, clock, passthrough, terminal)(call)
    assert isinstance(answer, StreamReply)
    assert value(m, "gateway_stream_ttfb_seconds_count") == 0  # nothing written yet
    it = answer.events()
    assert await it.__anext__() == events[0]
    clock.advance(0.25)  # writing the first event to the client
    await it.__anext__()
    assert value(m, "gateway_stream_ttfb_seconds_sum", model="llama", route="chat") == 0.75
    assert value(m, "gateway_tokens_total") == 0  # counted when the stream ends
    rest = [ev async for ev in it]
    for hook in answer.on_close:
        hook()
    assert rest == list(events[2:])
    assert (call.tokens_in, call.tokens_out) == (7, 2)
    assert value(m, "gateway_tokens_total", direction="in", tenant="acme") == 7
    assert value(m, "gateway_tokens_total", direction="out") == 2


@pytest.mark.parametrize(
    ("events", "tokens_in", "tokens_out"),
    [
        # TGI: one token per event; the last event's details are exact.
        ((b'data:{"token":{"text":"a"}}\n\n', b'data:{"token":{"text":"b"},"details":{"generated_tokens":2,'
          b'"input_length":9}}\n\n'), 9, 2),
        # No usage reported: one token per data event, the prompt estimated from the request (40 chars).
        ((b": keepalive\n\n", b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
          b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n', b"data: [DONE]\n\n"), 14, 2),
    ],
)  # fmt: skip
async def test_stream_tokens_exact_when_reported_else_counted(events: tuple[bytes, ...], tokens_in: int,
                                                              tokens_out: int) -> None:
    router, m = world()
    clock = FakeClock()

    async def terminal(call: Call) -> Answer:
        return stream(*events)

    call = call_for(router, stream=True)
    answer = await pipeline(m, clock, passthrough, terminal)(call)
    assert isinstance(answer, StreamReply)
    await relay(answer)
    assert (call.tokens_in, call.tokens_out) == (tokens_in, tokens_out)
    assert value(m, "gateway_stream_ttfb_seconds_count") == 1


async def test_token_counts_an_inner_stage_settled_are_kept() -> None:
    router, m = world()

    async def settles(call: Call, nxt: Handler) -> Answer:
        answer = await nxt(call)
        assert isinstance(answer, StreamReply)

        def settle() -> None:
            call.tokens_in, call.tokens_out = 100, 50

        answer.on_close.append(settle)  # inner hooks run before the metrics stage's
        return answer

    async def terminal(call: Call) -> Answer:
        return stream(b'data:{"token":{"text":"a"}}\n\n')

    call = call_for(router, stream=True)
    await relay(await pipeline(m, FakeClock(), settles, terminal)(call))  # type: ignore[arg-type]
    assert value(m, "gateway_tokens_total", direction="out") == 50


async def test_policy_annotations_become_events_once_per_call() -> None:
    router, m = world()

    async def annotate(call: Call, nxt: Handler) -> Answer:
        call.cache = "hit"
        call.caching.served_bytes = 120
        call.resilience.fallbacks, call.resilience.coldstart_wait = 1, 12.5
        call.limiting.shaping_wait = 0.25
        call.limiting.outcomes += [("tenant", "allowed"), ("model", "allowed"), ("outbound", "allowed")]
        call.tokens_in, call.tokens_out = 3, 4
        return Reply(200, b"{}")

    async def terminal(call: Call) -> Answer:
        raise AssertionError("a hit never calls the upstream")

    await pipeline(m, FakeClock(), annotate, terminal)(call_for(router, "l3"))
    assert value(m, "gateway_cache_events_total", outcome="hit") == 1
    assert value(m, "gateway_cache_bytes_total", direction="served") == 120
    assert value(m, "gateway_fallbacks_total", model="l3") == 1  # an alias keeps its name
    assert value(m, "gateway_coldstart_waits_total", model="l3") == 1
    assert value(m, "gateway_coldstart_wait_seconds_total", model="l3") == 12.5
    assert value(m, "gateway_ratelimit_decisions_total", outcome="allowed") == 3
    assert value(m, "gateway_outbound_queue_wait_seconds_sum", deployment="a") == 0.25
    assert value(m, "gateway_tokens_total") == 7


async def test_a_failed_call_is_accounted_too() -> None:
    router, m = world()

    async def limited(call: Call, nxt: Handler) -> Answer:
        call.limiting.outcomes.append(("tenant", "limited"))
        raise BadRequest("no")

    run = pipeline(m, FakeClock(), limited, FakeUpstream().send)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await run(call_for(router, "made-up/model"))
    assert value(m, "gateway_ratelimit_decisions_total", scope="tenant", outcome="limited") == 1


def test_model_labels_keep_configured_names_and_aliases_else_the_route_label() -> None:
    router, m = world()
    assert [model_label(m, call_for(router, name)) for name in ("llama", "l3", "llama:novita", "made/up")] == [
        "llama", "l3", "llama", "other"]


async def test_retries_are_counted_on_the_same_deployment_by_their_cause_and_fallbacks_are_not() -> None:
    router, m = world()
    clock = FakeClock()
    script: list[Any] = [UpstreamStatusError("busy", status=429), ModelLoading("loading", estimated_time=5),
                         UpstreamUnreachable("reset"), None, None]

    async def terminal(call: Call) -> Answer:
        clock.advance(0.5)
        call.upstream_seconds += 0.5
        item = script.pop(0)
        if item is not None:
            raise item
        return Reply(200, b"{}")

    async def retrying(call: Call, nxt: Handler) -> Answer:
        deps = call.route.deployments
        for dep in (deps[0], deps[0], deps[0], deps[1]):  # a: 429, loading, reset; then b
            call.target = dep
            try:
                return await nxt(call)
            except Exception:
                continue
        raise AssertionError("unreachable")

    await pipeline(m, clock, retrying, terminal)(call_for(router))
    assert value(m, "gateway_retries_total", deployment="a", reason="429") == 1
    assert value(m, "gateway_retries_total", deployment="a", reason="loading") == 1
    assert value(m, "gateway_retries_total") == 2  # the move to b after the reset is a fallback
    assert value(m, "gateway_upstream_duration_seconds_count", deployment="a") == 3
    assert value(m, "gateway_upstream_duration_seconds_sum", deployment="b") == 0.5


def test_retry_reasons() -> None:
    assert retry_reason(UpstreamStatusError("x", status=503)) == "5xx"
    assert retry_reason(UpstreamStatusError("x", status=404)) is None
    assert retry_reason(BadRequest("x")) is None


async def test_the_watch_closes_the_stream_it_wraps() -> None:
    closed = []

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            yield b"data: 2\n\n"
        finally:
            closed.append(True)

    inner = events()
    watch = StreamWatch(inner, lambda: None, b"data: 0\n\n")
    assert await watch.__anext__() == b"data: 1\n\n"
    await watch.aclose()
    assert closed == [True]
