"""Faithfulness of the simulated Inference Endpoints control plane: the REAL `huggingface_hub` (HfApi,
InferenceEndpoint.pause/resume/scale_to_zero/wait/fetch, `.client`) against the simulator on a real port.

huggingface_hub 2.4.0 hard-codes the control plane's base (`constants.INFERENCE_ENDPOINTS_ENDPOINT`, no
environment variable), so the fixture points that constant at the simulator; `HfApi(endpoint=...)` only moves
the Hub calls (`whoami-v2`, used for the default namespace). The simulator runs on a FakeClock in the test's
loop; `InferenceEndpoint.wait()` reads `time.time()` / `time.sleep()` of its module, which the fixture
replaces with that clock, so a wait of 35 s of endpoint time takes none of the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import huggingface_hub
import huggingface_hub._inference_endpoints as hf_endpoints
import numpy as np
import pytest
from huggingface_hub import HfApi, InferenceClient, InferenceEndpoint
from huggingface_hub.errors import HfHubHTTPError, InferenceEndpointError

from gateway.core.clock import FakeClock
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import SimConfig
from gateway.simulator.endpoints_state import Counters
from gateway.simulator.state import SimState
from tests.support.serving import serving

WRITE, READ = "hf_fake_test_token", "hf_fake_read_token"
CONFIG = {
    "control_plane": {
        "namespaces": {"acme": {"tokens": [{"token": WRITE}, {"token": READ, "read_only": True}]}},
        "endpoints": {
            "acme-chat": {"namespace": "acme", "image": "tgi", "pending_delay": 5, "scale_up_delay": 30,
                          "scale_to_zero_timeout": 900},
            "acme-embed": {"namespace": "acme", "state": "scaledToZero", "image": "tei",
                           "model": "BAAI/bge-small-en-v1.5", "scale_up_delay": 20},
        },
    },
}


@dataclass
class ClientTime:
    """`time` as `InferenceEndpoint.wait()` sees it: the simulator's FakeClock, moved on by `sleep()`."""

    clock: FakeClock
    loop: asyncio.AbstractEventLoop
    sleeps: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.clock.time()

    def sleep(self, seconds: float) -> None:
        # Called from the client's thread: move the clock inside the loop and wait until it has moved.
        async def advance() -> None:
            self.clock.advance(seconds)

        asyncio.run_coroutine_threadsafe(advance(), self.loop).result()
        self.sleeps.append(seconds)


@dataclass
class Live:
    base: str
    state: SimState
    clock: FakeClock
    time: ClientTime

    @property
    def api(self) -> HfApi:
        return HfApi(endpoint=self.base)

    def counters(self, name: str) -> Counters:
        machine = self.state.endpoints.get(name)
        assert machine is not None
        return machine.counters

    async def get(self, name: str, token: str = WRITE) -> InferenceEndpoint:
        return await asyncio.to_thread(self.api.get_inference_endpoint, name, namespace="acme", token=token)


@pytest.fixture
async def live(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Live]:
    clock = FakeClock()
    app = create_simulator_app(SimConfig.model_validate(CONFIG), clock=clock)
    async with serving(app) as base:
        client_time = ClientTime(clock, asyncio.get_running_loop())
        monkeypatch.setattr(huggingface_hub.constants, "INFERENCE_ENDPOINTS_ENDPOINT", f"{base}/v2")
        monkeypatch.setattr(hf_endpoints, "time", client_time)
        yield Live(base, app[SIM_STATE], clock, client_time)


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until `predicate()` holds (bounded; the clock is not involved)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


