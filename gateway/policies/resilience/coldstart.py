"""The cold-start stage: while a target's model loads, ONE request probes and the others park.

A target (upstream, model) is, as far as this stage knows:
- up: it answered recently here (`idle_after`): the call goes straight through, no store touched;
- unknown (idle, or new): the first request takes the probe lock and goes alone; the others hold
  until it answers (at most `probe_hold`: a slow answer means the model is up and generating);
- loading (a 503 with `estimated_time` was seen, here or by any replica sharing the store): the
  requests park until `next_probe` (the estimate, re-probed at least every `probe_interval`); then
  one of them takes the lock and probes; when the probe answers they are released at once.

Parking is refused up front when it cannot work: the client asked not to wait
(`x-wait-for-model: false`, `options.wait_for_model: false`, or `resilience.wait_for_model` off),
another deployment can take the request (`call.resilience.handoff`, set by the fallback stage), or the model will
not be ready before the deadline or `max_model_wait`. The answer is then a 503 ModelLoading with
`estimated_time` and `Retry-After: ceil(T)` capped at `retry_after_cap`, with no upstream call.

A parked stream commits its 200 after `keepalive_interval` and sends SSE comments until the real
stream arrives (`keepalive.py`). If the store fails, each request waits for the model on its own
(no single probe) rather than failing: the model is what is slow, not the gateway.

Invariants: the probe lock is released in `finally` (a cancelled request never leaves it behind;
its lease bounds a crashed replica); a request cancelled while parked makes no upstream call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.core.call import Answer, Call
from gateway.core.clock import Clock
from gateway.core.config import ResilienceConfig
from gateway.core.errors import GatewayError, ModelLoading, UpstreamStatusError, UpstreamTimeout
from gateway.core.pipeline import Handler
from gateway.policies.resilience.keepalive import Progress, commit_when_slow
from gateway.policies.resilience.loading import LoadingBoard, LoadState, Watch
from gateway.policies.resilience.target import Target, can_hand_off, deployment_of, target_of
from gateway.store.protocol import StoreError

T = TypeVar("T")


class _StoreDown(Exception):
    """The shared state could not be read or written."""


@dataclass(slots=True)
class _Visit:
    """One request's passage through the stage."""

    call: Call
    nxt: Handler
    target: Target
    progress: Progress
    wait_end: float  # monotonic: min(deadline, arrival + max_model_wait)
    watch: Watch | None = None  # the target's wake-ups, armed before the first look at the state


