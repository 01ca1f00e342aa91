"""How a simulator fault is written down: the `FaultSpec` model and the naming convention.

A fault script is an ordered list of `FaultSpec`. It comes from the YAML config, from
`POST /_sim/faults`, or (when neither names the model) from fault tokens embedded in the model id
or endpoint name, e.g. ``sim/gpt2-cold-20s`` or ``/endpoints/tgi-429x3-ra2+drip-50ms/generate``.

Naming convention (case-insensitive). A token is recognised wherever it starts at the beginning of
the name or right after one of the separators ``/ _ - + , : ; @`` and ends at the end of the name or
right before one of them. Durations take ``ms``, ``s`` (and ``m`` for cold starts); ``NUM`` may be
fractional. Tokens marked [xN] accept a ``-xN`` suffix: apply to the first N requests only.

    auth                   401 unless `Authorization: Bearer <SimConfig.token>` (any token if unset)
    limit-10ps, limit-5pm  429 + Retry-After once more than 10 requests arrived in the last second
                           (5 in the last minute); every arrival counts, rejected ones too
    cold-20s, cold-1.5m    503 {"error":"Model X is currently loading","estimated_time":<remaining>}
                           for 20 s after the first request; x-wait-for-model blocks instead
    cold-20s-list          same, list body [{"error":...,"estimated_time":...}]
    429x3, 503x2, 500xall  the first 3 (2, every) requests get that status (any 400..599)
    429x3-ra2              ... with `Retry-After: 2`
    429x3-ra300ms          ... with `retry-after-ms: 300`
    tgi-error-422 [xN]     TGI error body {"error","error_type"} (422 validation, 424 generation,
                           429 overloaded, 500 incomplete_generation)
    reset-before [xN]      the connection is dropped before any response byte
    reset-after-headers [xN]  headers (with Content-Length) are sent, then the connection drops
    slow-ttfb-500ms [xN]   wait that long before the response headers
    drip-200ms [xN]        wait that long between stream events
    midstream-k3 [xN]      a stream sends 3 events, then an in-band error event, then ends
    cut-k3 [xN]            a stream sends 3 events, then the connection is cut
    truncated-json [xN]    the JSON body (first stream event) is cut in half
    wrong-content-type [xN]  correct body served as `text/html; charset=utf-8`
    garbage [xN]           a non-JSON body (a non-JSON first stream event)
    endless-stream [xN]    a stream never ends (until the client goes away)
    huge-body, huge-body-16mb [xN]  JSON padded with whitespace to 8 MiB (or the given size);
                           a stream opens with an SSE comment line of that size

A custom error body has no token: give `body` (a JSON object) to a `status`, `tgi-error` or
`midstream` fault in the config or `POST /_sim/faults`, e.g. an OpenAI
`{"error": {"message", "type", "param", "code": "context_length_exceeded"}}`; it is sent as is
(a `midstream` fault sends it as the in-band error event).

Invariant: every `FaultSpec` is validated on construction, so the request path never sees a
malformed script.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal[
    "auth",
    "limit",
    "cold",
    "status",
    "tgi-error",
    "reset-before",
    "reset-after-headers",
    "slow-ttfb",
    "drip",
    "midstream",
    "cut",
    "truncated-json",
    "wrong-content-type",
    "garbage",
    "endless-stream",
    "huge-body",
]

DEFAULT_HUGE_BODY = 8 * 1024 * 1024

# Which optional fields each kind needs; checked once, at construction.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "limit": ("limit",),
    "cold": ("seconds",),
    "status": ("status",),
    "slow-ttfb": ("seconds",),
    "drip": ("seconds",),
    "midstream": ("after_events",),
    "cut": ("after_events",),
}


class FaultSpec(BaseModel):
    """One scripted misbehaviour of a model or endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    times: int | None = Field(default=None, ge=1, description="apply to the first N requests only")
    status: int | None = Field(default=None, ge=400, le=599)
    seconds: float | None = Field(default=None, ge=0, description="cold length, first-byte delay or drip")
    retry_after: float | None = Field(default=None, ge=0, description="Retry-After header, seconds")
    retry_after_ms: int | None = Field(default=None, ge=0, description="retry-after-ms header")
    after_events: int | None = Field(default=None, ge=0, description="midstream / cut position")
    list_form: bool = Field(default=False, description="cold: answer with the list-shaped body")
    limit: int | None = Field(default=None, ge=1, description="limit: requests allowed per window")
    window: float = Field(default=1.0, gt=0, description="limit: window length in seconds")
    size: int | None = Field(default=None, ge=1, description="huge-body: bytes")
    body: dict[str, Any] | None = Field(
        default=None, description="status, tgi-error, midstream: this JSON error object instead of the simulated one"
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: object) -> object:
        if isinstance(data, dict):
            defaults = {"tgi-error": ("status", 422), "huge-body": ("size", DEFAULT_HUGE_BODY)}
            if data.get("kind") in defaults:
                field, value = defaults[data["kind"]]
                if data.get(field) is None:
                    data = {**data, field: value}
        return data

    @model_validator(mode="after")
    def _check_required(self) -> FaultSpec:
        missing = [name for name in _REQUIRED.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"fault {self.kind!r} needs {', '.join(missing)}")
        if self.body is not None and self.kind not in ("status", "tgi-error", "midstream"):
            raise ValueError(f"fault {self.kind!r} takes no body (only status, tgi-error and midstream do)")
        return self


