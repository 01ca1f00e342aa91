"""The lifecycle of one simulated dedicated endpoint: a state machine driven by `now` (monotonic seconds).

    pending --pending_delay--> initializing --scale_up_delay--> running
    running --idle scale_to_zero_timeout (min_replica 0, nothing in flight)--> scaledToZero
    scaledToZero --a data-plane request (a wake-up)--> initializing
    any --pause--> paused --resume--> pending          running|updating --resume--> refused, "already running"
    running|initializing|updating --scale-to-zero--> scaledToZero
    updating --scale_up_delay--> running              failed, updateFailed: only `force` leaves them

The machine never reads a clock: every method takes `now`, and timed transitions are applied lazily by
`settle(now)` at the instant they were due (so `updatedAt` and the idle timer are exact, whatever the
polling rate). Invariants: `since` is when the current state was entered; `last_activity` is the later of
the last request's arrival or end and the last time the endpoint became running; counters only grow
until `reset` (the owner builds a new machine).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

from gateway.simulator.endpoints_config import EndpointSpec, EndpointState

_MESSAGES: dict[str, str] = {
    "pending": "Endpoint waiting to be scheduled",
    "initializing": "Endpoint is initializing",
    "updating": "Endpoint is updating",
    "updateFailed": "Endpoint failed to update",
    "running": "Endpoint is ready",
    "paused": "Endpoint is paused",
    "failed": "Endpoint failed to deploy",
    "scaledToZero": "Endpoint is scaled to zero",
}
# States in which the endpoint has no URL (the URL is kept while scaled to zero, initializing or updating).
_NO_URL = frozenset({"pending", "paused", "failed"})
# States in which the endpoint will be running without anyone acting.
_STARTING = frozenset({"pending", "initializing", "updating"})
# States whose replica answers requests (an update rolls out while the old replica serves).
_SERVING = frozenset({"running", "updating"})
INVALID_STATE = "Bad Request: Invalid state"


class Admit(Enum):
    """What the data plane does with a request, as decided by the endpoint's state."""

    SERVE = "serve"
    STARTING = "starting"  # 503, or held when the request asks for it
    PAUSED = "paused"  # 400 Invalid state
    BROKEN = "broken"  # failed / updateFailed: 503


@dataclass
class Counters:
    """What happened to one endpoint since the last reset (read by `/_sim/endpoints`)."""

    reads: int = 0
    pause_calls: int = 0
    resume_calls: int = 0
    scale_to_zero_calls: int = 0
    wake_ups: int = 0
    refused_starting: int = 0
    held: int = 0
    held_served: int = 0
    held_timed_out: int = 0

    def as_dict(self) -> dict[str, int]:
        """A JSON-able copy."""
        return asdict(self)


