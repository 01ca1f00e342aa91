"""`/_sim/endpoints`: read and steer the simulated endpoints from tests or another process.

    GET  /_sim/endpoints                 {name: {"namespace", "state", "since", "in_flight", "counters"}}
    GET  /_sim/endpoints/{name}          the same for one endpoint (404 when unknown)
    POST /_sim/endpoints/{name}/state    {"state": "<one of the 8 states>", "message": "optional"}
                                         -> the endpoint's snapshot; the state starts now (timers restart)

`counters` holds `reads`, `pause_calls`, `resume_calls`, `scale_to_zero_calls` (calls that passed the
token check, including those the state refused, e.g. a resume while running), `wake_ups` (scale-ups
started by data-plane traffic), `refused_starting` (503s while starting), `held`, `held_served` and
`held_timed_out` (a hold that ended unserved: timeout, pause or state change). `POST /_sim/reset` also
puts every endpoint back to its configured state with zeroed counters. Like every `/_sim/` route, these
are not counted.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.simulator.endpoints_config import ENDPOINT_STATES
from gateway.simulator.state import SIM_STATE


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def list_states(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_STATE].endpoints.snapshot())


async def get_state(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    snapshot = request.app[SIM_STATE].endpoints.snapshot(name)
    if not snapshot:
        return _bad(f"no endpoint {name!r} in control_plane.endpoints", 404)
    return web.json_response(snapshot[name])


async def set_state(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    plane = request.app[SIM_STATE].endpoints
    machine = plane.get(name)
    if machine is None:
        return _bad(f"no endpoint {name!r} in control_plane.endpoints", 404)
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad("body must be JSON")
    state = body.get("state") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if state not in ENDPOINT_STATES or not (message is None or isinstance(message, str)):
        return _bad(f'expected {{"state": one of {sorted(ENDPOINT_STATES)}, "message": optional string}}')
    machine.force(state, plane.now(), message)
    plane.changed()
    return web.json_response(plane.snapshot(name)[name])


def add_endpoint_control_routes(app: web.Application) -> None:
    """Register `/_sim/endpoints*`."""
    app.router.add_get("/_sim/endpoints", list_states)
    app.router.add_get("/_sim/endpoints/{name}", get_state)
    app.router.add_post("/_sim/endpoints/{name}/state", set_state)
