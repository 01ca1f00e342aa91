"""Control routes under `/_sim/`, for tests in other processes and for users scripting a run.

    GET  /_sim/stats                 {"total", "by_model", "by_path", "in_flight", "max_in_flight", "cancelled"}
    GET  /_sim/requests              received requests (credentials masked)
    POST /_sim/reset                 `SimState.reset()`
    POST /_sim/faults                {"model": "<id or endpoint>", "faults": [<spec dict or token>, ...]}
    GET  /_sim/faults?model=<id>     the script currently applying to a key

These routes are not counted and never faulted.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from gateway.simulator.fault_spec import parse_fault_list
from gateway.simulator.state import SIM_STATE


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_STATE].stats.snapshot())


async def requests(request: web.Request) -> web.Response:
    return web.json_response([r.public() for r in request.app[SIM_STATE].requests])


async def reset(request: web.Request) -> web.Response:
    request.app[SIM_STATE].reset()
    return web.json_response({"ok": True})


async def set_faults(request: web.Request) -> web.Response:
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad("body must be JSON")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not isinstance(
        body.get("faults"), (list, str)
    ):
        return _bad('expected {"model": str, "faults": [...]}')
    try:
        faults = parse_fault_list(body["faults"])
    except (ValidationError, ValueError) as exc:
        return _bad(f"invalid faults: {exc}")
    request.app[SIM_STATE].set_faults(body["model"], faults)
    return web.json_response({"model": body["model"], "faults": [f.model_dump(exclude_none=True) for f in faults]})


async def get_faults(request: web.Request) -> web.Response:
    model = request.query.get("model")
    if not model:
        return _bad("?model= is required")
    script = request.app[SIM_STATE].faults.script(model)
    return web.json_response({"model": model, "faults": [f.model_dump(exclude_none=True) for f in script]})


def add_control_routes(app: web.Application) -> None:
    """Register `/_sim/*`."""
    app.router.add_get("/_sim/stats", stats)
    app.router.add_get("/_sim/requests", requests)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_get("/_sim/faults", get_faults)
