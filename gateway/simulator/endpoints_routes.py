"""HF's Inference Endpoints control plane, as `huggingface_hub` 2.4.0 calls it (`HfApi.*_inference_endpoint`).

    GET  /v2/endpoint/{namespace}                       {"items": [endpoint, ...]}          (read)
    GET  /v2/endpoint/{namespace}/{name}                endpoint                            (read)
    POST /v2/endpoint/{namespace}/{name}/pause          endpoint, state paused, no url      (write)
    POST /v2/endpoint/{namespace}/{name}/resume         endpoint, state pending, no url     (write)
                                                        400 "... is already running" when running
    POST /v2/endpoint/{namespace}/{name}/scale-to-zero  endpoint, state scaledToZero, url   (write)
    GET  /api/whoami-v2                                 the token's user (HfApi's default namespace)

Bodies are ignored (the client sends none). Errors are `{"error": "..."}`, which the client's
`hf_raise_for_status` reads; the token rules are in `endpoints_auth`. Each control action wakes held
data-plane requests (`ControlPlane.changed`). `status.url` is built from the request's Host, so a client
reaching the simulator under any name gets a URL it can reach too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.simulator.dialects import Style, error_body
from gateway.simulator.endpoints_auth import Denial, bearer
from gateway.simulator.endpoints_json import endpoint_json
from gateway.simulator.endpoints_plane import ControlPlane
from gateway.simulator.endpoints_state import EndpointMachine, Refused
from gateway.simulator.respond import plain
from gateway.simulator.state import SIM_STATE
from gateway.simulator.wire import json_body

PREFIX = "/v2/endpoint"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    body, headers = error_body(Style.HF, status, message)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return plain(body, headers)


def _denied(denial: Denial) -> web.Response:
    return _error(denial.status, denial.message)


def _plane(request: web.Request) -> ControlPlane:
    return request.app[SIM_STATE].endpoints


def _render(request: web.Request, machine: EndpointMachine) -> dict[str, object]:
    plane = _plane(request)
    machine.settle(plane.now())
    return endpoint_json(
        machine,
        base_url=f"{request.scheme}://{request.host}",
        wall=plane.wall,
        created_at=float(request.app[SIM_STATE].config.created),
    )


def _lookup(request: web.Request, *, write: bool) -> EndpointMachine | web.Response:
    """The addressed endpoint, or the refusal (auth first, then existence)."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    plane = _plane(request)
    denial = plane.tokens.control(namespace, request.headers.get("Authorization"), write=write)
    if denial is not None:
        return _denied(denial)
    machine = plane.get(name)
    if machine is None or machine.spec.namespace != namespace:
        return _error(404, f"Endpoint {namespace}/{name} not found")
    return machine


async def list_endpoints(request: web.Request) -> web.Response:
    namespace = request.match_info["namespace"]
    plane = _plane(request)
    denial = plane.tokens.control(namespace, request.headers.get("Authorization"), write=False)
    if denial is not None:
        return _denied(denial)
    items = []
    for machine in plane.in_namespace(namespace):
        machine.counters.reads += 1
        items.append(_render(request, machine))
    return plain(json_body({"items": items}))


async def get_endpoint(request: web.Request) -> web.Response:
    found = _lookup(request, write=False)
    if isinstance(found, web.Response):
        return found
    found.counters.reads += 1
    return plain(json_body(_render(request, found)))


def _action(act: Callable[[EndpointMachine, float], None]) -> _Handler:
    """A write route applying `act` to the addressed endpoint and answering its new state."""

    async def handler(request: web.Request) -> web.Response:
        found = _lookup(request, write=True)
        if isinstance(found, web.Response):
            return found
        plane = _plane(request)
        try:
            act(found, plane.now())
        except Refused as refused:
            return _error(refused.status, refused.message)
        finally:
            plane.changed()
        return plain(json_body(_render(request, found)))

    return handler


async def whoami(request: web.Request) -> web.Response:
    """`HfApi.whoami`: the first namespace the token was configured for is its user; the others its orgs."""
    plane = _plane(request)
    token = bearer(request.headers.get("Authorization"))
    namespaces = plane.tokens.namespaces_of(token) if token else []
    if token is None or not namespaces:
        return _error(401, "Invalid credentials in Authorization header")
    role = "read" if plane.tokens.read_only(token) else "write"
    return plain(json_body({
        "type": "user",
        "name": namespaces[0],
        "fullname": namespaces[0],
        "orgs": [{"type": "org", "name": ns} for ns in namespaces[1:]],
        "auth": {"type": "access_token", "accessToken": {"displayName": "hf-gateway-sim", "role": role}},
    }))


def add_endpoint_routes(app: web.Application) -> None:
    """Register the control-plane routes and `whoami-v2`."""
    app.router.add_get(PREFIX + "/{namespace}", list_endpoints)
    app.router.add_get(PREFIX + "/{namespace}/{name}", get_endpoint)
    app.router.add_post(PREFIX + "/{namespace}/{name}/pause", _action(EndpointMachine.pause))
    app.router.add_post(PREFIX + "/{namespace}/{name}/resume", _action(EndpointMachine.resume))
    app.router.add_post(PREFIX + "/{namespace}/{name}/scale-to-zero", _action(EndpointMachine.scale_to_zero))
    app.router.add_get("/api/whoami-v2", whoami)
