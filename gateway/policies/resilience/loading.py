"""The cold-start board: what each target (upstream, model) is doing, shared through the store.

Per target, three store keys share one hash tag:
- `state`: "loading <at> <ready_at> <next_probe> <estimate>" or "up <at>" (wall-clock seconds, so
  every replica reads the same instants). "loading" lives for its estimate plus a grace period;
  "up" (the target answered without loading) lives `idle_after` seconds. No record: unknown.
- `probe`: the single-probe lock, "<token> <since>", taken with SET NX and a lease; released only
  by its holder (`coldstart_release.lua`), so an expired lease never deletes a successor's lock.
- `events`: a channel that hears a message after every state change, so parked requests re-read
  at once instead of at their next re-check.

Wake-ups are never missed: a request watches its target (`watching`) from before its first look
at the state until it is done, so a change notified while it is between a look and parking (a
failed lock, then reading the lock's age) makes its next park return at once. Across replicas the
store's pub/sub keeps the subscription while anyone listens and hands a message that came between
two waits to the next one (store/redis.py).

A late "loading" answer (sent before a probe saw the model up) never overwrites the newer "up"
(`coldstart_mark.lua`). With the memory store all of it lives in this process; with Redis every
replica shares it. This process also remembers, without the store, which targets answered
recently (`known_up`: the hot path touches no store) and which it saw loading (for /status).

Store failures surface as `StoreError`; the cold-start stage decides what to do with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.core.clock import Clock
from gateway.core.config import ResilienceConfig
from gateway.policies.resilience.target import Target
from gateway.store.protocol import Store, StoreError, key

log = logging.getLogger("gateway.coldstart")
MARK, RELEASE = "coldstart_mark", "coldstart_release"
_GRACE = 60.0  # a loading record outlives its estimate by this much, so a slow load stays known
_MIN_PROBE_GAP = 1.0  # never probe a loading model more often than this, whatever it estimates
_LOCAL_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class LoadState:
    """One target's shared record."""

    kind: str  # "loading" or "up"
    at: float  # when it was written
    ready_at: float = 0.0  # loading: when the upstream expects to be ready
    next_probe: float = 0.0  # loading: when one request may try again
    estimate: float = 0.0  # loading: the upstream's estimated_time when it was written

    @property
    def loading(self) -> bool:
        return self.kind == "loading"

    def encode(self) -> bytes:
        if self.kind == "up":
            return f"up {self.at:.3f}".encode()
        return f"loading {self.at:.3f} {self.ready_at:.3f} {self.next_probe:.3f} {self.estimate:.3f}".encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> LoadState | None:
        """The record, or None when absent or not in this format (a newer key version)."""
        if not raw:
            return None
        try:
            parts = raw.decode().split()
            if parts[0] == "up" and len(parts) == 2:
                return cls("up", float(parts[1]))
            if parts[0] == "loading" and len(parts) == 5:
                at, ready, probe, est = (float(p) for p in parts[1:])
                return cls("loading", at, ready, probe, est)
        except (UnicodeDecodeError, ValueError, IndexError):
            pass
        return None


class _Listener:
    """The requests of this process watching one target, and how they are woken."""

    def __init__(self) -> None:
        self.waiters = 0
        self.fired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    def fire(self) -> None:
        """Wake every watch armed now; each re-arms on the next change once it has looked again."""
        if not self.fired.done():
            self.fired.set_result(None)
        self.fired = asyncio.get_running_loop().create_future()


class Watch:
    """One request's claim on its target's wake-ups: armed from the moment it is taken, so a change
    notified before the request parks is not lost (its next `LoadingBoard.wait` returns at once)."""

    __slots__ = ("listener", "seen", "target")

    def __init__(self, target: Target, listener: _Listener) -> None:
        self.target = target
        self.listener = listener
        self.seen = listener.fired  # resolved by the first change after this point

    def rearm(self) -> bool:
        """Whether a change was notified since the last look; re-armed for the next one either way."""
        fired = self.seen.done()
        if fired:
            self.seen = self.listener.fired
        return fired