SEPARATORS = "/_-+,:;@"
_END = rf"(?=$|[{re.escape(SEPARATORS)}])"
_NUM = r"(\d+(?:\.\d+)?)"
_TIMES = r"(?:-x(\d+))?"

_Builder = Callable[["re.Match[str]"], FaultSpec]


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def _times(match: re.Match[str], group: int) -> int | None:
    value = match.group(group)
    return int(value) if value else None


def _status(m: re.Match[str]) -> FaultSpec:
    times = None if m.group(2) == "all" else int(m.group(2))
    retry_after = retry_after_ms = None
    if m.group(3) is not None:
        if m.group(4):
            retry_after_ms = int(float(m.group(3)))
        else:
            retry_after = float(m.group(3))
    return FaultSpec(
        kind="status", status=int(m.group(1)), times=times,
        retry_after=retry_after, retry_after_ms=retry_after_ms,
    )


def _simple(kind: FaultKind) -> _Builder:
    return lambda m: FaultSpec(kind=kind, times=_times(m, 1))


def _timed(kind: FaultKind) -> _Builder:
    return lambda m: FaultSpec(kind=kind, seconds=_seconds(m.group(1), m.group(2)), times=_times(m, 3))


def _stream_pos(kind: FaultKind) -> _Builder:
    return lambda m: FaultSpec(kind=kind, after_events=int(m.group(1)), times=_times(m, 2))


def _huge(m: re.Match[str]) -> FaultSpec:
    size = None
    if m.group(1):
        size = int(m.group(1)) * (1024 if m.group(2) == "kb" else 1024 * 1024)
    return FaultSpec(kind="huge-body", size=size, times=_times(m, 3))


_RULES: list[tuple[re.Pattern[str], _Builder]] = [
    (re.compile(r"auth" + _END), lambda m: FaultSpec(kind="auth")),
    (
        re.compile(r"limit-(\d+)p(s|m)" + _END),
        lambda m: FaultSpec(kind="limit", limit=int(m.group(1)), window=1.0 if m.group(2) == "s" else 60.0),
    ),
    (
        re.compile(rf"cold-{_NUM}(ms|s|m)(-list)?" + _END),
        lambda m: FaultSpec(kind="cold", seconds=_seconds(m.group(1), m.group(2)), list_form=bool(m.group(3))),
    ),
    (re.compile(rf"([45]\d\d)x(\d+|all)(?:-ra{_NUM}(ms)?)?" + _END), _status),
    (
        re.compile(r"tgi-error-([45]\d\d)" + _TIMES + _END),
        lambda m: FaultSpec(kind="tgi-error", status=int(m.group(1)), times=_times(m, 2)),
    ),
    (re.compile(r"reset-before" + _TIMES + _END), _simple("reset-before")),
    (re.compile(r"reset-after-headers" + _TIMES + _END), _simple("reset-after-headers")),
    (re.compile(rf"slow-ttfb-{_NUM}(ms|s)" + _TIMES + _END), _timed("slow-ttfb")),
    (re.compile(rf"drip-{_NUM}(ms|s)" + _TIMES + _END), _timed("drip")),
    (re.compile(r"midstream-k(\d+)" + _TIMES + _END), _stream_pos("midstream")),
    (re.compile(r"cut-k(\d+)" + _TIMES + _END), _stream_pos("cut")),
    (re.compile(r"truncated-json" + _TIMES + _END), _simple("truncated-json")),
    (re.compile(r"wrong-content-type" + _TIMES + _END), _simple("wrong-content-type")),
    (re.compile(r"garbage" + _TIMES + _END), _simple("garbage")),
    (re.compile(r"endless-stream" + _TIMES + _END), _simple("endless-stream")),
    (re.compile(r"huge-body(?:-(\d+)(kb|mb))?" + _TIMES + _END), _huge),
]


def parse_fault_names(name: str) -> list[FaultSpec]:
    """Every fault token found in `name`, in the order they appear (see the module docstring)."""
    text = name.lower()
    found: list[FaultSpec] = []
    pos, cursor = 0, 0
    while pos < len(text):
        if pos >= cursor and (pos == 0 or text[pos - 1] in SEPARATORS):
            for pattern, build in _RULES:
                match = pattern.match(text, pos)
                if match:
                    found.append(build(match))
                    cursor = match.end()
                    break
        pos += 1
    return found


def parse_fault_list(items: str | list[str | FaultSpec | dict[str, object]]) -> list[FaultSpec]:
    """Faults given as a token string, token strings, dicts or specs, flattened in order."""
    if isinstance(items, str):
        items = [items]
    result: list[FaultSpec] = []
    for item in items:
        if isinstance(item, FaultSpec):
            result.append(item)
        elif isinstance(item, str):
            parsed = parse_fault_names(item)
            if not parsed:
                raise ValueError(f"no fault token in {item!r}")
            result.extend(parsed)
        else:
            result.append(FaultSpec.model_validate(item))
    return result