def status_of(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    response = error.value.response
    assert response is not None
    return response.status_code


async def test_get_and_list_give_what_the_client_parses(live: Live) -> None:
    chat = await live.get("acme-chat", token=READ)
    assert (chat.name, chat.namespace, chat.status) == ("acme-chat", "acme", "running")
    assert chat.url == f"{live.base}/endpoints/acme-chat" and chat.health_route == "/health"
    assert (chat.repository, chat.task, chat.framework, chat.type) == (
        "openai-community/gpt2", "text-generation", "pytorch", "protected")
    assert chat.created_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert list(chat.raw["model"]["image"]) == ["tgi"]
    assert chat.raw["compute"]["scaling"] == {"minReplica": 0, "maxReplica": 1, "scaleToZeroTimeout": 15}
    listed = await asyncio.to_thread(live.api.list_inference_endpoints, "acme", token=READ)
    assert [e.name for e in listed] == ["acme-chat", "acme-embed"]
    embed = listed[1]
    assert embed.status == "scaledToZero" and embed.url == f"{live.base}/endpoints/acme-embed"
    assert embed.task == "feature-extraction" and list(embed.raw["model"]["image"]) == ["tei"]
    assert live.counters("acme-chat").reads == 2


async def test_the_default_namespace_comes_from_whoami(live: Live) -> None:
    api = HfApi(endpoint=live.base, token=WRITE)
    endpoint = await asyncio.to_thread(api.get_inference_endpoint, "acme-chat")
    assert endpoint.namespace == "acme" and endpoint.status == "running"


async def test_pause_then_resume_and_wait_then_the_client_reaches_tgi(live: Live) -> None:
    endpoint = await live.get("acme-chat")
    url = endpoint.url
    assert url is not None
    await asyncio.to_thread(endpoint.pause)
    assert endpoint.status == "paused" and endpoint.url is None
    with pytest.raises(HfHubHTTPError) as refused:
        await asyncio.to_thread(InferenceClient(model=url, token=WRITE).text_generation, "Hi")
    assert status_of(refused) == 400 and "Invalid state" in str(refused.value)

    await asyncio.to_thread(endpoint.resume)
    assert endpoint.status == "pending" and endpoint.url is None
    await asyncio.to_thread(endpoint.wait, 600, 5)
    assert endpoint.status == "running" and endpoint.url == url
    assert sum(live.time.sleeps) == 35  # 5 s pending + 30 s initializing, polled every 5 s of fake time
    text = await asyncio.to_thread(endpoint.client.text_generation, "The capital of France is", max_new_tokens=3)
    assert len(text.split()) == 3
    counters = live.counters("acme-chat")
    assert (counters.pause_calls, counters.resume_calls, counters.wake_ups) == (1, 1, 0)


async def test_resuming_a_running_endpoint_is_a_400_the_client_accepts(live: Live) -> None:
    endpoint = await asyncio.to_thread(
        live.api.resume_inference_endpoint, "acme-chat", namespace="acme", token=WRITE)
    assert endpoint.status == "running"  # running_ok: the client swallowed the 400 and read the endpoint
    with pytest.raises(HfHubHTTPError) as refused:
        await asyncio.to_thread(
            live.api.resume_inference_endpoint, "acme-chat", namespace="acme", running_ok=False, token=WRITE)
    assert status_of(refused) == 400 and "already running" in refused.value.response.text
    assert live.counters("acme-chat").resume_calls == 2


async def test_scale_to_zero_then_traffic_wakes_the_endpoint_exactly_once(live: Live) -> None:
    endpoint = await live.get("acme-chat")
    await asyncio.to_thread(endpoint.scale_to_zero)
    assert endpoint.status == "scaledToZero" and endpoint.url == f"{live.base}/endpoints/acme-chat"
    client = endpoint.client
    for _ in range(3):
        with pytest.raises(HfHubHTTPError) as unavailable:
            await asyncio.to_thread(client.text_generation, "Hi", max_new_tokens=2)
        assert status_of(unavailable) == 503
        assert unavailable.value.response.headers.get("Retry-After") is None
    await asyncio.to_thread(endpoint.fetch)
    assert endpoint.status == "initializing"
    counters = live.counters("acme-chat")
    assert (counters.wake_ups, counters.refused_starting, counters.scale_to_zero_calls) == (1, 3, 1)
    live.clock.advance(30)
    assert len((await asyncio.to_thread(client.text_generation, "Hi", max_new_tokens=2)).split()) == 2
    await asyncio.to_thread(endpoint.fetch)
    assert endpoint.status == "running" and live.counters("acme-chat").wake_ups == 1


async def test_x_scale_up_timeout_holds_the_request_until_the_endpoint_runs(live: Live) -> None:
    endpoint = await live.get("acme-embed")
    assert endpoint.url is not None
    client = InferenceClient(model=endpoint.url, token=WRITE, headers={"X-Scale-Up-Timeout": "600"})
    call = asyncio.ensure_future(asyncio.to_thread(client.feature_extraction, "hello world"))
    counters = live.counters("acme-embed")
    await until(lambda: counters.held == 1 and live.clock.sleepers == 1)
    assert not call.done() and counters.wake_ups == 1
    live.clock.advance(20)
    vector = await call
    assert isinstance(vector, np.ndarray) and vector.shape == (1, 8)
    assert (counters.held_served, counters.held_timed_out, counters.refused_starting) == (1, 0, 0)


async def test_a_held_request_gets_503_when_the_scale_up_outlasts_its_timeout(live: Live) -> None:
    endpoint = await live.get("acme-embed")
    assert endpoint.url is not None
    client = InferenceClient(model=endpoint.url, token=WRITE, headers={"X-Scale-Up-Timeout": "5"})
    call = asyncio.ensure_future(asyncio.to_thread(client.feature_extraction, "hello"))
    counters = live.counters("acme-embed")
    await until(lambda: counters.held == 1 and live.clock.sleepers == 1)
    live.clock.advance(5)
    with pytest.raises(HfHubHTTPError) as unavailable:
        await call
    assert status_of(unavailable) == 503 and counters.held_timed_out == 1


async def test_wait_raises_once_the_endpoint_is_failed(live: Live) -> None:
    endpoint = await live.get("acme-chat")
    await asyncio.to_thread(endpoint.pause)
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{live.base}/_sim/endpoints/acme-chat/state", json={"state": "failed"})
        assert resp.status == 200 and (await resp.json())["state"] == "failed"
    with pytest.raises(InferenceEndpointError, match="failed to deploy"):
        await asyncio.to_thread(endpoint.wait, 60, 5)
    assert endpoint.status == "failed" and endpoint.url is None


async def test_control_plane_refuses_missing_unknown_and_read_only_tokens(live: Live) -> None:
    api = live.api
    with pytest.raises(HfHubHTTPError) as missing:
        await asyncio.to_thread(api.get_inference_endpoint, "acme-chat", namespace="acme", token=False)
    assert status_of(missing) == 401
    with pytest.raises(HfHubHTTPError) as unknown:
        await asyncio.to_thread(api.get_inference_endpoint, "acme-chat", namespace="acme", token="hf_fake_nope")
    assert status_of(unknown) == 401
    for act in (api.pause_inference_endpoint, api.resume_inference_endpoint, api.scale_to_zero_inference_endpoint):
        with pytest.raises(HfHubHTTPError) as read_only:
            await asyncio.to_thread(act, "acme-chat", namespace="acme", token=READ)
        assert status_of(read_only) == 403
    assert (await live.get("acme-chat", token=READ)).status == "running"  # nothing moved
    with pytest.raises(HfHubHTTPError) as absent:
        await asyncio.to_thread(api.get_inference_endpoint, "nope", namespace="acme", token=READ)
    assert status_of(absent) == 404


async def test_the_endpoint_url_refuses_requests_without_a_namespace_token(live: Live) -> None:
    url = f"{live.base}/endpoints/acme-chat"
    with pytest.raises(HfHubHTTPError) as unknown:
        await asyncio.to_thread(InferenceClient(model=url, token="hf_fake_nope").text_generation, "Hi")
    assert status_of(unknown) == 401
    text = await asyncio.to_thread(InferenceClient(model=url, token=READ).text_generation, "Hi", max_new_tokens=1)
    assert len(text.split()) == 1