class LoadingBoard:
    """Reads and writes the shared cold-start state; remembers this process's own observations."""

    def __init__(self, store: Store, clock: Clock, prefix: str, cfg: ResilienceConfig) -> None:
        self.store = store
        self.clock = clock
        self.prefix = prefix
        self.cfg = cfg
        self._up: OrderedDict[Target, float] = OrderedDict()  # target -> monotonic expiry
        self._loading: OrderedDict[Target, LoadState] = OrderedDict()  # last seen, for /status
        self._forget_at: dict[Target, float] = {}  # monotonic time a loading entry is surely stale
        self._store_failing = False
        self._listeners: dict[Target, _Listener] = {}

    # -- keys ---------------------------------------------------------------------------------

    def _key(self, target: Target, what: str) -> str:
        return key(self.prefix, "cold", f"{target.upstream}|{target.model}", what)

    # -- local knowledge (no store) -----------------------------------------------------------

    def known_up(self, target: Target) -> bool:
        """This process saw `target` answer within `idle_after` and has not seen it loading since."""
        if target in self._loading:
            return False
        if self.cfg.idle_after <= 0:
            return True
        expiry = self._up.get(target)
        return expiry is not None and expiry > self.clock.monotonic()

    def note_up(self, target: Target) -> None:
        """`target` just answered without loading."""
        self._forget(target)
        if self.cfg.idle_after > 0:
            self._up[target] = self.clock.monotonic() + self.cfg.idle_after
            self._up.move_to_end(target)
            while len(self._up) > _LOCAL_LIMIT:
                self._up.popitem(last=False)

    def note_loading(self, target: Target, state: LoadState) -> None:
        """`target` is loading (seen here, whether or not the store could be told)."""
        self._up.pop(target, None)
        self._loading[target] = state
        self._loading.move_to_end(target)
        self._forget_at[target] = self.clock.monotonic() + max(0.0, state.ready_at - state.at) + _GRACE
        while len(self._loading) > _LOCAL_LIMIT:
            self._forget_at.pop(self._loading.popitem(last=False)[0], None)

    def loading_state(self, target: Target) -> LoadState | None:
        """The last loading record this process saw for `target` (no store round trip)."""
        return self._loading.get(target)

    # -- shared state -------------------------------------------------------------------------

    async def read(self, target: Target) -> LoadState | None:
        """The shared record of `target` (and refresh local knowledge from it)."""
        state = LoadState.decode(await self._guard(self.store.get(self._key(target, "state"))))
        if state is not None and state.loading:
            self.note_loading(target, state)
        elif state is not None:
            self.note_up(target)
        else:
            self._forget(target)
        return state

    def loading_record(self, estimate: float) -> LoadState:
        """A fresh loading record for an upstream estimate of `estimate` seconds."""
        now = self.clock.time()
        est = max(0.0, estimate)
        gap = min(max(est, _MIN_PROBE_GAP), self.cfg.probe_interval)
        return LoadState("loading", now, now + est, now + gap, est)

    async def mark_loading(self, target: Target, estimate: float, sent_at: float) -> LoadState | None:
        """Record that `target` is loading; None when a newer "up" record made this news stale."""
        state = self.loading_record(estimate)
        ttl_ms = int((state.ready_at - state.at + _GRACE) * 1000)
        written = await self._guard(
            self.store.run_script(MARK, [self._key(target, "state")], [state.encode().decode(), ttl_ms, sent_at])
        )
        if not int(written):
            return None
        self.note_loading(target, state)
        await self.notify(target)
        return state

    async def mark_up(self, target: Target) -> None:
        """Record that `target` answered without loading; parked requests may go."""
        self.note_up(target)
        state = LoadState("up", self.clock.time())
        ttl = max(self.cfg.idle_after, 10.0)
        await self._guard(self.store.set(self._key(target, "state"), state.encode(), ttl=ttl))
        await self.notify(target)

    async def lock(self, target: Target, lease: float) -> str | None:
        """Take the single probe of `target` for `lease` seconds; the lock value when taken."""
        value = f"{secrets.token_hex(8)} {self.clock.time():.3f}"
        probe = self._key(target, "probe")
        taken = await self._guard(self.store.set(probe, value.encode(), ttl=max(lease, 0.05), nx=True))
        return value if taken else None

    async def lock_age(self, target: Target) -> float | None:
        """How long the current probe of `target` has been out; None when nobody is probing."""
        raw = await self._guard(self.store.get(self._key(target, "probe")))
        if not raw:
            return None
        try:
            since = float(raw.decode().split()[1])
        except (UnicodeDecodeError, ValueError, IndexError):
            return 0.0
        return max(0.0, self.clock.time() - since)

    async def unlock(self, target: Target, value: str) -> None:
        """Release the probe lock if this request still holds it, and wake the parked."""
        await self._guard(self.store.run_script(RELEASE, [self._key(target, "probe")], [value]))
        await self.notify(target)

    async def notify(self, target: Target) -> None:
        """Wake the requests parked on `target`: here at once, elsewhere through the store."""
        listener = self._listeners.get(target)
        if listener is not None:
            listener.fire()
        await self._guard(self.store.publish(self._key(target, "events"), b"changed"))

    @contextlib.contextmanager
    def watching(self, target: Target) -> Iterator[Watch]:
        """Watch `target`'s changes for as long as the block runs (take it before the first look at the state)."""
        listener = self._listeners.get(target)
        if listener is None:
            listener = self._listeners[target] = _Listener()
        listener.waiters += 1
        if self.store.kind != "memory" and (listener.task is None or listener.task.done()):
            # Other replicas speak through the store; in the embedded store every notify is local.
            listener.task = asyncio.get_running_loop().create_task(self._listen(target, listener))
        try:
            yield Watch(target, listener)
        finally:
            listener.waiters -= 1
            if not listener.waiters and (listener.task is None or listener.task.done()):
                self._drop(target, listener)

    async def wait(self, watch: Watch, seconds: float) -> None:
        """Return after `seconds` (on the injected clock) or on a state change since the watch last looked,
        whichever is first (at once if one came already)."""
        if watch.rearm() or seconds <= 0:
            await asyncio.sleep(0)
            return
        slept = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait((watch.seen, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            slept.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slept
            watch.rearm()

    async def _listen(self, target: Target, listener: _Listener) -> None:
        """Relay the store's notifications to this process's parked requests while there are any.

        It ends on its own, at most one `recheck_interval` after the last one left: it is never
        cancelled in the middle of a store call (a cancelled subscribe can spoil a pooled connection).
        A failing store only costs the early wake-ups; the parked still re-read on their clock.
        """
        channel = self._key(target, "events")
        try:
            while listener.waiters:
                try:
                    heard = await self.store.wait_for(channel, self.cfg.recheck_interval)
                except Exception as exc:  # any client failure: degrade, never crash
                    log.debug("cold-start notifications unavailable: %r", exc)
                    await asyncio.sleep(min(self.cfg.recheck_interval, 1.0))
                    continue
                if heard is not None:
                    listener.fire()
        finally:
            if not listener.waiters:
                self._drop(target, listener)

    def _drop(self, target: Target, listener: _Listener) -> None:
        if self._listeners.get(target) is listener:
            del self._listeners[target]

    async def close(self) -> None:
        """Stop the notification listeners (app shutdown)."""
        tasks = [lst.task for lst in self._listeners.values() if lst.task is not None and not lst.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listeners.clear()

    # -- read-outs ----------------------------------------------------------------------------

    async def snapshot(self) -> list[dict[str, Any]]:
        """Targets this process has seen loading, re-read from the store (stale if it is down)."""
        out: list[dict[str, Any]] = []
        for target in list(self._loading)[-1000:]:
            stale = False
            try:
                state = await self.read(target)
            except StoreError:
                state, stale = self._loading.get(target), True
            if state is None or not state.loading:
                continue
            now = self.clock.time()
            out.append({
                "upstream": target.upstream, "model": target.model, "deployment": target.label,
                "estimated_time_left": round(max(0.0, state.ready_at - now), 2),
                "loading_for": round(max(0.0, now - state.at), 2),
                "next_probe_in": round(max(0.0, state.next_probe - now), 2), "stale": stale,
            })
        return out

    def seen_loading(self) -> int:
        """How many targets this process currently believes are loading (for a gauge)."""
        now = self.clock.monotonic()
        for target in [t for t, until in self._forget_at.items() if now > until]:
            self._forget(target)  # its record has expired in the store too, and nobody asked since
        return len(self._loading)

    def _forget(self, target: Target) -> None:
        self._loading.pop(target, None)
        self._forget_at.pop(target, None)

    # -- internals ----------------------------------------------------------------------------

    async def _guard(self, aw: Any) -> Any:
        # Log a store outage once when it starts and once when it ends, never per request.
        try:
            result = await aw
        except StoreError as exc:
            if not self._store_failing:
                self._store_failing = True
                log.warning("cold-start state unavailable (%s): requests wait for models on their own", exc)
            raise
        if self._store_failing:
            self._store_failing = False
            log.info("cold-start state reachable again")
        return result