class ColdStartStage:
    """Parks requests behind one probe while their target loads."""

    def __init__(self, board: LoadingBoard, clock: Clock, cfg: ResilienceConfig) -> None:
        self.board = board
        self.clock = clock
        self.cfg = cfg

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        target = target_of(deployment_of(call), call.model)
        if self.board.known_up(target):
            sent = self.clock.time()
            try:
                return await self._go(call, nxt, target)
            except ModelLoading as exc:
                await self._learned(target, exc, sent)
                if not self._may_park(call):
                    raise
        visit = _Visit(call, nxt, target, Progress(self.clock),
                       min(call.deadline, self.clock.monotonic() + self.cfg.max_model_wait))
        if call.stream:
            return await commit_when_slow(self._serve(visit), visit.progress, self.cfg.keepalive_interval, call)
        return await self._serve(visit)

    def _may_park(self, call: Call) -> bool:
        wait = call.flags.wait_for_model
        wanted = self.cfg.wait_for_model if wait is None else wait
        return wanted and not can_hand_off(call)

    # -- the loop -----------------------------------------------------------------------------

    async def _serve(self, v: _Visit) -> Answer:
        """Wait for this request's turn and make its call."""
        with self.board.watching(v.target) as v.watch:
            return await self._turns(v)

    async def _turns(self, v: _Visit) -> Answer:
        try:
            while True:
                state = await self._shared(self.board.read(v.target))
                if state is not None and not state.loading:
                    answer = await self._attempt(v)
                else:
                    answer = await (self._unknown(v) if state is None else self._loading(v, state))
                if answer is not None:
                    return answer
        except _StoreDown:
            return await self._solo(v)

    async def _unknown(self, v: _Visit) -> Answer | None:
        """Nobody knows whether the model is loaded: one request finds out, the others hold."""
        lock = await self._shared(self.board.lock(v.target, self._lease(v.call)))
        if lock is not None:
            return await self._probe(v, lock) if await self._still(v, lock, _unknown_state) else None
        age = await self._shared(self.board.lock_age(v.target))
        if age is None:
            return None  # the probe just answered: read the state again
        if age >= self.cfg.probe_hold:
            return await self._attempt(v)  # a slow answer: the model is generating
        await self._park(v, self.clock.monotonic() + self.cfg.probe_hold - age, unknown=True)
        return None

    async def _loading(self, v: _Visit, state: LoadState) -> Answer | None:
        """The model is loading: probe when a probe is due, else refuse or park until it is."""
        now = self.clock.time()
        v.progress.ready_at = state.ready_at
        if now >= state.next_probe:
            lock = await self._shared(self.board.lock(v.target, self._lease(v.call)))
            if lock is not None:
                return await self._probe(v, lock) if await self._still(v, lock, self._probe_due) else None
            age = await self._shared(self.board.lock_age(v.target))
            if age is None:
                return None  # the probe just answered: read the state again
            if age >= self.cfg.probe_hold:
                return await self._attempt(v)  # a slow answer: the model is generating
            if self._may_park(v.call):
                await self._park(v, self.clock.monotonic() + self.cfg.probe_hold - age)
                return None
        left = max(0.0, state.ready_at - now)
        if not self._may_park(v.call) or left > v.wait_end - self.clock.monotonic():
            v.call.resilience.coldstart = "rejected"
            raise self._still_loading(v.target, left)
        await self._park(v, self.clock.monotonic() + max(0.0, state.next_probe - now))
        return None

    async def _still(self, v: _Visit, lock: str, wanted: Callable[[LoadState | None], bool]) -> bool:
        """Whether a probe is still wanted, read again under the lock (keep it if so, else give it back).

        Reading and locking are two steps: between them another request may have probed and
        written the news (then released the lock we just took). Without this second look it
        would call the upstream again for nothing.
        """
        try:
            state = await self._shared(self.board.read(v.target))
        except BaseException:
            await _shielded(self.board.unlock(v.target, lock))
            raise
        if wanted(state):
            return True
        await _shielded(self.board.unlock(v.target, lock))
        return False

    def _probe_due(self, state: LoadState | None) -> bool:
        return state is not None and state.loading and self.clock.time() >= state.next_probe

    async def _probe(self, v: _Visit, lock: str) -> Answer | None:
        """Call the upstream for everyone; None when the model is (still) loading."""
        v.call.resilience.coldstart = v.call.resilience.coldstart or "probe"
        sent = self.clock.time()
        try:
            try:
                answer = await self._go(v.call, v.nxt, v.target)
            except ModelLoading as exc:
                await self._learned(v.target, exc, sent)
                if not self._may_park(v.call):
                    raise  # the upstream's own answer, as it came
                return None
            except GatewayError:
                # It answered without loading (or is plainly down): the parked go on their own.
                await _shielded(self.board.mark_up(v.target))
                raise
            await _shielded(self.board.mark_up(v.target))
            return answer
        finally:
            # State first, lock second: a woken follower must find the news, not an empty board.
            # Shielded: a cancelled client must not leave the lock behind for a whole lease.
            await _shielded(self.board.unlock(v.target, lock))

    async def _attempt(self, v: _Visit) -> Answer | None:
        """Go without the lock; None when the model turned out to be loading and this call may park."""
        sent = self.clock.time()
        try:
            return await self._go(v.call, v.nxt, v.target)
        except ModelLoading as exc:
            await self._learned(v.target, exc, sent)
            if not self._may_park(v.call):
                raise
            return None

    async def _go(self, call: Call, nxt: Handler, target: Target) -> Answer:
        """One call through the rest of the pipeline; remembers a target that answered."""
        try:
            answer = await nxt(call)
        except ModelLoading:
            raise
        except UpstreamStatusError:
            self.board.note_up(target)
            raise
        self.board.note_up(target)
        return answer

    async def _learned(self, target: Target, exc: ModelLoading, sent: float) -> None:
        """A call saw the model loading: tell every replica (or at least this process)."""
        try:
            await self.board.mark_loading(target, exc.estimated_time, sent)
        except StoreError:
            self.board.note_loading(target, self.board.loading_record(exc.estimated_time))

    # -- waiting ------------------------------------------------------------------------------

    async def _park(self, v: _Visit, until: float, *, unknown: bool = False) -> None:
        """Wait until `until` (monotonic), a state change, or the next re-check, within the budget."""
        end = min(until, v.wait_end)
        now = self.clock.monotonic()
        if now >= v.wait_end:
            v.call.resilience.coldstart = "rejected"
            if unknown:
                raise UpstreamTimeout("the request's deadline passed while another request was finding out "
                                      "whether the model is loaded")
            raise self._still_loading(v.target, max(0.0, v.progress.ready_at - self.clock.time()))
        v.call.resilience.coldstart = v.call.resilience.coldstart or "parked"
        assert v.watch is not None  # set by _serve, around every park
        await self.board.wait(v.watch, min(end - now, self.cfg.recheck_interval))
        waited = self.clock.monotonic() - now
        v.call.waited_seconds += waited
        v.call.resilience.coldstart_wait += waited

    async def _solo(self, v: _Visit) -> Answer:
        """The store is down: wait for the model on this request's own, on local knowledge."""
        v.call.resilience.coldstart_store_error = True
        while True:
            known = self.board.loading_state(v.target)
            if known is not None:
                now = self.clock.time()
                v.progress.ready_at = known.ready_at
                left = max(0.0, known.ready_at - now)
                if not self._may_park(v.call) or left > v.wait_end - self.clock.monotonic():
                    raise self._still_loading(v.target, left)
                started = self.clock.monotonic()
                await self.clock.sleep(min(max(0.0, known.next_probe - now), v.wait_end - started))
                v.call.waited_seconds += self.clock.monotonic() - started
            try:
                return await self._go(v.call, v.nxt, v.target)
            except ModelLoading as exc:
                self.board.note_loading(v.target, self.board.loading_record(exc.estimated_time))
                if not self._may_park(v.call):
                    raise

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    async def _shared(aw: Awaitable[T]) -> T:
        """A board operation whose StoreError means "wait on your own" (not one from further down)."""
        try:
            return await aw
        except StoreError as exc:
            raise _StoreDown() from exc

    def _lease(self, call: Call) -> float:
        return max(0.1, min(self.cfg.probe_lease, call.deadline - self.clock.monotonic() + 1.0))

    def _still_loading(self, target: Target, left: float) -> ModelLoading:
        return ModelLoading(f"Model {target.model} is currently loading",
                            estimated_time=round(left, 2), retry_after_cap=self.cfg.retry_after_cap)


def _unknown_state(state: LoadState | None) -> bool:
    return state is None


async def _shielded(aw: Awaitable[object]) -> None:
    """Run a clean-up to completion even if our task is cancelled again meanwhile; swallow store errors."""
    task = asyncio.ensure_future(aw)
    try:
        await asyncio.shield(task)
    except (StoreError, GatewayError):
        pass
    except asyncio.CancelledError:
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise
