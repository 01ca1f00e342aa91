"""`SimCall`: one model request as the simulator understands it, and the helpers to read its body.

A handler builds a `SimCall` first thing (this is where the request is counted under its model),
then hands it to `serve.serve`. Malformed input raises `SimReject`, which the app's middleware
turns into the route's error dialect; nothing else builds error answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.simulator.dialects import Style, error_body
from gateway.simulator.state import SIM_STATE, SimState
from gateway.simulator.stats import ReceivedRequest
from gateway.simulator.wire import Body

RECORD = web.RequestKey("sim_record", ReceivedRequest)
PARSED: web.RequestKey[tuple[Any, bool]] = web.RequestKey("sim_parsed", tuple)


class SimReject(Exception):
    """The request cannot be served; carries the upstream-style error answer."""

    def __init__(self, body: Body, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.data.decode("utf-8", "replace"))
        self.body = body
        self.headers = headers or {}

    @classmethod
    def of(cls, style: Style, status: int, message: str | None = None, param: str | None = None) -> SimReject:
        """A rejection in `style` with a status, a message and (OpenAI shape) the offending `param`."""
        body, headers = error_body(style, status, message, param=param)
        return cls(body, headers)


@dataclass
class SimCall:
    """One request to a simulated model."""

    request: web.Request
    state: SimState
    record: ReceivedRequest
    style: Style
    key: str
    model: str
    task: str | None
    body: Any
    raw: bytes
    stream: bool = False
    bad_json: bool = field(default=False)

    def require_json(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400/422 rejection in the route's dialect."""
        if self.bad_json or not isinstance(self.body, dict):
            status = 422 if self.style in (Style.TGI, Style.TEI) else 400
            raise SimReject.of(self.style, status, "Failed to deserialize the JSON body into the target type")
        return self.body

    def params(self) -> dict[str, Any]:
        """`parameters` of an HF-style body ({} when absent)."""
        params = self.body.get("parameters") if isinstance(self.body, dict) else None
        return params if isinstance(params, dict) else {}

    def inputs(self) -> Any:
        """`inputs` of an HF-style body, or a validation rejection when missing."""
        body = self.require_json()
        if "inputs" not in body:
            status = 422 if self.style in (Style.TGI, Style.TEI) else 400
            raise SimReject.of(self.style, status, "missing field `inputs`")
        return body["inputs"]


def parse_body(raw: bytes) -> tuple[Any, bool]:
    """The JSON body (None when empty) and whether it failed to parse."""
    if not raw.strip():
        return None, False
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        return None, True


def body_of(request: web.Request) -> tuple[Any, bool]:
    """The parsed body of a request and whether it was malformed (parsed once per request)."""
    parsed = request.get(PARSED)
    if parsed is None:
        parsed = request[PARSED] = parse_body(request[RECORD].body)
    return parsed


def open_call(
    request: web.Request, *, style: Style, key: str, model: str, task: str | None, stream: bool | None = None
) -> SimCall:
    """Build the call, counting the request under `model` and `task`."""
    state = request.app[SIM_STATE]
    record = request[RECORD]
    body, bad = body_of(request)
    if stream is None:
        stream = isinstance(body, dict) and body.get("stream") is True
    state.stats.identify(record, model, task)
    return SimCall(request, state, record, style, key, model, task, body, record.body, stream, bad)


def strip_provider(model: str) -> str:
    """`org/name:provider` -> `org/name` (router policy and provider suffixes)."""
    return model.rsplit(":", 1)[0] if ":" in model else model
