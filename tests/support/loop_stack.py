"""The real gateway app in front of the simulator, both in this process, on one fake clock.

Real sockets carry the requests, so the fake clock's autojump can move time while a request is on
the wire; tests that count on a probe being answered before anyone's patience runs out set
`probe_hold` high (parked requests then wait for the probe's answer, which wakes them at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.app import create_app
from gateway.simulator.app import SIM_STATE, SimState, create_simulator_app
from gateway.simulator.config import SimConfig


@dataclass
class Stack:
    client: TestClient  # type: ignore[type-arg]
    sim: SimState
    sim_url: str
    clock: FakeClock

    def upstream_calls(self, model: str, before: float | None = None) -> int:
        """Requests the simulator received for `model` (optionally, only those that arrived before `before`)."""
        return sum(1 for r in self.sim.requests if r.model == model and (before is None or r.at < before))


@asynccontextmanager
async def stack(*, upstreams: dict[str, dict[str, Any]] | None = None, models: list[dict[str, Any]] | None = None,
                sim: SimConfig | None = None, clock: FakeClock | None = None,
                **settings: Any) -> AsyncIterator[Stack]:
    """Simulator + gateway; `upstreams` base URLs may use `{sim}` for the simulator's URL."""
    clock = clock or FakeClock(autojump=True)
    sim_app = create_simulator_app(sim or SimConfig(), clock=clock)
    sim_server = TestServer(sim_app)
    await sim_server.start_server()
    sim_url = str(sim_server.make_url("")).rstrip("/")
    ups = upstreams or {"hf": {"kind": "hf", "base_url": "{sim}"}}
    ups = {n: {"token_env": None, **u, "base_url": u["base_url"].format(sim=sim_url)} for n, u in ups.items()}
    cfg = load_settings(None, upstreams=ups, models=models or [{"name": "*"}], **settings)
    server = TestServer(create_app(cfg, clock=clock), handler_cancellation=True)
    client = TestClient(server)
    await client.start_server()
    try:
        yield Stack(client, sim_app[SIM_STATE], sim_url, clock)
    finally:
        await client.close()
        await sim_server.close()
