"""Fault scripts at run time: which script applies to a key, its progress, and the per-request `Plan`.

A key is a model id (HF routes, `/v1` bodies) or an endpoint name (`/endpoints/{name}/...`, `default`
for bare native routes). Its script comes from, in order of precedence: `set_faults` at run time,
the config's `models[key].faults`, the fault tokens in the key itself (`fault_spec` docstring).

Evaluation of one request, in two passes over the script:
1. gates, in script order; the first that fires answers the request instead of the model
   (`auth` is always checked first, whatever its position). A `cold` window opens at the first
   request that reaches it; with `x-wait-for-model` it turns into a wait instead of a 503.
2. modifiers (timing and body/stream damage), only when no gate fired.
A fault with `times=N` is consumed only by requests it actually applied to, so `503x2` followed by
`500x1` answers 503, 503, 500, then succeeds; stream-only faults skip non-stream requests.
Time comes from the injected clock (`monotonic()`), so fake clocks drive cold and rate windows.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.core.clock import Clock
from gateway.simulator.fault_spec import FaultSpec, parse_fault_names

GateKind = Literal["auth", "limit", "cold", "status", "tgi-error", "reset-before"]
_GATES = frozenset({"auth", "limit", "cold", "status", "tgi-error", "reset-before"})
_STREAM_ONLY = frozenset({"drip", "midstream", "cut", "endless-stream"})
_NAME_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class Gate:
    """A fault that answers the request itself."""

    kind: GateKind
    status: int
    retry_after: float | None = None
    retry_after_ms: int | None = None
    estimated_time: float | None = None
    list_form: bool = False
    body: dict[str, Any] | None = None  # the fault's own error object, sent as is


@dataclass
class Plan:
    """What the faults do to one request."""

    gate: Gate | None = None
    wait: float = 0.0
    slow_ttfb: float = 0.0
    drip: float = 0.0
    midstream_after: int | None = None
    midstream_body: dict[str, Any] | None = None  # the in-band error event's JSON, instead of the dialect's
    cut_after: int | None = None
    reset_after_headers: bool = False
    truncated_json: bool = False
    wrong_content_type: bool = False
    garbage: bool = False
    endless: bool = False
    huge_body: int | None = None

    @property
    def clean(self) -> bool:
        """True when no fault touches this request."""
        return self == Plan()


@dataclass(frozen=True)
class Ask:
    """What the fault book needs to know about a request."""

    stream: bool = False
    authorization: str | None = None
    wait_for_model: bool = False


@dataclass
class _Progress:
    applied: list[int]
    cold_since: list[float | None]
    arrivals: list[deque[float]] = field(default_factory=list)


class FaultBook:
    """Scripts per key and how far each has progressed."""

    def __init__(self, configured: Mapping[str, list[FaultSpec]], token: str | None, clock: Clock) -> None:
        self._configured = dict(configured)
        self._token = token
        self._clock = clock
        self._runtime: dict[str, list[FaultSpec]] = {}
        self._progress: dict[str, _Progress] = {}
        self._by_name: dict[str, list[FaultSpec]] = {}

    def script(self, key: str) -> list[FaultSpec]:
        """The faults that apply to `key`."""
        if key in self._runtime:
            return self._runtime[key]
        if key in self._configured:
            return self._configured[key]
        cached = self._by_name.get(key)
        if cached is None:
            if len(self._by_name) >= _NAME_CACHE_LIMIT:
                self._by_name.clear()
            cached = self._by_name[key] = parse_fault_names(key)
        return cached

    def set(self, key: str, faults: list[FaultSpec]) -> None:
        """Replace the script of `key` and restart its progress."""
        self._runtime[key] = list(faults)
        self._progress.pop(key, None)

    def reset(self) -> None:
        """Forget run-time scripts and all progress (cold windows, counters, rate windows)."""
        self._runtime.clear()
        self._progress.clear()

    def denies(self, key: str, authorization: str | None) -> bool:
        """True when `key` has an `auth` fault and the header does not satisfy it (no side effects)."""
        return any(f.kind == "auth" for f in self.script(key)) and not self._authorized(authorization)

    def loading(self, key: str) -> bool:
        """True while a cold window of `key` that has already opened is still open (no side effects)."""
        progress = self._progress.get(key)
        if progress is None:
            return False
        now = self._clock.monotonic()
        return any(
            since is not None and since + (fault.seconds or 0.0) > now
            for fault, since in zip(self.script(key), progress.cold_since, strict=False)
            if fault.kind == "cold"
        )

    def plan(self, key: str, ask: Ask) -> Plan:
        """Evaluate the script of `key` for one request, consuming what applies."""
        script = self.script(key)
        if not script:
            return Plan()
        progress = self._progress_of(key, script)
        plan = Plan()
        if any(f.kind == "auth" for f in script) and not self._authorized(ask.authorization):
            plan.gate = Gate("auth", 401)
            return plan
        for index, fault in enumerate(script):
            if fault.kind in _GATES and fault.kind != "auth":
                plan.gate = self._gate(index, fault, progress, ask, plan)
                if plan.gate is not None:
                    return plan
        for index, fault in enumerate(script):
            if fault.kind not in _GATES and self._take(index, fault, progress, ask):
                _modify(plan, fault)
        return plan

    def _progress_of(self, key: str, script: list[FaultSpec]) -> _Progress:
        progress = self._progress.get(key)
        if progress is None:
            progress = _Progress(
                applied=[0] * len(script),
                cold_since=[None] * len(script),
                arrivals=[deque() for _ in script],
            )
            self._progress[key] = progress
        return progress

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self._token is None or token == self._token

    def _take(self, index: int, fault: FaultSpec, progress: _Progress, ask: Ask) -> bool:
        """Consume one use of a counted fault if it applies to this request."""
        if fault.kind in _STREAM_ONLY and not ask.stream:
            return False
        if fault.times is not None and progress.applied[index] >= fault.times:
            return False
        progress.applied[index] += 1
        return True

    def _gate(self, index: int, fault: FaultSpec, progress: _Progress, ask: Ask, plan: Plan) -> Gate | None:
        now = self._clock.monotonic()
        if fault.kind == "limit":
            return _limit_gate(fault, progress.arrivals[index], now)
        if fault.kind == "cold":
            since = progress.cold_since[index]
            if since is None:
                since = progress.cold_since[index] = now
            remaining = since + (fault.seconds or 0.0) - now
            if remaining <= 0:
                return None
            if ask.wait_for_model:
                plan.wait = max(plan.wait, remaining)
                return None
            return Gate("cold", 503, estimated_time=round(remaining, 3), list_form=fault.list_form)
        if not self._take(index, fault, progress, ask):
            return None
        if fault.kind == "reset-before":
            return Gate("reset-before", 0)
        kind: GateKind = "tgi-error" if fault.kind == "tgi-error" else "status"
        return Gate(kind, fault.status or 500, retry_after=fault.retry_after, retry_after_ms=fault.retry_after_ms,
                    body=fault.body)


def _limit_gate(fault: FaultSpec, arrivals: deque[float], now: float) -> Gate | None:
    while arrivals and arrivals[0] <= now - fault.window:
        arrivals.popleft()
    arrivals.append(now)
    if len(arrivals) <= (fault.limit or 0):
        return None
    wait = arrivals[0] + fault.window - now
    return Gate("limit", 429, retry_after=float(max(1, math.ceil(wait))))


def _modify(plan: Plan, fault: FaultSpec) -> None:
    kind = fault.kind
    if kind == "slow-ttfb":
        plan.slow_ttfb += fault.seconds or 0.0
    elif kind == "drip":
        plan.drip = max(plan.drip, fault.seconds or 0.0)
    elif kind == "midstream":
        plan.midstream_after = fault.after_events
        plan.midstream_body = fault.body
    elif kind == "cut":
        plan.cut_after = fault.after_events
    elif kind == "reset-after-headers":
        plan.reset_after_headers = True
    elif kind == "truncated-json":
        plan.truncated_json = True
    elif kind == "wrong-content-type":
        plan.wrong_content_type = True
    elif kind == "garbage":
        plan.garbage = True
    elif kind == "endless-stream":
        plan.endless = True
    elif kind == "huge-body":
        plan.huge_body = fault.size
