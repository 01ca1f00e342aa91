"""The one road every model request takes: faults -> (wait) -> render -> write.

1. the fault book plans the request (`faults.FaultBook.plan`);
2. a gate answers instead of the model (401, 429, cold 503, scripted status, TGI error, reset);
3. a cold start with `x-wait-for-model` waits on the clock instead;
4. a slow first byte waits on the clock;
5. the renderer builds the answer (memoised in fast mode) and it is written with the plan's damage.
Input validation happens in the renderer, after the gates, as on a real upstream where auth,
rate limits and loading are checked before the payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.simulator.calls import SimCall, SimReject
from gateway.simulator.dialects import Style, error_body, loading_body
from gateway.simulator.faults import Ask, Gate
from gateway.simulator.respond import abort, dropped, pause, plain, write_body
from gateway.simulator.sse import write_stream
from gateway.simulator.state import SIM_STATE
from gateway.simulator.wire import Body, Rendered, dumps

Renderer = Callable[[SimCall], Rendered]
_TRUE = ("1", "true", "yes")


def wants_to_wait(call: SimCall) -> bool:
    """`x-wait-for-model` header (any case) or body `options.wait_for_model`."""
    if call.request.headers.get("x-wait-for-model", "").strip().lower() in _TRUE:
        return True
    options = call.body.get("options") if isinstance(call.body, dict) else None
    return isinstance(options, dict) and options.get("wait_for_model") is True


def gate_answer(call: SimCall, gate: Gate) -> web.Response:
    """The answer of a gate fault (never called for reset-before)."""
    if gate.kind == "cold":
        return plain(loading_body(call.model, gate.estimated_time or 0.0, list_form=gate.list_form))
    if gate.kind == "tgi-error":
        style = Style.TGI
    else:
        style = call.style
    body, headers = error_body(style, gate.status)
    if gate.body is not None:
        body, headers = Body(dumps(gate.body), status=gate.status), _message_header(style, gate.body)
    if gate.kind == "auth":
        headers["WWW-Authenticate"] = "Bearer"
    if gate.retry_after is not None:
        headers["Retry-After"] = f"{gate.retry_after:g}"
    if gate.retry_after_ms is not None:
        headers["retry-after-ms"] = str(gate.retry_after_ms)
    return plain(body, headers)


def _message_header(style: Style, body: dict[str, Any]) -> dict[str, str]:
    """OpenAI-style servers repeat the message in `X-Error-Message`; a custom body's message, if it has one."""
    inner = body.get("error")
    message = inner.get("message") if isinstance(inner, dict) else None
    return {"X-Error-Message": message} if style is Style.OPENAI and isinstance(message, str) else {}


def refuse_unauthorized(request: web.Request, key: str, style: Style) -> None:
    """For GET routes (info, health, models): only the `auth` fault applies."""
    state = request.app[SIM_STATE]
    if state.faults.denies(key, request.headers.get("Authorization")):
        body, headers = error_body(style, 401)
        raise SimReject(body, {**headers, "WWW-Authenticate": "Bearer"})


async def serve(call: SimCall, render: Renderer) -> web.StreamResponse:
    """Answer a model request, faults included."""
    ask = Ask(stream=call.stream, authorization=call.request.headers.get("Authorization"),
              wait_for_model=wants_to_wait(call))
    plan = call.state.faults.plan(call.key, ask)
    if plan.gate is not None:
        if plan.gate.kind == "reset-before":
            abort(call.request)
            return dropped()
        return gate_answer(call, plan.gate)
    if plan.wait and not await pause(call, plan.wait):
        return dropped()
    if plan.slow_ttfb and not await pause(call, plan.slow_ttfb):
        return dropped()
    cache_key = (call.request.method, call.request.path, call.request.headers.get("Accept", ""), call.raw)
    rendered = call.state.rendered(cache_key, lambda: render(call))
    if isinstance(rendered, Body):
        if plan.clean:
            return plain(rendered)
        return await write_body(call, rendered, plan)
    return await write_stream(call, rendered, plan)
