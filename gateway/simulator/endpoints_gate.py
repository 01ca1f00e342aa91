"""The data plane of control-plane endpoints: `/endpoints/{name}/...` answered according to the endpoint's state.

Only endpoints named in `control_plane.endpoints` are gated; any other `/endpoints/{name}` keeps serving as a
bare dedicated endpoint. For a gated one, in this order:
1. auth (`endpoints_auth.TokenBook.data`): 401 / 403 `{"error": ...}`;
2. `GET .../health` answers through the engine's route only while the endpoint serves, else the refusal of
   step 4; it neither wakes the endpoint nor counts as activity (it is what `InferenceEndpoint.wait()` polls);
3. a malformed `X-Scale-Up-Timeout` (not a non-negative number of seconds) -> 400;
4. by state: running/updating -> the engine's route; scaledToZero -> a wake-up starts (initializing for
   `scale_up_delay`) and the request is refused with 503, or HELD until running when it carries
   `X-Scale-Up-Timeout: <s>` (503 if not running within `<s>` seconds of the simulator's clock);
   pending/initializing -> the same without a new wake-up; paused -> 400 `Bad Request: Invalid state`;
   failed/updateFailed -> 503.
The 503 bodies are `{"error": ...}` with no `estimated_time` and no `Retry-After`: HF documents the status, not
the body, so clients must not depend on it. Every request except health counts as activity for the idle timer,
from arrival to the end of its answer (a stream keeps the endpoint busy while it streams).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.simulator.calls import RECORD
from gateway.simulator.dialects import Style, error_body
from gateway.simulator.endpoints_state import INVALID_STATE, Admit, EndpointMachine
from gateway.simulator.respond import dropped, plain, watch_gone
from gateway.simulator.state import SIM_STATE

SCALE_UP_TIMEOUT = "X-Scale-Up-Timeout"
_PREFIX = "/endpoints/"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def endpoint_path(path: str) -> tuple[str, str] | None:
    """(`name`, the rest of the path) for `/endpoints/{name}[/...]`, else None."""
    if not path.startswith(_PREFIX):
        return None
    name, slash, rest = path[len(_PREFIX):].partition("/")
    return (name, slash + rest) if name else None


def scale_up_timeout(request: web.Request) -> float | None:
    """The `X-Scale-Up-Timeout` seconds (None when absent); ValueError when malformed."""
    raw = request.headers.get(SCALE_UP_TIMEOUT)
    if raw is None:
        return None
    seconds = float(raw.strip())
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(raw)
    return seconds


def _answer(request: web.Request, machine: EndpointMachine, status: int, message: str) -> web.Response:
    request.app[SIM_STATE].stats.identify(request[RECORD], machine.name, None)
    body, headers = error_body(Style.HF, status, message)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return plain(body, headers)


def _refusal(request: web.Request, machine: EndpointMachine, verdict: Admit) -> web.Response:
    if verdict is Admit.PAUSED:
        return _answer(request, machine, 400, INVALID_STATE)
    if verdict is Admit.STARTING:
        return _answer(request, machine, 503, f"Service Unavailable: endpoint {machine.name} is scaling up")
    return _answer(request, machine, 503, f"Service Unavailable: endpoint {machine.name} is {machine.state}")


async def _hold(request: web.Request, machine: EndpointMachine, seconds: float) -> bool | None:
    """Hold a request until the endpoint serves: True, timed out: False, client gone: None."""
    state = request.app[SIM_STATE]
    machine.counters.held += 1
    gone = asyncio.ensure_future(watch_gone(request))
    try:
        served = await state.endpoints.hold(machine, seconds, gone)
    finally:
        gone.cancel()
    if not served and gone.done() and not gone.cancelled():
        state.stats.cancel(request[RECORD])
        return None
    if served:
        machine.counters.held_served += 1
    else:
        machine.counters.held_timed_out += 1
    return served


async def _admit(request: web.Request, handler: _Handler, machine: EndpointMachine, hold_for: float | None
                 ) -> web.StreamResponse:
    plane = request.app[SIM_STATE].endpoints
    verdict = machine.admit(plane.now())
    if verdict is Admit.STARTING and hold_for is not None:
        served = await _hold(request, machine, hold_for)
        if served is None:
            return dropped()
        verdict = Admit.SERVE if served else machine.admit(plane.now(), wake=False)
    elif verdict is Admit.STARTING:
        machine.counters.refused_starting += 1
    if verdict is not Admit.SERVE:
        return _refusal(request, machine, verdict)
    return await handler(request)


@web.middleware
async def gate_endpoints(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Answer requests to a control-plane endpoint's URL according to its state (module docstring)."""
    found = endpoint_path(request.path)
    plane = request.app[SIM_STATE].endpoints
    machine = plane.get(found[0]) if found is not None else None
    if found is None or machine is None:
        return await handler(request)
    denial = plane.tokens.data(machine.spec, request.headers.get("Authorization"))
    if denial is not None:
        return _answer(request, machine, denial.status, denial.message)
    if request.method == "GET" and found[1].rstrip("/") == "/health":
        verdict = machine.admit(plane.now(), wake=False)
        return await handler(request) if verdict is Admit.SERVE else _refusal(request, machine, verdict)
    try:
        hold_for = scale_up_timeout(request)
    except ValueError:
        return _answer(request, machine, 400, f"{SCALE_UP_TIMEOUT} must be a non-negative number of seconds")
    machine.begin(plane.now())
    try:
        return await _admit(request, handler, machine, hold_for)
    finally:
        machine.end(plane.now())
