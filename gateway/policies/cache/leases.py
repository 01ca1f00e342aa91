"""`Leases`: the single-flight locks this process's leaders hold, renewed by ONE ticker task.

A leader's lock lives `lock_ttl`; while it works it must be renewed. One task per leader (a
Task, a timer and a cancellation on every cacheable miss) cost more than the miss's own cache
logic, so leases are kept in a dict instead and one ticker, running only while some lease is
held, renews every lease at least `lock_ttl / 3` old each `lock_ttl / 3` (so a lock is renewed
by half its life at the latest), all renewals of a tick in one round trip on Redis.
A lease whose lock lapsed (someone else leads now) is dropped; a store failure is retried on the
next tick (the lock may lapse: a follower then takes over, which is only a duplicate call).
"""

from __future__ import annotations

import asyncio

from gateway.core.clock import Clock
from gateway.policies.cache.claims import FlightKeys
from gateway.store import Store
from gateway.store.ordered import send_script

EXTEND = "cache_lock_extend"


class Leases:
    """Locks held by this process's leaders; renewed while held."""

    def __init__(self, store: Store, clock: Clock, lock_ttl: float) -> None:
        self.store = store
        self.clock = clock
        self.lock_ttl = lock_ttl
        self._held: dict[str, tuple[FlightKeys, float]] = {}  # token -> (keys, held since)
        self._ticker: asyncio.Task[None] | None = None

    def hold(self, keys: FlightKeys, token: str) -> None:
        self._held[token] = (keys, self.clock.monotonic())
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def release(self, token: str) -> None:
        self._held.pop(token, None)
        if not self._held and self._ticker is not None:
            self._ticker.cancel()  # nothing to renew: no task lingers between flights
            self._ticker = None

    async def _tick(self) -> None:
        period = self.lock_ttl / 3
        ttl_ms = int(self.lock_ttl * 1000)
        while True:
            await self.clock.sleep(period)
            now = self.clock.monotonic()
            due = [(tok, keys) for tok, (keys, since) in self._held.items() if now - since >= period / 2]
            sent = [send_script(self.store, EXTEND, [keys.lock], [tok, ttl_ms]) for tok, keys in due]
            answers = await asyncio.gather(*sent, return_exceptions=True)
            for (tok, _), answer in zip(due, answers, strict=True):
                if not isinstance(answer, BaseException) and not answer:
                    self._held.pop(tok, None)  # the lock lapsed and someone else leads now
