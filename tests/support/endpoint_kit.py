"""The real gateway app in front of the simulator playing HF's control plane, both in this process, one fake clock.

The clock is manual by default: the endpoint pollers sleep on it for ever, so an autojumping clock
would race through scale-ups and idle timers whenever the loop is idle. Tests move time with
`advance()` (which lets the loop run between steps) and wait for conditions with `until()` (which
yields to the loop, never sleeps on the clock).

The gateway gets two upstreams: `ep`, the managed endpoint `acme-chat` (control plane = the
simulator), and `hf`, serverless (the simulator's HF router). Routes: `chat` (the endpoint, then
serverless), `solo` (the endpoint alone).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.http.appkeys import ENDPOINTS
from gateway.policies.endpoints.watch import EndpointWatch
from gateway.simulator.app import SIM_STATE, SimState, create_simulator_app
from gateway.simulator.config import SimConfig
from gateway.simulator.endpoints_state import Counters
from gateway.store.protocol import Store

TOKEN_ENV = "GW_TEST_ENDPOINT_TOKEN"
TOKEN = "hf_fake_acme_write"
READ_TOKEN = "hf_fake_acme_read"
SERVERLESS = "meta-llama/Llama-3.1-8B-Instruct"


def sim_config(state: str = "running", *, image: str = "tgi", scale_up_delay: float = 5.0,
               pending_delay: float = 1.0, scale_to_zero_timeout: float | None = None) -> SimConfig:
    """One endpoint, `acme-chat`, in namespace `acme` (write and read-only tokens)."""
    return SimConfig.model_validate({"control_plane": {
        "namespaces": {"acme": {"tokens": [{"token": TOKEN}, {"token": READ_TOKEN, "read_only": True}]}},
        "endpoints": {"acme-chat": {"namespace": "acme", "state": state, "image": image,
                                    "scale_up_delay": scale_up_delay, "pending_delay": pending_delay,
                                    "scale_to_zero_timeout": scale_to_zero_timeout}},
    }})


def endpoint_upstream(control: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "endpoint", "name": "acme-chat", "namespace": "acme", "token_env": TOKEN_ENV,
            "control_plane_url": control, "wake_estimate": 10, "poll_interval": 30, "wake_poll_interval": 1,
            "control_timeout": 2, **extra}


@dataclass
class Stack:
    client: TestClient  # type: ignore[type-arg]
    sim: SimState
    sim_url: str
    clock: FakeClock
    app: Any

    @property
    def watch(self) -> EndpointWatch:
        watch = self.app[ENDPOINTS].get("ep")
        assert watch is not None
        return watch

    def counters(self) -> Counters:
        machine = self.sim.endpoints.get("acme-chat")
        assert machine is not None
        return machine.counters

    def sim_state(self) -> str:
        machine = self.sim.endpoints.get("acme-chat")
        assert machine is not None
        machine.settle(self.clock.monotonic())
        return machine.state

    def served_by_endpoint(self) -> int:
        """Requests the simulator answered under /endpoints/acme-chat (health checks excluded)."""
        return sum(1 for r in self.sim.requests if r.path.startswith("/endpoints/acme-chat")
                   and not r.path.endswith("/health"))

    def served_by_serverless(self) -> int:
        return sum(1 for r in self.sim.requests if r.path.startswith("/v1/") or r.path.startswith("/models/"))

    async def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move the clock `seconds` forward in steps, letting the loop (and real sockets) run between them."""
        left = seconds
        while left > 1e-9:
            moved = min(step, left)
            self.clock.advance(moved)
            left -= moved
            for _ in range(3):
                await asyncio.sleep(0)
            await asyncio.sleep(0.003)  # what a poll over a real socket needs to land

    async def chat(self, model: str = "chat", **extra: Any) -> tuple[int, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, **extra}
        resp = await self.client.post("/v1/chat/completions", json=body)
        data = await resp.read()
        return resp.status, data


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Yield to the loop until `predicate()` holds (bounded by iterations; the clock does not move)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} never became true")


@dataclass
class Simulator:
    app: Any
    url: str
    clock: FakeClock


@asynccontextmanager
async def simulator(sim: SimConfig, clock: FakeClock | None = None) -> AsyncIterator[Simulator]:
    """The simulator alone, on a real port (for several gateways in turn)."""
    clock = clock or FakeClock()
    app = create_simulator_app(sim, clock=clock)
    server = TestServer(app)
    await server.start_server()
    try:
        yield Simulator(app, str(server.make_url("")).rstrip("/"), clock)
    finally:
        await server.close()


@asynccontextmanager
async def stack(sim: SimConfig | Simulator, *, endpoint: dict[str, Any] | None = None,
                control: Callable[[str], str] | None = None, clock: FakeClock | None = None,
                store: Store | None = None, **settings: Any) -> AsyncIterator[Stack]:
    """A gateway in front of a simulator (started here from a config, or one already running).

    `control(sim_url)`: the control plane's URL (default the simulator's); `endpoint` values may use
    `{sim}` for the simulator's URL."""
    if isinstance(sim, Simulator):
        async with _gateway(sim, endpoint, control, store, settings) as s:
            yield s
        return
    async with simulator(sim, clock) as running, _gateway(running, endpoint, control, store, settings) as s:
        yield s


@asynccontextmanager
async def _gateway(sim: Simulator, endpoint: dict[str, Any] | None, control: Callable[[str], str] | None,
                   store: Store | None, settings: dict[str, Any]) -> AsyncIterator[Stack]:
    sim_url, clock = sim.url, sim.clock
    control_url = control(sim_url) if control else sim_url
    extra = {k: v.format(sim=sim_url) if isinstance(v, str) else v for k, v in (endpoint or {}).items()}
    upstreams = {"ep": endpoint_upstream(control_url, **extra),
                 "hf": {"kind": "hf", "base_url": sim_url, "token_env": None}}
    models = [{"name": "chat", "deployments": [{"upstream": "ep"}, {"upstream": "hf", "model": SERVERLESS}]},
              {"name": "solo", "deployments": [{"upstream": "ep"}]}]
    cfg = load_settings(None, upstreams=upstreams, models=models, **settings)
    app = create_app(cfg, clock=clock, store=store)
    client = TestClient(TestServer(app, handler_cancellation=True))
    await client.start_server()
    s = Stack(client, sim.app[SIM_STATE], sim_url, clock, app)
    try:
        await until(s.watch.first_step.is_set, "the first endpoint reading")
        yield s
    finally:
        await client.close()
