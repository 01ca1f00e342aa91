"""Retries through the whole gateway against the simulator: what the client sees, what the upstream saw."""

from __future__ import annotations

import orjson
import pytest

from tests.support.loop_stack import stack

GEN = {"inputs": "Hello", "parameters": {"max_new_tokens": 3}}


async def test_429_with_retry_after_3_is_waited_out_and_the_client_sees_one_success() -> None:
    async with stack() as s:
        start = s.clock.monotonic()
        resp = await s.client.post("/models/sim/gpt2-429x1-ra3", json=GEN)
        assert resp.status == 200
        assert "generated_text" in (await resp.json())[0]
        assert s.upstream_calls("sim/gpt2-429x1-ra3") == 2
        assert s.clock.monotonic() - start >= 3.0
        first, second = [r.at for r in s.sim.requests if r.model == "sim/gpt2-429x1-ra3"]
        assert second - first == pytest.approx(3.0, abs=0.05)


async def test_transient_failures_are_retried_and_hidden_from_the_client() -> None:
    async with stack() as s:
        for model in ("sim/gpt2-503x2", "sim/gpt2-reset-before-x1", "sim/gpt2-429x2-ra300ms"):
            resp = await s.client.post(f"/models/{model}", json=GEN)
            assert resp.status == 200, model
        assert s.upstream_calls("sim/gpt2-503x2") == 3
        assert s.upstream_calls("sim/gpt2-429x2-ra300ms") == 3


@pytest.mark.parametrize("model, status", [("sim/gpt2-400x1", 400), ("sim/gpt2-404x1", 404),
                                           ("sim/gpt2-tgi-error-422-x1", 422)])
async def test_client_errors_are_never_retried(model: str, status: int) -> None:
    async with stack() as s:
        resp = await s.client.post(f"/models/{model}", json=GEN)
        assert resp.status == status
        assert s.upstream_calls(model) == 1


async def test_an_exhausted_deadline_answers_the_429_now_with_retry_after_inside_the_deadline() -> None:
    async with stack() as s:
        start = s.clock.monotonic()
        resp = await s.client.post("/v1/chat/completions", headers={"X-Gateway-Timeout": "5"}, json={
            "model": "sim/chat-429x3-ra10", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "10"
        assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"  # the upstream's own code
        assert s.clock.monotonic() - start < 5
        assert s.upstream_calls("sim/chat-429x3-ra10") == 1


async def test_attempts_run_out_and_the_upstreams_status_is_relayed() -> None:
    async with stack(upstreams={"hf": {"kind": "hf", "base_url": "{sim}", "retry": {"max_attempts": 2}}}) as s:
        resp = await s.client.post("/models/sim/gpt2-502xall", json=GEN)
        assert resp.status == 502
        assert s.upstream_calls("sim/gpt2-502xall") == 2


async def test_a_stream_is_not_retried_after_its_first_byte_and_ends_with_one_error_event() -> None:
    async with stack() as s:
        resp = await s.client.post("/models/sim/gpt2-midstream-k2", json={**GEN, "stream": True})
        assert resp.status == 200
        events = [e for e in (await resp.read()).split(b"\n\n") if e]
        errors = [e for e in events if b'"error"' in e]
        assert len(errors) == 1 and events[-1] == errors[0]
        assert orjson.loads(errors[0][len(b"data:"):])["error_type"]
        assert s.upstream_calls("sim/gpt2-midstream-k2") == 1


async def test_a_cut_stream_gets_one_in_band_error_event_in_the_openai_dialect() -> None:
    async with stack() as s:
        resp = await s.client.post("/v1/chat/completions", json={
            "model": "sim/chat-cut-k2", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status == 200
        events = [e for e in (await resp.read()).split(b"\n\n") if e]
        errors = [e for e in events if b'"error"' in e]
        assert len(errors) == 1 and events[-1] == errors[0]
        assert "message" in orjson.loads(errors[0][len(b"data: "):])["error"]
        assert s.upstream_calls("sim/chat-cut-k2") == 1


async def test_a_stream_that_fails_before_its_first_event_is_retried() -> None:
    async with stack() as s:
        resp = await s.client.post("/models/sim/gpt2-503x1", json={**GEN, "stream": True})
        assert resp.status == 200
        body = await resp.read()
        assert body.startswith(b"data:") and b'"error"' not in body
        assert s.upstream_calls("sim/gpt2-503x1") == 2


async def test_retry_on_lets_a_team_retry_500s_and_drop_others_without_code() -> None:
    async with stack() as s:  # the default: a 500 is answered as it came
        resp = await s.client.post("/models/sim/gpt2-500x1", json=GEN)
        assert resp.status == 500 and s.upstream_calls("sim/gpt2-500x1") == 1
    retry_on = [429, 500, 502, 503, 504]  # 500 added, "connect" left out
    async with stack(upstreams={"hf": {"kind": "hf", "base_url": "{sim}", "retry": {"retry_on": retry_on}}}) as s:
        # First, on a new connection (the pool itself sends a request again, once, when a reused
        # keep-alive connection closes before answering).
        resp = await s.client.post("/models/sim/gpt2-reset-before-x1", json=GEN)
        assert resp.status == 502 and s.upstream_calls("sim/gpt2-reset-before-x1") == 1
        resp = await s.client.post("/models/sim/gpt2-500x1", json=GEN)
        assert resp.status == 200 and s.upstream_calls("sim/gpt2-500x1") == 2
