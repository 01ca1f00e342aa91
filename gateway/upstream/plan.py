"""What to send upstream: a `Plan`, made by a dialect's `Planner`; `HttpUpstream` sends it.

The `Upstream` protocol itself is in `core/call.py`. Each backend dialect (`dialects/`: hf, tgi,
tei, openai) is a `Planner`: a pure function from
a `Call` to a `Plan` (URL, body, how to read and adapt the answer). The HTTP mechanics live once,
in `http.py`. Tests swap the whole `Upstream` for a fake through `create_app(upstreams=...)`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.call import Call, StreamReply
from gateway.core.errors import UpstreamError


class SseStyle(enum.Enum):
    OPENAI = "openai"  # `data: {...}` events, must end with `data: [DONE]`
    TGI = "tgi"  # `data:{...}` token events, end at EOF
    RESPONSES = "responses"  # OpenAI Responses API: `event: <type>` + `data: {...}` events, end at EOF, no [DONE]


@dataclass(slots=True)
class Plan:
    """One upstream request and how to read its answer."""

    url: str
    body: bytes | None
    method: str = "POST"
    content_type: str | None = "application/json"  # None: the body goes without a Content-Type
    accept: str | None = None
    stream: bool = False
    sse: SseStyle = SseStyle.OPENAI
    adapt: Callable[[Any], Any] | None = None  # rewrites the parsed JSON answer into the client's shape
    expect_json: bool = True  # False: a non-JSON answer (an image, audio) is relayed with its own Content-Type
    headers: dict[str, str] = field(default_factory=dict)  # the client's headers this upstream is meant to get
    reshape: Callable[[StreamReply], Awaitable[StreamReply]] | None = None  # rewrites a stream for the client
    explain: Callable[[UpstreamError], UpstreamError] | None = None  # adds what to do to an upstream's refusal


class Planner(Protocol):
    """A backend dialect: turns a call into a Plan for `base_url`."""

    def __call__(self, call: Call, model: str, base_url: str) -> Plan: ...


