"""Keeping an endpoint's record fresh, one poller per fleet, and the idle action.

Every replica runs one `Poller` per managed endpoint. At each step it takes or renews the fleet's
poller lease (`endpoint_lease.lua`): the holder reads the control plane and writes the record; the
others read the record from the store. Without a working store every replica polls on its own (a few
more control-plane reads, never a stale endpoint).

When: every `poll_interval` while the endpoint is steady; every `wake_poll_interval` while it wakes
(pending, initializing, serving but not yet healthy, or a wake-up claimed); after N failed readings in
a row, `poll_interval * 2**(N-1)`, at most ten times `poll_interval`; each delay jittered by +-10% so
fleets do not poll in step. A step also starts at once when this replica claims a wake-up or another
replica writes a record (the store's channel), so traffic returns to the endpoint as soon as it serves.

Idle (opt-in, `idle: {after, action}`): the poller holding the lease, after a good reading that says
the endpoint is ready, and only when no replica has reported traffic for `after` (plus the longest a
replica may take to report it), claims the idle action for `after` seconds and pauses or scales the
endpoint to zero: one replica acts, once. A failed reading, a store that does not answer, or a call in
flight here means no action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from gateway.core.clock import Clock
from gateway.policies.endpoints.watch import EndpointWatch
from gateway.store.protocol import StoreError
from gateway.upstream.endpoints.control import ControlPlaneError

log = logging.getLogger("gateway.endpoints")
_JITTER = 0.1
_MAX_BACKOFF = 10  # times poll_interval


class Poller:
    """The loop that keeps one `EndpointWatch` fresh."""

    def __init__(self, watch: EndpointWatch, clock: Clock, rand: Callable[[], float] | None = None) -> None:
        self.watch = watch
        self.clock = clock
        self.rand = rand or random.Random().random
        self.started_at = clock.time()
        self.failures = 0  # control-plane readings failed in a row
        self.leader = False
        self._store_failing = False

    async def run(self) -> None:
        """Step, sleep, step... until cancelled (app shutdown)."""
        while True:
            try:
                delay = await self.step()
            except Exception:  # the poller must outlive any one bad step
                log.exception("endpoint %s: poll step failed", self.watch.label)
                delay = self.watch.cfg.wake_poll_interval
            self.watch.first_step.set()
            await self.sleep(delay)

    async def step(self) -> float:
        """One poll (leader) or store read (follower), the idle check; the delay until the next step."""
        watch = self.watch
        self.leader = await self._lease()
        if self.leader:
            record = await watch.poll()
            self.failures = self.failures + 1 if record.error else 0
            await self.idle_check()
        else:
            with contextlib.suppress(StoreError):
                shared = await watch.board.read()
                if shared is not None:
                    await watch.apply(shared)
        if watch.in_flight:  # a long call keeps the fleet's idle timer from running out
            watch.used_at = self.clock.time()
        await watch.flush_traffic()
        return await self.delay()

    async def _lease(self) -> bool:
        cfg = self.watch.cfg
        try:  # the lease outlives the longest steady sleep; in a backoff another replica may take over
            held = await self.watch.board.lease(3 * cfg.poll_interval + 2 * cfg.control_timeout)
        except StoreError as exc:
            if not self._store_failing:
                self._store_failing = True
                log.warning("endpoint %s: store unavailable (%s); this replica polls on its own", self.watch.label, exc)
            return True
        if self._store_failing:
            self._store_failing = False
            log.warning("endpoint %s: store reachable again", self.watch.label)
        return bool(held)

    async def delay(self) -> float:
        """Seconds until the next step."""
        cfg = self.watch.cfg
        base = cfg.wake_poll_interval if await self._fast() else cfg.poll_interval
        if self.leader and self.failures:
            base = min(base * 2 ** (self.failures - 1), cfg.poll_interval * _MAX_BACKOFF)
        return base * (1 - _JITTER + 2 * _JITTER * self.rand())

    async def _fast(self) -> bool:
        record = self.watch.record
        if record.waking or (record.serving and not record.ready) or record.source == "traffic":
            return True
        if record.state in ("scaledToZero", "paused"):
            try:
                return await self.watch.board.wake_started() is not None
            except StoreError:
                return False
        return False

    async def sleep(self, seconds: float) -> None:
        """Sleep on the clock, or less when the watch is kicked (a wake-up claimed, a record written)."""
        kicked = self.watch.kicked
        if not kicked.is_set():
            napping = asyncio.ensure_future(self.clock.sleep(seconds))
            waiting = asyncio.ensure_future(kicked.wait())
            try:
                await asyncio.wait((napping, waiting), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (napping, waiting):
                    task.cancel()
                await asyncio.gather(napping, waiting, return_exceptions=True)
        kicked.clear()

    async def idle_check(self) -> None:
        """Pause or scale to zero an endpoint nobody used for `idle.after` (module docstring)."""
        watch = self.watch
        idle, record = watch.cfg.idle, watch.record
        if idle is None or not record.ready or record.error is not None or watch.in_flight:
            return
        try:
            shared = await watch.board.last_used()
        except StoreError:
            return  # the fleet's traffic is unknown: never act on a guess
        now = self.clock.time()
        quiet_since = max(shared or 0.0, watch.used_at, record.since, self.started_at)
        if now - quiet_since < idle.after + watch.flush_gap:
            return
        try:
            if not await watch.board.claim_idle(idle.after):
                return
        except StoreError:
            return
        try:
            await watch.act(idle.action)
        except ControlPlaneError as exc:
            watch.trouble(exc)
            log.warning("endpoint %s: the idle action (%s) failed: %s", watch.label, idle.action, exc.message)
            return
        watch.events.endpoint_idle_action(watch.name, idle.action)
        log.warning("endpoint %s: no traffic for %.0f s, %s (idle: %s after %g s)", watch.label, now - quiet_since,
                    "paused it" if idle.action == "pause" else "scaled it to zero", idle.action, idle.after)


async def listen(watch: EndpointWatch) -> None:
    """Kick the watch when another replica writes its record or claims a wake-up (Redis only)."""
    store = watch.board.store
    while True:
        try:
            heard = await store.wait_for(watch.board.channel, 5.0)
        except Exception as exc:  # any client failure: degrade to the poll cadence
            log.debug("endpoint notifications unavailable: %r", exc)
            await asyncio.sleep(1.0)
            continue
        if heard is not None and not watch.board.mine(heard):
            watch.kicked.set()