class Refused(Exception):
    """A control-plane action the endpoint's state does not allow: an HF-style error status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EndpointMachine:
    """One endpoint's state, timers and counters."""

    def __init__(self, name: str, spec: EndpointSpec, now: float) -> None:
        self.name = name
        self.spec = spec
        self.state: EndpointState = spec.state
        self.since = now
        self.last_activity = now
        self.in_flight = 0
        self.min_replica = spec.min_replica
        self.max_replica = spec.max_replica
        self.message: str | None = spec.message
        self.counters = Counters()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def has_url(self) -> bool:
        """Whether the control plane shows `status.url` in the current state."""
        return self.state not in _NO_URL

    @property
    def serving(self) -> bool:
        """Whether a request reaching the endpoint now is answered by the model."""
        return self.state in _SERVING

    @property
    def status_message(self) -> str:
        """`status.message`."""
        return self.message or _MESSAGES[self.state]

    def replicas(self) -> tuple[int, int]:
        """(`readyReplica`, `targetReplica`) in the current state."""
        wanted = max(1, self.min_replica)
        if self.state in _SERVING:
            return wanted, wanted
        if self.state in ("paused", "scaledToZero"):
            return 0, 0
        return 0, wanted

    def ready_at(self) -> float | None:
        """When the endpoint will be serving if nobody acts (None: never by itself; `since` if it is now)."""
        if self.state in _SERVING:
            return self.since
        if self.state == "pending":
            return self.since + self.spec.pending_delay + self.spec.scale_up_delay
        if self.state == "initializing":
            return self.since + self.spec.scale_up_delay
        return None

    # -- time ------------------------------------------------------------------------------------

    def settle(self, now: float) -> None:
        """Apply every timed transition due by `now`, each at the instant it was due."""
        while True:
            spec = self.spec
            if self.state == "pending" and now >= self.since + spec.pending_delay:
                self._enter("initializing", self.since + spec.pending_delay)
            elif self.state in ("initializing", "updating") and now >= self.since + spec.scale_up_delay:
                self._enter("running", self.since + spec.scale_up_delay)
                self.last_activity = max(self.last_activity, self.since)
            elif self.state == "running" and (idle_at := self._idle_deadline()) is not None and now >= idle_at:
                self._enter("scaledToZero", idle_at)
            else:
                return

    def _idle_deadline(self) -> float | None:
        timeout = self.spec.scale_to_zero_timeout
        if timeout is None or self.min_replica > 0 or self.in_flight > 0:
            return None
        return self.last_activity + timeout

    def _enter(self, state: EndpointState, at: float) -> None:
        self.state = state
        self.since = at
        self.message = None  # a configured or forced message describes the state it was set with

    # -- data plane ------------------------------------------------------------------------------

    def admit(self, now: float, *, wake: bool = True) -> Admit:
        """Decide a data-plane request's fate; a request to a scaled-to-zero endpoint starts a wake-up."""
        self.settle(now)
        if self.state in _SERVING:
            return Admit.SERVE
        if self.state == "scaledToZero" and wake:
            self._enter("initializing", now)
            self.counters.wake_ups += 1
            return Admit.STARTING
        if self.state in _STARTING or self.state == "scaledToZero":
            return Admit.STARTING
        if self.state == "paused":
            return Admit.PAUSED
        return Admit.BROKEN

    def begin(self, now: float) -> None:
        """A data-plane request arrived (it keeps the endpoint busy until `end`)."""
        self.settle(now)
        self.in_flight += 1
        self.last_activity = max(self.last_activity, now)

    def end(self, now: float) -> None:
        """A data-plane request finished."""
        self.settle(now)
        self.in_flight = max(0, self.in_flight - 1)
        self.last_activity = max(self.last_activity, now)

    # -- control plane ---------------------------------------------------------------------------

    def pause(self, now: float) -> None:
        """`POST .../pause`: stop every replica; min and max replicas drop to 0 (idempotent)."""
        self.settle(now)
        self.counters.pause_calls += 1
        if self.state != "paused":
            self._enter("paused", now)
        self.min_replica = self.max_replica = 0

    def resume(self, now: float) -> None:
        """`POST .../resume`: paused or scaled to zero -> pending; min and max replicas become 1."""
        self.settle(now)
        self.counters.resume_calls += 1
        if self.state in _SERVING:
            raise Refused(400, f"Endpoint {self.name} is already running")
        if self.state in ("failed", "updateFailed"):
            raise Refused(400, f"Endpoint {self.name} is in state {self.state} and cannot be resumed")
        if self.state in ("paused", "scaledToZero"):
            self._enter("pending", now)
            self.min_replica = self.max_replica = 1

    def scale_to_zero(self, now: float) -> None:
        """`POST .../scale-to-zero`: drop the replicas now; the URL stays and traffic wakes it (idempotent)."""
        self.settle(now)
        self.counters.scale_to_zero_calls += 1
        if self.state in ("paused", "pending", "failed", "updateFailed"):
            raise Refused(400, f"Endpoint {self.name} is {self.state} and cannot be scaled to zero")
        if self.state != "scaledToZero":
            self._enter("scaledToZero", now)

    def force(self, state: EndpointState, now: float, message: str | None = None) -> None:
        """Put the endpoint in `state` from now on (the `/_sim/` control; no counter moves)."""
        self.settle(now)
        self._enter(state, now)
        self.message = message
        if state == "running":
            self.last_activity = now
