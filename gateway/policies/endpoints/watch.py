"""`EndpointWatch`: this replica's knowledge of one managed endpoint, and the actions taken on it.

The watch holds the endpoint's `EndpointRecord` as this replica last learned it (from its own
control-plane reading, the store, or a request that saw the endpoint answer), keeps the
`EndpointUpstream` aimed at the record's URL and engine, and does what the endpoint stage and the
poller ask: read the control plane now, claim the fleet's one wake-up, resume, note traffic.

Invariants:
- A failed control-plane reading never erases what was known: the URL, engine and state stay those of
  the last good reading; the problem is logged once when it starts (and once when it ends), counted,
  and carried in the record for /status.
- Ready means a serving state, a URL, and the health route answering 200, as `InferenceEndpoint.wait()`
  checks; on becoming ready every cold-start target of the endpoint is marked up, so parked requests go.
- Only `resume()` (called when the config says `resume: true`) and the idle action (poller) change the
  endpoint; nothing here pauses or resumes on a failed or missing reading.
- The control-plane token is never in a log line, a record or an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from gateway.core.clock import Clock
from gateway.core.upstream_config import UpstreamConfig
from gateway.policies.endpoints.events import EndpointEvents
from gateway.policies.endpoints.record import EndpointRecord, first_record
from gateway.policies.endpoints.shared import EndpointBoard
from gateway.policies.resilience.loading import LoadingBoard
from gateway.policies.resilience.target import Target
from gateway.store.protocol import StoreError
from gateway.upstream.endpoints.control import ControlPlaneClient, ControlPlaneError
from gateway.upstream.endpoints.info import SERVING, EndpointInfo
from gateway.upstream.endpoints.upstream import EndpointUpstream

log = logging.getLogger("gateway.endpoints")
_MIN_GAP = 1.0  # seconds between two on-demand readings (control plane or store) by one replica
_RETRY_RESUME = 30.0  # a failed resume may be tried again after this long


class EndpointWatch:
    """One managed endpoint, as this replica knows it."""

    def __init__(self, upstream: EndpointUpstream, client: ControlPlaneClient, board: EndpointBoard,
                 loading: LoadingBoard, targets: Iterable[Target], clock: Clock, events: EndpointEvents) -> None:
        self.upstream = upstream
        self.client = client
        self.board = board
        self.loading = loading
        self.targets = frozenset(targets)
        self.clock = clock
        self.events = events
        self.record = first_record(clock.time())
        self.kicked = asyncio.Event()  # the poller's sleep ends early when set
        self.in_flight = 0
        self.used_at = 0.0  # wall: the last traffic this replica sent (0: none yet)
        self._flushed_at = 0.0
        self._woken_at: float | None = None  # wall: a wake-up this replica claimed
        self._trouble: str | None = None  # the control-plane problem being reported, logged once
        self._refreshing: asyncio.Future[EndpointRecord] | None = None
        self._read_at = float("-inf")  # monotonic: the last on-demand reading
        self._reports: set[asyncio.Future[None]] = set()  # traffic reports under way
        self.first_step = asyncio.Event()  # set once the first poll (or store read) is over

    @property
    def name(self) -> str:
        return self.upstream.name

    @property
    def cfg(self) -> UpstreamConfig:
        return self.upstream.config

    @property
    def label(self) -> str:
        return self.upstream.label

    # -- learning ---------------------------------------------------------------------------------

    async def poll(self) -> EndpointRecord:
        """Read the control plane (and the health route when needed); share and apply what it says."""
        at = self.clock.time()
        try:
            info = await self.client.read(self.cfg.namespace or "", self.cfg.name or "")
        except ControlPlaneError as exc:
            self.trouble(exc)
            return await self.publish(self.record.failed(f"{exc.reason}: {exc.message}", at))
        self.recovered()
        new = self.record.read(info, at, ready=await self._ready(info))
        return await self.publish(await self._finish_wake(new))

    async def refresh(self) -> EndpointRecord:
        """A control-plane reading now, shared by concurrent callers; the store's record if one was just made."""
        if self._refreshing is not None:
            return await asyncio.shield(self._refreshing)
        if self.clock.monotonic() - self._read_at < _MIN_GAP:
            return self.record
        self._read_at = self.clock.monotonic()
        self._refreshing = asyncio.ensure_future(self.poll())
        try:
            return await asyncio.shield(self._refreshing)
        finally:
            self._refreshing = None

    async def reread(self) -> EndpointRecord:
        """The store's record, if it is newer than ours (at most once a second)."""
        if self.clock.monotonic() - self._read_at < _MIN_GAP:
            return self.record
        self._read_at = self.clock.monotonic()
        try:
            shared = await self.board.read()
        except StoreError:
            return self.record
        if shared is not None and shared.checked_at > self.record.checked_at:
            await self.apply(shared)
        return self.record

    async def publish(self, record: EndpointRecord) -> EndpointRecord:
        """Write `record` to the store (if no later one is there) and apply it here."""
        try:
            await self.board.write(record)
        except StoreError as exc:
            log.debug("endpoint %s: record not shared (%s)", self.label, exc)
        await self.apply(record)
        return self.record

    async def apply(self, record: EndpointRecord) -> None:
        """Take `record` as what this replica knows; aim the upstream; release parked requests when ready."""
        before = self.record
        if record.checked_at < before.checked_at:
            return
        self.record = record
        if record.url:
            await self.upstream.point_at(record.url, record.engine or "tgi", record.repository)
        if record.ready and not before.ready:
            log.info("endpoint %s is ready (%s, %s)", self.label, record.state, record.engine)
            self._woken_at = None
            for target in self.targets:
                try:
                    await self.loading.mark_up(target)
                except StoreError:
                    self.loading.note_up(target)
        elif record.state != before.state:
            log.info("endpoint %s is %s (was %s)", self.label, record.state, before.state)

    async def observed(self, state: str, *, ready: bool) -> None:
        """A request saw the endpoint answer (`running`) or start waking (`initializing`)."""
        if self.record.state == state and self.record.ready == ready:
            return
        new = self.record.observed(state, self.clock.time(), ready=ready)
        await self.publish(await self._finish_wake(new) if ready else new)

    async def _ready(self, info: EndpointInfo) -> bool:
        if info.state not in SERVING or not info.url:
            return False
        before = self.record
        if before.ready and before.state == info.state and before.url == info.url:
            return True
        return await self.client.healthy(info.url, info.health_route)

    async def _finish_wake(self, new: EndpointRecord) -> EndpointRecord:
        """On the way to ready: the time the wake-up took (its claim ends)."""
        if not new.ready or self.record.ready:
            return new
        try:
            started = await self.board.wake_started()
            if started is not None:
                await self.board.end_wake()
        except StoreError:
            started = self._woken_at
        started = started if started is not None else self._woken_at
        if started is None:
            return new
        seconds = max(0.0, new.checked_at - started)
        self.events.endpoint_ready(self.name, seconds)
        log.info("endpoint %s woke up in %.1f s", self.label, seconds)
        return replace(new, ready_seconds=round(seconds, 3))

    # -- acting -----------------------------------------------------------------------------------

    async def claim_wake(self) -> bool:
        """Whether this request is the fleet's one wake-up (or resume) of the endpoint."""
        now = self.clock.time()
        try:
            count = await self.board.claim_wake(now, max(2 * self.cfg.wake_estimate, 60.0))
        except StoreError:
            if self._woken_at is not None:  # without the store: one wake-up per replica at most
                return False
            count = 1
        if not count:
            return False
        self._woken_at = now
        self.events.endpoint_wakeup(self.name)
        log.info("endpoint %s: waking it (%s); wake-ups so far: %d", self.label, self.record.state, count)
        self.kicked.set()  # the poller watches it closely from now on
        return True

    async def resume(self) -> None:
        """`POST .../resume` (only called when the config says `resume: true`); ControlPlaneError on failure."""
        at = self.clock.time()
        try:
            info = await self.client.act(self.cfg.namespace or "", self.cfg.name or "", "resume")
        except ControlPlaneError as exc:
            self.trouble(exc)
            try:
                await self.board.hold_wake(at, _RETRY_RESUME)
            except StoreError:
                pass
            raise
        log.warning("endpoint %s was paused: resumed it (resume: true in the config)", self.label)
        if info is not None:
            await self.publish(self.record.read(info, at, ready=False))
        else:
            await self.refresh()

    async def act(self, action: str) -> EndpointRecord:
        """Pause or scale to zero (the idle action); ControlPlaneError on failure."""
        at = self.clock.time()
        info = await self.client.act(self.cfg.namespace or "", self.cfg.name or "",
                                     "pause" if action == "pause" else "scale-to-zero")
        return await self.publish(self.record.read(info, at, ready=False)) if info else self.record

    def wake_left(self) -> float:
        """Seconds the current wake-up is expected to take still (from `wake_estimate`)."""
        now = self.clock.time()
        start = self._woken_at or (self.record.since if self.record.waking else now)
        return max(self.cfg.wake_poll_interval, self.cfg.wake_estimate - (now - start))

    # -- traffic ----------------------------------------------------------------------------------

    async def traffic_started(self) -> None:
        """A call goes to the endpoint: the idle timer restarts, fleet-wide."""
        self.in_flight += 1
        self.used_at = self.clock.time()
        await self.flush_traffic()

    def traffic_ended(self) -> None:
        """A call to the endpoint ended (its report to the fleet runs on its own: this may run on cancellation)."""
        self.in_flight = max(0, self.in_flight - 1)
        self.used_at = self.clock.time()
        if self.cfg.idle is not None and self.used_at - self._flushed_at >= self.flush_gap:
            task = asyncio.ensure_future(self.flush_traffic())
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def flush_traffic(self) -> None:
        """Tell the fleet about this replica's traffic, at most once per `flush_gap`."""
        idle = self.cfg.idle
        if idle is None or self.used_at - self._flushed_at < self.flush_gap:
            return
        self._flushed_at = self.used_at
        try:
            await self.board.touch(self.used_at, 2 * idle.after + 60)
        except StoreError as exc:
            log.debug("endpoint %s: traffic not shared (%s)", self.label, exc)

    @property
    def flush_gap(self) -> float:
        """The longest a replica's traffic may go unreported to the fleet."""
        idle = self.cfg.idle
        return min(10.0, idle.after / 10) if idle is not None else 0.0

    # -- reporting --------------------------------------------------------------------------------

    def trouble(self, exc: ControlPlaneError) -> None:
        """A control-plane call failed: counted each time, logged when the problem starts or changes."""
        self.events.endpoint_control_error(self.name, exc.reason)
        if self._trouble != exc.reason:
            self._trouble = exc.reason
            known = f"{self.record.state} at {self.record.url}" if self.record.url else self.record.state
            log.warning("control plane of endpoint %s failed (%s: %s); going on with the last known state (%s)",
                        self.label, exc.reason, exc.message, known)

    def recovered(self) -> None:
        if self._trouble is not None:
            log.warning("control plane of endpoint %s answers again", self.label)
            self._trouble = None

    async def snapshot(self) -> dict[str, Any]:
        """This endpoint for /status (the fleet's wake-up count and traffic from the store when it answers)."""
        rec, now, cfg = self.record, self.clock.time(), self.cfg
        try:
            wake_ups: int | None = await self.board.wake_ups()
            used = await self.board.last_used()
        except StoreError:
            wake_ups, used = None, None
        used = max(used or 0.0, self.used_at) or None
        aim = self.upstream.aim
        idle = None
        if cfg.idle is not None:
            quiet = now - max(used or 0.0, rec.since)
            idle = {"after": cfg.idle.after, "action": cfg.idle.action, "idle_for": round(quiet, 1),
                    "fires_in": round(max(0.0, cfg.idle.after - quiet), 1) if rec.ready else None}
        return {
            "upstream": self.name, "endpoint": self.label, "state": rec.state, "ready": rec.ready,
            "url": rec.url or (aim.url if aim else None), "engine": rec.engine or None,
            "dialect": aim.dialect.name if aim else None, "task": rec.task, "message": rec.message,
            "since": rec.since, "for_seconds": round(now - rec.since, 1), "checked_at": rec.checked_at,
            "wake_ups": wake_ups, "last_time_to_ready": rec.ready_seconds, "resume": cfg.resume,
            "wake_estimate": cfg.wake_estimate, "idle": idle, "in_flight": self.in_flight,
            "control_plane": {"ok": rec.error is None, "error": rec.error, "since": rec.error_since},
        }
