"""The access line: one per request, every field, request ids in/out/upstream, text format, no secrets.

The real app runs in-process with a scripted upstream; log lines go to a buffer through the same
`configure_logging` the CLI uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.call import Answer, Call, Reply, StreamReply
from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.observability.logs import ACCESS_FIELDS, LogFormat, configure_logging
from gateway.upstream.fake import FakeUpstream
from tests.support.serving import gateway_client

CHAT = {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}
GATEWAY_KEY = "gw_fake_test_key_0123456789abcdef"
UPSTREAM_TOKEN = "hf_fake_test_token_abcdefghijklmnop"
Capture = Callable[[LogFormat], io.StringIO]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """configure_logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def run(fmt: LogFormat) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(fmt, "INFO", stream=buffer)
        return buffer

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def access_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "gateway.access"]


def settings(**extra: Any) -> Any:
    return load_settings(None, models=[{"name": "llama", "deployments": [{"upstream": "hf"}]}], **extra)


async def client_for(upstream: Any, **extra: Any) -> TestClient[Any, Any]:
    app = create_app(settings(**extra), clock=FakeClock(autojump=True), upstreams={"hf": upstream})
    client: TestClient[Any, Any] = TestClient(TestServer(app, handler_cancellation=True))
    await client.start_server()
    return client


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_one_json_line_per_request_with_every_field_and_the_request_id_everywhere(capture: Capture) -> None:
    buffer = capture("json")
    upstream = FakeUpstream("hf")
    client = await client_for(upstream)
    try:
        resp = await client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "req-abc.1"})
        assert resp.status == 200
        assert resp.headers["X-Request-Id"] == "req-abc.1"
    finally:
        await client.close()
    [(call, _model)] = upstream.calls
    assert call.request_id == "req-abc.1"  # what HttpUpstream sends upstream as X-Request-Id
    [line] = access_lines(buffer)
    assert set(ACCESS_FIELDS) <= set(line)
    assert line["msg"] == "POST /v1/chat/completions 200"
    expected = {"request_id": "req-abc.1", "method": "POST", "path": "/v1/chat/completions", "route": "chat",
                "tenant": None, "model": "llama", "deployment": "hf", "status": 200, "cache": "none", "retries": 0,
                "stream": False}
    assert {k: line[k] for k in expected} == expected
    for field in ("waited_s", "upstream_s", "total_s"):
        assert isinstance(line[field], float) and line[field] >= 0


async def test_a_request_without_an_id_gets_one_and_it_is_the_same_in_the_answer_and_the_line(
    capture: Capture,
) -> None:
    buffer = capture("json")
    client = await client_for(FakeUpstream("hf"))
    try:
        resp = await client.post("/v1/chat/completions", json=CHAT)
        rid = resp.headers["X-Request-Id"]
    finally:
        await client.close()
    [line] = access_lines(buffer)
    assert line["request_id"] == rid and len(rid) >= 16


async def test_rejected_requests_are_logged_and_counted_with_bounded_routes(capture: Capture) -> None:
    buffer = capture("json")
    client = await client_for(FakeUpstream("hf"))
    try:
        assert (await client.post("/v1/chat/completions", data=b"{not json")).status == 400
        assert (await client.get("/no/such/path")).status == 404
        health = await client.get("/healthz", headers={"X-Request-Id": "req-health"})
        assert (health.status, health.headers["X-Request-Id"]) == (200, "req-health")
        metrics = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    lines = access_lines(buffer)
    assert [(x["path"], x["status"], x["route"]) for x in lines] == [
        ("/v1/chat/completions", 400, "chat"), ("/no/such/path", 404, "unmatched"),
        ("/healthz", 200, "healthz"), ("/metrics", 200, "metrics"),
    ]  # fmt: skip
    counted = samples(metrics, "gateway_requests_total")
    routes = {dict(labels)["route"] for labels in counted}
    assert routes == {"chat", "unmatched"}  # ops endpoints are logged, not counted as traffic
    assert all(dict(labels)["status_class"] == "4xx" for labels in counted)


async def test_lines_written_while_a_request_is_handled_carry_its_id(capture: Capture) -> None:
    buffer = capture("json")

    def logging_answer(call: Call, model: str) -> Answer:
        logging.getLogger("gateway.test").warning("deep inside a policy")
        return Reply(200, b"{}")

    client = await client_for(FakeUpstream("hf", default=logging_answer))
    try:
        await client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "req-deep"})
    finally:
        await client.close()
    lines = [orjson.loads(x) for x in buffer.getvalue().splitlines()]
    inner = [x for x in lines if x["msg"] == "deep inside a policy"]
    assert [x["request_id"] for x in inner] == ["req-deep"]


async def test_text_format_is_one_readable_line(capture: Capture) -> None:
    buffer = capture("text")
    client = await client_for(FakeUpstream("hf"))
    try:
        await client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "req-text"})
    finally:
        await client.close()
    [line] = [x for x in buffer.getvalue().splitlines() if "gateway.access" in x]
    assert "[req-text] POST /v1/chat/completions 200" in line
    for part in ("route=chat", "model=llama", "deployment=hf", "status=200", "cache=none", "retries=0", "total_s="):
        assert part in line


