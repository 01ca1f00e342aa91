"""Managed dedicated endpoints as applications see them: the real `openai` and `huggingface_hub` clients against a
listening gateway in front of the simulated control plane. One manual FakeClock drives both servers (moved from
the test with `advance`), so a scale-up of seconds takes none of the wall clock and nothing races it.

The gateway routes `chat` to the endpoint `acme-chat` then to serverless, and `solo` to the endpoint alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from huggingface_hub import InferenceClient
from openai import OpenAI

from gateway.core.clock import FakeClock
from gateway.core.config import Settings, load_settings
from gateway.http.appkeys import ENDPOINTS
from gateway.simulator.config import SimConfig
from tests.support.thread_stack import Stack, start_stack, stop_stack

TOKEN_ENV, TOKEN = "GW_E2E_ENDPOINT_TOKEN", "hf_fake_acme_write"
SERVERLESS = "meta-llama/Llama-3.1-8B-Instruct"
MESSAGES = [{"role": "user", "content": "Is the GPU awake?"}]


def sim_config(state: str, scale_up_delay: float = 5.0) -> SimConfig:
    return SimConfig.model_validate({"control_plane": {
        "namespaces": {"acme": {"tokens": [{"token": TOKEN}]}},
        "endpoints": {"acme-chat": {"namespace": "acme", "state": state, "scale_up_delay": scale_up_delay,
                                    "pending_delay": 1, "scale_to_zero_timeout": None}}}})


def settings_for(**endpoint: Any) -> Callable[[str], Settings]:
    def build(sim_url: str) -> Settings:
        ep = {"kind": "endpoint", "name": "acme-chat", "namespace": "acme", "token_env": TOKEN_ENV,
              "control_plane_url": sim_url, "wake_estimate": 20, "wake_poll_interval": 1, **endpoint}
        return load_settings(
            None, upstreams={"ep": ep, "hf": {"kind": "hf", "base_url": sim_url}},
            models=[{"name": "chat", "deployments": [{"upstream": "ep"}, {"upstream": "hf", "model": SERVERLESS}]},
                    {"name": "solo", "deployments": [{"upstream": "ep"}]}],
            resilience={"keepalive_interval": 2.0, "probe_hold": 1000.0})
    return build


class Live:
    """A running stack and its clock, seen from the test's thread."""

    def __init__(self, stack: Stack, clock: FakeClock) -> None:
        self.stack, self.clock = stack, clock
        self.openai = OpenAI(base_url=f"{stack.gw_url}/v1/", api_key="sk-fake-client", max_retries=0)

    def hf(self, route: str) -> InferenceClient:
        return InferenceClient(model=f"{self.stack.gw_url}/models/{route}", token="hf_fake_client_token")

    def counters(self) -> dict[str, int]:
        snapshot = self.stack.call_soon(lambda: self.stack.sim.endpoints.snapshot("acme-chat"))
        return dict(snapshot["acme-chat"]["counters"])

    def endpoint_calls(self) -> int:
        return int(self.stack.call_soon(lambda: sum(
            1 for r in self.stack.sim.requests if r.path.startswith("/endpoints/acme-chat/")
            and not r.path.endswith("/health"))))

    def ready(self) -> bool:
        assert self.stack.gw_app is not None
        app = self.stack.gw_app
        return bool(self.stack.call_soon(lambda: app[ENDPOINTS].watches["ep"].record.ready))

    def advance(self, seconds: float) -> None:
        """Move both servers' clock on, a second at a time, letting their loop run in between."""
        for _ in range(int(seconds)):
            self.stack.call_soon(lambda: self.clock.advance(1.0))
            time.sleep(0.02)  # the servers' thread runs what the second released (sockets included)


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll `predicate` (bounded by attempts): conditions, not durations, are what the tests wait on."""
    for _ in range(1000):
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} never happened")


@pytest.fixture
def live(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    state, endpoint = request.param
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    clock = FakeClock()
    stack = start_stack(settings_for(**endpoint), sim_config(state), clock=clock)
    try:
        running = Live(stack, clock)
        assert stack.gw_app is not None
        app = stack.gw_app
        wait_for(lambda: stack.call_soon(lambda: app[ENDPOINTS].watches["ep"].first_step.is_set()), "discovery")
        yield running
    finally:
        stop_stack(stack)


@pytest.mark.parametrize("live", [("scaledToZero", {})], indirect=True)
def test_twenty_requests_during_a_scale_up_are_served_by_serverless_and_one_wakes_it(live: Live) -> None:
    def ask(i: int) -> str:
        if i % 4 == 0:  # a quarter of them through huggingface_hub
            return str(live.hf("chat").chat_completion(MESSAGES, max_tokens=4).choices[0].message.content)
        out = live.openai.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
        return str(out.choices[0].message.content)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    assert len(answers) == 20 and all(answers)
    assert live.counters()["wake_ups"] == 1
    assert live.endpoint_calls() == 1  # the waker (HF answered it 503); the 20 answers came from serverless
    live.advance(6)
    wait_for(live.ready, "the endpoint reported ready")
    live.openai.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    assert live.endpoint_calls() == 2  # traffic is back on the endpoint
    assert live.counters()["wake_ups"] == 1


@pytest.mark.parametrize("live", [("scaledToZero", {})], indirect=True)
def test_without_fallback_requests_park_and_a_stream_gets_keepalives(live: Live) -> None:
    with ThreadPoolExecutor(4) as pool:
        waker = pool.submit(live.openai.chat.completions.create, model="solo", messages=MESSAGES, max_tokens=4)
        wait_for(lambda: live.counters()["wake_ups"] == 1, "the wake-up")

        def stream_lines() -> list[str]:
            with live.openai.chat.completions.with_streaming_response.create(
                    model="solo", messages=MESSAGES, max_tokens=4, stream=True) as resp:  # type: ignore[arg-type]
                return [line for line in resp.iter_lines() if line]

        streamed = pool.submit(stream_lines)
        hub = pool.submit(lambda: live.hf("solo").text_generation("Hello", max_new_tokens=3))
        live.advance(8)
        assert waker.result(timeout=30).choices[0].message.content
        lines = streamed.result(timeout=30)
        assert isinstance(hub.result(timeout=30), str)
    assert lines[0].startswith(":")  # a keep-alive comment while the endpoint woke
    assert any(line.startswith("data: {") for line in lines) and lines[-1] == "data: [DONE]"
    assert live.counters()["wake_ups"] == 1 and live.counters()["held"] == 1


@pytest.mark.parametrize("live", [("paused", {})], indirect=True)
def test_paused_without_resume_is_a_clear_503_or_the_fallback(live: Live) -> None:
    with pytest.raises(openai.InternalServerError) as refused:
        live.openai.chat.completions.create(model="solo", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    assert refused.value.status_code == 503 and "paused" in str(refused.value)
    out = live.openai.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    assert out.choices[0].message.content
    assert live.counters()["resume_calls"] == 0 and live.endpoint_calls() == 0


@pytest.mark.parametrize("live", [("paused", {"resume": True})], indirect=True)
def test_paused_with_resume_is_resumed_once_and_answers_once_running(live: Live) -> None:
    with ThreadPoolExecutor(6) as pool:
        calls = [pool.submit(live.openai.chat.completions.create, model="solo", messages=MESSAGES, max_tokens=4)
                 for _ in range(6)]
        wait_for(lambda: live.counters()["resume_calls"] == 1, "the resume")
        live.advance(8)
        answers = [c.result(timeout=30).choices[0].message.content for c in calls]
    assert all(answers) and live.counters()["resume_calls"] == 1
