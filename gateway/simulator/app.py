"""The simulator application: a scripted HF router / legacy API / TGI / TEI / OpenAI upstream.

`create_simulator_app(config, clock=...)` wires routes and two middlewares (recording, outermost, then
the dedicated-endpoint gate of `endpoints_gate`); the only state is the `SimState` at `app[SIM_STATE]`.
`run_simulator` serves it (blocking) for `hf-gateway simulate`. Every request outside `/_sim/` is
recorded and counted on arrival, in flight until its handler returns, and counted as cancelled (once)
if its client goes away first.
Routes and outputs are described in `docs/simulator.md`; the fault naming convention (tokens such
as `cold-20s`, `429x3-ra2`, `midstream-k3` inside a model id or endpoint name) is specified in
`gateway/simulator/fault_spec.py` and in that document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.core.clock import Clock, SystemClock
from gateway.simulator.calls import RECORD, SimReject
from gateway.simulator.config import SimConfig, load_sim_config
from gateway.simulator.control import add_control_routes
from gateway.simulator.dialects import Style
from gateway.simulator.endpoints_control import add_endpoint_control_routes
from gateway.simulator.endpoints_gate import gate_endpoints
from gateway.simulator.endpoints_routes import add_endpoint_routes
from gateway.simulator.hf_routes import add_hf_routes
from gateway.simulator.native_routes import add_native_routes
from gateway.simulator.openai_routes import add_openai_routes
from gateway.simulator.providers import add_provider_header
from gateway.simulator.respond import plain
from gateway.simulator.state import SIM_STATE, SimState

__all__ = ["SIM_STATE", "SimState", "create_simulator_app", "run_simulator"]

MAX_BODY = 64 * 1024 * 1024
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def record_requests(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Record, count and track every model request; render `SimReject` in its dialect."""
    if request.path.startswith("/_sim/"):
        return await handler(request)
    state = request.app[SIM_STATE]
    try:
        body, too_large = await request.read(), False
    except web.HTTPRequestEntityTooLarge:
        body, too_large = b"", True  # still counted: the upstream did receive a request
    record = state.stats.arrive(request.method, request.path, request.headers, body, state.clock.monotonic())
    request[RECORD] = record
    try:
        if too_large:
            raise SimReject.of(Style.HF, 413)
        return await handler(request)
    except SimReject as reject:
        return plain(reject.body, reject.headers)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the peer leaves (if handler_cancellation is on).
        state.stats.cancel(record)
        raise
    finally:
        state.stats.leave(record)


def create_simulator_app(config: SimConfig | None = None, *, clock: Clock | None = None) -> web.Application:
    """Build the simulator app around a fresh `SimState`."""
    # Recording first, so that requests the endpoint gate refuses are recorded and counted too.
    app = web.Application(middlewares=[record_requests, gate_endpoints], client_max_size=MAX_BODY)
    app[SIM_STATE] = SimState(config or SimConfig(), clock or SystemClock())
    add_control_routes(app)
    add_endpoint_control_routes(app)
    add_endpoint_routes(app)
    add_openai_routes(app)
    add_native_routes(app)
    add_hf_routes(app)
    add_provider_header(app)
    return app


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # optional speed-up for the benchmark's "near-free upstream"
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_simulator(host: str, port: int, config_path: str | None = None, *, fast: bool = False) -> None:
    """Serve the simulator until interrupted (`hf-gateway simulate`)."""
    config = load_sim_config(config_path)
    if fast:
        config = config.model_copy(update={"fast": True})
    app = create_simulator_app(config)
    mode = "fast" if config.fast else "normal"
    # Fast mode drops the per-request access log line: it is the benchmark's near-free upstream.
    access_log = None if config.fast else logging.getLogger("aiohttp.access")
    web.run_app(
        app,
        host=host,
        port=port,
        loop=_new_loop(),
        access_log=access_log,
        print=lambda _msg: print(f"hf-gateway simulator ({mode} mode) on http://{host}:{port}", flush=True),
    )