async def test_keys_and_upstream_tokens_never_reach_the_log(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = capture("json")
    digest = hashlib.sha256(GATEWAY_KEY.encode()).hexdigest()
    keys = [{"sha256": digest, "tenant": "acme", "name": "ci"}]
    client = await client_for(FakeUpstream("hf"), keys=keys)
    try:
        ok = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        bad = await client.post(f"/v1/chat/completions?api_key={UPSTREAM_TOKEN}", json=CHAT,
                                headers={"Authorization": f"Bearer {UPSTREAM_TOKEN}", "x-api-key": UPSTREAM_TOKEN})
        metrics = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    assert (ok.status, bad.status) == (200, 401)
    text = buffer.getvalue()
    for secret in (GATEWAY_KEY, UPSTREAM_TOKEN, digest):
        assert secret not in text and secret not in metrics
    lines = access_lines(buffer)
    assert [(x["status"], x["tenant"]) for x in lines[:2]] == [(200, "acme"), (401, None)]
    assert ("tenant", "acme") in next(iter(samples(metrics, "gateway_requests_total")))


def stream_answer(call: Call, model: str) -> Answer:
    async def rest() -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n'
        yield b"data: [DONE]\n\n"

    call.tokens_in, call.tokens_out = 3, 2  # as the token settling of a stream would leave them
    return StreamReply(first=b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', rest=rest())


async def test_a_stream_is_logged_once_when_it_ends_with_its_time_to_first_byte(capture: Capture) -> None:
    buffer = capture("json")
    client = await client_for(FakeUpstream("hf", default=stream_answer))
    try:
        resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        body = await resp.read()
        metrics = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    assert body.endswith(b"data: [DONE]\n\n")
    [line] = [x for x in access_lines(buffer) if x["path"] != "/metrics"]
    assert (line["status"], line["stream"], line["tokens_in"], line["tokens_out"]) == (200, True, 3, 2)
    assert 0 <= line["ttfb_s"] <= line["total_s"]
    assert sum(samples(metrics, "gateway_stream_ttfb_seconds_count").values()) == 1
    assert sum(samples(metrics, "gateway_tokens_total").values()) == 5


class HangingUpstream(FakeUpstream):
    """Never answers; tells the test when a call has reached it."""

    def __init__(self) -> None:
        super().__init__("hf")
        self.entered = asyncio.Event()

    async def send(self, call: Call, model: str) -> Answer:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_client_that_leaves_is_logged_as_499_and_leaves_in_flight(capture: Capture) -> None:
    buffer = capture("json")
    upstream = HangingUpstream()
    client = await client_for(upstream)
    try:
        request = asyncio.ensure_future(client.post("/v1/chat/completions", json=CHAT))
        await asyncio.wait_for(upstream.entered.wait(), 5)
        during = samples(await (await client.get("/metrics")).text(), "gateway_in_flight_requests")
        request.cancel()  # closes the connection: the server cancels the handler
        for _ in range(500):
            if any(x["status"] == 499 for x in access_lines(buffer)):
                break
            await asyncio.sleep(0.01)
        after = samples(await (await client.get("/metrics")).text(), "gateway_in_flight_requests")
        counted = samples(await (await client.get("/metrics")).text(), "gateway_requests_total")
    finally:
        await client.close()
    assert [x["status"] for x in access_lines(buffer) if x["path"] == "/v1/chat/completions"] == [499]
    assert (list(during.values()), list(after.values())) == ([1.0], [0.0])
    assert [dict(k)["status_class"] for k in counted] == ["4xx"]


@pytest.mark.parametrize(("public", "status"), [(True, 200), (False, 401)])
async def test_metrics_stays_open_with_keys_unless_told_otherwise(public: bool, status: int) -> None:
    keys = [{"sha256": hashlib.sha256(GATEWAY_KEY.encode()).hexdigest(), "tenant": "acme"}]
    client = await client_for(FakeUpstream("hf"), keys=keys, metrics_public=public)
    try:
        anonymous = await client.get("/metrics")
        with_key = await client.get("/metrics", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    finally:
        await client.close()
    assert (anonymous.status, with_key.status) == (status, 200)
    assert with_key.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_a_long_stream_is_not_gateway_overhead() -> None:
    clock = FakeClock(autojump=True)

    def slow_stream(call: Call, model: str) -> Answer:
        async def rest() -> AsyncIterator[bytes]:
            await clock.sleep(5.0)  # the upstream generating
            yield b"data: [DONE]\n\n"

        return StreamReply(first=b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', rest=rest())

    upstream = FakeUpstream("hf", default=slow_stream)
    async with gateway_client(settings(), clock=clock, upstreams={"hf": upstream}) as client:
        await (await client.post("/v1/chat/completions", json={**CHAT, "stream": True})).read()
        text = await (await client.get("/metrics")).text()
    assert samples(text, "gateway_request_duration_seconds_sum") == {(("model", "llama"), ("route", "chat")): 5.0}
    assert samples(text, "gateway_overhead_seconds_sum") == {(("route", "chat"),): 0.0}


async def test_a_token_in_the_path_or_the_model_name_never_reaches_the_access_line(capture: Capture) -> None:
    # The access line skips the generic redaction pass (for speed): its free-text fields are masked up front.
    buffer = capture("json")
    client = await client_for(FakeUpstream("hf"))
    try:
        await client.post(f"/models/{UPSTREAM_TOKEN}", json={"inputs": "hi"})
        await client.post(
            "/v1/chat/completions",
            json={**CHAT, "model": UPSTREAM_TOKEN},
            headers={"X-Request-Id": "hf_fake_test_request_id_0123456789"},
        )
    finally:
        await client.close()
    text = buffer.getvalue()
    assert "abcdefghijklmnop" not in text and "0123456789" not in text
    assert len(access_lines(buffer)) == 2
