"""`EndpointRecord`: what the fleet knows about one managed endpoint, as kept in the store.

A record is one control-plane reading plus what the gateway learned around it: the last URL the
endpoint had (a paused or pending endpoint has none, and comes back on the same one), whether its
health route answered (ready), since when it is in its state, the last wake-up's time to ready, and
the control plane's current problem if the last reading failed (the facts then stay those of the last
good reading). Stored as "<checked_at> <json>", so `endpoint_record.lua` keeps the later reading when
two replicas write at once. All instants are wall-clock seconds: every replica reads the same ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from gateway.upstream.endpoints.info import BROKEN, SERVING, WAKING, EndpointInfo

UNKNOWN = "unknown"  # no reading yet (the state label /status and the metrics show)


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One endpoint's shared record."""

    checked_at: float  # when the reading (or the observation) was made
    state: str  # a control-plane state, or UNKNOWN
    url: str | None = None  # the last URL the endpoint had
    engine: str = ""
    repository: str = ""
    task: str | None = None
    health_route: str = "/health"
    message: str | None = None  # the control plane's status.message
    ready: bool = False  # serving state, a URL, and the health route answered 200
    since: float = 0.0  # when this state was first seen
    ready_seconds: float | None = None  # the last wake-up's time to ready
    error: str | None = None  # "<reason>: <message>" when the last control-plane call failed
    error_since: float | None = None
    source: str = "control_plane"  # or "traffic": a request saw the endpoint answer (or wake)

    @property
    def serving(self) -> bool:
        return self.state in SERVING

    @property
    def waking(self) -> bool:
        return self.state in WAKING

    @property
    def broken(self) -> bool:
        return self.state in BROKEN

    def encode(self) -> bytes:
        return f"{self.checked_at:.3f} ".encode() + orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | None) -> EndpointRecord | None:
        """The record, or None when absent or not in this format (another key version)."""
        if not raw:
            return None
        _, sep, body = raw.partition(b" ")
        if not sep:
            return None
        try:
            data: Any = orjson.loads(body)
            return cls(**data) if isinstance(data, dict) else None
        except (orjson.JSONDecodeError, TypeError):
            return None

    def read(self, info: EndpointInfo, at: float, *, ready: bool) -> EndpointRecord:
        """This record moved on by a good reading `info` made at `at`."""
        return EndpointRecord(
            checked_at=at, state=info.state, url=info.url or self.url, engine=info.engine,
            repository=info.repository, task=info.task, health_route=info.health_route, message=info.message,
            ready=ready, since=self.since if info.state == self.state and self.state != UNKNOWN else at,
            ready_seconds=self.ready_seconds,
        )

    def failed(self, error: str, at: float) -> EndpointRecord:
        """This record, with the control plane's problem at `at` (the facts unchanged)."""
        return replace(self, checked_at=at, error=error, error_since=self.error_since or at)

    def observed(self, state: str, at: float, *, ready: bool) -> EndpointRecord:
        """This record after a request saw the endpoint in `state` (served, or started waking)."""
        since = self.since if state == self.state else at
        return replace(self, checked_at=at, state=state, ready=ready, since=since, source="traffic")


def first_record(at: float) -> EndpointRecord:
    """The record before any reading (older than any real one: a record found in the store wins)."""
    return EndpointRecord(checked_at=0.0, state=UNKNOWN, since=at)
